import TensorCore
import ActorLossSeqMean

/// `actor_loss_seq_mean`: PPO's clipped policy loss as a mean per sequence, then
/// over the batch, and its gradient with respect to the new log-probs.
public enum ActorLossSeqMeanStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "actor_loss_seq_mean", module: "ActorLossSeqMean",
        function: "actorLossSeqMean(logProbs:oldLogProbs:advantages:mask:clipRangeRatio:), actorLossSeqMeanGradLogProbs(...)",
        peer: "align-anything align_anything/trainers/text_to_text/ppo.py :: PPOTrainer.actor_loss_fn (with utils/tools.py :: masked_mean)",
        params: [.real("clip_range_ratio", default: 0.2)],
        inputs: [.float("log_probs"), .float("old_log_probs"), .float("advantages"), .mask("mask")],
        outputs: ["loss", "grad_log_probs"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let logProbs = try a.float("log_probs"), oldLogProbs = try a.float("old_log_probs")
        let advantages = try a.float("advantages"), mask = try a.mask("mask")
        let clipRangeRatio = try a.real("clip_range_ratio")
        let result = try actorLossSeqMean(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                          mask: mask, clipRangeRatio: clipRangeRatio)
        let grad = try actorLossSeqMeanGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs,
                                                    advantages: advantages, mask: mask, clipRangeRatio: clipRangeRatio)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_log_probs": FixtureTensor(grad)]
    }
}
