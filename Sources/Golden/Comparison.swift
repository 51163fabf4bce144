import TensorCore

/// How one computed output compares with its expected value.
public struct Comparison: Sendable, CustomStringConvertible {
    /// How many elements were compared.
    public let count: Int
    /// How many fell outside the tolerance.
    public let failures: Int
    /// The largest |got - expected| (infinity for a NaN or infinity mismatch).
    public let largestError: Double
    /// Where the largest error is (flat index), if any element was compared.
    public let largestErrorIndex: Int?
    /// The first element outside the tolerance: flat index, expected, got.
    public let firstFailure: (index: Int, expected: Double, got: Double)?
    public let tolerance: Tolerance

    public var passed: Bool { failures == 0 }

    public var description: String {
        guard let failure = firstFailure else {
            return "all \(count) within \(tolerance) (largest error \(formatError(largestError)))"
        }
        return "\(failures) of \(count) outside \(tolerance): first at flat index \(failure.index), expected \(failure.expected), got \(failure.got); largest error \(formatError(largestError))"
    }
}

/// Compares element by element: an element passes when
/// `|got - expected| <= abs + rel * |expected|`. NaN passes only against NaN, an
/// infinity only against the same infinity.
///
/// Precondition (a trap): `got` and `expected` have the same count. `verify` and
/// the chapters compare shapes first and call it only when they agree.
public func compare(got: [Double], expected: [Double], tolerance: Tolerance) -> Comparison {
    precondition(got.count == expected.count, "compare: \(got.count) values against \(expected.count)")
    var failures = 0
    var largestError = 0.0
    var largestErrorIndex: Int? = got.isEmpty ? nil : 0
    var firstFailure: (index: Int, expected: Double, got: Double)?
    for i in got.indices {
        let e = expected[i], g = got[i]
        let error: Double
        let ok: Bool
        if e.isNaN || g.isNaN {
            ok = e.isNaN && g.isNaN
            error = ok ? 0 : .infinity
        } else if e.isInfinite || g.isInfinite {
            ok = e == g
            error = ok ? 0 : .infinity
        } else {
            error = abs(g - e)
            ok = error <= tolerance.abs + tolerance.rel * abs(e)
        }
        if error > largestError {
            largestError = error
            largestErrorIndex = i
        }
        if !ok {
            failures += 1
            if firstFailure == nil { firstFailure = (i, e, g) }
        }
    }
    return Comparison(count: got.count, failures: failures, largestError: largestError,
                      largestErrorIndex: largestErrorIndex, firstFailure: firstFailure, tolerance: tolerance)
}

/// `3.2e-16`, or `0` for an exact match.
public func formatError(_ error: Double) -> String {
    if error == 0 { return "0" }
    if error.isInfinite { return "inf" }
    let exponent = Int((log10Approximation(error)).rounded(.down))
    let mantissa = error / pow10(exponent)
    let rounded = (mantissa * 10).rounded() / 10
    return rounded >= 10 ? "1.0e\(exponent + 1)" : "\(rounded)e\(exponent)"
}

private func log10Approximation(_ x: Double) -> Double {
    var exponent = 0.0
    var value = x
    while value >= 10 { value /= 10; exponent += 1 }
    while value < 1 { value *= 10; exponent -= 1 }
    return exponent
}

private func pow10(_ n: Int) -> Double {
    var result = 1.0
    if n >= 0 { for _ in 0..<n { result *= 10 } } else { for _ in 0..<(-n) { result /= 10 } }
    return result
}
