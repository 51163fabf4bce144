import TensorCore
import ComputeRewards

/// `compute_rewards`: the KL penalty on every token plus the clipped score one
/// past the answer.
public enum ComputeRewardsStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "compute_rewards", module: "ComputeRewards",
        function: "computeRewards(logProbs:refLogProbs:rewardScore:actionMask:promptLength:klCtl:clipRewardValue:)",
        peer: "DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.compute_rewards",
        params: [.int("prompt_length"), .real("kl_ctl"), .real("clip_reward_value")],
        inputs: [.float("log_probs"), .float("ref_log_probs"), .float("reward_score"), .mask("action_mask")],
        outputs: ["rewards"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let rewards = try computeRewards(logProbs: a.float("log_probs"), refLogProbs: a.float("ref_log_probs"),
                                         rewardScore: a.float("reward_score"), actionMask: a.mask("action_mask"),
                                         promptLength: a.int("prompt_length"), klCtl: a.real("kl_ctl"),
                                         clipRewardValue: a.real("clip_reward_value"))
        return ["rewards": FixtureTensor(rewards)]
    }
}
