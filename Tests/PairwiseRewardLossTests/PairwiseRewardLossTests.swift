import Foundation
import Testing
import TensorCore
import TestSupport
@testable import PairwiseRewardLoss

/// -log σ(x) = log(1 + e^-x), written out for hand-checked expectations.
private func minusLogSigmoid(_ x: Double) -> Double { log(1 + exp(-x)) }

@Suite("reward_pairwise_loss")
struct PairwiseRewardLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "reward_pairwise_loss")
    }

    @Test("one pair by hand: the window runs from the first difference to the later end")
    func onePairByHand() throws {
        // pad 0, no padding at the beginning.
        // chosen   [1, 5, 6, 0]  -> ends at 3 (first pad)
        // rejected [1, 7, 0, 0]  -> ends at 2
        // They differ first at 1, so the window is [1, max(3, 2)) = [1, 3).
        let ids = intMatrix([[1, 5, 6, 0], [1, 7, 0, 0]])
        let rewards = matrix([[0, 1, 2, 3], [0, 1, 0, 5]])
        let result = try pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: 0, numPaddingAtBeginning: 0)
        // t = 1: 1 - 1 = 0 -> ln 2;  t = 2: 2 - 0 = 2 -> log(1 + e^-2)
        expectClose(result.loss, (log(2.0) + minusLogSigmoid(2)) / 2, "loss")
        #expect(result.divergenceIndices == [1])
        #expect(result.endIndices == [3])
        expectClose(result.chosenMeanScores, [2], "chosen score at index 3 - 1")
        expectClose(result.rejectedMeanScores, [1], "rejected score at index 2 - 1")
    }

    @Test("num_padding_at_beginning = 1 skips OPT's BOS, which has the pad id")
    func optPaddingRule() throws {
        // pad = 2 = OPT's BOS id. chosen [2, 5, 6, 2, 2]: the 2nd pad is at 3.
        // rejected [2, 5, 8, 9, 2]: the 2nd pad is at 4.
        let ids = intMatrix([[2, 5, 6, 2, 2], [2, 5, 8, 9, 2]])
        let rewards = matrix([[0, 0, 1, 4, 4], [0, 0, 0.5, 3, 9]])
        let result = try pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: 2, numPaddingAtBeginning: 1)
        // window [2, max(3, 4)) = [2, 4): differences 0.5 and 1.
        expectClose(result.loss, (minusLogSigmoid(0.5) + minusLogSigmoid(1)) / 2, "loss")
        expectClose(result.chosenMeanScores, [1], "chosen end score (index 2)")
        expectClose(result.rejectedMeanScores, [3], "rejected end score (index 3)")
        // With k = 0 the BOS itself would end both rows at 0, leaving no window.
        expectStageError(.invalidPair, argument: "input_ids") {
            try pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: 2, numPaddingAtBeginning: 0)
        }
    }

    @Test("an identical pair scores only the last position: ln 2 with equal rewards")
    func identicalPair() throws {
        let ids = intMatrix([[1, 4, 4, 0], [1, 4, 4, 0]])
        let rewards = matrix([[0.3, 0.1, 0.9, 0.2], [0.3, 0.1, 0.9, 0.2]])
        let result = try pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: 0, numPaddingAtBeginning: 0)
        expectClose(result.loss, log(2.0), "loss")
        #expect(result.divergenceIndices == [3] && result.endIndices == [4])
        // Both scores come from the chosen end (index 3 - 1 = 2).
        expectClose(result.chosenMeanScores, [0.9], "chosen")
        expectClose(result.rejectedMeanScores, [0.9], "rejected")
    }

    @Test("Python's index -1: a row that ends at 0 is scored at its last position")
    func pythonNegativeIndex() throws {
        // Identical rows starting with the pad id and k = 0: c_end = 0, score at -1.
        let ids = intMatrix([[0, 3, 4], [0, 3, 4]])
        let rewards = matrix([[0.5, 0.6, 0.7], [0.5, 0.6, -0.7]])
        let result = try pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: 0, numPaddingAtBeginning: 0)
        expectClose(result.chosenMeanScores, [0.7], "chosen at index -1 = 2")
        expectClose(result.rejectedMeanScores, [-0.7], "rejected at index -1 = 2")
        expectClose(result.loss, minusLogSigmoid(1.4), "loss at the last position")
    }

    @Test("reward gaps of +-800 stay finite: 800 and ~0")
    func largeGaps() throws {
        let ids = intMatrix([[1, 5, 0], [1, 6, 0], [1, 7, 0], [1, 8, 0]])
        let rewards = matrix([[0, -400, 0], [0, 400, 0], [0, 400, 0], [0, -400, 0]])
        let result = try pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: 0, numPaddingAtBeginning: 0)
        // pair 0: chosen - rejected = -800 -> 800; pair 1: +800 -> e^-800 ~ 0.
        expectClose(result.pairLosses, [800, 0], abs: 1e-300, rel: 1e-15, "pair losses")
        expectClose(result.loss, 400, "loss")
        let result32 = try pairwiseRewardLoss(inputIds: ids, rewards: rewards.converted(to: Float.self), padId: 0, numPaddingAtBeginning: 0)
        expectClose(result32.loss, 400, abs: 0, rel: 1e-6, "float32 loss")
    }

    @Test("the loss is a mean over pairs of per-pair window means")
    func meanOverPairs() throws {
        // Pair 0 has a window of 1 token, pair 1 of 2 tokens.
        let ids = intMatrix([[1, 5, 0], [1, 5, 6], [1, 7, 0], [1, 8, 9]])
        let rewards = matrix([[0, 1, 0], [0, 2, 2], [0, 0, 0], [0, 0, 1]])
        let result = try pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: 0, numPaddingAtBeginning: 0)
        let pair0 = minusLogSigmoid(1)
        let pair1 = (minusLogSigmoid(2) + minusLogSigmoid(1)) / 2
        expectClose(result.loss, (pair0 + pair1) / 2, "loss")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let rewards = Tensor<Double>(shape: [3, 4], repeating: 0)
        expectStageError(.invalidPair, argument: "input_ids") {
            try pairwiseRewardLoss(inputIds: Tensor<Int64>(shape: [3, 4], repeating: 1), rewards: rewards, padId: 0, numPaddingAtBeginning: 0)
        }
        expectStageError(.invalidPair, argument: "input_ids") {
            try pairwiseRewardLoss(inputIds: intMatrix([[1, 2, 0], [3, 2, 0]]), rewards: matrix([[0, 0, 0], [0, 0, 0]]),
                                   padId: 0, numPaddingAtBeginning: 0)
        }
        expectStageError(.shapeMismatch, argument: "rewards") {
            try pairwiseRewardLoss(inputIds: intMatrix([[1, 2, 0], [1, 3, 0]]), rewards: matrix([[0, 0], [0, 0]]),
                                   padId: 0, numPaddingAtBeginning: 0)
        }
        expectStageError(.notANumber, argument: "rewards") {
            try pairwiseRewardLoss(inputIds: intMatrix([[1, 2, 0], [1, 3, 0]]), rewards: matrix([[0, .nan, 0], [0, 0, 0]]),
                                   padId: 0, numPaddingAtBeginning: 0)
        }
    }
}

