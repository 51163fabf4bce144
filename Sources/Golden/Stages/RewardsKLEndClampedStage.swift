import TensorCore
import RewardsKLEndClamped

/// `rewards_kl_end_clamped`: align-anything's KL penalty on every token, the score
/// on the last attended action, and a clamp on each position's total.
public enum RewardsKLEndClampedStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "rewards_kl_end_clamped", module: "RewardsKLEndClamped",
        function: "rewardsKLEndClamped(reward:logProbs:refLogProbs:sequenceMask:klCoeff:clipRangeScore:)",
        peer: "align-anything align_anything/trainers/text_to_text/ppo.py :: PPOTrainer.add_kl_divergence_regularization",
        params: [.real("kl_coeff", default: 0.02), .real("clip_range_score", default: 50.0)],
        inputs: [.float("reward"), .float("log_probs"), .float("ref_log_probs"), .mask("sequence_mask")],
        outputs: ["rewards"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try rewardsKLEndClamped(reward: a.float("reward"), logProbs: a.float("log_probs"),
                                             refLogProbs: a.float("ref_log_probs"), sequenceMask: a.mask("sequence_mask"),
                                             klCoeff: a.real("kl_coeff"), clipRangeScore: a.real("clip_range_score"))
        return ["rewards": FixtureTensor(result.rewards)]
    }
}
