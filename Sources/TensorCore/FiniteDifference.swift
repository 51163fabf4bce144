/// The gradient of `f` at `x` by central differences, in Double:
///
/// ```
/// ∂f/∂x_i ≈ (f(x + h·e_i) - f(x - h·e_i)) / 2h
/// ```
///
/// The error is O(h²) from the Taylor series plus O(ε/h) from rounding; h = 1e-5
/// balances them near 1e-10 for functions of size ~1. Use it away from kinks
/// (a clip boundary, a tie in a max), where the derivative does not exist.
///
/// Precondition (a trap): `h` is finite and > 0. The tests and chapter 09 pass
/// constants; no flag or fixture reaches it.
public func centralDifferenceGradient(at x: [Double], step h: Double = 1e-5,
                                      _ f: ([Double]) throws -> Double) rethrows -> [Double] {
    precondition(h.isFinite && h > 0, "centralDifferenceGradient: step \(h) must be finite and > 0")
    var gradient = [Double](repeating: 0, count: x.count)
    var probe = x
    for i in x.indices {
        probe[i] = x[i] + h
        let above = try f(probe)
        probe[i] = x[i] - h
        let below = try f(probe)
        probe[i] = x[i]
        gradient[i] = (above - below) / (2 * h)
    }
    return gradient
}
