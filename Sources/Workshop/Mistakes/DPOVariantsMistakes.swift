import TensorCore
import Golden
import PreferenceLosses

/// The well-known wrong DPO-family losses (TRL's loss types on summed sequence log-probs).
enum DPOVariantsMistakes {
    static let chapter = "Chapters/14-dpo-family"

    static let entry = StageMistakes(stage: "dpo_variants", mistakes: [ipoSummed, rewardAccuracyTies, smoothingSign, aotUnsorted, naiveLogSigmoid]) { a, output, index in
        let x = try Inputs(a)
        guard output == "losses" || output == "loss", x.divergence == "reverse_kl" else { return nil }
        let i = index.first ?? 0
        let hw = x.chosen[i] - x.refChosen[i], hl = x.rejected[i] - x.refRejected[i]
        var lines = ["pair \(i): h_w = chosen - ref_chosen = \(show(hw)), h_l = rejected - ref_rejected = \(show(hl)), "
                     + "δ = h_w - h_l = \(show(hw - hl)), β = \(show(x.beta))"]
        switch x.lossType {
        case "sigmoid": lines.append("sigmoid: -(1-ε)·logσ(β·δ) - ε·logσ(-β·δ), ε = \(show(x.epsilon))")
        case "ipo": lines.append("ipo: (h_w/n_w - h_l/n_l - 1/(2β))², n_w = \(x.chosenLengths[i]), n_l = \(x.rejectedLengths[i]) (a length 0 counts as 1)")
        case "ipo_sum": lines.append("ipo_sum: (δ - 1/(2β))², on the summed log-probs")
        case "aot", "aot_unpaired": lines.append("\(x.lossType): entry i belongs to rank i of the two sorted lists, not to pair i")
        default: return nil
        }
        if output == "loss" { lines.append("loss = the mean of losses over the \(x.chosen.count) pairs") }
        return lines
    }

    /// The stage's inputs and params, in Double.
    struct Inputs {
        let chosen: [Double], rejected: [Double], refChosen: [Double], refRejected: [Double]
        let chosenLengths: [Int64], rejectedLengths: [Int64]
        let lossType: String, divergence: String, beta: Double, epsilon: Double
        let a: FixtureArguments<Double>

        init(_ a: FixtureArguments<Double>) throws {
            self.a = a
            chosen = try a.float("chosen_logps").scalars
            rejected = try a.float("rejected_logps").scalars
            refChosen = try a.float("ref_chosen_logps").scalars
            refRejected = try a.float("ref_rejected_logps").scalars
            chosenLengths = try a.ids("chosen_lengths").scalars
            rejectedLengths = try a.ids("rejected_lengths").scalars
            lossType = try a.string("loss_type")
            divergence = try a.string("f_divergence")
            beta = try a.real("beta")
            epsilon = try a.real("label_smoothing")
        }

        /// Per-pair losses as the `losses` and `loss` outputs.
        func lossOutputs(_ losses: [Double]) -> [String: FixtureTensor] {
            ["losses": output([losses.count], losses), "loss": output(losses.reduce(0, +) / Double(losses.count))]
        }

        /// The library's forward outputs with `lossType` in place of the fixture's.
        func library(lossType: DPOLossType) throws -> [String: FixtureTensor] {
            let r = try dpoVariants(
                chosenLogps: a.float("chosen_logps"), rejectedLogps: a.float("rejected_logps"),
                refChosenLogps: a.float("ref_chosen_logps"), refRejectedLogps: a.float("ref_rejected_logps"),
                chosenLengths: a.ids("chosen_lengths"), rejectedLengths: a.ids("rejected_lengths"), lossType: lossType,
                beta: beta, labelSmoothing: epsilon, discopopTau: a.real("discopop_tau"),
                fDivergence: FDivergence(named: divergence, stage: "dpo_variants"),
                fAlphaDivergenceCoef: a.real("f_alpha_divergence_coef"))
            return ["losses": FixtureTensor(r.losses), "loss": FixtureTensor(scalar: r.loss)]
        }

        /// δ = h_w - h_l of pair i on plain log-ratios.
        func margin(_ i: Int) -> Double { (chosen[i] - refChosen[i]) - (rejected[i] - refRejected[i]) }

