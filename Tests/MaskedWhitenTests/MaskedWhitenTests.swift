import Foundation
import Testing
import TensorCore
import TestSupport
@testable import MaskedWhiten

@Suite("masked_whiten")
struct MaskedWhitenTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "masked_whiten", minimum: 10)
    }

    @Test("a row worked by hand: three selected values and one masked")
    func byHand() throws {
        // values 1, 2, 3 selected, 100 masked:
        //   n = 3, μ = (1 + 2 + 3) / 3 = 2
        //   Σ (v - μ)² · m / n = (1 + 0 + 1) / 3 = 2/3,  c = 3 / 2 = 1.5 (exact in float32),  σ² = 1
        //   rsqrt(1 + 1e-8) = 1 - 0.5e-8 + 0.375e-16 = 0.9999999950000000375
        //   whitened = (v - 2) · 0.999999995: -0.999999995, 0, 0.999999995, and 98 · 0.999999995 = 97.99999951
        let values = matrix([[1, 2, 3, 100]]), mask = intMatrix([[1, 1, 1, 0]])
        let centred = try maskedWhiten(values: values, mask: mask, shiftMean: true)
        #expect(centred.count == 3)
        #expect(centred.besselFactor == 1.5)
        expectClose(centred.mean, 2, "μ")
        expectClose(centred.variance, 1, "σ²")
        let scale = 0.9999999950000000375
        expectClose(centred.whitened, [-scale, 0, scale, 98 * scale], "whitened, the masked 100 included")
        // shift_mean false adds μ = 2 back: 1.000000005, 2, 2.999999995, 99.99999951.
        let kept = try maskedWhiten(values: values, mask: mask, shiftMean: false)
        expectClose(kept.whitened, [2 - scale, 2, 2 + scale, 2 + 98 * scale], "whitened + μ")
    }

    @Test("the Bessel factor is a float32 division even for float64 values")
    func float32BesselFactor() throws {
        // values 1 ... 7, all selected: μ = 4, Σ (v - μ)² / n = (9 + 4 + 1 + 0 + 1 + 4 + 9) / 7 = 4.
        // c = Float(7) / Float(6) = 1.16666662693023681640625 (0x3F955555), not 7/6 = 1.1666666666...
        // σ² = 4 · c = 4.666666507720947265625 exactly (a float32 times 4).
        let result = try maskedWhiten(values: matrix([[1, 2, 3, 4, 5, 6, 7]]), mask: intMatrix([[1, 1, 1, 1, 1, 1, 1]]),
                                      shiftMean: true)
        #expect(result.besselFactor == 1.16666662693023681640625)
        #expect(result.variance == 4.666666507720947265625)
        // The position v = 7: 3 / sqrt(σ² + 1e-8). With the float64 factor it would be
        // 3 / sqrt(28/6 + 1e-8), 1.7e-8 relative away: beyond the fixtures' rel 1e-9.
        let withFloat32Factor = 3 / (4.666666507720947265625 + 1e-8).squareRoot()
        let withFloat64Factor = 3 / (28.0 / 6 + 1e-8).squareRoot()
        expectClose(result.whitened[0, 6], withFloat32Factor, abs: 0, rel: 1e-15, "v = 7")
        #expect(abs(withFloat64Factor - withFloat32Factor) > 1e-9 * withFloat32Factor)
    }

    @Test("zero variance: rsqrt(1e-8) = 1e4 scales only the masked positions")
    func zeroVariance() throws {
        // Selected values all 0.5: μ = 0.5, σ² = 0, so whitened = (v - 0.5) · 1/sqrt(1e-8) = (v - 0.5) · 1e4.
        let result = try maskedWhiten(values: matrix([[0.5, 0.5, 1.5, -2.0]]), mask: intMatrix([[1, 1, 0, 0]]),
                                      shiftMean: true)
        expectClose(result.whitened, [0, 0, 1e4, -2.5e4], abs: 0, rel: 1e-12, "whitened")
    }

    @Test("invariants: zero mean and unit spread over the mask, one affine map for every position")
    func invariants() throws {
        var rng = SplitMix64(seed: 31)
        let values = Tensor.make([3, 7], rng.uniform(count: 21, -3, 5))
        let mask = Tensor.make([3, 7], (0..<21).map { Int64($0 % 3 == 2 ? 0 : 1) })
        let centred = try maskedWhiten(values: values, mask: mask, shiftMean: true)
        let kept = try maskedWhiten(values: values, mask: mask, shiftMean: false)
        let selected = (0..<21).filter { mask.scalars[$0] == 1 }
        let mean = selected.reduce(0.0) { $0 + centred.whitened.scalars[$1] } / Double(selected.count)
        expectClose(mean, 0, abs: 1e-14, rel: 0, "mean of the selected whitened values")
        // Their unbiased variance is σ² / (σ² + 1e-8) · c_exact / c_float32: within 1e-7 of 1 for σ² of order 1.
        let spread = selected.reduce(0.0) { $0 + pow(centred.whitened.scalars[$1], 2) } / Double(selected.count - 1)
        expectClose(spread, 1, abs: 1e-7, rel: 0, "unbiased variance of the selected whitened values")
        let scale = 1 / (centred.variance + 1e-8).squareRoot()
        for i in 0..<21 {
            // every position, masked or not, goes through the same map; shift_mean false adds μ back
            expectClose(centred.whitened.scalars[i], (values.scalars[i] - centred.mean) * scale, abs: 1e-15, rel: 1e-15, "position \(i)")
            expectClose(kept.whitened.scalars[i], centred.whitened.scalars[i] + centred.mean, abs: 1e-15, rel: 1e-15, "shift_mean false at \(i)")
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let values = matrix([[1, 2, 3], [4, 5, 6]])
        expectStageError(.emptyMask, argument: "mask") {
            try maskedWhiten(values: values, mask: intMatrix([[0, 1, 0], [0, 0, 0]]), shiftMean: true)
        }
        expectStageError(.emptyMask, argument: "mask") {
            try maskedWhiten(values: values, mask: Tensor(shape: [2, 3], repeating: 0), shiftMean: true)
        }
        expectStageError(.shapeMismatch, argument: "mask") {
            try maskedWhiten(values: values, mask: Tensor(shape: [2, 2], repeating: 1), shiftMean: true)
        }
        expectStageError(.invalidMask, argument: "mask") {
            try maskedWhiten(values: values, mask: intMatrix([[1, 2, 1], [1, 1, 1]]), shiftMean: true)
        }
        expectStageError(.notANumber, argument: "values") {
            try maskedWhiten(values: matrix([[1, 2, .nan], [4, 5, 6]]), mask: intMatrix([[1, 1, 0], [1, 1, 1]]),
                             shiftMean: true)
        }
        expectStageError(.shapeMismatch, argument: "values") {
            try maskedWhiten(values: vector([1, 2, 3]), mask: Tensor(shape: [3], repeating: 1), shiftMean: true)
        }
        // An infinite value under the mask: ∞ · 0 = NaN in the sums, as in torch.
        expectStageError(.nonFiniteResult, argument: "whitened") {
            try maskedWhiten(values: matrix([[1, 2, .infinity], [4, 5, 6]]), mask: intMatrix([[1, 1, 0], [1, 1, 1]]),
                             shiftMean: true)
        }
    }
}
