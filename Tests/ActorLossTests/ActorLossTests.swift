import Foundation
import Testing
import TensorCore
import TestSupport
@testable import ActorLoss

@Suite("actor_loss")
struct ActorLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "actor_loss")
    }

    @Test("the clip truth table, ε = 0.2 (pitfalls test 18)")
    func clipTruthTable() throws {
        // (ratio, advantage, per-token loss)
        let cases: [(ratio: Double, advantage: Double, loss: Double)] = [
            (1.5, +1, -1.2),  // A > 0, ratio above 1 + ε: clipped, no extra credit
            (1.5, -1, +1.5),  // A < 0, ratio above 1 + ε: unclipped, the larger loss
            (0.5, +1, -0.5),  // A > 0, ratio below 1 - ε: unclipped
            (0.5, -1, +0.8),  // A < 0, ratio below 1 - ε: clipped
            (1.1, +1, -1.1),  // inside the range: -A · ratio
            (0.9, -1, +0.9),
        ]
        for c in cases {
            let result = try actorLoss(logProbs: matrix([[log(c.ratio)]]), oldLogProbs: matrix([[0]]),
                                       advantages: matrix([[c.advantage]]), mask: intMatrix([[1]]), cliprange: 0.2)
            expectClose(result.loss, c.loss, "ratio \(c.ratio), A \(c.advantage)")
        }
    }

    @Test("inside the clip range the loss is -mean(A · ratio); at ratio 1 it is -mean(A)")
    func insideClipRange() throws {
        var rng = SplitMix64(seed: 5)
        let count = 12
        let advantages = rng.uniform(count: count, -2, 2)
        let logRatios = rng.uniform(count: count, -0.15, 0.15)  // ratios within [0.86, 1.17]
        let oldLogProbs = rng.uniform(count: count, -4, -1)
        let logProbs = (0..<count).map { oldLogProbs[$0] + logRatios[$0] }
        let mask = Tensor<Int64>(shape: [3, 4], repeating: 1)
        let result = try actorLoss(logProbs: Tensor.make([3, 4], logProbs), oldLogProbs: Tensor.make([3, 4], oldLogProbs),
                                   advantages: Tensor.make([3, 4], advantages), mask: mask, cliprange: 0.2)
        let expected = -(0..<count).reduce(0.0) { $0 + advantages[$1] * exp(logRatios[$1]) } / Double(count)
        expectClose(result.loss, expected, "loss inside the clip range")

        let atOne = try actorLoss(logProbs: Tensor.make([3, 4], oldLogProbs), oldLogProbs: Tensor.make([3, 4], oldLogProbs),
                                  advantages: Tensor.make([3, 4], advantages), mask: mask, cliprange: 0.2)
        expectClose(atOne.loss, -advantages.reduce(0, +) / Double(count), "loss at ratio 1")
    }

    @Test("masked tokens count nowhere: not in the sum, not in the count")
    func masking() throws {
        // Token-mean over the whole batch: (1 + 2 + 3) / 3, the masked 1000 ignored.
        let result = try actorLoss(logProbs: matrix([[0, 0], [0, 5]]), oldLogProbs: matrix([[0, 0], [0, -5]]),
                                   advantages: matrix([[-1, -2], [-3, 1000]]), mask: intMatrix([[1, 1], [1, 0]]),
                                   cliprange: 0.2)
        expectClose(result.loss, 2, "loss")
        // The masked position's log-ratio is multiplied by 0 before exp: ratio 1.
        #expect(result.ratios[1, 1] == 1)
        #expect(result.tokenCount == 3)
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 3], repeating: 0)
        let ones = Tensor<Int64>(shape: [2, 3], repeating: 1)
        expectStageError(.emptyMask, argument: "mask") {
            try actorLoss(logProbs: x, oldLogProbs: x, advantages: x, mask: Tensor(shape: [2, 3], repeating: 0), cliprange: 0.2)
        }
        expectStageError(.invalidMask, argument: "mask") {
            try actorLoss(logProbs: x, oldLogProbs: x, advantages: x, mask: intMatrix([[1, 1, 2], [1, 1, 1]]), cliprange: 0.2)
        }
        expectStageError(.shapeMismatch, argument: "advantages") {
            try actorLoss(logProbs: x, oldLogProbs: x, advantages: Tensor(shape: [2, 2], repeating: 0), mask: ones, cliprange: 0.2)
        }
        // A NaN in a masked slot is still an error: NaN · 0 is NaN.
        expectStageError(.notANumber, argument: "old_log_probs") {
            try actorLoss(logProbs: x, oldLogProbs: matrix([[0, 0, .nan], [0, 0, 0]]), advantages: x,
                          mask: intMatrix([[1, 1, 0], [1, 1, 1]]), cliprange: 0.2)
        }
        expectStageError(.parameterOutOfRange, argument: "cliprange") {
            try actorLoss(logProbs: x, oldLogProbs: x, advantages: x, mask: ones, cliprange: -0.2)
        }
    }
}

