import TensorCore
import PreferenceLosses

/// `cpo_loss`: TRL's CPO loss family (CPO, SimPO, AlphaPO, hinge, IPO) on
/// per-token log-probs, its NLL term and metrics, and its gradients.
public enum CPOLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "cpo_loss", module: "PreferenceLosses",
        function: "cpoLoss(chosenLogProbs:rejectedLogProbs:chosenMask:rejectedMask:lossType:beta:labelSmoothing:simpoGamma:cpoAlpha:alpha:), cpoLossGradLogProbs(...)",
        peer: "TRL trl/experimental/cpo/cpo_trainer.py :: CPOTrainer.concatenated_forward, cpo_loss, get_batch_loss_metrics",
        params: [.string("loss_type", default: "sigmoid"), .real("beta", default: 0.1),
                 .real("label_smoothing", default: 0.0), .real("simpo_gamma", default: 0.5),
                 .real("cpo_alpha", default: 1.0), .real("alpha", default: 0.0)],
        inputs: [.float("chosen_log_probs"), .float("rejected_log_probs"), .mask("chosen_mask"), .mask("rejected_mask")],
        outputs: ["chosen_logps", "rejected_logps", "losses", "chosen_rewards", "rejected_rewards", "nll_loss", "loss",
                  "reward_accuracy", "grad_chosen_log_probs", "grad_rejected_log_probs"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let chosen = try a.float("chosen_log_probs"), rejected = try a.float("rejected_log_probs")
        let chosenMask = try a.mask("chosen_mask"), rejectedMask = try a.mask("rejected_mask")
        let lossType = try CPOLossType(named: a.string("loss_type"), stage: declaration.name)
        let beta = try a.real("beta"), labelSmoothing = try a.real("label_smoothing")
        let simpoGamma = try a.real("simpo_gamma"), cpoAlpha = try a.real("cpo_alpha"), alpha = try a.real("alpha")
        let result = try cpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: chosenMask,
                                 rejectedMask: rejectedMask, lossType: lossType, beta: beta,
                                 labelSmoothing: labelSmoothing, simpoGamma: simpoGamma, cpoAlpha: cpoAlpha, alpha: alpha)
        let grads = try cpoLossGradLogProbs(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: chosenMask,
                                            rejectedMask: rejectedMask, lossType: lossType, beta: beta,
                                            labelSmoothing: labelSmoothing, simpoGamma: simpoGamma, cpoAlpha: cpoAlpha,
                                            alpha: alpha)
        return ["chosen_logps": FixtureTensor(result.chosenLogps),
                "rejected_logps": FixtureTensor(result.rejectedLogps),
                "losses": FixtureTensor(result.losses),
                "chosen_rewards": FixtureTensor(result.chosenRewards),
                "rejected_rewards": FixtureTensor(result.rejectedRewards),
                "nll_loss": FixtureTensor(scalar: result.nllLoss),
                "loss": FixtureTensor(scalar: result.loss),
                "reward_accuracy": FixtureTensor(scalar: result.rewardAccuracy),
                "grad_chosen_log_probs": FixtureTensor(grads.gradChosenLogProbs),
                "grad_rejected_log_probs": FixtureTensor(grads.gradRejectedLogProbs)]
    }
}
