import TensorCore
import PPOLossesSeqMean

/// `ppo_losses_seq_mean`: the data flow of one align-anything `rl_step`, with the
/// actor and critic forwards replaced by given tensors, its logged statistics and
/// the two losses' gradients.
public enum PPOLossesSeqMeanStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "ppo_losses_seq_mean", module: "PPOLossesSeqMean",
        function: "ppoLossesSeqMean(attentionMask:logProbs:refLogProbs:rewardValues:newLogProbs:newValues:reward:...)",
        peer: "align-anything align_anything/trainers/text_to_text/ppo.py :: PPOTrainer.rl_step (data flow)",
        params: [.int("prompt_length"), .real("kl_coeff", default: 0.02), .real("clip_range_score", default: 50.0),
                 .real("clip_range_ratio", default: 0.2), .real("clip_range_value", default: 5.0),
                 .real("gamma", default: 1.0), .real("gae_lambda", default: 0.95)],
        inputs: [.mask("attention_mask"), .float("log_probs"), .float("ref_log_probs"), .float("reward_values"),
                 .float("new_log_probs"), .float("new_values"), .float("reward")],
        outputs: ["rewards", "advantages", "returns", "actor_loss", "critic_loss", "reward_mean",
                  "reward_with_kl_penalty", "reward_advantage", "reward_return", "reward_value", "kl_divergence",
                  "mean_generated_length", "max_generated_length", "grad_new_log_probs", "grad_new_values"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try ppoLossesSeqMean(
            attentionMask: a.mask("attention_mask"), logProbs: a.float("log_probs"),
            refLogProbs: a.float("ref_log_probs"), rewardValues: a.float("reward_values"),
            newLogProbs: a.float("new_log_probs"), newValues: a.float("new_values"), reward: a.float("reward"),
            promptLength: a.int("prompt_length"), klCoeff: a.real("kl_coeff"), clipRangeScore: a.real("clip_range_score"),
            clipRangeRatio: a.real("clip_range_ratio"), clipRangeValue: a.real("clip_range_value"),
            gamma: a.real("gamma"), gaeLambda: a.real("gae_lambda"))
        let s = result.statistics
        return ["rewards": FixtureTensor(result.rewards), "advantages": FixtureTensor(result.advantages),
                "returns": FixtureTensor(result.returns), "actor_loss": FixtureTensor(scalar: result.actor.loss),
                "critic_loss": FixtureTensor(scalar: result.critic.loss),
                "reward_mean": FixtureTensor(scalar: s.rewardMean),
                "reward_with_kl_penalty": FixtureTensor(scalar: s.rewardWithKLPenalty),
                "reward_advantage": FixtureTensor(scalar: s.rewardAdvantage),
                "reward_return": FixtureTensor(scalar: s.rewardReturn),
                "reward_value": FixtureTensor(scalar: s.rewardValue),
                "kl_divergence": FixtureTensor(scalar: s.klDivergence),
                "mean_generated_length": FixtureTensor(scalar: s.meanGeneratedLength),
                "max_generated_length": FixtureTensor(scalar: s.maxGeneratedLength),
                "grad_new_log_probs": FixtureTensor(result.gradNewLogProbs),
                "grad_new_values": FixtureTensor(result.gradNewValues)]
    }
}