@Suite("actor_loss backward")
struct ActorLossBackwardTests {
    @Test("grad_log_probs equals central differences, away from the clip boundaries")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 43)
        let count = 12
        // Log-ratios spread over [-0.5, 0.5] but kept 0.01 away from log(0.8) and log(1.2).
        let logRatios = (0..<count).map { i -> Double in
            let r = rng.uniform(-0.5, 0.5)
            return abs(r - log(1.2)) < 0.01 || abs(r - log(0.8)) < 0.01 ? r + 0.03 : r
        }
        let old = rng.uniform(count: count, -3, -1)
        let x = (0..<count).map { old[$0] + logRatios[$0] }
        let advantages = Tensor.make([3, 4], rng.uniform(count: count, -2, 2))
        let mask = Tensor.make([3, 4], [1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1] as [Int64])
        let oldLogProbs = Tensor.make([3, 4], old)
        let grad = try actorLossGradLogProbs(logProbs: Tensor.make([3, 4], x), oldLogProbs: oldLogProbs,
                                             advantages: advantages, mask: mask, cliprange: 0.2)
        let numeric = try centralDifferenceGradient(at: x) { probe in
            Double(try actorLoss(logProbs: Tensor.make([3, 4], probe), oldLogProbs: oldLogProbs, advantages: advantages,
                                 mask: mask, cliprange: 0.2).loss)
        }
        expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_log_probs vs finite differences")
    }

    @Test("the gradient is zero for every clipped token and -A·ratio/n elsewhere")
    func zeroWhereClipped() throws {
        // (ratio, A): clipped when A > 0 and ratio > 1.2, or A < 0 and ratio < 0.8.
        let cases: [(ratio: Double, advantage: Double, clipped: Bool)] = [
            (1.5, 1, true), (0.5, -1, true), (1.5, -1, false), (0.5, 1, false), (1.1, 2, false), (0.9, -2, false),
        ]
        let grad = try actorLossGradLogProbs(
            logProbs: Tensor.make([1, 6], cases.map { log($0.ratio) }), oldLogProbs: Tensor(shape: [1, 6], repeating: 0),
            advantages: Tensor.make([1, 6], cases.map(\.advantage)), mask: Tensor(shape: [1, 6], repeating: 1), cliprange: 0.2)
        let expected = cases.map { $0.clipped ? 0 : -$0.advantage * $0.ratio / 6 }
        expectClose(grad, expected, abs: 1e-15, rel: 1e-12, "grad_log_probs")
    }
}

