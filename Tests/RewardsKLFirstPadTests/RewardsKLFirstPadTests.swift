import Foundation
import Testing
import TensorCore
import TestSupport
@testable import RewardsKLFirstPad

/// rewardsKLFirstPad with the test's usual settings; each test overrides what it is about.
private func rollout(
    _ responses: [[Int64]], logprobs: Tensor<Double>? = nil, refLogprobs: Tensor<Double>? = nil,
    values: Tensor<Double>? = nil, scores: [Double]? = nil, pad: Int = 0, eos: Int = 2, stop: Int? = nil,
    penalty: Double? = nil, klCoef: Double = 0.05, estimator: KLEstimator = .k1, whiten: Bool = false
) throws(StageError) -> RewardsKLFirstPadResult<Double> {
    let ids = intMatrix(responses)
    let zeros = Tensor<Double>(shape: ids.shape, repeating: 0)
    return try rewardsKLFirstPad(
        responses: ids, logprobs: logprobs ?? zeros, refLogprobs: refLogprobs ?? zeros, values: values ?? zeros,
        scores: vector(scores ?? [Double](repeating: 1, count: responses.count)), padTokenId: pad, eosTokenId: eos,
        stopTokenId: stop, missingEOSPenalty: penalty, klCoef: klCoef, klEstimator: estimator, whitenRewards: whiten)
}

