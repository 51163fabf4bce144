import TensorCore
import RewardsKLFirstPad

/// `rewards_kl_first_pad`: TRL PPO's rollout from the responses to the per-token
/// rewards (truncation, first-pad lengths, EOS penalty, fills, KL, score, whitening).
public enum RewardsKLFirstPadStage: StageAdapter {
    /// The params of TRL's rollout, with TRL's defaults; `ppo_losses_joint_whitened` takes them too.
    static let rolloutParams: [ParamDeclaration] = [
        .int("pad_token_id"), .int("eos_token_id"), .optionalInt("stop_token_id"), .optionalReal("missing_eos_penalty"),
        .real("kl_coef", default: 0.05), .string("kl_estimator", default: "k1"), .bool("whiten_rewards", default: false),
    ]
    /// The rollout's input tensors; `ppo_losses_joint_whitened` takes them too.
    static let rolloutInputs: [InputDeclaration] = [
        .ids("responses"), .float("logprobs"), .float("ref_logprobs"), .float("values"), .float("scores"),
    ]

    public static let declaration = StageDeclaration(
        name: "rewards_kl_first_pad", module: "RewardsKLFirstPad",
        function: "rewardsKLFirstPad(responses:logprobs:refLogprobs:values:scores:padTokenId:eosTokenId:stopTokenId:missingEOSPenalty:klCoef:klEstimator:whitenRewards:)",
        peer: "TRL trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train (rollout steps Response Processing 1-3, 4. compute rewards, 5. whiten rewards)",
        params: rolloutParams,
        inputs: rolloutInputs,
        outputs: ["sequence_lengths", "padding_mask", "padding_mask_p1", "penalized_scores", "kl", "non_score_reward",
                  "rewards", "masked_values"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try rewardsKLFirstPad(
            responses: a.ids("responses"), logprobs: a.float("logprobs"), refLogprobs: a.float("ref_logprobs"),
            values: a.float("values"), scores: a.float("scores"), padTokenId: a.int("pad_token_id"),
            eosTokenId: a.int("eos_token_id"), stopTokenId: a.optionalInt("stop_token_id"),
            missingEOSPenalty: a.optionalReal("missing_eos_penalty"), klCoef: a.real("kl_coef"),
            klEstimator: KLEstimator(named: a.string("kl_estimator"), stage: declaration.name),
            whitenRewards: a.bool("whiten_rewards"))
        return rolloutOutputs(result).filter { declaration.outputs.contains($0.key) }
    }

    /// The rollout's outputs by their fixture names.
    static func rolloutOutputs<T: FloatScalar>(_ result: RewardsKLFirstPadResult<T>) -> [String: FixtureTensor] {
        ["sequence_lengths": .int64(result.sequenceLengths), "padding_mask": .bool(result.paddingMask),
         "padding_mask_p1": .bool(result.paddingMaskP1), "penalized_scores": FixtureTensor(result.penalizedScores),
         "kl": FixtureTensor(result.kl), "non_score_reward": FixtureTensor(result.nonScoreReward),
         "rewards": FixtureTensor(result.rewards), "masked_values": FixtureTensor(result.maskedValues)]
    }
}
