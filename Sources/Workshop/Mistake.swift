import TensorCore
import Golden

/// One well-known wrong version of a stage: what it is called, why it is wrong,
/// where the book explains the right rule, and what it computes.
///
/// ```
/// Mistake(
///     id: "gae.no-lambda", stage: "gae", chapter: "Chapters/04-gae",
///     title: "A_t = δ_t + γ·A_{t+1}: λ left out of the recursion",
///     explanation: "...") { a in
///         // the wrong outputs, from the fixture's inputs
///     }
/// ```
///
/// `wrongOutputs` reads the fixture's params and inputs through
/// ``FixtureArguments`` (in Double, whatever the fixture's precision) and gives
/// the outputs the mistake produces, by their fixture names. It may give only
/// some of the stage's outputs (most give the forward outputs, not the
/// gradients): the diagnosis compares the ones it gives.
public struct Mistake: Sendable {
    /// `<stage>.<short-name>`, e.g. `gae.forward-recursion`.
    public let id: String
    /// The fixture stage it is a mistake of.
    public let stage: String
    /// One line: what the wrong version does.
    public let title: String
    /// Two or three sentences: why it is wrong, and the right rule.
    public let explanation: String
    /// The chapter that explains the right rule, e.g. `Chapters/04-gae`.
    public let chapter: String
    /// What the mistake computes from a fixture's inputs.
    public let wrongOutputs: @Sendable (FixtureArguments<Double>) throws -> [String: FixtureTensor]

    public init(id: String, stage: String, chapter: String, title: String, explanation: String,
                wrongOutputs: @escaping @Sendable (FixtureArguments<Double>) throws -> [String: FixtureTensor]) {
        self.id = id
        self.stage = stage
        self.chapter = chapter
        self.title = title
        self.explanation = explanation
        self.wrongOutputs = wrongOutputs
    }
}

/// What a stage's catalogue entry holds: its mistakes, and, where the stage can
/// say, what one element of a right output is made of.
public struct StageMistakes: Sendable {
    public let stage: String
    public let mistakes: [Mistake]
    /// For output `output` at `index`, the parts of the right value, one line
    /// each (e.g. for GAE: δ_t, V_{t+1}, A_{t+1}); nil when the stage cannot say.
    public let explain: @Sendable (_ arguments: FixtureArguments<Double>, _ output: String, _ index: [Int]) throws -> [String]?

    public init(stage: String, mistakes: [Mistake],
                explain: @escaping @Sendable (FixtureArguments<Double>, String, [Int]) throws -> [String]? = { _, _, _ in nil }) {
        self.stage = stage
        self.mistakes = mistakes
        self.explain = explain
    }
}

/// The mistakes of `stage` (none for a stage without a catalogue entry).
public func mistakes(of stage: String) -> [Mistake] {
    mistakeCatalogue.first { $0.stage == stage }?.mistakes ?? []
}

/// Every mistake of every stage, in catalogue order.
public var allMistakes: [Mistake] { mistakeCatalogue.flatMap(\.mistakes) }

// MARK: Small helpers for writing mistakes in Double

/// A float64 output of shape `shape`.
func output(_ shape: [Int], _ values: [Double]) -> FixtureTensor {
    .float64(Tensor.make(shape, values))
}

/// A float64 scalar output.
func output(_ value: Double) -> FixtureTensor {
    .float64(Tensor(scalar: value))
}

/// `log σ(x)`, stable at both ends (the library's `logSigmoid`).
func logSig(_ x: Double) -> Double { logSigmoid(x) }

/// `log softmax(row)[k]` for one row of logits, stable (max subtracted).
func logSoftmax(_ row: ArraySlice<Double>, at k: Int) -> Double {
    let parts = logSumExpParts(row)
    return row[row.startIndex + k] - parts.maximum - parts.logSumShifted
}

/// `logsumexp(row)`.
func logSumExp(_ row: ArraySlice<Double>) -> Double {
    let parts = logSumExpParts(row)
    return parts.maximum + parts.logSumShifted
}

/// A number for a diagnosis line: `0.5`, `-1.25e-07`.
func show(_ x: Double) -> String {
    if x == x.rounded() && abs(x) < 1e15 { return String(Int(x)) }
    return String(x)
}
