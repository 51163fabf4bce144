import Testing
import TensorCore
import TestSupport
@testable import ComputeRewards

@Suite("compute_rewards")
struct ComputeRewardsTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "compute_rewards")
    }

    @Test("the score lands one past the last answer token (peer-conventions §11 toy)")
    func scoreLandsOnePast() throws {
        // L = 7: prompt at 0-1 (prompt_length 2, start 1), answer at 2-4, pads at 5-6.
        // action_mask = attention_mask[:, 1:] = [1, 1, 1, 1, 0, 0]; n = 3 answer
        // tokens from start, end = 1 + 3 + 1 = 5, so the score lands at 4.
        let logProbs = matrix([[0.0, 0.1, -0.2, 0.3, 0.5, -0.4]])
        let refLogProbs = matrix([[0, 0, 0, 0, 0, 0]])
        let mask = intMatrix([[1, 1, 1, 1, 0, 0]])
        let rewards = try computeRewards(logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: vector([1.0]),
                                         actionMask: mask, promptLength: 2, klCtl: 0.1, clipRewardValue: 5)
        // -0.1 * d on every position; + 1.0 at position 4.
        expectClose(rewards, [0.0, -0.01, 0.02, -0.03, -0.05 + 1.0, 0.04], "rewards")
        #expect(scorePositions(actionMask: mask, start: 1) == [4])
    }

    @Test("a row that runs to full length takes its score at N - 1; scores are clipped first")
    func fullLengthAndClip() throws {
        let zeros = Tensor<Double>(shape: [2, 4], repeating: 0)
        let mask = intMatrix([[1, 1, 1, 1], [0, 1, 1, 0]])
        let rewards = try computeRewards(logProbs: zeros, refLogProbs: zeros, rewardScore: vector([7, -9]),
                                         actionMask: mask, promptLength: 2, klCtl: 0.1, clipRewardValue: 5)
        // Row 0: n = 3 from start 1, end = 5 > N = 4: lands at N - 1 = 3, clipped to 5.
        // Row 1 mask from start 1: [1, 1, 0] -> n = 2, end = 4 -> lands at 3, clipped to -5.
        expectClose(rewards, [0, 0, 0, 5, 0, 0, 0, -5], abs: 0, rel: 0, "rewards")
    }

    @Test("the KL term is on every position, prompt and padding included")
    func klEverywhere() throws {
        var rng = SplitMix64(seed: 3)
        let logProbs = Tensor.make([2, 5], rng.uniform(count: 10, -3, 0))
        let refLogProbs = Tensor.make([2, 5], rng.uniform(count: 10, -3, 0))
        let mask = intMatrix([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        let rewards = try computeRewards(logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: vector([0, 0]),
                                         actionMask: mask, promptLength: 2, klCtl: 0.25, clipRewardValue: 5)
        let expected = (0..<10).map { -0.25 * (logProbs.scalars[$0] - refLogProbs.scalars[$0]) }
        expectClose(rewards, expected, "rewards with a zero score")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 4], repeating: 0)
        let mask = Tensor<Int64>(shape: [2, 4], repeating: 1)
        func run(_ logProbs: Tensor<Double> = x, _ ref: Tensor<Double> = x, _ score: Tensor<Double> = vector([0, 0]),
                 _ m: Tensor<Int64> = mask, promptLength: Int = 2) throws -> Tensor<Double> {
            try computeRewards(logProbs: logProbs, refLogProbs: ref, rewardScore: score, actionMask: m,
                               promptLength: promptLength, klCtl: 0.1, clipRewardValue: 5)
        }
        expectStageError(.shapeMismatch, argument: "ref_log_probs") { try run(x, Tensor(shape: [2, 3], repeating: 0)) }
        expectStageError(.shapeMismatch, argument: "reward_score") { try run(x, x, vector([0, 0, 0])) }
        expectStageError(.shapeMismatch, argument: "action_mask") { try run(x, x, vector([0, 0]), Tensor(shape: [2, 5], repeating: 1)) }
        expectStageError(.invalidMask, argument: "action_mask") { try run(x, x, vector([0, 0]), intMatrix([[1, 2, 1, 1], [1, 1, 1, 1]])) }
        expectStageError(.parameterOutOfRange, argument: "prompt_length") { try run(promptLength: 5) }
        expectStageError(.parameterOutOfRange, argument: "prompt_length") { try run(promptLength: 0) }
        expectStageError(.notANumber, argument: "reward_score") { try run(x, x, vector([0, .nan])) }
        // prompt_length = N is the last one allowed: start = N - 1, one answer position.
        #expect(throws: Never.self) { try run(promptLength: 4) }
    }
}

@Suite("compute_rewards: infinite inputs")
struct ComputeRewardsInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `shaped_rewards` (GoldenData/generator/stages/compute_rewards.py) on the same
    // inputs. N = 4, start = 1; row 0's score lands at 3, row 1's at N - 1 = 3.
    static let mask = intMatrix([[1, 1, 1, 0], [1, 1, 1, 1]])
    static let flat = matrix([[-1, -1, -1, -1], [-1, -1, -1, -1]])

    @Test("an infinite log-prob gives an infinite KL term; an infinite score is clipped")
    func infiniteInputs() throws {
        let rewards = try computeRewards(logProbs: matrix([[-1, -.infinity, -1, -1], [-1, -1, -1, -1]]),
                                         refLogProbs: matrix([[-1, -1, -1, -.infinity], [-1, -1, -1, -1]]),
                                         rewardScore: vector([.infinity, -.infinity]), actionMask: Self.mask,
                                         promptLength: 2, klCtl: 0.5, clipRewardValue: 2)
        expectClose(rewards, [0, .infinity, 0, -.infinity, 0, 0, 0, -2], "rewards")
    }

    @Test("inf - inf or kl_ctl = 0 times inf: PyTorch's reward is NaN, a nonFiniteResult")
    func nanRewards() throws {
        let infinite = matrix([[-1, -.infinity, -1, -1], [-1, -1, -1, -1]])
        expectStageError(.nonFiniteResult, argument: "rewards") {
            try computeRewards(logProbs: infinite, refLogProbs: infinite, rewardScore: vector([1, 1]),
                               actionMask: Self.mask, promptLength: 2, klCtl: 0.5, clipRewardValue: 2)
        }
        expectStageError(.nonFiniteResult, argument: "rewards") {
            try computeRewards(logProbs: infinite, refLogProbs: Self.flat, rewardScore: vector([1, 1]),
                               actionMask: Self.mask, promptLength: 2, klCtl: 0, clipRewardValue: 2)
        }
        // Without its last check the NaN is there, for ppo_losses to zero or refuse.
        let unchecked = try computeRewardsWithoutResultCheck(
            logProbs: infinite, refLogProbs: Self.flat, rewardScore: vector([1, 1]), actionMask: Self.mask,
            promptLength: 2, klCtl: 0, clipRewardValue: 2)
        #expect(unchecked[0, 1].isNaN)
    }
}
