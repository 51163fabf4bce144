#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A seeded random number generator (SplitMix64), so every random input, every
/// weight initialisation and every sampled token is the same on every run and
/// every machine.
///
/// ```
/// var rng = SplitMix64(seed: 42)
/// rng.uniform(0, 1)     // the same number on every run
/// rng.normal()          // a standard normal draw (Box-Muller)
/// ```
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform Double in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        Double.random(in: low..<high, using: &self)
    }

    /// `count` uniform Doubles in [low, high).
    public mutating func uniform(count: Int, _ low: Double, _ high: Double) -> [Double] {
        (0..<count).map { _ in uniform(low, high) }
    }

    /// A standard normal draw, by Box-Muller from two uniforms.
    ///
    /// `1 - u` keeps the logarithm's argument in (0, 1]: `u` itself can be 0.
    public mutating func normal() -> Double {
        let u = uniform(0, 1), w = uniform(0, 1)
        return (-2 * log(1 - u)).squareRoot() * cos(2 * Double.pi * w)
    }

    /// Draws an index with probability proportional to `weights[i]` (all >= 0,
    /// not all 0), by one uniform against the running sum.
    public mutating func categorical(_ weights: [Double]) -> Int {
        let total = weights.reduce(0, +)
        let target = uniform(0, 1) * total
        var running = 0.0
        for (index, weight) in weights.enumerated() {
            running += weight
            if target < running { return index }
        }
        // Rounding can leave target == total: the last index with weight wins.
        return weights.lastIndex { $0 > 0 } ?? 0
    }
}
