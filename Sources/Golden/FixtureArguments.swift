import TensorCore

/// The one typed reader of a fixture's params and inputs, in precision `T`.
///
/// `golden-verify`, the tests and the chapters all read fixtures through it:
///
/// ```
/// let a = try FixtureArguments<Double>(fixture)
/// let values = try a.float("values")      // [B, N] in Double
/// let start  = try a.int("start")
/// ```
///
/// Every name must be one the stage declares (``StageDeclaration``), with that
/// kind: a misspelt name is an error, never an empty tensor or a default. A
/// missing input or a missing param without a declared default is a
/// ``FixtureProblem``; an input of a dtype its argument cannot take is a
/// ``StageError`` (`wrongDType`), as the stage itself would throw.
public struct FixtureArguments<T: FloatScalar>: Sendable {
    public let fixture: Fixture
    public let declaration: StageDeclaration

    /// The reader for `fixture`'s stage; throws for an unknown stage.
    public init(_ fixture: Fixture) throws(FixtureProblem) {
        self.fixture = fixture
        self.declaration = try stageAdapter(named: fixture.stage).declaration
    }

    // MARK: Inputs

    /// A float input in precision `T` (float64, float32 and int64 data are converted).
    public func float(_ name: String) throws -> Tensor<T> {
        try converted(present(name, .float), name)
    }

    /// An optional float input (`grad_output`), or nil when the fixture leaves it out.
    public func optionalFloat(_ name: String) throws -> Tensor<T>? {
        guard let tensor = try optional(name, .float) else { return nil }
        return try converted(tensor, name)
    }

    /// Token ids or labels: int64 only.
    public func ids(_ name: String) throws -> Tensor<Int64> {
        let input = try present(name, .ids)
        guard case .int64(let t) = input else {
            throw StageError(.wrongDType, stage: fixture.stage, argument: name,
                             "token ids and labels are int64, got \(input.dtype.rawValue)")
        }
        return t
    }

    /// A 0/1 mask: int64 or bool (float 0/1 is accepted too).
    public func mask(_ name: String) throws -> Tensor<Int64> {
        try mask(present(name, .mask), name)
    }

    /// An optional mask, or nil when the fixture leaves it out.
    public func optionalMask(_ name: String) throws -> Tensor<Int64>? {
        guard let tensor = try optional(name, .mask) else { return nil }
        return try mask(tensor, name)
    }

    private func mask(_ tensor: FixtureTensor, _ name: String) throws -> Tensor<Int64> {
        switch tensor {
        case .int64(let t): return t
        case .bool(let t): return Tensor.make(t.shape, t.scalars.map { $0 ? 1 : 0 })
        case .float64(let t): return try floatMask(t, name)
        case .float32(let t): return try floatMask(t.converted(to: Double.self), name)
        }
    }

    // MARK: Params

    /// A whole-number param (`start`, `prompt_length`, `pad_id`, ...).
    public func int(_ name: String) throws(FixtureProblem) -> Int {
        guard let n = try optionalInt(name) else {
            throw FixtureProblem(field: "params.\(name)", "expected a whole number, got null")
        }
        return n
    }

    /// A real param (`gamma`, `beta`, `cliprange`, ...), kept in Double as Python keeps it.
    public func real(_ name: String) throws(FixtureProblem) -> Double {
        guard let x = try optionalReal(name) else {
            throw FixtureProblem(field: "params.\(name)", "expected a number, got null")
        }
        return x
    }

    /// A real param that may be `null`: nil for `null`.
    public func optionalReal(_ name: String) throws(FixtureProblem) -> Double? {
        guard let text = try optionalNumber(name, .real) else { return nil }
        guard let x = Double(text) else { throw FixtureProblem(field: "params.\(name)", "expected a number, got \(text)") }
        return x
    }

    /// A whole-number param that may be `null`: nil for `null`.
    public func optionalInt(_ name: String) throws(FixtureProblem) -> Int? {
        guard let text = try optionalNumber(name, .int) else { return nil }
        if let n = Int(text) { return n }
        if let d = Double(text), d == d.rounded(), abs(d) < 1e15 { return Int(d) }
        throw FixtureProblem(field: "params.\(name)", "expected a whole number, got \(text)")
    }

    /// A list of numbers that may be `null` (`reward_weights`): nil for `null`.
    public func optionalRealList(_ name: String) throws(FixtureProblem) -> [Double]? {
        switch try declaredValue(name, .realList) {
        case .null: return nil
        case .array(let items):
            var values: [Double] = []
            for (i, item) in items.enumerated() {
                guard case .number(let text) = item, let x = Double(text) else {
                    throw FixtureProblem(field: "params.\(name)[\(i)]", "expected a number, got \(item.kindName)")
                }
                values.append(x)
            }
            return values
        case let other:
            throw FixtureProblem(field: "params.\(name)", "expected \(ParamDeclaration.Kind.realList.rawValue), got \(other.kindName)")
        }
    }

    /// A clamp range `[lo, hi]` that may be `null` (no clamp): `clip_range`,
    /// `reward_clip_range`. Exactly two numbers; the stage checks `lo <= hi`.
    public func optionalRange(_ name: String) throws(FixtureProblem) -> ClosedRangeParam? {
        guard let values = try optionalRealList(name) else { return nil }
        guard values.count == 2 else {
            throw FixtureProblem(field: "params.\(name)", "expected [lo, hi], two numbers, got \(values.count)")
        }
        return ClosedRangeParam(lo: values[0], hi: values[1])
    }

