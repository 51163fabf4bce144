import TensorCore
import PreferenceLosses

/// `dpo_variants`: TRL's DPO loss types (and OpenRLHF's cDPO and summed IPO) on
/// sequence log-probs, TRL's reward metrics, and the gradients with respect to the
/// policy's two log-probs.
public enum DPOVariantsStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "dpo_variants", module: "PreferenceLosses",
        function: "dpoVariants(chosenLogps:rejectedLogps:refChosenLogps:refRejectedLogps:chosenLengths:rejectedLengths:...), "
            + "dpoVariantsGradients(...)",
        peer: "TRL trl/trainer/dpo_trainer.py :: DPOTrainer._compute_loss; "
            + "OpenRLHF openrlhf/models/loss.py :: DPOLoss.forward (sigmoid with label_smoothing > 0, ipo_sum)",
        params: [.string("loss_type", default: "sigmoid"), .real("beta", default: 0.1),
                 .real("label_smoothing", default: 0.0), .real("discopop_tau", default: 0.05),
                 .string("f_divergence", default: "reverse_kl"), .real("f_alpha_divergence_coef", default: 0.5)],
        inputs: [.float("chosen_logps"), .float("rejected_logps"), .float("ref_chosen_logps"),
                 .float("ref_rejected_logps"), .ids("chosen_lengths"), .ids("rejected_lengths")],
        outputs: ["losses", "loss", "chosen_rewards", "rejected_rewards", "reward_accuracy", "reward_margin",
                  "grad_chosen_logps", "grad_rejected_logps"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let chosen = try a.float("chosen_logps"), rejected = try a.float("rejected_logps")
        let refChosen = try a.float("ref_chosen_logps"), refRejected = try a.float("ref_rejected_logps")
        let chosenLengths = try a.ids("chosen_lengths"), rejectedLengths = try a.ids("rejected_lengths")
        let lossType = try DPOLossType(named: a.string("loss_type"), stage: declaration.name)
        let fDivergence = try FDivergence(named: a.string("f_divergence"), stage: declaration.name)
        let beta = try a.real("beta"), labelSmoothing = try a.real("label_smoothing")
        let discopopTau = try a.real("discopop_tau"), alpha = try a.real("f_alpha_divergence_coef")
        let result = try dpoVariants(
            chosenLogps: chosen, rejectedLogps: rejected, refChosenLogps: refChosen, refRejectedLogps: refRejected,
            chosenLengths: chosenLengths, rejectedLengths: rejectedLengths, lossType: lossType, beta: beta,
            labelSmoothing: labelSmoothing, discopopTau: discopopTau, fDivergence: fDivergence,
            fAlphaDivergenceCoef: alpha)
        let grads = try dpoVariantsGradients(
            chosenLogps: chosen, rejectedLogps: rejected, refChosenLogps: refChosen, refRejectedLogps: refRejected,
            chosenLengths: chosenLengths, rejectedLengths: rejectedLengths, lossType: lossType, beta: beta,
            labelSmoothing: labelSmoothing, discopopTau: discopopTau, fDivergence: fDivergence,
            fAlphaDivergenceCoef: alpha)
        return ["losses": FixtureTensor(result.losses), "loss": FixtureTensor(scalar: result.loss),
                "chosen_rewards": FixtureTensor(result.chosenRewards),
                "rejected_rewards": FixtureTensor(result.rejectedRewards),
                "reward_accuracy": FixtureTensor(scalar: result.rewardAccuracy),
                "reward_margin": FixtureTensor(result.rewardMargin),
                "grad_chosen_logps": FixtureTensor(grads.gradChosenLogps),
                "grad_rejected_logps": FixtureTensor(grads.gradRejectedLogps)]
    }
}
