import Foundation
import Testing
import TensorCore
import TestSupport
@testable import KLControl

@Suite("kl_estimators")
struct KLEstimatorsTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "kl_estimators", minimum: 10)
    }

    @Test("log-ratios worked by hand: r = 1, -1, 0, 2, and -3 (clamped)")
    func byHand() throws {
        // log_probs - ref_log_probs = r:
        //   r =  1:  k1 = 1,  k2 = 1/2,  k3 = (e^-1 - 1) + 1 = e^-1 = 0.36787944117144233
        //   r = -1:  k1 = -1, k2 = 1/2,  k3 = (e - 1) - 1 = e - 2 = 0.7182818284590451
        //   r =  0:  all three 0
        //   r =  2:  k1 = 2,  k2 = 4/2 = 2, k3 = e^-2 + 1 = 1.1353352832366128
        //   r = -3:  k1 = -3, k2 = 9/2 = 4.5, k3 = e^3 - 4 = 16.085536923187668 -> clamped to 10
        let logProbs = matrix([[-1, -2, -0.5], [-0.25, -4, -0.75]])
        let refLogProbs = matrix([[-2, -1, -0.5], [-2.25, -1, -0.75]])
        let k1 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k1, clipRange: -10...10)
        expectClose(k1, [1, -1, 0, 2, -3, 0], "k1")
        let k2 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k2, clipRange: -10...10)
        expectClose(k2, [0.5, 0.5, 0, 2, 4.5, 0], "k2")
        let k3 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k3, clipRange: -10...10)
        expectClose(k3, [0.36787944117144233, 0.7182818284590451, 0, 1.1353352832366128, 10, 0], "k3, clamped")
        let unclamped = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k3, clipRange: nil)
        expectClose(unclamped.scalars[4], 16.085536923187668, "k3 at r = -3 without a clamp (TRL)")
    }

    @Test("the masked mean per row, worked by hand; the mask leaves kl alone")
    func maskedMeanByHand() throws {
        // k1 with r = [1, -1, 5 | 2, -3, 0.5], mask [1, 1, 0 | 0, 1, 1]:
        //   row 0: (1 + (-1)) / 2 = 0          (the masked 5 is left out)
        //   row 1: (-3 + 0.5) / 2 = -1.25      (the masked 2 is left out)
        let result = try klEstimators(
            logProbs: matrix([[1, -1, 5], [2, -3, 0.5]]), refLogProbs: matrix([[0, 0, 0], [0, 0, 0]]),
            mask: intMatrix([[1, 1, 0], [0, 1, 1]]), estimator: .k1, clipRange: openRLHFKLClipRange)
        expectClose(result.kl, [1, -1, 5, 2, -3, 0.5], "kl at every position, masked ones included")
        let klMean = try #require(result.klMean)
        expectClose(klMean, [0, -1.25], "kl_mean")
        let noMask = try klEstimators(logProbs: matrix([[1, -1]]), refLogProbs: matrix([[0, 0]]), mask: nil,
                                      estimator: .k1, clipRange: nil)
        #expect(noMask.klMean == nil)
    }

    @Test("against the exact KL of a two-outcome distribution: k1 and k3 unbiased, k2 not")
    func exactExpectation() throws {
        // π = (1/2, 1/2), π_ref = (1/4, 3/4). By hand:
        //   KL(π‖π_ref) = ½ ln(½ / ¼) + ½ ln(½ / ¾) = ½ ln 2 + ½ ln(2/3) = ½ ln(4/3) = 0.14384103622589045
        //   E_π[k3] = Σ π·(π_ref/π − 1) + E_π[k1] = (1 − 1) + KL = KL
        //   E_π[k2] = ½·½(ln 2)² + ½·½(ln 1.5)² = ¼(0.4804530139182014 + 0.16440195389316542) = 0.1612137419528417
        let policy = [0.5, 0.5], reference = [0.25, 0.75]
        let logProbs = Tensor.make([1, 2], policy.map { log($0) })
        let refLogProbs = Tensor.make([1, 2], reference.map { log($0) })
        func expectation(_ estimator: KLEstimator) throws -> Double {
            let kl = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: estimator, clipRange: nil)
            return zip(policy, kl.scalars).reduce(0) { $0 + $1.0 * $1.1 }
        }
        let exact = 0.14384103622589045
        expectClose(try expectation(.k1), exact, abs: 1e-15, rel: 1e-14, "E[k1]")
        expectClose(try expectation(.k3), exact, abs: 1e-15, rel: 1e-14, "E[k3]")
        expectClose(try expectation(.k2), 0.1612137419528417, abs: 1e-15, rel: 1e-14, "E[k2]")
        #expect(try expectation(.k2) - exact > 0.017, "k2 is biased here, by 0.0174")
    }

    @Test("invariants: k2 ≥ 0 and k3 ≥ 0 (up to the float32 dip), k1 = -k1 with the roles swapped, k2 = k1²/2")
    func invariants() throws {
        var rng = SplitMix64(seed: 13)
        let logProbs = Tensor.make([4, 9], rng.uniform(count: 36, -6, 0))
        let refLogProbs = Tensor.make([4, 9], rng.uniform(count: 36, -6, 0))
        let k1 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k1, clipRange: nil)
        let swapped = try klEstimate(logProbs: refLogProbs, refLogProbs: logProbs, estimator: .k1, clipRange: nil)
        let k2 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k2, clipRange: nil)
        let k3 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k3, clipRange: nil)
        #expect(k1.scalars.contains { $0 < 0 }, "single k1 samples can be negative")
        #expect(k2.scalars.allSatisfy { $0 >= 0 })
        #expect(k3.scalars.allSatisfy { $0 >= 0 })
        for i in 0..<36 {
            #expect(k1.scalars[i] == -swapped.scalars[i])
            expectClose(k2.scalars[i], k1.scalars[i] * k1.scalars[i] / 2, abs: 0, rel: 1e-15, "k2 = k1²/2 at \(i)")
            // k3 - k2 = e^-r - 1 + r - r²/2 = -(r³/6)·e^-ξ for some ξ between 0 and r: ≤ 0 for r > 0, ≥ 0 for r < 0
            if k1.scalars[i] > 0 { #expect(k3.scalars[i] <= k2.scalars[i]) } else { #expect(k3.scalars[i] >= k2.scalars[i]) }
        }
        // Tiny log-ratios in Float: the peer's op order can dip below 0, by less than one ulp of 1.
        let tiny: [Float] = [1e-7, -1e-7, 5.9604645e-8, -5.9604645e-8, 1e-6, -3e-5, 3e-5, 0]
        let zeros = Tensor<Float>(shape: [1, tiny.count], repeating: 0)
        let k3Float = try klEstimate(logProbs: Tensor.make([1, tiny.count], tiny), refLogProbs: zeros, estimator: .k3,
                                     clipRange: nil)
        #expect(k3Float.scalars.allSatisfy { $0 > -Float.ulpOfOne })
        #expect(k3Float.scalars[0] < 0, "r = 1e-7: 0.99999988 - 1 + 1e-7 = -1.9e-8 in Float")
        // r = -2^-24: exp(2^-24) = 1 + 2^-24 + 2^-49, just above the midpoint of 1 and 1 + 2^-23, so libm's expf
        // gives 1 + 2^-23 and k3 = 2^-23 - 2^-24 = 2^-24 (torch's vectorised exp gives 1 there, and k3 = -2^-24).
        #expect(k3Float.scalars[3] == 0x1p-24)
    }

    @Test("the clamp: bounds in the estimate's precision, log-ratios of ±900, lo = hi, and its derivative")
    func clamp() throws {
        // r = -900: k3 = e^900 - 1 - 900 = inf before the clamp, 10 after; r = 900: k3 = 899 -> 10; k2 = 405000 -> 10.
        let logProbs = matrix([[-900.5, -0.5]]), refLogProbs = matrix([[-0.5, -900.5]])
        let k3 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k3, clipRange: -10...10)
        expectClose(k3, [10, 10], abs: 0, rel: 0, "k3 at r = -900 and 900")
        let k2 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k2, clipRange: nil)
        expectClose(k2, [405_000, 405_000], abs: 0, rel: 0, "k2 unclamped")
        let k1 = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: .k1, clipRange: -10...10)
        expectClose(k1, [-10, 10], abs: 0, rel: 0, "k1 clamped both ways")
        // lo = hi: every estimate is that value.
        let flat = try klEstimate(logProbs: matrix([[-1, -2, -3]]), refLogProbs: matrix([[-2, -2, -1]]), estimator: .k3,
                                  clipRange: 0.25...0.25)
        expectClose(flat, [0.25, 0.25, 0.25], abs: 0, rel: 0, "clip [0.25, 0.25]")
        // In Float the bound 0.7 is Float(0.7) = 0.699999988079071, as torch rounds a Python bound to the dtype.
        let float = try klEstimate(logProbs: Tensor<Float>.make([1, 1], [2]), refLogProbs: Tensor<Float>.make([1, 1], [0]),
                                   estimator: .k1, clipRange: -0.3...0.7)
        #expect(float.scalars[0] == Float(0.7))
        // The derivative passes on the closed interval and is blocked outside it.
        #expect(klClampPasses(10.0, clipRange: -10...10))
        #expect(!klClampPasses(10.5, clipRange: -10...10))
        #expect(klClampPasses(1e300, clipRange: nil))
    }

    @Test("the derivative of each estimator against a central difference")
    func derivative() {
        let h = 1e-6
        for estimator in KLEstimator.allCases {
            for r in [-2.5, -0.3, 0.0, 0.7, 3.0] {
                let numeric = (klEstimate(logRatio: r + h, estimator: estimator)
                    - klEstimate(logRatio: r - h, estimator: estimator)) / (2 * h)
                expectClose(klEstimateDerivative(logRatio: r, estimator: estimator), numeric, abs: 1e-8, rel: 1e-7,
                            "d\(estimator.rawValue)/dr at r = \(r)")
            }
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let a = matrix([[-1, -2, -3], [-0.5, -1, -2]]), b = matrix([[-1.5, -2, -1], [-0.5, -3, -2]])
        expectStageError(.parameterOutOfRange, argument: "clip_range") { try klClipRange(lo: 1, hi: -1) }
        expectStageError(.parameterOutOfRange, argument: "clip_range") { try klClipRange(lo: .nan, hi: 1) }
        #expect(try klClipRange(lo: 2, hi: 2) == 2...2)
        expectStageError(.parameterOutOfRange, argument: "estimator") {
            try KLEstimator(named: "k4", stage: "kl_estimators")
        }
        #expect(try KLEstimator(named: "k2", stage: "kl_estimators") == .k2)
        expectStageError(.emptyMask, argument: "mask") {
            try klEstimators(logProbs: a, refLogProbs: b, mask: intMatrix([[1, 0, 0], [0, 0, 0]]), estimator: .k1,
                             clipRange: nil)
        }
        expectStageError(.invalidMask, argument: "mask") {
            try klEstimators(logProbs: a, refLogProbs: b, mask: intMatrix([[1, 2, 0], [1, 1, 1]]), estimator: .k1,
                             clipRange: nil)
        }
        expectStageError(.shapeMismatch, argument: "mask") {
            try klEstimators(logProbs: a, refLogProbs: b, mask: intMatrix([[1, 1, 1]]), estimator: .k1, clipRange: nil)
        }
        expectStageError(.shapeMismatch, argument: "ref_log_probs") {
            try klEstimate(logProbs: a, refLogProbs: matrix([[-1, -2], [-1, -2]]), estimator: .k1, clipRange: nil)
        }
        expectStageError(.shapeMismatch, argument: "log_probs") {
            try klEstimate(logProbs: Tensor<Double>(shape: [0, 3], repeating: 0),
                           refLogProbs: Tensor<Double>(shape: [0, 3], repeating: 0), estimator: .k1, clipRange: nil)
        }
        expectStageError(.shapeMismatch, argument: "log_probs") {
            try klEstimate(logProbs: vector([1, 2]), refLogProbs: vector([1, 2]), estimator: .k1, clipRange: nil)
        }
        expectStageError(.notANumber, argument: "ref_log_probs") {
            try klEstimate(logProbs: a, refLogProbs: matrix([[-1, -2, .nan], [-1, -2, -3]]), estimator: .k2,
                           clipRange: nil)
        }
        // The catch-all: a non-finite estimate is refused. k3 at r = -900 without a clamp is e^900 = inf;
        // two infinite log-probs give inf - inf = NaN, which no clamp repairs.
        expectStageError(.nonFiniteResult, argument: "kl") {
            try klEstimate(logProbs: matrix([[-900.5]]), refLogProbs: matrix([[-0.5]]), estimator: .k3, clipRange: nil)
        }
        expectStageError(.nonFiniteResult, argument: "kl") {
            try klEstimate(logProbs: matrix([[-.infinity]]), refLogProbs: matrix([[-.infinity]]), estimator: .k1,
                           clipRange: -10...10)
        }
        // Two finite estimates of 1.6e308 whose sum overflows: the mean is refused, not reported as inf.
        expectStageError(.nonFiniteResult, argument: "kl_mean") {
            try klEstimators(logProbs: matrix([[1.6e308, 1.6e308]]), refLogProbs: matrix([[0, 0]]),
                             mask: intMatrix([[1, 1]]), estimator: .k1, clipRange: nil)
        }
        // One infinite log-prob: k1 = -inf, clamped to -10, as torch.clamp gives.
        let clamped = try klEstimate(logProbs: matrix([[-.infinity]]), refLogProbs: matrix([[-1]]), estimator: .k1,
                                     clipRange: -10...10)
        #expect(clamped.scalars == [-10])
    }
}