@Suite("reward_end_scores")
struct RewardEndScoresTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "reward_end_scores")
    }

    @Test("the seed article's example: end scores 0.7 and 0.8")
    func articleExample() throws {
        // shared/seeds/000_699b68a8a39f82f2.txt, Step 2: pad 0, the last real tokens
        // are 103 and 102 at index 3.
        let ids = intMatrix([[101, 2009, 2003, 103, 0, 0], [101, 1996, 3075, 102, 0, 0]])
        let values = matrix([[0.1, 0.3, 0.5, 0.7, -0.2, -0.2], [0.2, 0.4, 0.6, 0.8, -0.1, -0.1]])
        let scores = try rewardEndScores(inputIds: ids, values: values, padId: 0, promptLength: 2)
        expectClose(scores, [0.7, 0.8], abs: 0, rel: 0, "end_scores")
    }

    @Test("left padding inside the prompt is ignored; a full row is scored at L - 1")
    func leftPaddingAndFullRows() throws {
        // Row 0: prompt [0, 0, 5] (two left pads), answer [6, 7, 0]: ends at 5.
        // Row 1: no pad after the prompt: scored at L - 1 = 5.
        let ids = intMatrix([[0, 0, 5, 6, 7, 0], [4, 4, 5, 6, 7, 8]])
        let values = matrix([[9, 9, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6]])
        let scores = try rewardEndScores(inputIds: ids, values: values, padId: 0, promptLength: 3)
        expectClose(scores, [3, 6], abs: 0, rel: 0, "end_scores")
        // The same answer without the left pads scores the same.
        let unpadded = try rewardEndScores(inputIds: intMatrix([[5, 6, 7, 0]]), values: matrix([[1, 2, 3, 4]]),
                                           padId: 0, promptLength: 2)
        #expect(unpadded.scalars == [3])
    }

    @Test("prompt_length must be >= 2 and leave an answer position")
    func errors() throws {
        let ids = intMatrix([[1, 2, 3, 0]])
        let values = matrix([[0, 0, 0, 0]])
        expectStageError(.parameterOutOfRange, argument: "prompt_length") {
            try rewardEndScores(inputIds: ids, values: values, padId: 0, promptLength: 1)
        }
        expectStageError(.parameterOutOfRange, argument: "prompt_length") {
            try rewardEndScores(inputIds: ids, values: values, padId: 0, promptLength: 4)
        }
        expectStageError(.shapeMismatch, argument: "values") {
            try rewardEndScores(inputIds: ids, values: matrix([[0, 0, 0]]), padId: 0, promptLength: 2)
        }
        expectStageError(.notANumber, argument: "values") {
            try rewardEndScores(inputIds: ids, values: matrix([[0, 0, .nan, 0]]), padId: 0, promptLength: 2)
        }
    }
}

