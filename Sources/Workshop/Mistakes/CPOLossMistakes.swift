import TensorCore
import Golden
import PreferenceLosses

/// The well-known wrong CPO / SimPO losses (TRL's CPOTrainer, no reference model).
enum CPOLossMistakes {
    static let chapter = "Chapters/14-dpo-family"

    static let entry = StageMistakes(stage: "cpo_loss", mistakes: [simpoSum, simpoGammaScaled, nllSequenceMean])

    /// The stage's inputs in Double, and the library's result on them.
    struct Inputs {
        let chosen: Tensor<Double>, rejected: Tensor<Double>, chosenMask: Tensor<Int64>, rejectedMask: Tensor<Int64>
        let lossType: String, beta: Double, epsilon: Double, gamma: Double, cpoAlpha: Double, alpha: Double
        let right: CPOLossResult<Double>

        init(_ a: FixtureArguments<Double>) throws {
            chosen = try a.float("chosen_log_probs")
            rejected = try a.float("rejected_log_probs")
            chosenMask = try a.mask("chosen_mask")
            rejectedMask = try a.mask("rejected_mask")
            lossType = try a.string("loss_type")
            beta = try a.real("beta")
            epsilon = try a.real("label_smoothing")
            gamma = try a.real("simpo_gamma")
            cpoAlpha = try a.real("cpo_alpha")
            alpha = try a.real("alpha")
            right = try cpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: chosenMask,
                                rejectedMask: rejectedMask, lossType: CPOLossType(named: lossType, stage: "cpo_loss"),
                                beta: beta, labelSmoothing: epsilon, simpoGamma: gamma, cpoAlpha: cpoAlpha, alpha: alpha)
        }

        /// Σ_t x·m per row.
        static func sums(_ x: Tensor<Double>, _ m: Tensor<Int64>) -> [Double] {
            (0..<x.shape[0]).map { b in (0..<x.shape[1]).reduce(0.0) { $0 + x[b, $1] * Double(m[b, $1]) } }
        }

        /// The outputs with per-pair `losses` (the NLL term kept as the library has it).
        func outputs(losses: [Double], chosenLogps: [Double]? = nil, rejectedLogps: [Double]? = nil) -> [String: FixtureTensor] {
            let mean = losses.reduce(0, +) / Double(losses.count)
            var result = ["losses": output([losses.count], losses),
                          "loss": output(mean + cpoAlpha * right.nllLoss)]
            if let chosenLogps, let rejectedLogps {
                result["chosen_logps"] = output([chosenLogps.count], chosenLogps)
                result["rejected_logps"] = output([rejectedLogps.count], rejectedLogps)
                result["chosen_rewards"] = output([chosenLogps.count], chosenLogps.map { beta * $0 })
                result["rejected_rewards"] = output([rejectedLogps.count], rejectedLogps.map { beta * $0 })
            }
            return result
        }

        /// cDPO on the shifted margin y = β·z - γ.
        func smoothed(_ y: Double) -> Double { -(1 - epsilon) * logSig(y) - epsilon * logSig(-y) }
    }

    static let simpoSum = Mistake(
        id: "cpo_loss.simpo-sum", stage: "cpo_loss", chapter: chapter,
        title: "SimPO on the summed log-probs instead of the length-averaged ones",
        explanation: "SimPO's reward is the average token log-prob, β·S/n: it removes the length bias of a sum and makes the target margin γ a per-token quantity. On sums, long answers get large rewards for being long and γ is negligible; TRL averages for simpo and ipo, sums for sigmoid and hinge.") { a in
        let x = try Inputs(a)
        guard x.lossType == "simpo", x.alpha == 0 else { throw NotApplicable("not plain simpo") }
        let sw = Inputs.sums(x.chosen, x.chosenMask), sl = Inputs.sums(x.rejected, x.rejectedMask)
        let losses = (0..<sw.count).map { x.smoothed(x.beta * (sw[$0] - sl[$0]) - x.gamma) }
        return x.outputs(losses: losses, chosenLogps: sw, rejectedLogps: sl)
    }

    static let simpoGammaScaled = Mistake(
        id: "cpo_loss.simpo-gamma-scaled", stage: "cpo_loss", chapter: chapter,
        title: "-logσ(β·(z - γ)) instead of -logσ(β·z - γ): the margin γ multiplied by β",
        explanation: "SimPO's target margin is on the reward scale: -logσ(β·z - γ), which TRL writes as z - γ/β inside β·(...). Subtracting γ from z before the β shrinks the margin by β (0.1 by default), so the loss barely asks for a gap at all.") { a in
        let x = try Inputs(a)
        guard x.lossType == "simpo" else { throw NotApplicable("not simpo") }
        let rw = x.right.chosenRewards.scalars.map { $0 / x.beta }, rl = x.right.rejectedRewards.scalars.map { $0 / x.beta }
        return x.outputs(losses: (0..<rw.count).map { x.smoothed(x.beta * (rw[$0] - rl[$0] - x.gamma)) })
    }

    static let nllSequenceMean = Mistake(
        id: "cpo_loss.nll-sequence-mean", stage: "cpo_loss", chapter: chapter,
        title: "nll_loss as the mean of per-sequence means instead of one token mean over the batch",
        explanation: "TRL's NLL is a cross-entropy over every chosen completion token of the batch at once, -Σ ℓ·m / Σ m, so a long answer weighs in proportion to its length. Averaging each sequence first gives every answer the same weight, a different number whenever the lengths differ.") { a in
        let x = try Inputs(a)
        guard x.cpoAlpha != 0 else { throw NotApplicable("cpo_alpha = 0") }
        let sums = Inputs.sums(x.chosen, x.chosenMask)
        var means = [Double]()
        for b in 0..<sums.count {
            let n = (0..<x.chosenMask.shape[1]).reduce(0) { $0 + Int(x.chosenMask[b, $1]) }
            guard n > 0 else { throw NotApplicable("an empty chosen row") }
            means.append(-sums[b] / Double(n))
        }
        let nll = means.reduce(0, +) / Double(means.count)
        let lossMean = x.right.losses.scalars.reduce(0, +) / Double(x.right.losses.count)
        return ["nll_loss": output(nll), "loss": output(lossMean + x.cpoAlpha * nll)]
    }
}
