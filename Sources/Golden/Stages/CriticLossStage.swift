import TensorCore
import CriticLoss

/// `critic_loss`: PPO's clipped value loss, a token-mean over the mask, and its
/// gradient with respect to the new values.
public enum CriticLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "critic_loss", module: "CriticLoss",
        function: "criticLoss(values:oldValues:returns:mask:cliprangeValue:), criticLossGradValues(...)",
        peer: "DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.critic_loss_fn",
        params: [.real("cliprange_value")],
        inputs: [.float("values"), .float("old_values"), .float("returns"), .mask("mask")],
        outputs: ["loss", "grad_values"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let values = try a.float("values"), oldValues = try a.float("old_values"), returns = try a.float("returns")
        let mask = try a.mask("mask"), cliprangeValue = try a.real("cliprange_value")
        let result = try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                    cliprangeValue: cliprangeValue)
        let grad = try criticLossGradValues(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                            cliprangeValue: cliprangeValue)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_values": FixtureTensor(grad)]
    }
}