@Suite("rewards_kl_first_pad")
struct RewardsKLFirstPadTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "rewards_kl_first_pad", minimum: 10)
    }

    @Test("the TRL PPO toy of peer-conventions §11: rewards -0.01, 0.02, -0.03, 1.0, 0")
    func peerToy() throws {
        // Three response tokens, then two pads (pad 0, no EOS, no penalty). d = logprob - ref
        // = 0.1, -0.2, 0.3 on the tokens (0.5, -0.4 at the pads, filled away). kl_coef 0.1, score 1.
        //   sequence_lengths = first pad (3) - 1 = 2;  j* = 3
        //   k1: kl = -(ref - logprob) = d = 0.1, -0.2, 0.3;  then 0, 0 (both log-probs filled with 1.0)
        //   rewards = -0.1 · kl = -0.01, 0.02, -0.03;  + score at j = 3: 0 + 1 = 1;  0
        //   masked_values: V = 0.5, 0.4, 0.3, 0.2, 0.1 with 0 where j > 3: 0.5, 0.4, 0.3, 0.2, 0
        let result = try rollout([[5, 6, 7, 0, 0]], logprobs: matrix([[0.1, -0.2, 0.3, 0.5, -0.4]]),
                                 values: matrix([[0.5, 0.4, 0.3, 0.2, 0.1]]), klCoef: 0.1)
        #expect(result.sequenceLengths.scalars == [2])
        #expect(result.paddingMask.scalars == [false, false, false, true, true])
        #expect(result.paddingMaskP1.scalars == [false, false, false, false, true])
        #expect(result.scorePositions == [3])
        expectClose(result.kl, [0.1, -0.2, 0.3, 0, 0], "kl")
        expectClose(result.rewards, [-0.01, 0.02, -0.03, 1.0, 0], "rewards")
        expectClose(result.maskedValues, [0.5, 0.4, 0.3, 0.2, 0], "masked_values")
        #expect(result.filledLogprobs.scalars[3...] == [1.0, 1.0])
    }

    @Test("k3 by hand: (e^logr - 1) - logr")
    func k3() throws {
        // logr = ref - logprob = ln 2: (2 - 1) - ln 2 = 0.30685281944005469;
        // logr = -ln 2: (0.5 - 1) + ln 2 = 0.19314718055994531. The pad at j = 2: 0.
        let result = try rollout([[5, 6, 0]], logprobs: matrix([[0, log(2.0), 0.7]]),
                                 refLogprobs: matrix([[log(2.0), 0, -3]]), estimator: .k3)
        expectClose(result.kl, [0.30685281944005469, 0.19314718055994531, 0], "kl")
    }

    @Test("pad == eos: the length stops before the EOS, the score lands on it, padding counts as holding an EOS")
    func padIsEOS() throws {
        // Row 0: 5, EOS=pad, pad, pad -> sequence_lengths 0, score at 1, holds an EOS: no penalty.
        // Row 1: 5, 6, 7, 8 (no pad, no EOS) -> sequence_lengths 3, score at 3 (= T - 1), penalized: 1 - 0.5.
        let result = try rollout([[5, 2, 2, 2], [5, 6, 7, 8]], pad: 2, eos: 2, penalty: 0.5)
        #expect(result.sequenceLengths.scalars == [0, 3])
        #expect(result.scorePositions == [1, 3])
        expectClose(result.penalizedScores, [1, 0.5], "penalized_scores")
        expectClose(result.rewards, [0, 1, 0, 0, 0, 0, 0, 0.5], "rewards")
    }

    @Test("the stop token truncates, and the missing-EOS test still looks for eos_token_id")
    func stopToken() throws {
        // stop 9, eos 2, pad 0: 5 9 7 2 0 -> R = 5 9 0 0 0: the EOS is gone, so the row is penalized;
        // sequence_lengths 1 (the stop token is kept), score at 2.
        // 4 2 9 3 0 -> R = 4 2 9 0 0: the EOS survives; sequence_lengths 2, score at 3.
        let result = try rollout([[5, 9, 7, 2, 0], [4, 2, 9, 3, 0]], scores: [3, 3], stop: 9, penalty: 1)
        #expect(result.lengths.truncatedResponses.scalars == [5, 9, 0, 0, 0, 4, 2, 9, 0, 0])
        #expect(result.sequenceLengths.scalars == [1, 2])
        expectClose(result.penalizedScores, [2, 3], "penalized_scores")
        #expect(result.scorePositions == [2, 3])
    }

    @Test("an empty row: sequence_lengths -1, every position padded, the score at 0")
    func emptyRow() throws {
        let result = try rollout([[0, 0, 0], [7, 0, 0]], values: matrix([[4, 5, 6], [1, 2, 3]]))
        #expect(result.sequenceLengths.scalars == [-1, 0])
        #expect(result.paddingMask.scalars == [true, true, true, false, true, true])
        #expect(result.paddingMaskP1.scalars == [false, true, true, false, false, true])
        #expect(result.scorePositions == [0, 1])
        expectClose(result.maskedValues, [4, 0, 0, 1, 2, 0], "masked_values")
    }

    @Test("invariants: kl is exactly 0 under padding; whitening keeps the mean over ¬padding_mask_p1 and zeroes the rest")
    func invariants() throws {
        var rng = SplitMix64(seed: 17)
        let responses: [[Int64]] = [[3, 4, 2, 0, 0, 0], [5, 5, 5, 5, 2, 0], [0, 0, 0, 0, 0, 0]]
        let logprobs = Tensor.make([3, 6], rng.uniform(count: 18, -4, 0))
        let refLogprobs = Tensor.make([3, 6], rng.uniform(count: 18, -4, 0))
        for estimator in KLEstimator.allCases {
            let plain = try rollout(responses, logprobs: logprobs, refLogprobs: refLogprobs, scores: [1, -2, 0.5],
                                    estimator: estimator)
            for i in 0..<18 where plain.paddingMask.scalars[i] {
                #expect(plain.kl.scalars[i] == 0 && plain.nonScoreReward.scalars[i] == 0)
            }
            let whitened = try rollout(responses, logprobs: logprobs, refLogprobs: refLogprobs, scores: [1, -2, 0.5],
                                       estimator: estimator, whiten: true)
            let kept = (0..<18).filter { !plain.paddingMaskP1.scalars[$0] }
            let before = kept.reduce(0.0) { $0 + plain.rewards.scalars[$1] } / Double(kept.count)
            let after = kept.reduce(0.0) { $0 + whitened.rewards.scalars[$1] } / Double(kept.count)
            expectClose(after, before, abs: 1e-14, rel: 1e-12, "mean of the whitened rewards (\(estimator))")
            for i in 0..<18 where plain.paddingMaskP1.scalars[i] {
                #expect(whitened.rewards.scalars[i] == 0)
            }
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        expectStageError(.parameterOutOfRange, argument: "kl_estimator") {
            try KLEstimator(named: "k2", stage: "rewards_kl_first_pad")
        }
        // One position in ¬padding_mask_p1 (an empty row of one batch): nothing to whiten over.
        expectStageError(.emptyMask, argument: "whiten_rewards") { try rollout([[0, 0, 0]], whiten: true) }
        expectStageError(.shapeMismatch, argument: "logprobs") {
            try rollout([[3, 0]], logprobs: Tensor(shape: [1, 3], repeating: 0))
        }
        expectStageError(.shapeMismatch, argument: "scores") { try rollout([[3, 0]], scores: [1, 2]) }
        expectStageError(.shapeMismatch, argument: "responses") { try rollout([[], []]) }
        // NaN at a padded position, which the 1.0 fill would hide.
        expectStageError(.notANumber, argument: "ref_logprobs") {
            try rollout([[3, 0]], refLogprobs: matrix([[0, .nan]]))
        }
        expectStageError(.parameterOutOfRange, argument: "kl_coef") { try rollout([[3, 0]], klCoef: .infinity) }
        // Infinite log-probs at a response position: ∞ - ∞ in logr.
        expectStageError(.nonFiniteResult, argument: "kl") {
            try rollout([[3, 0]], logprobs: matrix([[.infinity, 0]]), refLogprobs: matrix([[.infinity, 0]]))
        }
    }
}
