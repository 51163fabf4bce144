import TensorCore

/// Adam, by hand, over a ``TinyLMParameters`` layout.
///
/// ```
/// m ← β1 m + (1 - β1) g
/// s ← β2 s + (1 - β2) g²
/// θ ← θ - lr · (m / (1 - β1^t)) / (√(s / (1 - β2^t)) + ε)
/// ```
///
/// The bias corrections 1 - β^t undo the zero start of m and s: without them the
/// first steps would be β-times too small. Matches `torch.optim.Adam` (no weight
/// decay, no amsgrad), and takes the settings it takes: `lr >= 0`, `eps >= 0`,
/// `0 <= β < 1`, each finite too (PyTorch lets an infinite lr through, which
/// turns every weight it moves into ±inf or NaN).
public struct Adam: Sendable {
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Double
    /// How many steps were taken (t in the bias corrections).
    public private(set) var stepCount = 0
    private var firstMoment: [Double]
    private var secondMoment: [Double]

    /// An optimizer with zero moments for `parameters`' layout.
    ///
    /// - Throws: ``StageError`` `.parameterOutOfRange` naming `learning_rate`,
    ///   `beta1`, `beta2` or `epsilon` when it is outside the range
    ///   `torch.optim.Adam` accepts, or not finite.
    public init(for parameters: TinyLMParameters, learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8) throws(StageError) {
        try Self.checkSettings(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon)
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        firstMoment = [Double](repeating: 0, count: parameters.storage.count)
        secondMoment = firstMoment
    }

    /// torch.optim.Adam's argument checks (`0 <= lr`, `0 <= eps`, `0 <= beta < 1`),
    /// with finite values required too.
    static func checkSettings(learningRate: Double, beta1: Double, beta2: Double, epsilon: Double) throws(StageError) {
        let check = InputCheck(stage: "adam")
        try check.nonNegative("learning_rate", learningRate)
        try check.nonNegative("epsilon", epsilon)
        for (name, beta) in [("beta1", beta1), ("beta2", beta2)] where !(beta >= 0 && beta < 1) {
            throw StageError(.parameterOutOfRange, stage: "adam", argument: name,
                             "\(name) = \(beta) must be in [0, 1): at 1 the bias correction 1 - β^t is 0")
        }
    }

    /// One update of `parameters` along `gradient` (same layout).
    ///
    /// Where PyTorch would write NaN into a weight (`eps = 0` with a zero
    /// gradient is 0/0; an infinite gradient is inf/inf), it throws instead.
    ///
    /// - Throws: ``StageError`` for settings changed since `init` to values it
    ///   refuses, if `gradient`, `parameters` and the optimizer's moments are not
    ///   of one layout (a gradient of another model's config), NaN in the gradient
    ///   or the parameters, or `.nonFiniteResult` naming `parameters` when an
    ///   updated weight would be NaN. Nothing is changed then.
    public mutating func step(_ parameters: inout TinyLMParameters, gradient: TinyLMParameters) throws(StageError) {
        try Self.checkSettings(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon)
        let check = InputCheck(stage: "adam")
        guard gradient.config == parameters.config, gradient.storage.count == parameters.storage.count,
              parameters.storage.count == firstMoment.count else {
            throw StageError(.shapeMismatch, stage: "adam", argument: "gradient",
                             "a gradient of \(gradient.storage.count) weights for parameters of \(parameters.storage.count), "
                             + "with moments of \(firstMoment.count): one model's config for all three")
        }
        try parameters.checkWeights(check)
        if let bad = gradient.storage.firstIndex(where: \.isNaN) {
            throw StageError(.notANumber, stage: "adam", argument: "gradient", "NaN at weight \(bad)")
        }
        let correction1 = 1 - pow(beta1, Double(stepCount + 1))
        let correction2 = 1 - pow(beta2, Double(stepCount + 1))
        var updated = parameters.storage, first = firstMoment, second = secondMoment
        for i in updated.indices {
            let g = gradient.storage[i]
            first[i] = beta1 * first[i] + (1 - beta1) * g
            second[i] = beta2 * second[i] + (1 - beta2) * g * g
            let mHat = first[i] / correction1
            let sHat = second[i] / correction2
            updated[i] -= learningRate * mHat / (sHat.squareRoot() + epsilon)
        }
        if containsNaN(updated), let flat = updated.firstIndex(where: \.isNaN) {
            throw StageError(.nonFiniteResult, stage: "adam", argument: "parameters",
                             "the update makes weight \(flat) NaN (an infinite gradient, or eps = 0 with a zero one)")
        }
        stepCount += 1
        parameters.storage = updated
        firstMoment = first
        secondMoment = second
    }
}

/// x^n for a whole n >= 0, by repeated squaring (no libm needed).
func pow(_ x: Double, _ n: Double) -> Double {
    var result = 1.0, base = x, exponent = Int(n)
    while exponent > 0 {
        if exponent & 1 == 1 { result *= base }
        base *= base
        exponent >>= 1
    }
    return result
}