        /// Applies only to `types` on plain log-ratios (reverse_kl).
        func require(_ types: Set<String>) throws {
            guard types.contains(lossType), divergence == "reverse_kl" else { throw NotApplicable("\(lossType), \(divergence)") }
        }
    }

    static let ipoSummed = Mistake(
        id: "dpo_variants.ipo-summed", stage: "dpo_variants", chapter: chapter,
        title: "IPO on the summed log-ratios instead of the length-averaged ones",
        explanation: "TRL's ipo divides each completion's log-ratio by its length before the margin, (h_w/n_w - h_l/n_l - 1/(2β))², because IPO's target margin 1/(2β) is meant per token. On sums the margin of a 100-token answer is 100 times larger and the squared loss explodes; OpenRLHF's summed form is a different loss, ipo_sum.") { a in
        let x = try Inputs(a)
        try x.require(["ipo"])
        return try x.library(lossType: .ipoSum)
    }

    static let rewardAccuracyTies = Mistake(
        id: "dpo_variants.reward-accuracy-ties", stage: "dpo_variants", chapter: chapter,
        title: "reward_accuracy counts a tie (chosen_rewards >= rejected_rewards) as right",
        explanation: "The accuracy is the share of pairs where the chosen answer's implicit reward is strictly higher, chosen_rewards > rejected_rewards. At the start of training the policy is the reference, every reward is 0 and the right accuracy is 0; with >= it reads 1.") { a in
        let x = try Inputs(a)
        let right = (0..<x.chosen.count).filter { x.beta * (x.chosen[$0] - x.refChosen[$0]) >= x.beta * (x.rejected[$0] - x.refRejected[$0]) }
        return ["reward_accuracy": output(Double(right.count) / Double(x.chosen.count))]
    }

    static let smoothingSign = Mistake(
        id: "dpo_variants.smoothing-sign", stage: "dpo_variants", chapter: chapter,
        title: "cDPO with the flipped-label term added: -(1-ε)·logσ(βδ) + ε·logσ(-βδ)",
        explanation: "Conservative DPO assumes a label is flipped with probability ε, so its loss is the expected cross-entropy -(1-ε)·logσ(βδ) - ε·logσ(-βδ): both terms are losses. With a plus, the ε term rewards confident margins instead of penalising them (that sign belongs to robust, which also divides by 1 - 2ε).") { a in
        let x = try Inputs(a)
        try x.require(["sigmoid"])
        guard x.epsilon != 0 else { throw NotApplicable("ε = 0") }
        return x.lossOutputs((0..<x.chosen.count).map { i in
            let z = x.beta * x.margin(i)
            return -(1 - x.epsilon) * logSig(z) + x.epsilon * logSig(-z)
        })
    }

    static let aotUnsorted = Mistake(
        id: "dpo_variants.aot-unsorted", stage: "dpo_variants", chapter: chapter,
        title: "AOT without the sorts: each pair's own log-ratio difference, as in sigmoid",
        explanation: "AOT aligns the distribution of the policy's margins with the reference's: both batches of differences are sorted and subtracted rank by rank, so entry i belongs to rank i. Without the sorts it is plain DPO (aot) or a per-pair h_w - h_l (aot_unpaired), the same numbers only when the two orders agree.") { a in
        let x = try Inputs(a)
        try x.require(["aot", "aot_unpaired"])
        return x.lossOutputs((0..<x.chosen.count).map { i in
            let z = x.beta * x.margin(i)
            return -(1 - x.epsilon) * logSig(z) - x.epsilon * logSig(-z)
        })
    }

    static let naiveLogSigmoid = Mistake(
        id: "dpo_variants.naive-log-sigmoid", stage: "dpo_variants", chapter: chapter,
        title: "log(sigmoid(x)) instead of a stable log-sigmoid",
        explanation: "For a margin x of -900, sigmoid(x) underflows to 0 and log(0) is -inf, so the loss is +inf and the gradient NaN. logσ(x) = min(x, 0) - log1p(exp(-|x|)) never forms the tiny probability; use logSigmoid.") { a in
        let x = try Inputs(a)
        try x.require(["sigmoid"])
        func naive(_ z: Double) -> Double { Double.log(1 / (1 + Double.exp(-z))) }
        return x.lossOutputs((0..<x.chosen.count).map { i in
            let z = x.beta * x.margin(i)
            return -(1 - x.epsilon) * naive(z) - x.epsilon * naive(-z)
        })
    }
}
