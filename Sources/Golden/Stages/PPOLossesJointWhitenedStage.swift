import TensorCore
import RewardsKLFirstPad
import PPOLossesJointWhitened

/// `ppo_losses_joint_whitened`: one TRL PPO update (rollout, GAE, whitened
/// advantages, the joint policy + value loss, the logged statistics) and its
/// gradients with respect to the policy's logits and the value head.
public enum PPOLossesJointWhitenedStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "ppo_losses_joint_whitened", module: "PPOLossesJointWhitened",
        function: "ppoLossesJointWhitened(responses:logprobs:refLogprobs:values:scores:newLogits:newValues:...), ppoLossesJointWhitenedGradients(_:)",
        peer: "TRL trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train (rollout steps 1-6 and one micro-batch, data flow)",
        params: RewardsKLFirstPadStage.rolloutParams + [
            .real("gamma", default: 1.0), .real("lam", default: 0.95), .real("cliprange", default: 0.2),
            .real("cliprange_value", default: 0.2), .real("vf_coef", default: 0.1), .real("temperature", default: 0.7),
        ],
        inputs: RewardsKLFirstPadStage.rolloutInputs + [.float("new_logits"), .float("new_values")],
        outputs: ["sequence_lengths", "padding_mask", "padding_mask_p1", "penalized_scores", "kl", "rewards",
                  "masked_values", "advantages", "returns", "pg_loss", "vf_loss", "loss", "pg_clipfrac", "vf_clipfrac",
                  "approxkl", "policy_entropy", "ratio_mean", "objective_kl", "objective_entropy",
                  "objective_non_score_reward", "objective_rlhf_reward", "objective_scores", "num_eos_tokens",
                  "grad_new_logits", "grad_new_values"])

    /// The forward pass on a fixture's arguments, with every intermediate (for `run` and the tests).
    public static func forward<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> PPOLossesJointWhitenedResult<T> {
        try ppoLossesJointWhitened(
            responses: a.ids("responses"), logprobs: a.float("logprobs"), refLogprobs: a.float("ref_logprobs"),
            values: a.float("values"), scores: a.float("scores"), newLogits: a.float("new_logits"),
            newValues: a.float("new_values"), padTokenId: a.int("pad_token_id"), eosTokenId: a.int("eos_token_id"),
            stopTokenId: a.optionalInt("stop_token_id"), missingEOSPenalty: a.optionalReal("missing_eos_penalty"),
            klCoef: a.real("kl_coef"), klEstimator: KLEstimator(named: a.string("kl_estimator"), stage: declaration.name),
            whitenRewards: a.bool("whiten_rewards"), gamma: a.real("gamma"), lam: a.real("lam"),
            cliprange: a.real("cliprange"), cliprangeValue: a.real("cliprange_value"), vfCoef: a.real("vf_coef"),
            temperature: a.real("temperature"))
    }

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try forward(a)
        let gradients = try ppoLossesJointWhitenedGradients(result)
        var outputs = RewardsKLFirstPadStage.rolloutOutputs(result.rollout)
        outputs["non_score_reward"] = nil
        let scalars: [(String, T)] = [
            ("pg_loss", result.pgLoss), ("vf_loss", result.vfLoss), ("loss", result.loss),
            ("pg_clipfrac", result.pgClipfrac), ("vf_clipfrac", result.vfClipfrac), ("approxkl", result.approxkl),
            ("policy_entropy", result.policyEntropy), ("ratio_mean", result.ratioMean),
            ("objective_kl", result.objectiveKL), ("objective_entropy", result.objectiveEntropy),
            ("objective_non_score_reward", result.objectiveNonScoreReward),
            ("objective_rlhf_reward", result.objectiveRLHFReward), ("objective_scores", result.objectiveScores),
        ]
        for (name, value) in scalars {
            outputs[name] = FixtureTensor(scalar: value)
        }
        outputs["advantages"] = FixtureTensor(result.advantages)
        outputs["returns"] = FixtureTensor(result.returns)
        outputs["num_eos_tokens"] = .int64(Tensor(scalar: Int64(result.numEOSTokens)))
        outputs["grad_new_logits"] = FixtureTensor(gradients.gradNewLogits)
        outputs["grad_new_values"] = FixtureTensor(gradients.gradNewValues)
        return outputs
    }
}
