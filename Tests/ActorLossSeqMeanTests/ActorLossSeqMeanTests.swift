import Foundation
import Testing
import TensorCore
import TestSupport
import ActorLoss
@testable import ActorLossSeqMean

@Suite("actor_loss_seq_mean")
struct ActorLossSeqMeanTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "actor_loss_seq_mean", minimum: 10)
    }

    @Test("by hand: a one-token row weighs as much as a row of three")
    func oneTokenRow() throws {
        // Ratio 1 everywhere (log_probs = old), so u_t = A_t.
        // Row 0 keeps one token, A = 4: its mean is 4. Row 1 keeps A = 1, 2, 3: mean 2.
        // loss = -(4 + 2)/2 = -3. The token mean of v1 would be -(4 + 1 + 2 + 3)/4 = -2.5.
        let logProbs = matrix([[-1, -2, -3], [-1, -1, -1]])
        let advantages = matrix([[4, 100, -100], [1, 2, 3]])
        let mask = intMatrix([[1, 0, 0], [1, 1, 1]])
        let result = try actorLossSeqMean(logProbs: logProbs, oldLogProbs: logProbs, advantages: advantages, mask: mask)
        expectClose(result.loss, -3, abs: 0, rel: 0, "loss")
        #expect(result.tokenCounts == [1, 3])
        let tokenMean = try actorLoss(logProbs: logProbs, oldLogProbs: logProbs, advantages: advantages, mask: mask, cliprange: 0.2)
        expectClose(tokenMean.loss, -2.5, abs: 0, rel: 0, "v1 token mean")
        // ∂loss/∂logπ_t = -(m_t/(B·n_b))·A_t·ratio_t: row 0: -4/2; row 1: -A/6.
        let grad = try actorLossSeqMeanGradLogProbs(logProbs: logProbs, oldLogProbs: logProbs, advantages: advantages, mask: mask)
        expectClose(grad, [-2, 0, 0, -1.0 / 6, -2.0 / 6, -3.0 / 6], abs: 1e-15, rel: 1e-15, "grad_log_probs")
    }

    @Test("the clip truth table, ε = 0.2 (pitfalls test 18), one token per row")
    func clipTruthTable() throws {
        // (ratio, advantage, per-token loss -u)
        let cases: [(ratio: Double, advantage: Double, loss: Double)] = [
            (1.5, +1, -1.2), (1.5, -1, +1.5), (0.5, +1, -0.5), (0.5, -1, +0.8), (1.1, +1, -1.1), (0.9, -1, +0.9),
        ]
        let result = try actorLossSeqMean(logProbs: Tensor.make([6, 1], cases.map { log($0.ratio) }),
                                          oldLogProbs: Tensor(shape: [6, 1], repeating: 0),
                                          advantages: Tensor.make([6, 1], cases.map(\.advantage)),
                                          mask: Tensor(shape: [6, 1], repeating: 1))
        expectClose(result.tokenLosses, cases.map(\.loss), "per-token losses")
        expectClose(result.loss, cases.map(\.loss).reduce(0, +) / 6, "loss: the mean of six one-token rows")
    }

    @Test("invariant: with every row of the same length it is v1's token-mean actor_loss")
    func sameLengthIsTokenMean() throws {
        var rng = SplitMix64(seed: 31)
        let old = rng.uniform(count: 15, -3, -0.5)
        let logProbs = Tensor.make([3, 5], (0..<15).map { old[$0] + rng.uniform(-0.6, 0.6) })
        let oldLogProbs = Tensor.make([3, 5], old)
        let advantages = Tensor.make([3, 5], rng.uniform(count: 15, -2, 2))
        let mask = intMatrix([[1, 1, 1, 0, 0], [0, 1, 0, 1, 1], [1, 0, 1, 1, 0]])
        let ours = try actorLossSeqMean(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask)
        let v1 = try actorLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask, cliprange: 0.2)
        expectClose(ours.loss, Double(v1.loss), abs: 1e-15, rel: 1e-14, "loss")
        let ourGrad = try actorLossSeqMeanGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs,
                                                       advantages: advantages, mask: mask)
        let v1Grad = try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                               mask: mask, cliprange: 0.2)
        expectClose(ourGrad, v1Grad.scalars, abs: 1e-16, rel: 1e-14, "grad_log_probs")
    }

    @Test("the ratio is not masked: a finite masked token changes nothing, an overflowing one makes the peer's loss NaN")
    func unmaskedRatio() throws {
        let old = matrix([[-1, -1, -1]])
        let advantages = matrix([[1, -2, -1]])
        let mask = intMatrix([[1, 1, 0]])
        let base = try actorLossSeqMean(logProbs: old, oldLogProbs: old, advantages: advantages, mask: mask)
        let large = try actorLossSeqMean(logProbs: matrix([[-1, -1, 79]]), oldLogProbs: old, advantages: advantages, mask: mask)
        #expect(base.loss == large.loss)
        #expect(large.ratios[0, 2] == exp(80.0))
        // e^800 = inf; with A < 0 the surrogate is -inf, and -inf · 0 = NaN.
        expectStageError(.nonFiniteResult, argument: "loss") {
            try actorLossSeqMean(logProbs: matrix([[-1, -1, 799]]), oldLogProbs: old, advantages: advantages, mask: mask)
        }
        // With A > 0 the surrogate is the clipped 1.2·A and the loss is finite, but autograd's
        // exp backward gives 0 · inf = NaN at that token.
        let positive = matrix([[1, -2, 1]])
        let finite = try actorLossSeqMean(logProbs: matrix([[-1, -1, 799]]), oldLogProbs: old, advantages: positive, mask: mask)
        expectClose(finite.loss, -(1 - 2) / 2.0, "loss")
        expectStageError(.nonFiniteResult, argument: "grad_log_probs") {
            try actorLossSeqMeanGradLogProbs(logProbs: matrix([[-1, -1, 799]]), oldLogProbs: old, advantages: positive, mask: mask)
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 3], repeating: 0)
        let ones = Tensor<Int64>(shape: [2, 3], repeating: 1)
        expectStageError(.emptyMask, argument: "mask") {
            try actorLossSeqMean(logProbs: x, oldLogProbs: x, advantages: x, mask: intMatrix([[1, 1, 1], [0, 0, 0]]))
        }
        expectStageError(.emptyMask, argument: "mask") {
            let empty = Tensor<Double>(shape: [0, 3], repeating: 0)
            return try actorLossSeqMean(logProbs: empty, oldLogProbs: empty, advantages: empty, mask: Tensor(shape: [0, 3], repeating: 1))
        }
        expectStageError(.invalidMask, argument: "mask") {
            try actorLossSeqMean(logProbs: x, oldLogProbs: x, advantages: x, mask: intMatrix([[1, 1, 2], [1, 1, 1]]))
        }
        expectStageError(.shapeMismatch, argument: "advantages") {
            try actorLossSeqMean(logProbs: x, oldLogProbs: x, advantages: Tensor(shape: [2, 2], repeating: 0), mask: ones)
        }
        expectStageError(.notANumber, argument: "old_log_probs") {
            try actorLossSeqMean(logProbs: x, oldLogProbs: matrix([[0, 0, .nan], [0, 0, 0]]), advantages: x,
                                 mask: intMatrix([[1, 1, 0], [1, 1, 1]]))
        }
        expectStageError(.parameterOutOfRange, argument: "clip_range_ratio") {
            try actorLossSeqMean(logProbs: x, oldLogProbs: x, advantages: x, mask: ones, clipRangeRatio: -0.2)
        }
    }
}