@Suite("actor_loss: infinite inputs")
struct ActorLossInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `clipped_policy_loss` (GoldenData/generator/stages/actor_loss.py) and autograd,
    // on the same inputs. ε = 0.2; the last token is masked.
    static let mask = intMatrix([[1, 1, 1, 0]])
    static let zeros = matrix([[0, 0, 0, 0]])

    @Test("an infinite advantage outside the clip range: autograd gives ±inf, not inf · 0 = NaN")
    func infiniteAdvantage() throws {
        // Token 0: ratio e^0.5 > 1.2 and A = -inf, so both branches are +inf (a tie);
        // the clipped one passes nothing outside the range (an exact 0, not -A · 0).
        let logProbs = matrix([[0.5, 0, 0, 0]]), advantages = matrix([[-.infinity, 1, 1, 0]])
        let loss = try actorLoss(logProbs: logProbs, oldLogProbs: Self.zeros, advantages: advantages,
                                 mask: Self.mask, cliprange: 0.2).loss
        expectClose(loss, .infinity, "loss")
        let grad = try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: Self.zeros, advantages: advantages,
                                             mask: Self.mask, cliprange: 0.2)
        expectClose(grad, [.infinity, -1.0 / 3, -1.0 / 3, 0], "grad_log_probs")

        // A = +inf at ratio 1 gives -inf; a log-prob of -inf (ratio 0) gives 0.
        let logProbs2 = matrix([[-.infinity, 0, 0.5, 0]]), advantages2 = matrix([[1, .infinity, 1, 0]])
        let loss2 = try actorLoss(logProbs: logProbs2, oldLogProbs: Self.zeros, advantages: advantages2,
                                  mask: Self.mask, cliprange: 0.2).loss
        expectClose(loss2, -.infinity, "loss")
        let grad2 = try actorLossGradLogProbs(logProbs: logProbs2, oldLogProbs: Self.zeros, advantages: advantages2,
                                              mask: Self.mask, cliprange: 0.2)
        expectClose(grad2, [0, -.infinity, 0, 0], "grad_log_probs")
    }

    @Test("an infinite ratio against a negative advantage: loss and gradient +inf")
    func infiniteRatio() throws {
        let logProbs = matrix([[.infinity, 0, 0, 0]]), advantages = matrix([[-1, 1, 1, 0]])
        let loss = try actorLoss(logProbs: logProbs, oldLogProbs: Self.zeros, advantages: advantages,
                                 mask: Self.mask, cliprange: 0.2).loss
        expectClose(loss, .infinity, "loss")
        let grad = try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: Self.zeros, advantages: advantages,
                                             mask: Self.mask, cliprange: 0.2)
        expectClose(grad, [.infinity, -1.0 / 3, -1.0 / 3, 0], "grad_log_probs")
    }

    @Test("where PyTorch gives NaN, a nonFiniteResult naming the output")
    func nanResults() throws {
        // An infinite ratio against a positive advantage: the clipped branch wins,
        // the loss is a number (PyTorch: -1.0666666666666667), but the gradient is
        // 0 · inf = NaN in autograd.
        let logProbs = matrix([[.infinity, 0, 0, 0]]), advantages = matrix([[1, 1, 1, 0]])
        let loss = try actorLoss(logProbs: logProbs, oldLogProbs: Self.zeros, advantages: advantages,
                                 mask: Self.mask, cliprange: 0.2).loss
        expectClose(loss, -1.0666666666666667, "loss")
        expectStageError(.nonFiniteResult, argument: "grad_log_probs") {
            try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: Self.zeros, advantages: advantages,
                                      mask: Self.mask, cliprange: 0.2)
        }
        // An infinite log-prob or advantage at the masked token: PyTorch's
        // sum(loss · mask) meets inf · 0 (or a NaN log-ratio (x - inf) · 0).
        let masked: [(Tensor<Double>, Tensor<Double>, Tensor<Double>)] = [
            (matrix([[0, 0, 0, -.infinity]]), Self.zeros, matrix([[1, 1, 1, 0]])),
            (Self.zeros, matrix([[0, 0, 0, .infinity]]), matrix([[1, 1, 1, 0]])),
            (Self.zeros, Self.zeros, matrix([[1, 1, 1, .infinity]])),
            // equal infinite log-probs at a kept token: inf - inf
            (matrix([[-.infinity, 0, 0, 0]]), matrix([[-.infinity, 0, 0, 0]]), matrix([[1, 1, 1, 0]])),
        ]
        for (logProbs, oldLogProbs, advantages) in masked {
            expectStageError(.nonFiniteResult, argument: "loss") {
                try actorLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                              mask: Self.mask, cliprange: 0.2)
            }
            expectStageError(.nonFiniteResult, argument: "loss") {
                try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                          mask: Self.mask, cliprange: 0.2)
            }
        }
    }
}
