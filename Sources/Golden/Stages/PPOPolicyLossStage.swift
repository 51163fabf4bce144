import TensorCore
import PolicyLosses

/// `ppo_policy_loss`: OpenRLHF's clipped policy loss (ppo or gspo, asymmetric and
/// dual clip, token or sample level), its metrics, the optional KL loss, and the
/// gradient with respect to the new log-probs.
public enum PPOPolicyLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "ppo_policy_loss", module: "PolicyLosses",
        function: "ppoPolicyLoss(logProbs:oldLogProbs:advantages:actionMask:refLogProbs:config:), ppoPolicyLossGradLogProbs(...)",
        peer: "OpenRLHF openrlhf/models/loss.py :: PolicyLoss.forward, aggregate_loss (+ ppo_actor.py :: ActorPPOTrainer.training_step's KL loss)",
        params: [.string("policy_loss_type", default: "ppo"), .real("clip_eps_low", default: 0.2),
                 .real("clip_eps_high", default: 0.2), .optionalReal("dual_clip"),
                 .bool("token_level_loss", default: true), .bool("use_kl_loss", default: false),
                 .real("kl_coef", default: 0.01), .string("kl_estimator", default: "k1")],
        inputs: [.float("log_probs"), .float("old_log_probs"), .float("advantages"), .mask("action_mask"),
                 .float("ref_log_probs", optional: true)],
        outputs: ["loss", "policy_loss", "clip_ratio", "ppo_kl", "kl_loss", "grad_log_probs"])

    /// The stage's params as the library's config (unknown switch values throw).
    public static func config<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> PPOPolicyLossConfig {
        let stage = declaration.name
        return PPOPolicyLossConfig(
            policyLossType: try peerSwitch(a.string("policy_loss_type"), "policy_loss_type", stage: stage),
            clipEpsLow: try a.real("clip_eps_low"), clipEpsHigh: try a.real("clip_eps_high"),
            dualClip: try a.optionalReal("dual_clip"), tokenLevelLoss: try a.bool("token_level_loss"),
            useKLLoss: try a.bool("use_kl_loss"), klCoef: try a.real("kl_coef"),
            klEstimator: try peerSwitch(a.string("kl_estimator"), "kl_estimator", stage: stage))
    }

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let config = try config(a)
        let logProbs = try a.float("log_probs"), oldLogProbs = try a.float("old_log_probs")
        let advantages = try a.float("advantages"), actionMask = try a.mask("action_mask")
        let refLogProbs = try a.optionalFloat("ref_log_probs")
        let result = try ppoPolicyLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                       actionMask: actionMask, refLogProbs: refLogProbs, config: config)
        var outputs = ["loss": FixtureTensor(scalar: result.loss), "policy_loss": FixtureTensor(scalar: result.policyLoss),
                       "clip_ratio": FixtureTensor(scalar: result.clipRatio), "ppo_kl": FixtureTensor(scalar: result.ppoKL)]
        if let klLoss = result.klLoss { outputs["kl_loss"] = FixtureTensor(scalar: klLoss) }
        // The gradient is an optional output: a forward that is a number is reported
        // even where the backward pass refuses (a fixture expecting the gradient then
        // fails on the missing output, naming it).
        if let grad = try? ppoPolicyLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs,
                                                     advantages: advantages, actionMask: actionMask,
                                                     refLogProbs: refLogProbs, config: config) {
            outputs["grad_log_probs"] = FixtureTensor(grad)
        }
        return outputs
    }
}
