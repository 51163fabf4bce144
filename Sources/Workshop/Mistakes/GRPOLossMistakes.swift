import TensorCore
import Golden
import PolicyLosses

/// The well-known wrong GRPO-family losses (TRL's GRPOTrainer._compute_loss).
enum GRPOLossMistakes {
    static let chapter = "Chapters/15-critic-free-advantages"

    static let entry = StageMistakes(stage: "grpo_loss", mistakes: [meanOverPadding, drGRPOActualLength, gaIgnored, cispoCap, sequenceRatioSum]) { a, output, index in
        guard output == "loss" else { return nil }
        let x = try Inputs(a)
        let (rows, columns) = (x.mask.shape[0], x.mask.shape[1])
        let counts = x.rowCounts, total = counts.reduce(0, +), ga = x.config.gradientAccumulationSteps
        var lines = ["q = the per-token loss (policy term + beta·k), n_b = tokens per row = \(counts), N = \(total), B = \(rows), T = \(columns), GA = \(ga)"]
        switch x.config.lossType {
        case .grpo, .sapo: lines.append("\(x.config.lossType.rawValue): loss = mean_b(Σ_t q·m / max(n_b, 1)) / GA: each row divided by its own token count, not by T")
        case .bnpo: lines.append("bnpo: loss = Σ q·m / max(N, 1) / GA")
        case .drGRPO: lines.append("dr_grpo: loss = Σ q·m / (B·max_completion_length) / GA = Σ q·m / (\(rows)·\(x.config.maxCompletionLength)) / \(ga)")
        case .dapo, .cispo, .vespo: lines.append("\(x.config.lossType.rawValue): loss = Σ q·m / max(num_items_in_batch ?? N, 1), not divided by GA")
        case .luspo: lines.append("luspo: loss = mean over all entries of q·n_b / GA (padding included at token level)")
        }
        lines.append("loss = \(show(x.right.loss))")
        return lines
    }

    /// The inputs, the config and the library's result on them.
    struct Inputs {
        let logProbs: Tensor<Double>, oldLogProbs: Tensor<Double>, advantages: Tensor<Double>, mask: Tensor<Int64>
        let refLogProbs: Tensor<Double>?
        let config: GRPOLossConfig
        let right: GRPOLossResult<Double>

        init(_ a: FixtureArguments<Double>) throws {
            logProbs = try a.float("log_probs")
            oldLogProbs = try a.float("old_log_probs")
            advantages = try a.float("advantages")
            mask = try a.mask("mask")
            refLogProbs = try a.optionalFloat("ref_log_probs")
            config = try GRPOLossStage.config(a)
            right = try grpoLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                                 refLogProbs: refLogProbs, config: config)
        }

        func run(_ config: GRPOLossConfig, logProbs: Tensor<Double>? = nil) throws -> GRPOLossResult<Double> {
            try grpoLoss(logProbs: logProbs ?? self.logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                         refLogProbs: refLogProbs, config: config)
        }

        var rowCounts: [Int] {
            (0..<mask.shape[0]).map { b in (0..<mask.shape[1]).reduce(0) { $0 + Int(mask[b, $1]) } }
        }

        /// Σ_t q·m of each row.
        var rowSums: [Double] {
            let q = right.tokenLosses, columns = mask.shape[1]
            return (0..<mask.shape[0]).map { b in (0..<columns).reduce(0.0) { $0 + q[b, $1] * Double(mask[b, $1]) } }
        }

