import TensorCore
import PPOStep

/// `ppo_losses`: the data flow of one DeepSpeed-Chat `train_rlhf` call, with the
/// model forwards replaced by given tensors.
public enum PPOLossesStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "ppo_losses", module: "PPOStep",
        function: "ppoLosses(attentionMask:logProbs:refLogProbs:values:newLogProbs:newValues:rewardScore:...)",
        peer: "DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.train_rlhf (data flow)",
        params: [.int("prompt_length"), .real("kl_ctl"), .real("clip_reward_value"), .real("cliprange"),
                 .real("cliprange_value"), .real("gamma"), .real("lambda")],
        inputs: [.mask("attention_mask"), .float("log_probs"), .float("ref_log_probs"), .float("values"),
                 .float("new_log_probs"), .float("new_values"), .float("reward_score")],
        outputs: ["rewards", "old_values", "advantages", "returns", "actor_loss", "critic_loss"])

    /// The step on a fixture's arguments, with every intermediate (for `run` and the chapters).
    public static func forward<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> PPOLossesResult<T> {
        try ppoLosses(
            attentionMask: a.mask("attention_mask"), logProbs: a.float("log_probs"),
            refLogProbs: a.float("ref_log_probs"), values: a.float("values"),
            newLogProbs: a.float("new_log_probs"), newValues: a.float("new_values"),
            rewardScore: a.float("reward_score"), promptLength: a.int("prompt_length"),
            klCtl: a.real("kl_ctl"), clipRewardValue: a.real("clip_reward_value"),
            cliprange: a.real("cliprange"), cliprangeValue: a.real("cliprange_value"),
            gamma: a.real("gamma"), lambda: a.real("lambda"))
    }

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try forward(a)
        return ["rewards": FixtureTensor(result.rewards), "old_values": FixtureTensor(result.oldValues),
                "advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns),
                "actor_loss": FixtureTensor(scalar: result.actor.loss),
                "critic_loss": FixtureTensor(scalar: result.critic.loss)]
    }
}