@Suite("reward_pairwise_loss backward")
struct PairwiseRewardLossBackwardTests {
    // Pair 0: window [1, 3); pair 1: window [2, 5) (the rejected row has no pad: its end is L).
    static let ids = intMatrix([[1, 5, 6, 0, 0], [1, 2, 3, 4, 0], [1, 7, 0, 0, 0], [1, 2, 9, 9, 9]])

    @Test("grad_rewards equals central differences of the loss")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 41)
        let x = rng.uniform(count: 20, -2, 2)
        let grad = try pairwiseRewardLossGradRewards(inputIds: Self.ids, rewards: Tensor.make([4, 5], x), padId: 0,
                                                     numPaddingAtBeginning: 0)
        let numeric = try centralDifferenceGradient(at: x) { probe in
            Double(try pairwiseRewardLoss(inputIds: Self.ids, rewards: Tensor.make([4, 5], probe), padId: 0,
                                          numPaddingAtBeginning: 0).loss)
        }
        expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_rewards vs finite differences")
    }

    @Test("zero outside each window; a pair's chosen and rejected gradients cancel; equal rewards give ±1/(2·B·|W|)")
    func invariants() throws {
        let grad = try pairwiseRewardLossGradRewards(inputIds: Self.ids, rewards: Tensor<Double>(shape: [4, 5], repeating: 0.5),
                                                     padId: 0, numPaddingAtBeginning: 0)
        // B = 2. Pair 0: |W| = 2, σ(0) / (2 · 2) = 1/8. Pair 1: |W| = 3, σ(0) / (2 · 3) = 1/12.
        let (e, f) = (0.125, 1.0 / 12)
        expectClose(grad, [0, -e, -e, 0, 0,
                           0, 0, -f, -f, -f,
                           0, e, e, 0, 0,
                           0, 0, f, f, f], abs: 1e-17, rel: 0, "grad_rewards with equal rewards")
    }
}

@Suite("reward_pairwise_loss and reward_end_scores: infinite inputs")
struct RewardInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `reward_pairwise_loss` and `reward_end_scores` (GoldenData/generator/stages/)
    // and autograd, on the same inputs. OPT-style ids (pad 2, one pad skipped):
    // chosen ends at 4, rejected at 3, they differ from 2 on: the window is [2, 4).
    static let ids = intMatrix([[2, 5, 6, 7, 2], [2, 5, 8, 2, 2]])

    @Test("infinities outside the window are never read; a gap of +inf adds 0, of -inf adds +inf")
    func infiniteRewards() throws {
        let rewards = matrix([[.infinity, 0.5, .infinity, 1, 0], [0, -.infinity, 0, 1, -.infinity]])
        let result = try pairwiseRewardLoss(inputIds: Self.ids, rewards: rewards, padId: 2, numPaddingAtBeginning: 1)
        expectClose(result.loss, 0.34657359027997264, "loss")  // (0 + ln 2) / 2
        expectClose(result.chosenMeanScores, [1], "chosen_mean_scores")
        expectClose(result.rejectedMeanScores, [0], "rejected_mean_scores")
        let grad = try pairwiseRewardLossGradRewards(inputIds: Self.ids, rewards: rewards, padId: 2,
                                                     numPaddingAtBeginning: 1)
        expectClose(grad, [0, 0, 0, -0.25, 0, 0, 0, 0, 0.25, 0], "grad_rewards")

        let worse = matrix([[0, 0, -.infinity, 1, 0], [0, 0, 0, 1, 0]])
        let lost = try pairwiseRewardLoss(inputIds: Self.ids, rewards: worse, padId: 2, numPaddingAtBeginning: 1)
        expectClose(lost.loss, .infinity, "loss")
        let lostGrad = try pairwiseRewardLossGradRewards(inputIds: Self.ids, rewards: worse, padId: 2,
                                                         numPaddingAtBeginning: 1)
        expectClose(lostGrad, [0, 0, -0.5, -0.25, 0, 0, 0, 0.5, 0.25, 0], "grad_rewards")
    }

    @Test("the same infinity on both sides of the window: PyTorch's loss is NaN, a nonFiniteResult")
    func nanLoss() throws {
        let rewards = matrix([[0, 0, 0, .infinity, 0], [0, 0, 0, .infinity, 0]])
        expectStageError(.nonFiniteResult, argument: "loss") {
            try pairwiseRewardLoss(inputIds: Self.ids, rewards: rewards, padId: 2, numPaddingAtBeginning: 1)
        }
        expectStageError(.nonFiniteResult, argument: "loss") {
            try pairwiseRewardLossGradRewards(inputIds: Self.ids, rewards: rewards, padId: 2, numPaddingAtBeginning: 1)
        }
    }

    @Test("an end score is the value as it is, infinite or not")
    func infiniteEndScores() throws {
        let scores = try rewardEndScores(inputIds: intMatrix([[5, 6, 7, 0], [5, 6, 7, 8]]),
                                         values: matrix([[.infinity, 1, -.infinity, 0.5], [0, 1, 2, .infinity]]),
                                         padId: 0, promptLength: 2)
        expectClose(scores, [-.infinity, .infinity], "end_scores")
    }
}
