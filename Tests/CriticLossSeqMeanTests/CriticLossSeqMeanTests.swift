import Testing
import TensorCore
import TestSupport
import CriticLoss
@testable import CriticLossSeqMean

@Suite("critic_loss_seq_mean")
struct CriticLossSeqMeanTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "critic_loss_seq_mean", minimum: 10)
    }

    @Test("by hand: value clipping per token (pitfalls test 19, c = 0.2), then one mean per row")
    func byHand() throws {
        // Row 0, one token: R = 10, old = 5, new = 1: clip(1) = 4.8; max(81, 27.04) = 81.
        // Row 1, two tokens: R = 10, old = 1, new = 5: clip(5) = 1.2; max(25, 77.44) = 77.44;
        //                    R = 0, old = 0, new = 1: clip(1) = 0.2; max(1, 0.04) = 1. Row mean 39.22.
        // loss = 0.5 · (81 + 39.22)/2 = 30.055.
        let result = try criticLossSeqMean(values: matrix([[1, 7], [5, 1]]), oldValues: matrix([[5, 7], [1, 0]]),
                                           returns: matrix([[10, 7], [10, 0]]), mask: intMatrix([[1, 0], [1, 1]]),
                                           clipRangeValue: 0.2)
        expectClose(result.loss, 30.055, "loss")
        expectClose(result.tokenLosses, [81, 0, 77.44, 1], "per-token errors")
        // ∂/∂V: row 0: (0.5/(2·1))·2(1 - 10) = -4.5; row 1: the clipped error wins outside the
        // bounds at t = 0 (zero), the unclipped one at t = 1: (0.5/(2·2))·2·1 = 0.25.
        let grad = try criticLossSeqMeanGradValues(values: matrix([[1, 7], [5, 1]]), oldValues: matrix([[5, 7], [1, 0]]),
                                                   returns: matrix([[10, 7], [10, 0]]), mask: intMatrix([[1, 0], [1, 1]]),
                                                   clipRangeValue: 0.2)
        expectClose(grad, [-4.5, 0, 0, 0.25], abs: 1e-15, rel: 1e-15, "grad_values")
    }

    @Test("align-anything's default clip range is 5.0: values 3 away from the old ones are not clipped")
    func defaultClipRange() throws {
        // V = old + 3, R = old + 4: clip(V) = V inside [old - 5, old + 5]; ½·(V - R)² = ½.
        let result = try criticLossSeqMean(values: matrix([[3, 5]]), oldValues: matrix([[0, 2]]), returns: matrix([[4, 6]]),
                                           mask: intMatrix([[1, 1]]))
        expectClose(result.loss, 0.5, abs: 0, rel: 0, "loss")
        expectClose(result.clippedValues, [3, 5], abs: 0, rel: 0, "clipped values")
        // With DeepSpeed-Chat's 0.2 the clipped value 0.2 is further from R = 4: ½·3.8² = 7.22.
        expectClose(try criticLossSeqMean(values: matrix([[3]]), oldValues: matrix([[0]]), returns: matrix([[4]]),
                                          mask: intMatrix([[1]]), clipRangeValue: 0.2).loss, 7.22, "loss with c = 0.2")
    }

    @Test("invariant: with every row of the same length it is v1's token-mean critic_loss")
    func sameLengthIsTokenMean() throws {
        var rng = SplitMix64(seed: 37)
        let old = rng.uniform(count: 12, -1, 1)
        let values = Tensor.make([3, 4], (0..<12).map { old[$0] + rng.uniform(-1, 1) })
        let oldValues = Tensor.make([3, 4], old)
        let returns = Tensor.make([3, 4], rng.uniform(count: 12, -2, 2))
        let mask = intMatrix([[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]])
        let ours = try criticLossSeqMean(values: values, oldValues: oldValues, returns: returns, mask: mask, clipRangeValue: 0.3)
        let v1 = try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: mask, cliprangeValue: 0.3)
        expectClose(ours.loss, Double(v1.loss), abs: 1e-15, rel: 1e-14, "loss")
        let ourGrad = try criticLossSeqMeanGradValues(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                                      clipRangeValue: 0.3)
        let v1Grad = try criticLossGradValues(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                              cliprangeValue: 0.3)
        expectClose(ourGrad, v1Grad.scalars, abs: 1e-16, rel: 1e-14, "grad_values")
    }

    @Test("an infinite error under a 0 of the mask: inf · 0 = NaN in the peer, so we throw")
    func maskedInfinity() throws {
        expectStageError(.nonFiniteResult, argument: "loss") {
            try criticLossSeqMean(values: matrix([[0, 0]]), oldValues: matrix([[0, 0]]), returns: matrix([[1, .infinity]]),
                                  mask: intMatrix([[1, 0]]))
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 3], repeating: 0)
        let ones = Tensor<Int64>(shape: [2, 3], repeating: 1)
        expectStageError(.emptyMask, argument: "mask") {
            try criticLossSeqMean(values: x, oldValues: x, returns: x, mask: intMatrix([[0, 0, 0], [1, 0, 0]]))
        }
        expectStageError(.invalidMask, argument: "mask") {
            try criticLossSeqMean(values: x, oldValues: x, returns: x, mask: intMatrix([[1, 1, 1], [1, 2, 1]]))
        }
        expectStageError(.shapeMismatch, argument: "returns") {
            try criticLossSeqMean(values: x, oldValues: x, returns: Tensor(shape: [3, 3], repeating: 0), mask: ones)
        }
        expectStageError(.notANumber, argument: "values") {
            try criticLossSeqMean(values: matrix([[0, 0, 0], [0, 0, .nan]]), oldValues: x, returns: x,
                                  mask: intMatrix([[1, 1, 1], [1, 1, 0]]))
        }
        expectStageError(.parameterOutOfRange, argument: "clip_range_value") {
            try criticLossSeqMean(values: x, oldValues: x, returns: x, mask: ones, clipRangeValue: .nan)
        }
    }
}

@Suite("critic_loss_seq_mean backward")
struct CriticLossSeqMeanBackwardTests {
    @Test("grad_values equals central differences, away from the clip boundaries and ties")
    func finiteDifferences() throws {
        // Rows of 1 and 4 tokens. New values 0.03 to 0.7 from the old ones (c = 0.2): inside the
        // band, where the two errors are the same function, or outside it, none within 0.02 of a bound.
        let oldValues = Tensor.make([2, 4], [0.3, -0.4, 0.9, 0.1, 0.5, -0.2, 0.0, 0.7])
        let steps = [0.5, -0.03, 0.7, -0.25, 0.1, -0.45, 0.3, -0.12]
        let returns = Tensor.make([2, 4], [1.2, -0.5, 0.2, -1.0, 0.0, 0.9, -0.6, 1.5])
        let mask = Tensor.make([2, 4], [0, 0, 1, 0, 1, 1, 1, 1] as [Int64])
        let x = (0..<8).map { oldValues.scalars[$0] + steps[$0] }
        let grad = try criticLossSeqMeanGradValues(values: Tensor.make([2, 4], x), oldValues: oldValues,
                                                   returns: returns, mask: mask, clipRangeValue: 0.2)
        let numeric = try centralDifferenceGradient(at: x) { probe in
            Double(try criticLossSeqMean(values: Tensor.make([2, 4], probe), oldValues: oldValues, returns: returns,
                                         mask: mask, clipRangeValue: 0.2).loss)
        }
        expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_values vs finite differences")
    }
}
