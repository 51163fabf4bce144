import Testing
import TensorCore
import Golden

/// A fixture's inputs and params read for a float32 fast path: float tensors in
/// Float (float64 fixtures rounded to float32), masks in Int64, params as Double.
///
/// The fast-path tests run the plain and the fast version on the same float32
/// numbers, so a float64 fixture still checks that they agree (and throw alike).
public struct Float32FixtureInputs {
    public let fixture: Fixture

    public init(_ fixture: Fixture) {
        self.fixture = fixture
    }

    /// Whether the fixture's own float inputs are float32 (its expected values then apply).
    public var isFloat32: Bool {
        fixture.inputs.values.contains { $0.dtype == .float32 } && !fixture.inputs.values.contains { $0.dtype == .float64 }
    }

    /// A float input in float32, or an empty [0] tensor if it is missing.
    public func float(_ name: String) -> Tensor<Float> {
        guard let input = fixture.inputs[name] else { return Tensor(shape: [0], repeating: 0) }
        return Tensor.make(input.shape, input.doubles.map(Float.init))
    }

    /// A mask or id input (int64 or bool) as Int64, or an empty [0] tensor if it is missing.
    public func ints(_ name: String) -> Tensor<Int64> {
        guard let input = fixture.inputs[name] else { return Tensor(shape: [0], repeating: 0) }
        return Tensor.make(input.shape, input.doubles.map { Int64($0) })
    }

    /// A whole-number param, or -1 if it is missing.
    public func int(_ name: String) -> Int {
        let value = param(name)
        return value.isFinite ? Int(value) : -1
    }

    /// A number param, or NaN if it is missing.
    public func param(_ name: String) -> Double {
        guard case .number(let text) = fixture.params[name], let value = Double(text) else { return .nan }
        return value
    }
}

/// Expects `fast` to give what `plain` gives: results that `same` calls equal, or
/// the same ``StageError`` (kind, argument and detail).
public func expectSameOutcome<R>(
    _ label: String, plain: () throws(StageError) -> R, fast: () throws(StageError) -> R, same: (R, R) -> Bool,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    switch (Result(catching: plain), Result(catching: fast)) {
    case (.success(let p), .success(let f)):
        #expect(same(p, f), "\(label): fast differs from plain", sourceLocation: sourceLocation)
    case (.failure(let p), .failure(let f)):
        #expect(p == f, "\(label): not the same error", sourceLocation: sourceLocation)
    case (let p, let f):
        Issue.record("\(label): plain \(p), fast \(f)", sourceLocation: sourceLocation)
    }
}
