import TensorCore
import Golden
import PreferenceLosses

/// The well-known wrong ORPO losses (TRL's ORPOTrainer).
enum ORPOLossMistakes {
    static let chapter = "Chapters/14-dpo-family"

    static let entry = StageMistakes(stage: "orpo_loss", mistakes: [summedLogps, sign])

    /// log(1 - e^v), stable on both sides of -ln 2.
    static func log1mexp(_ v: Double) -> Double {
        v < -0.6931471805599453 ? Double.log1p(-Double.exp(v)) : Double.log(-Double.expm1(v))
    }

    static let summedLogps = Mistake(
        id: "orpo_loss.sum-logps", stage: "orpo_loss", chapter: chapter,
        title: "the odds ratio on summed log-probs instead of average token log-probs",
        explanation: "ORPO's odds are of the average token probability, p = exp(Σ ℓ·m / Σ m), which stays in a range where p/(1 - p) means something. A summed log-prob of a long answer makes p vanish, the odds collapse to p and the loss to a plain log-likelihood ratio of lengths; TRL averages.") { a in
        let chosen = try a.float("chosen_log_probs"), rejected = try a.float("rejected_log_probs")
        let cm = try a.mask("chosen_mask"), rm = try a.mask("rejected_mask"), beta = try a.real("beta")
        let right = try orpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: cm, rejectedMask: rm,
                                 chosenNLLMask: a.mask("chosen_nll_mask"), beta: beta)
        func sums(_ x: Tensor<Double>, _ m: Tensor<Int64>) -> [Double] {
            (0..<x.shape[0]).map { b in (0..<x.shape[1]).reduce(0.0) { $0 + x[b, $1] * Double(m[b, $1]) } }
        }
        let sw = sums(chosen, cm), sl = sums(rejected, rm)
        let odds = (0..<sw.count).map { (sw[$0] - sl[$0]) - (log1mexp(sw[$0]) - log1mexp(sl[$0])) }
        let losses = odds.map { beta * logSig($0) }
        let mean = losses.reduce(0, +) / Double(losses.count)
        return ["chosen_logps": output([sw.count], sw), "rejected_logps": output([sl.count], sl),
                "losses": output([losses.count], losses), "loss": output(right.nllLoss - mean),
                "log_odds_chosen": output(odds.reduce(0, +) / Double(odds.count))]
    }

    static let sign = Mistake(
        id: "orpo_loss.sign", stage: "orpo_loss", chapter: chapter,
        title: "loss = nll_loss + mean(losses) with TRL's losses = β·logσ(log_odds) ≤ 0",
        explanation: "TRL's per-pair losses keep the sign of a log-likelihood, β·logσ(log_odds) ≤ 0, and the total subtracts their mean: loss = nll_loss - mean(losses). Adding them rewards a small odds ratio, pushing the rejected answer up.") { a in
        let right = try orpoLoss(chosenLogProbs: a.float("chosen_log_probs"), rejectedLogProbs: a.float("rejected_log_probs"),
                                 chosenMask: a.mask("chosen_mask"), rejectedMask: a.mask("rejected_mask"),
                                 chosenNLLMask: a.mask("chosen_nll_mask"), beta: a.real("beta"))
        let mean = right.losses.scalars.reduce(0, +) / Double(right.losses.count)
        return ["loss": output(right.nllLoss + mean)]
    }
}
