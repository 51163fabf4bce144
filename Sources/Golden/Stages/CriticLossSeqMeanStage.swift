import TensorCore
import CriticLossSeqMean

/// `critic_loss_seq_mean`: PPO's clipped value loss as a mean per sequence, then
/// over the batch (align-anything's default clip range 5.0), and its gradient
/// with respect to the new values.
public enum CriticLossSeqMeanStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "critic_loss_seq_mean", module: "CriticLossSeqMean",
        function: "criticLossSeqMean(values:oldValues:returns:mask:clipRangeValue:), criticLossSeqMeanGradValues(...)",
        peer: "align-anything align_anything/trainers/text_to_text/ppo.py :: PPOTrainer.critic_loss_fn (with utils/tools.py :: masked_mean)",
        params: [.real("clip_range_value", default: 5.0)],
        inputs: [.float("values"), .float("old_values"), .float("returns"), .mask("mask")],
        outputs: ["loss", "grad_values"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let values = try a.float("values"), oldValues = try a.float("old_values"), returns = try a.float("returns")
        let mask = try a.mask("mask"), clipRangeValue = try a.real("clip_range_value")
        let result = try criticLossSeqMean(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                           clipRangeValue: clipRangeValue)
        let grad = try criticLossSeqMeanGradValues(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                                   clipRangeValue: clipRangeValue)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_values": FixtureTensor(grad)]
    }
}
