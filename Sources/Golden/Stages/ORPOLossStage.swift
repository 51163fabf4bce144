import TensorCore
import PreferenceLosses

/// `orpo_loss`: TRL's ORPO loss (NLL minus β·logσ of the log odds ratio) on
/// per-token log-probs, its metrics, and its gradients.
public enum ORPOLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "orpo_loss", module: "PreferenceLosses",
        function: "orpoLoss(chosenLogProbs:rejectedLogProbs:chosenMask:rejectedMask:chosenNLLMask:beta:), orpoLossGradLogProbs(...)",
        peer: "TRL trl/experimental/orpo/orpo_trainer.py :: ORPOTrainer.concatenated_forward, odds_ratio_loss, log1mexp, get_batch_loss_metrics",
        params: [.real("beta", default: 0.1)],
        inputs: [.float("chosen_log_probs"), .float("rejected_log_probs"), .mask("chosen_mask"), .mask("rejected_mask"),
                 .mask("chosen_nll_mask")],
        outputs: ["chosen_logps", "rejected_logps", "losses", "chosen_rewards", "rejected_rewards", "log_odds_ratio",
                  "log_odds_chosen", "nll_loss", "loss", "reward_accuracy", "grad_chosen_log_probs",
                  "grad_rejected_log_probs"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let chosen = try a.float("chosen_log_probs"), rejected = try a.float("rejected_log_probs")
        let chosenMask = try a.mask("chosen_mask"), rejectedMask = try a.mask("rejected_mask")
        let nllMask = try a.mask("chosen_nll_mask"), beta = try a.real("beta")
        let result = try orpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: chosenMask,
                                  rejectedMask: rejectedMask, chosenNLLMask: nllMask, beta: beta)
        let grads = try orpoLossGradLogProbs(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: chosenMask,
                                             rejectedMask: rejectedMask, chosenNLLMask: nllMask, beta: beta)
        return ["chosen_logps": FixtureTensor(result.chosenLogps),
                "rejected_logps": FixtureTensor(result.rejectedLogps),
                "losses": FixtureTensor(result.losses),
                "chosen_rewards": FixtureTensor(result.chosenRewards),
                "rejected_rewards": FixtureTensor(result.rejectedRewards),
                "log_odds_ratio": FixtureTensor(scalar: result.logOddsRatio),
                "log_odds_chosen": FixtureTensor(scalar: result.logOddsChosen),
                "nll_loss": FixtureTensor(scalar: result.nllLoss),
                "loss": FixtureTensor(scalar: result.loss),
                "reward_accuracy": FixtureTensor(scalar: result.rewardAccuracy),
                "grad_chosen_log_probs": FixtureTensor(grads.gradChosenLogProbs),
                "grad_rejected_log_probs": FixtureTensor(grads.gradRejectedLogProbs)]
    }
}