        func requireType(_ types: Set<GRPOLossType>) throws {
            guard types.contains(config.lossType) else { throw NotApplicable("loss_type \(config.lossType.rawValue)") }
        }
    }

    static let meanOverPadding = Mistake(
        id: "grpo_loss.mean-over-padding", stage: "grpo_loss", chapter: chapter,
        title: "grpo's row mean divided by the padded width T instead of the row's token count",
        explanation: "GRPO's loss is the mean over sequences of each sequence's mean over its own tokens, Σ_t q·m / n_b. Dividing by the padded width T counts padding as zero-loss tokens, so short answers weigh less than long ones by n_b/T and the loss depends on how the batch was padded.") { a in
        let x = try Inputs(a)
        try x.requireType([.grpo, .sapo])
        let columns = Double(x.mask.shape[1]), rows = Double(x.mask.shape[0])
        let loss = x.rowSums.reduce(0.0) { $0 + $1 / columns } / rows / Double(x.config.gradientAccumulationSteps)
        return ["loss": output(loss)]
    }

    static let drGRPOActualLength = Mistake(
        id: "grpo_loss.dr-grpo-actual-length", stage: "grpo_loss", chapter: chapter,
        title: "dr_grpo divided by the batch's actual token count instead of B·max_completion_length",
        explanation: "Dr. GRPO removes the length bias by dividing by a constant, B·max_completion_length, so every token has the same weight whatever the batch. Dividing by the actual number of tokens is bnpo, whose per-token weight changes from batch to batch.") { a in
        let x = try Inputs(a)
        try x.requireType([.drGRPO])
        let total = max(x.rowCounts.reduce(0, +), 1)
        return ["loss": output(x.rowSums.reduce(0, +) / Double(total) / Double(x.config.gradientAccumulationSteps))]
    }

    static let gaIgnored = Mistake(
        id: "grpo_loss.ga-ignored", stage: "grpo_loss", chapter: chapter,
        title: "grpo, bnpo, dr_grpo, sapo or luspo not divided by gradient_accumulation_steps",
        explanation: "TRL divides the per-micro-batch loss of grpo, bnpo, dr_grpo, sapo and luspo by GA, so that the accumulated gradient is a mean; dapo, cispo and vespo instead divide by a token count that already covers the whole accumulated batch. Leaving GA out makes those losses GA times too large.") { a in
        let x = try Inputs(a)
        try x.requireType([.grpo, .bnpo, .drGRPO, .sapo, .luspo])
        return ["loss": output(x.right.loss * Double(x.config.gradientAccumulationSteps))]
    }

    static let cispoCap = Mistake(
        id: "grpo_loss.cispo-cap", stage: "grpo_loss", chapter: chapter,
        title: "cispo's cap on the ratio taken as 1 + epsilon_high instead of epsilon_high",
        explanation: "In cispo, epsilon_high is an absolute cap on the detached ratio, min(ρ, ε_h) (TRL recommends 5.0), not a half-width around 1 as in the clipped losses. Read as 1 + ε_h, the cap sits one higher and fewer tokens are capped.") { a in
        let x = try Inputs(a)
        try x.requireType([.cispo])
        var config = x.config
        config.epsilonHigh = 1 + x.config.resolvedEpsilonHigh
        return ["loss": output(try x.run(config).loss)]
    }

    static let sequenceRatioSum = Mistake(
        id: "grpo_loss.seq-is-sum", stage: "grpo_loss", chapter: chapter,
        title: "the sequence-level log-ratio summed over the tokens instead of averaged (GSPO)",
        explanation: "GSPO's sequence ratio is exp of the mean token log-ratio, Σ_t d·m / n_b, a per-token geometric mean that stays near 1. Summed, a long answer's ratio is the product of its token ratios, leaves the clip range after a few tokens and is clipped almost always.") { a in
        let x = try Inputs(a)
        try x.requireType([.grpo, .bnpo, .drGRPO, .dapo, .luspo])
        guard x.config.importanceSamplingLevel == .sequence, x.config.beta == 0 else { throw NotApplicable("not sequence level without KL") }
        // Scaling each row's log-ratios by n_b makes the library's mean the sum.
        var scaled = x.logProbs
        let counts = x.rowCounts, columns = x.mask.shape[1]
        for b in 0..<x.mask.shape[0] {
            for t in 0..<columns where x.mask[b, t] == 1 {
                scaled[b, t] = x.oldLogProbs[b, t] + (x.logProbs[b, t] - x.oldLogProbs[b, t]) * Double(counts[b])
            }
        }
        let wrong = try x.run(x.config, logProbs: scaled)
        var outputs = ["loss": output(wrong.loss)]
        if let low = wrong.clipRatioLow, let high = wrong.clipRatioHigh, let region = wrong.clipRatioRegion {
            outputs["clip_ratio_low"] = output(low)
            outputs["clip_ratio_high"] = output(high)
            outputs["clip_ratio_region"] = output(region)
        }
        return outputs
    }
}