@Suite("actor_loss_seq_mean backward")
struct ActorLossSeqMeanBackwardTests {
    @Test("grad_log_probs equals central differences, away from the clip boundaries")
    func finiteDifferences() throws {
        // Rows of 1, 3 and 4 tokens (one with a hole). The log-ratios lie inside and outside
        // [log 0.8, log 1.2] = [-0.223, 0.182], none within 0.02 of either bound.
        let logRatios = [0.4, -0.05, -0.6, 0.1, -0.3, 0.25, -0.15, 0.5, 0.0, -0.4, 0.15, -0.1]
        let advantages = Tensor.make([3, 4], [1.5, -0.7, 0.9, -1.2, 0.4, -2.0, 1.1, -0.3, 0.8, 1.7, -0.6, -1.4])
        let mask = Tensor.make([3, 4], [0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1] as [Int64])
        let oldLogProbs = Tensor.make([3, 4], (0..<12).map { -0.25 * Double($0 % 5) - 1 })
        let x = (0..<12).map { oldLogProbs.scalars[$0] + logRatios[$0] }
        let grad = try actorLossSeqMeanGradLogProbs(logProbs: Tensor.make([3, 4], x), oldLogProbs: oldLogProbs,
                                                    advantages: advantages, mask: mask)
        let numeric = try centralDifferenceGradient(at: x) { probe in
            Double(try actorLossSeqMean(logProbs: Tensor.make([3, 4], probe), oldLogProbs: oldLogProbs,
                                        advantages: advantages, mask: mask).loss)
        }
        expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_log_probs vs finite differences")
    }
}
