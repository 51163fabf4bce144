import Testing
import TensorCore
import TestSupport
@testable import RewardsKLEndClamped

@Suite("rewards_kl_end_clamped")
struct RewardsKLEndClampedTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "rewards_kl_end_clamped", minimum: 10)
    }

    @Test("align-anything's toy by hand (peer-conventions §11, β = 0.1)")
    func toy() throws {
        // d = log_probs - ref_log_probs = [0, 0.1, -0.2, 0.3, 0.5, -0.4], m = [1, 1, 1, 1, 0, 0]: e = 3.
        // rewards_t = -0.1·d_t, plus the score 1 at t = 3: -0.03 + 1 = 0.97. The pads keep their
        // KL terms (-0.05, 0.04): nothing is masked here.
        let result = try rewardsKLEndClamped(reward: vector([1]), logProbs: matrix([[0, 0.1, -0.2, 0.3, 0.5, -0.4]]),
                                             refLogProbs: Tensor(shape: [1, 6], repeating: 0),
                                             sequenceMask: intMatrix([[1, 1, 1, 1, 0, 0]]), klCoeff: 0.1, clipRangeScore: 50)
        #expect(result.endIndices == [3])
        expectClose(result.rewards, [0, -0.01, 0.02, 0.97, -0.05, 0.04], "rewards")
    }

    @Test("the clamp acts on each total: on KL terms, and on score + KL together at e_b")
    func clampOnTotals() throws {
        // β = 0.5, C = 1. d = [3, -0.6, -0.6]: KL terms -1.5 (clamped to -1), 0.3, 0.3.
        // e = 2 (the last 1): 0.3 + 0.9 = 1.2 > 1, clamped to 1, although the score 0.9 alone is inside.
        let result = try rewardsKLEndClamped(reward: vector([0.9]), logProbs: matrix([[3, -0.6, -0.6]]),
                                             refLogProbs: Tensor(shape: [1, 3], repeating: 0),
                                             sequenceMask: intMatrix([[1, 1, 1]]), klCoeff: 0.5, clipRangeScore: 1)
        expectClose(result.rewards, [-1, 0.3, 1], "rewards")
    }

    @Test("where the score goes: the last 1 of the whole row, holes, empty answers, left padding")
    func endIndex() throws {
        let zeros = Tensor<Double>(shape: [4, 6], repeating: 0)
        let mask = intMatrix([
            [1, 1, 0, 1, 0, 0],  // a hole: the last 1 is at 3 (DeepSpeed-Chat counts ones: start + 3)
            [1, 1, 0, 0, 0, 0],  // prompt of 3 tokens, empty answer: the last prompt action, t = 1
            [0, 0, 1, 1, 1, 1],  // left padding, the answer fills the row: t = N - 1
            [1, 0, 0, 0, 0, 0],  // one attended action
        ])
        let result = try rewardsKLEndClamped(reward: vector([1, 2, 3, 4]), logProbs: zeros, refLogProbs: zeros,
                                             sequenceMask: mask)
        #expect(result.endIndices == [3, 1, 5, 0])
        for b in 0..<4 {
            for t in 0..<6 {
                #expect(result.rewards[b, t] == (t == result.endIndices[b] ? Double(b + 1) : 0))
            }
        }
    }

    @Test("defaults are align-anything's: β = 0.02, C = 50")
    func defaults() throws {
        // d = 1 everywhere: -0.02 per token; the score 60 + (-0.02) is clamped to 50.
        let result = try rewardsKLEndClamped(reward: vector([60]), logProbs: matrix([[1, 1]]),
                                             refLogProbs: matrix([[0, 0]]), sequenceMask: intMatrix([[1, 1]]))
        expectClose(result.rewards, [-0.02, 50], "rewards")
    }

    @Test("invariant: with C large, rewards minus the KL penalty is the score at e_b and 0 elsewhere")
    func invariant() throws {
        var rng = SplitMix64(seed: 17)
        let logProbs = Tensor.make([3, 7], rng.uniform(count: 21, -4, 0))
        let refLogProbs = Tensor.make([3, 7], rng.uniform(count: 21, -4, 0))
        let reward = vector(rng.uniform(count: 3, -5, 5))
        let mask = intMatrix([[1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0, 0]])
        let result = try rewardsKLEndClamped(reward: reward, logProbs: logProbs, refLogProbs: refLogProbs,
                                             sequenceMask: mask, klCoeff: 0.1, clipRangeScore: 1000)
        #expect(result.endIndices == [3, 6, 4])
        for b in 0..<3 {
            for t in 0..<7 {
                let penalty = -0.1 * (logProbs[b, t] - refLogProbs[b, t])
                let score = t == result.endIndices[b] ? reward.scalars[b] : 0
                expectClose(result.rewards[b, t] - penalty, score, abs: 1e-14, rel: 0, "row \(b), t \(t)")
            }
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 4], repeating: -1)
        let mask = intMatrix([[1, 1, 0, 0], [1, 1, 1, 0]])
        let reward = vector([1, 2])
        expectStageError(.emptyMask, argument: "sequence_mask") {
            try rewardsKLEndClamped(reward: reward, logProbs: x, refLogProbs: x, sequenceMask: intMatrix([[1, 1, 0, 0], [0, 0, 0, 0]]))
        }
        expectStageError(.emptyMask, argument: "sequence_mask") {
            try rewardsKLEndClamped(reward: vector([]), logProbs: Tensor<Double>(shape: [0, 4], repeating: 0),
                                    refLogProbs: Tensor(shape: [0, 4], repeating: 0), sequenceMask: Tensor(shape: [0, 4], repeating: 0))
        }
        expectStageError(.shapeMismatch, argument: "ref_log_probs") {
            try rewardsKLEndClamped(reward: reward, logProbs: x, refLogProbs: Tensor(shape: [2, 5], repeating: 0), sequenceMask: mask)
        }
        expectStageError(.shapeMismatch, argument: "reward") {
            try rewardsKLEndClamped(reward: vector([1, 2, 3]), logProbs: x, refLogProbs: x, sequenceMask: mask)
        }
        expectStageError(.shapeMismatch, argument: "sequence_mask") {
            try rewardsKLEndClamped(reward: reward, logProbs: x, refLogProbs: x, sequenceMask: Tensor(shape: [2, 5], repeating: 1))
        }
        expectStageError(.invalidMask, argument: "sequence_mask") {
            try rewardsKLEndClamped(reward: reward, logProbs: x, refLogProbs: x, sequenceMask: intMatrix([[1, 2, 0, 0], [1, 1, 1, 0]]))
        }
        expectStageError(.notANumber, argument: "ref_log_probs") {
            try rewardsKLEndClamped(reward: reward, logProbs: x, refLogProbs: matrix([[0, 0, 0, .nan], [0, 0, 0, 0]]), sequenceMask: mask)
        }
        expectStageError(.parameterOutOfRange, argument: "clip_range_score") {
            try rewardsKLEndClamped(reward: reward, logProbs: x, refLogProbs: x, sequenceMask: mask, clipRangeScore: -1)
        }
        // inf - inf is NaN in the peer; we name the output instead.
        expectStageError(.nonFiniteResult, argument: "rewards") {
            try rewardsKLEndClamped(reward: reward, logProbs: matrix([[.infinity, 0, 0, 0], [0, 0, 0, 0]]),
                                    refLogProbs: matrix([[.infinity, 0, 0, 0], [0, 0, 0, 0]]), sequenceMask: mask)
        }
    }
}
