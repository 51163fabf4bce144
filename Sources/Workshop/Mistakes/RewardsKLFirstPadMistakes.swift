import TensorCore
import Golden
import RewardsKLFirstPad

/// The well-known wrong TRL PPO rollout rewards.
enum RewardsKLFirstPadMistakes {
    static let chapter = "Chapters/12-three-ppo-steps"

    static let entry = StageMistakes(stage: "rewards_kl_first_pad", mistakes: [scoreOnLastResponseToken, logRatioUpsideDown])

    /// The library's rollout on the fixture's arguments, with the two log-probs given.
    static func rollout(_ a: FixtureArguments<Double>, logprobs: Tensor<Double>, refLogprobs: Tensor<Double>) throws
        -> RewardsKLFirstPadResult<Double> {
        try rewardsKLFirstPad(
            responses: a.ids("responses"), logprobs: logprobs, refLogprobs: refLogprobs, values: a.float("values"),
            scores: a.float("scores"), padTokenId: a.int("pad_token_id"), eosTokenId: a.int("eos_token_id"),
            stopTokenId: a.optionalInt("stop_token_id"), missingEOSPenalty: a.optionalReal("missing_eos_penalty"),
            klCoef: a.real("kl_coef"), klEstimator: KLEstimator(named: a.string("kl_estimator"), stage: "rewards_kl_first_pad"),
            whitenRewards: a.bool("whiten_rewards"))
    }

    static let scoreOnLastResponseToken = Mistake(
        id: "rewards_kl_first_pad.score-on-last-response-token", stage: "rewards_kl_first_pad", chapter: chapter,
        title: "the score on the last response token instead of the first pad after it",
        explanation: "TRL's PPO adds the score at sequence_lengths + 1, one past the response: the first pad (with pad == eos, the EOS itself). OpenRLHF and align-anything put it on the last response token; in TRL's coordinates that moves it one position left.") { a in
        guard !(try a.bool("whiten_rewards")) else {
            throw StageError(.parameterOutOfRange, stage: "rewards_kl_first_pad", argument: "whiten_rewards",
                             "the mistake is written for unwhitened rewards")
        }
        let result = try rollout(a, logprobs: a.float("logprobs"), refLogprobs: a.float("ref_logprobs"))
        var rewards = result.rewards
        let width = rewards.shape[1]
        for b in 0..<rewards.shape[0] {
            let s = Int(result.sequenceLengths.scalars[b])
            let right = s + 1 < width ? s + 1 : max(s, 0), wrong = max(s, 0)
            rewards.scalars[b * width + right] -= result.penalizedScores.scalars[b]
            rewards.scalars[b * width + wrong] += result.penalizedScores.scalars[b]
        }
        return ["rewards": FixtureTensor(rewards)]
    }

    static let logRatioUpsideDown = Mistake(
        id: "rewards_kl_first_pad.log-ratio-upside-down", stage: "rewards_kl_first_pad", chapter: chapter,
        title: "logr = logprobs - ref_logprobs: the log-ratio the wrong way round",
        explanation: "TRL forms logr = ref_logprobs - logprobs and kl = -logr (k1) or e^logr - 1 - logr (k3), so the penalty -kl_coef·kl punishes a policy more confident than the reference. Taken the other way round, k1 rewards drifting away and k3 measures the other direction's divergence.") { a in
        // The same rollout with the two log-probs swapped: logr changes sign.
        let result = try rollout(a, logprobs: a.float("ref_logprobs"), refLogprobs: a.float("logprobs"))
        return ["kl": FixtureTensor(result.kl), "non_score_reward": FixtureTensor(result.nonScoreReward),
                "rewards": FixtureTensor(result.rewards)]
    }
}
