import Testing
import TensorCore
import Golden

/// The one assertion helper: every element within `abs + rel * |expected|`.
///
/// On failure it records the label, the first failing index (as a multi-index
/// when a shape is given), expected, got, and the largest error over the array.
///
/// Tolerances used across the tests:
/// - float64 against hand-computed or golden values: abs 1e-12, rel 1e-10
///   (the stages do a handful of roundings; 1e-12 leaves ~4 digits of slack).
/// - float32: abs 1e-5, rel 1e-5 (float32 carries ~7 digits).
public func expectClose(
    _ got: [Double], _ expected: [Double], abs: Double, rel: Double, _ label: String,
    shape: [Int]? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard got.count == expected.count else {
        Issue.record("\(label): got \(got.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    let comparison = compare(got: got, expected: expected, tolerance: Tolerance(abs: abs, rel: rel))
    if let failure = comparison.firstFailure {
        let index = shape.map { describe(shape: Tensor<Double>(shape: $0, repeating: 0).index(ofFlat: failure.index)) }
            ?? "\(failure.index)"
        Issue.record("""
            \(label): \(comparison.failures) of \(comparison.count) outside abs \(abs) + rel \(rel)·|expected|; \
            first at index \(index): expected \(failure.expected), got \(failure.got); \
            largest error \(comparison.largestError)
            """, sourceLocation: sourceLocation)
    }
}

/// `expectClose` for a float tensor against expected values.
public func expectClose<T: FloatScalar>(
    _ got: Tensor<T>, _ expected: [Double], abs: Double = 1e-12, rel: Double = 1e-10, _ label: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectClose(got.scalars.map(Double.init), expected, abs: abs, rel: rel, label, shape: got.shape,
                sourceLocation: sourceLocation)
}

/// `expectClose` for one float value.
public func expectClose<T: FloatScalar>(
    _ got: T, _ expected: Double, abs: Double = 1e-12, rel: Double = 1e-10, _ label: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectClose([Double(got)], [expected], abs: abs, rel: rel, label, sourceLocation: sourceLocation)
}
