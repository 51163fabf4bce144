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
/// decay, no amsgrad).
public struct Adam: Sendable {
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Double
    /// How many steps were taken (t in the bias corrections).
    public private(set) var stepCount = 0
    private var firstMoment: [Double]
    private var secondMoment: [Double]

    public init(for parameters: TinyLMParameters, learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        firstMoment = [Double](repeating: 0, count: parameters.storage.count)
        secondMoment = firstMoment
    }

    /// One update of `parameters` along `gradient` (same layout).
    ///
    /// - Throws: ``StageError`` if `gradient`, `parameters` and the optimizer's
    ///   moments are not of one layout (a gradient of another model's config), or
    ///   the gradient holds NaN; nothing is changed then.
    public mutating func step(_ parameters: inout TinyLMParameters, gradient: TinyLMParameters) throws(StageError) {
        guard gradient.config == parameters.config, parameters.storage.count == firstMoment.count else {
            throw StageError(.shapeMismatch, stage: "adam", argument: "gradient",
                             "a gradient of \(gradient.storage.count) weights for parameters of \(parameters.storage.count), "
                             + "with moments of \(firstMoment.count): one model's config for all three")
        }
        if let bad = gradient.storage.firstIndex(where: \.isNaN) {
            throw StageError(.notANumber, stage: "adam", argument: "gradient", "NaN at weight \(bad)")
        }
        stepCount += 1
        let correction1 = 1 - pow(beta1, Double(stepCount))
        let correction2 = 1 - pow(beta2, Double(stepCount))
        for i in parameters.storage.indices {
            let g = gradient.storage[i]
            firstMoment[i] = beta1 * firstMoment[i] + (1 - beta1) * g
            secondMoment[i] = beta2 * secondMoment[i] + (1 - beta2) * g * g
            let mHat = firstMoment[i] / correction1
            let sHat = secondMoment[i] / correction2
            parameters.storage[i] -= learningRate * mHat / (sHat.squareRoot() + epsilon)
        }
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
