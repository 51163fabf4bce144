import TensorCore
import ActorLoss

/// `actor_loss`: PPO's clipped policy loss, a token-mean over the mask, and its
/// gradient with respect to the new log-probs.
public enum ActorLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "actor_loss", module: "ActorLoss",
        function: "actorLoss(logProbs:oldLogProbs:advantages:mask:cliprange:), actorLossGradLogProbs(...)",
        peer: "DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.actor_loss_fn",
        params: [.real("cliprange")],
        inputs: [.float("log_probs"), .float("old_log_probs"), .float("advantages"), .mask("mask")],
        outputs: ["loss", "grad_log_probs"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let logProbs = try a.float("log_probs"), oldLogProbs = try a.float("old_log_probs")
        let advantages = try a.float("advantages"), mask = try a.mask("mask"), cliprange = try a.real("cliprange")
        let result = try actorLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                                   cliprange: cliprange)
        let grad = try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                             mask: mask, cliprange: cliprange)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_log_probs": FixtureTensor(grad)]
    }
}
