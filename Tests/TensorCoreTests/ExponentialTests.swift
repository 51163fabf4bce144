import Testing
import TensorCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How many units in the last place `got` is from `expected` (both finite, same sign).
private func ulps<T: BinaryFloatingPoint>(_ got: T, _ expected: T) -> T {
    abs(got - expected) / expected.ulp
}

@Suite("exponential: the plain-Swift exp against the C library's")
struct ExponentialTests {
    @Test("Double: within 1 ulp of exp on [-745, 709.7], most values exact")
    func doubleAccuracy() {
        var rng = SplitMix64(seed: 2026)
        var worst = 0.0, exact = 0
        let count = 200_000
        for k in 0..<count {
            // Half over the whole range, half over [-3, 3] where log-ratios live.
            let x = k % 2 == 0 ? rng.uniform(-745, 709.7) : rng.uniform(-3, 3)
            let got = exponential(x), expected = exp(x)
            worst = max(worst, ulps(got, expected))
            if got == expected { exact += 1 }
        }
        #expect(worst <= 1, "largest error \(worst) ulp")
        #expect(Double(exact) / Double(count) > 0.85, "\(exact) of \(count) equal to exp")  // 90% when written
    }

    @Test("Float: within 1 ulp of expf on [-103, 88.7], most values exact")
    func floatAccuracy() {
        var rng = SplitMix64(seed: 7)
        var worst: Float = 0
        var exact = 0
        let count = 200_000
        for k in 0..<count {
            let x = Float(k % 2 == 0 ? rng.uniform(-87, 88.7) : rng.uniform(-3, 3))
            let got = exponential(x), expected = expf(x)
            worst = max(worst, ulps(got, expected))
            if got == expected { exact += 1 }
        }
        #expect(worst <= 1, "largest error \(worst) ulp")
        #expect(Double(exact) / Double(count) > 0.99, "\(exact) of \(count) equal to expf")
        // Subnormal results (x < -87.3): within an ulp of the subnormal spacing.
        for x in stride(from: Float(-103.9), to: -87.4, by: 0.37) {
            #expect(abs(exponential(x) - expf(x)) <= Float.leastNonzeroMagnitude, "x = \(x)")
        }
    }

    @Test("Float: the Estrin polynomial in Double gives the Double exponential rounded to Float")
    func floatEqualsRoundedDouble() {
        // The Float version evaluates a shorter polynomial (degree 10, 2e-13 from
        // e^r) than the Double one (degree 13); rounding to Float hides that
        // difference except where e^x lies within 2e-13 of a Float rounding
        // boundary: 12 of 5·10^7 sampled points when written.
        var rng = SplitMix64(seed: 11)
        var differing = 0
        let count = 400_000
        for k in 0..<count {
            let x = Float(k % 2 == 0 ? rng.uniform(-104, 89) : rng.uniform(-1, 1))
            if exponential(x) != Float(exponential(Double(x))) { differing += 1 }
        }
        #expect(differing <= 2, "\(differing) of \(count) differ from the Double exponential rounded to Float")
    }

    @Test("the points the actor_loss fixtures need exactly: e^0, e^(5/32), e^(-7/32), e^(log 1.2)")
    func exactPoints() {
        // The kink fixtures put ratios on the clip bound 1 + ε with ε = e^(5/32) - 1
        // (and 1 - ε = e^(-7/32)), computed by the C library: the stage's ratio
        // must be that very number, in both precisions.
        for x in [0.0, 5.0 / 32, -7.0 / 32, 5.0 / 64, -7.0 / 128, log(1.2), log(0.8)] {
            #expect(exponential(x) == exp(x), "Double x = \(x)")
            #expect(exponential(Float(x)) == expf(Float(x)), "Float x = \(x)")
        }
        #expect(exponential(0.0) == 1)
        #expect(exponential(Float(0)) == 1)
        #expect(exponential(-0.0) == 1)
    }

    @Test("inf, -inf, NaN and the edges of the range")
    func specialValues() {
        #expect(exponential(Double.infinity) == .infinity)
        #expect(exponential(-Double.infinity) == 0)
        #expect(exponential(Double.nan).isNaN)
        #expect(exponential(710.0) == .infinity)
        #expect(exponential(-746.0) == 0)
        #expect(exponential(1e300) == .infinity)
        #expect(exponential(-1e300) == 0)
        #expect(exponential(709.78) == exp(709.78))
        // Subnormal results: the two-factor 2^n rounds them as exp does, to within
        // one subnormal step.
        for x in stride(from: -745.0, to: -708.5, by: 1.7) {
            #expect(abs(exponential(x) - exp(x)) <= Double.leastNonzeroMagnitude, "x = \(x)")
        }
        #expect(exponential(Float.infinity) == .infinity)
        #expect(exponential(-Float.infinity) == 0)
        #expect(exponential(Float.nan).isNaN)
        #expect(exponential(Float(89)) == .infinity)
        #expect(exponential(Float(-104)) == 0)
    }
}
