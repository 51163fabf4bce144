/// The error every stage throws for input it cannot take.
///
/// It names the stage (the fixture stage name, e.g. `"gae"`), the argument at
/// fault, and what is wrong with it, shapes and values included:
///
/// ```
/// gae: start out of range in 'start': start = 5 must be in [0, N) = [0, 5) for values [2, 5]
/// ```
///
/// Where DeepSpeed-Chat or align-anything assert, a stage throws; where they would
/// silently produce NaN (an empty mask, an empty loss window), a stage throws too.
public struct StageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What kind of problem it is, for callers that branch on it.
    public enum Kind: String, Sendable, CaseIterable {
        /// Two inputs whose shapes do not agree, or an input of the wrong rank.
        case shapeMismatch = "shape mismatch"
        /// An input of a dtype the argument cannot take (float labels, say).
        case wrongDType = "wrong dtype"
        /// A label or token id outside `[0, V)`.
        case labelOutOfRange = "label out of range"
        /// A NaN in a float input.
        case notANumber = "NaN in input"
        /// A mask holding a value other than 0 or 1.
        case invalidMask = "invalid mask"
        /// A mask that selects no element where the stage divides by its count.
        case emptyMask = "empty mask"
        /// A parameter outside its range (`start`, `prompt_length`, a clip range, ...).
        case parameterOutOfRange = "parameter out of range"
        /// A chosen/rejected batch the reward loss cannot pair up.
        case invalidPair = "invalid chosen/rejected pair"
        /// A computation whose result would be NaN although no input was NaN.
        case nonFiniteResult = "non-finite result"
        /// A shape or size beyond ``TensorLimits/maximumElements``, or a setting
        /// (a sequence length, a step count) too large to run.
        case tooLarge = "too large"
    }

    public let kind: Kind
    /// The fixture stage name, e.g. `"actor_loss"`.
    public let stage: String
    /// The argument at fault, by its fixture name, e.g. `"mask"` or `"prompt_length"`.
    public let argument: String
    /// What is wrong, with the shapes or values at fault.
    public let detail: String

    public init(_ kind: Kind, stage: String, argument: String, _ detail: String) {
        self.kind = kind
        self.stage = stage
        self.argument = argument
        self.detail = detail
    }

    public var description: String {
        "\(stage): \(kind.rawValue) in '\(argument)': \(detail)"
    }
}