    /// A boolean param.
    public func bool(_ name: String) throws(FixtureProblem) -> Bool {
        guard case .bool(let value) = try declaredValue(name, .bool) else {
            throw FixtureProblem(field: "params.\(name)", "expected a boolean, got null")
        }
        return value
    }

    /// A string param (an enum switch); the stage checks it against its cases.
    public func string(_ name: String) throws(FixtureProblem) -> String {
        guard case .string(let value) = try declaredValue(name, .string) else {
            throw FixtureProblem(field: "params.\(name)", "expected a string, got null")
        }
        return value
    }

    // MARK: Checking a fixture against the declaration

    /// Checks, before the stage runs, that the fixture gives every required param
    /// and input, and each param of its kind. Params and inputs the stage does not
    /// declare are ignored, as the format promises (a peer's own dump may carry more).
    public func validate() throws(FixtureProblem) {
        for param in declaration.params {
            _ = try value(of: param)
        }
        for input in declaration.inputs where !input.optional && fixture.inputs[input.name] == nil {
            throw FixtureProblem(field: "inputs.\(input.name)", "missing input for stage \(fixture.stage)")
        }
    }

    // MARK: Private

    private func declared(_ name: String, _ kind: InputDeclaration.Kind) throws(FixtureProblem) -> InputDeclaration {
        guard let input = declaration.input(name), input.kind == kind else {
            throw FixtureProblem(field: "inputs.\(name)", "stage \(fixture.stage) declares no \(kind.rawValue) input '\(name)'")
        }
        return input
    }

    private func present(_ name: String, _ kind: InputDeclaration.Kind) throws(FixtureProblem) -> FixtureTensor {
        _ = try declared(name, kind)
        guard let tensor = fixture.inputs[name] else {
            throw FixtureProblem(field: "inputs.\(name)", "missing input for stage \(fixture.stage)")
        }
        return tensor
    }

    private func optional(_ name: String, _ kind: InputDeclaration.Kind) throws(FixtureProblem) -> FixtureTensor? {
        let input = try declared(name, kind)
        guard input.optional else {
            throw FixtureProblem(field: "inputs.\(name)", "input '\(name)' of stage \(fixture.stage) is required, not optional")
        }
        return fixture.inputs[name]
    }

    private func converted(_ tensor: FixtureTensor, _ name: String) throws -> Tensor<T> {
        switch tensor {
        case .float64(let t): return t.converted(to: T.self)
        case .float32(let t): return t.converted(to: T.self)
        case .int64(let t): return Tensor.make(t.shape, t.scalars.map { T($0) })
        case .bool:
            throw StageError(.wrongDType, stage: fixture.stage, argument: name, "expected a float tensor, got bool")
        }
    }

    private func floatMask(_ t: Tensor<Double>, _ name: String) throws -> Tensor<Int64> {
        if let bad = t.scalars.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw StageError(.invalidMask, stage: fixture.stage, argument: name,
                             "masks hold 0/1, got \(t.scalars[bad]) at index \(describe(shape: t.index(ofFlat: bad)))")
        }
        return Tensor.make(t.shape, t.scalars.map { Int64($0) })
    }

    /// The param's value: the fixture's, else the declared default.
    private func value(of param: ParamDeclaration) throws(FixtureProblem) -> JSONValue {
        guard let value = fixture.params[param.name] ?? param.defaultValue else {
            throw FixtureProblem(field: "params.\(param.name)", "missing param for stage \(fixture.stage)")
        }
        let fits: Bool
        switch (param.kind, value) {
        case (_, .null): fits = param.nullable
        case (.int, .number), (.real, .number), (.bool, .bool), (.string, .string), (.realList, .array): fits = true
        default: fits = false
        }
        guard fits else {
            throw FixtureProblem(field: "params.\(param.name)", "expected \(param.kind.rawValue), got \(value.kindName)")
        }
        return value
    }

    /// The value of a declared param of `kind` (the fixture's, else its default).
    private func declaredValue(_ name: String, _ kind: ParamDeclaration.Kind) throws(FixtureProblem) -> JSONValue {
        guard let param = declaration.param(name), param.kind == kind else {
            throw FixtureProblem(field: "params.\(name)", "stage \(fixture.stage) declares no param '\(name)' of \(kind.rawValue)")
        }
        return try value(of: param)
    }

    /// A number param's text, or nil for `null`.
    private func optionalNumber(_ name: String, _ kind: ParamDeclaration.Kind) throws(FixtureProblem) -> String? {
        switch try declaredValue(name, kind) {
        case .number(let text): return text
        case .null: return nil
        case let other: throw FixtureProblem(field: "params.\(name)", "expected \(kind.rawValue), got \(other.kindName)")
        }
    }
}

/// A `[lo, hi]` param as the fixture gives it; `lo > hi` is left for the stage to refuse
/// with its own error, as the spec lists it.
public struct ClosedRangeParam: Sendable, Equatable {
    public let lo: Double
    public let hi: Double
    public init(lo: Double, hi: Double) {
        self.lo = lo
        self.hi = hi
    }
}
