import TensorCore

/// What a stage takes and gives, by its fixture names: declared once, in the
/// stage's adapter (`Sources/Golden/Stages/<Stage>Stage.swift`), and read by
/// `golden-verify`, the tests and the chapters alike.
///
/// ```
/// StageDeclaration(
///     name: "gae", module: "GAE", function: "gae(values:rewards:start:gamma:lambda:)",
///     peer: "DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: get_advantages_and_returns",
///     params: [.int("start"), .real("gamma"), .real("lambda")],
///     inputs: [.float("values"), .float("rewards")],
///     outputs: ["advantages", "returns"])
/// ```
///
/// Before a stage runs, a fixture is checked against its declaration: every
/// required param and input present, nothing undeclared (a misspelt optional
/// input would otherwise be ignored), each param of its kind.
public struct StageDeclaration: Sendable {
    /// The fixture stage name, which is also the folder under `GoldenData/`.
    public let name: String
    /// The Swift module that holds the stage's math.
    public let module: String
    /// The Swift function the stage runs.
    public let function: String
    /// The peer function it matches (file :: function).
    public let peer: String
    public let params: [ParamDeclaration]
    public let inputs: [InputDeclaration]
    /// Every output the stage can give, in the order it reports them (gradients last).
    public let outputs: [String]
    /// The float precisions it computes in; `tiny_lm` is float64 only.
    public let precisions: [DType]

    public init(name: String, module: String, function: String, peer: String, params: [ParamDeclaration],
                inputs: [InputDeclaration], outputs: [String], precisions: [DType] = [.float64, .float32]) {
        self.name = name
        self.module = module
        self.function = function
        self.peer = peer
        self.params = params
        self.inputs = inputs
        self.outputs = outputs
        self.precisions = precisions
    }

    public func param(_ name: String) -> ParamDeclaration? { params.first { $0.name == name } }
    public func input(_ name: String) -> InputDeclaration? { inputs.first { $0.name == name } }
}

/// One param of a stage: its name, its kind, and its default when it may be left out.
public struct ParamDeclaration: Sendable {
    public enum Kind: String, Sendable {
        case int = "a whole number"
        case real = "a number"
        case bool = "a boolean"
        case string = "a string"
        case realList = "a list of numbers"
    }

    public let name: String
    public let kind: Kind
    /// The value a fixture that leaves the param out gets; nil when it is required.
    public let defaultValue: JSONValue?
    /// Whether `null` (the peer's `None`) is a valid value.
    public let nullable: Bool

    public init(name: String, kind: Kind, defaultValue: JSONValue? = nil, nullable: Bool = false) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.nullable = nullable
    }

    /// A whole-number param (`start`, `prompt_length`, `pad_id`), required unless given a default.
    public static func int(_ name: String, default value: Int? = nil) -> ParamDeclaration {
        ParamDeclaration(name: name, kind: .int, defaultValue: value.map { .number(String($0)) })
    }

    /// A real param (`gamma`, `beta`, `cliprange`), required unless given a default.
    public static func real(_ name: String, default value: Double? = nil) -> ParamDeclaration {
        ParamDeclaration(name: name, kind: .real, defaultValue: value.map { .number(String($0)) })
    }

    /// A real param that may be `null` (the peer's `None`), which is also its
    /// default unless another is given: TRL's `center_rewards_coefficient`.
    public static func optionalReal(_ name: String, default value: Double? = nil) -> ParamDeclaration {
        ParamDeclaration(name: name, kind: .real, defaultValue: value.map { .number(String($0)) } ?? .null, nullable: true)
    }

    /// A whole-number param that may be `null`, its default unless another is
    /// given: TRL's `stop_token_id`, transformers' `pad_token_id`.
    public static func optionalInt(_ name: String, default value: Int? = nil) -> ParamDeclaration {
        ParamDeclaration(name: name, kind: .int, defaultValue: value.map { .number(String($0)) } ?? .null, nullable: true)
    }

    /// A boolean param, required unless given a default.
    public static func bool(_ name: String, default value: Bool? = nil) -> ParamDeclaration {
        ParamDeclaration(name: name, kind: .bool, defaultValue: value.map { .bool($0) })
    }

    /// A list of numbers that may be `null` (the peer's `None`), which is also its
    /// default unless another is given: a clamp range `[lo, hi]`
    /// (`clip_range`, `reward_clip_range`) or TRL's `reward_weights`.
    public static func optionalRealList(_ name: String, default value: [Double]? = nil) -> ParamDeclaration {
        ParamDeclaration(name: name, kind: .realList,
                         defaultValue: value.map { .array($0.map { .number(String($0)) }) } ?? .null, nullable: true)
    }

    /// A string param (an enum switch such as `kl_estimator`), required unless given
    /// a default. The stage checks the value against its enum.
    public static func string(_ name: String, default value: String? = nil) -> ParamDeclaration {
        ParamDeclaration(name: name, kind: .string, defaultValue: value.map { .string($0) })
    }
}

/// One input tensor of a stage.
public struct InputDeclaration: Sendable {
    public enum Kind: String, Sendable {
        /// float64 or float32 (int64 data are promoted, as PyTorch would).
        case float
        /// Token ids or labels: int64.
        case ids
        /// A 0/1 mask: int64, bool, or float 0/1.
        case mask
    }

    public let name: String
    public let kind: Kind
    /// Whether a fixture may leave it out.
    public let optional: Bool

    public init(name: String, kind: Kind, optional: Bool = false) {
        self.name = name
        self.kind = kind
        self.optional = optional
    }

    public static func float(_ name: String, optional: Bool = false) -> InputDeclaration {
        InputDeclaration(name: name, kind: .float, optional: optional)
    }

    public static func ids(_ name: String, optional: Bool = false) -> InputDeclaration {
        InputDeclaration(name: name, kind: .ids, optional: optional)
    }

    public static func mask(_ name: String, optional: Bool = false) -> InputDeclaration {
        InputDeclaration(name: name, kind: .mask, optional: optional)
    }
}

/// A stage's fixture adapter: its declaration, and how to run it on a fixture's
/// arguments in the fixture's precision.
///
/// One small `enum` per stage conforms (no instances); `stageRegistry` lists them.
public protocol StageAdapter: SendableMetatype {
    static var declaration: StageDeclaration { get }
    /// Reads the stage's arguments, calls the library, and returns the outputs by
    /// their fixture names.
    static func run<T: FloatScalar>(_ arguments: FixtureArguments<T>) throws -> [String: FixtureTensor]
}
