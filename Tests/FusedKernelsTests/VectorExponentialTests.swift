import Testing
@testable import FusedKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `exponential(_:exactZeros:)` of sixteen values, one per lane.
private func vectorExp(_ values: [Float], exactZeros: Bool) -> [Float] {
    precondition(values.count == FloatVector.scalarCount)
    let result = exponential(FloatVector(values), exactZeros: exactZeros)
    return (0..<FloatVector.scalarCount).map { result[$0] }
}

/// How far `got` is from the true e^x, in units in the last place of the float
/// nearest e^x (the reference is the C library's exp in Double).
private func ulpsFromExp(_ got: Float, _ x: Float) -> Double {
    let exact = exp(Double(x))
    return abs(Double(got) - exact) / Double(Float(exact).ulp)
}

@Suite("the fused kernels' vector exp")
struct VectorExponentialTests {
    @Test("within 2.3 ulp of e^x on (-86.5, 4] (1 ulp with -D RLHF_AVX512), with and without exact zeros")
    func accuracy() {
#if RLHF_AVX512
        // `exponentialBySixteenths`. Measured: 0.99 ulp (11.8 million points, every
        // 97th float from -0 down to -86.5 and every 1e-5 on (0, 4]): the table's
        // powers rounded to float32 (up to 0.4 ulp) and the last rounding.
        let bound = 1.0
#else
        // Measured: 2.24 ulp on both the portable build's path and with FMA
        // (22.7 million points each, every 97th float on (-86.5, 5]). Not 1:
        // P has degree 3, whose fit alone is off by up to 1.1e-7 (0.9 ulp);
        // see `exponential`'s doc comment for why.
        let bound = 2.3
#endif
        // Every 4099th float from -0 down to -86.5 (about 270,000 of them: every
        // binade, both ends of the reduction interval), then 16,384 points on
        // [-1, 0], where the largest softmax terms live, and 4,096 on (0, 4], where
        // a block is exponentiated against a max below its own.
        var xs: [Float] = []
        var bits = (-0.0 as Float).bitPattern + 1
        while bits < (-86.5 as Float).bitPattern {
            xs.append(Float(bitPattern: bits))
            bits += 4099
        }
        for k in 0..<16_384 { xs.append(-Float(k) / 16_384) }
        for k in 1...4_096 { xs.append(Float(k) / 1_024) }
        while xs.count % FloatVector.scalarCount != 0 { xs.append(-1) }
        for exactZeros in [true, false] {
            var worst = 0.0, worstAt: Float = 0
            for start in stride(from: 0, to: xs.count, by: FloatVector.scalarCount) {
                let chunk = Array(xs[start..<start + FloatVector.scalarCount])
                for (x, got) in zip(chunk, vectorExp(chunk, exactZeros: exactZeros)) where ulpsFromExp(got, x) > worst {
                    (worst, worstAt) = (ulpsFromExp(got, x), x)
                }
            }
            #expect(worst < bound, "exactZeros: \(exactZeros): \(worst) ulp at x = \(worstAt)")
        }
    }

    @Test("known answers: e^0 = 1 exactly, e^-ln2 = 1/2 and e^-1 to within 1 ulp")
    func knownAnswers() {
        var x = [Float](repeating: 0, count: FloatVector.scalarCount)
        x[1] = -0.693_147_18  // ln 2 in float32
        x[2] = -1
        x[3] = -0.0
        for exactZeros in [true, false] {
            let e = vectorExp(x, exactZeros: exactZeros)
            #expect(e[0] == 1)  // r = 0, n = 0: 2^0 + 0·2^0
            #expect(e[3] == 1)
            #expect(ulpsFromExp(e[1], x[1]) < 1)  // 0.5000000 within an ulp (ln2 rounded to float)
            #expect(abs(e[2] - 0.367_879_44) <= Float(0.367_879_44).ulp)
        }
    }

    @Test("below -86.5: exactly 0 with exact zeros, a positive term under 3e-38 without; NaN stays NaN")
    func edges() {
        var x = [Float](repeating: -86.6, count: FloatVector.scalarCount)
        x[1] = -.infinity
        x[2] = -1e30
        x[3] = -.greatestFiniteMagnitude
        x[4] = .nan
        x[5] = -86.5
        let exact = vectorExp(x, exactZeros: true)
        for lane in [0, 1, 2, 3, 5] { #expect(exact[lane] == 0, "lane \(lane): \(x[lane]) gave \(exact[lane])") }
        #expect(exact[4].isNaN)
        let cheap = vectorExp(x, exactZeros: false)
        for lane in [0, 1, 2, 3, 5] { #expect(cheap[lane] > 0 && cheap[lane] < 3e-38, "lane \(lane): \(cheap[lane])") }
        #expect(cheap[4].isNaN)
        // Just above the floor both agree with e^x.
        let near = vectorExp([Float](repeating: -86.4, count: FloatVector.scalarCount), exactZeros: true)
        #expect(ulpsFromExp(near[0], -86.4) < 1)
    }
}
