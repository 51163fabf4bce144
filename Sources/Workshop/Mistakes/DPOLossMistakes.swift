import TensorCore
import Golden
import DPOLoss

/// The well-known wrong DPO losses (align-anything's form: per-token log-probs in, summed).
enum DPOLossMistakes {
    static let chapter = "Chapters/08-dpo-loss"

    static let entry = StageMistakes(stage: "dpo_loss", mistakes: [pairSwapped, noReference, betaOutsideSigmoid, averagedLogProbs, marginTimesBeta]) { a, output, index in
        let x = try Inputs(a)
        let (batch, steps) = (x.better.shape[0], x.better.shape[1])
        func sum(_ t: Tensor<Double>, _ i: Int) -> Double { (0..<steps).reduce(0) { $0 + t[i, $1] } }
        let pairs = output == "loss" || output == "reward_accuracy" ? Array(0..<min(batch, 4)) : (index.first.map { [$0] } ?? [])
        var lines = [String]()
        for i in pairs {
            let hw = sum(x.better, i) - sum(x.refBetter, i), hl = sum(x.worse, i) - sum(x.refWorse, i)
            lines.append("pair \(i): h_w = Σ better - Σ ref_better = \(show(hw)), h_l = Σ worse - Σ ref_worse = \(show(hl)), "
                         + "-log σ(β·(h_w - h_l)) = \(show(-logSig(x.beta * (hw - hl))))")
        }
        if output == "loss" { lines.append("loss = the mean of -log σ(β·(h_w - h_l)) over the \(batch) pairs, β = \(show(x.beta))") }
        return lines
    }

    /// The four [B, T] inputs and β.
    struct Inputs {
        let better: Tensor<Double>, worse: Tensor<Double>, refBetter: Tensor<Double>, refWorse: Tensor<Double>
        let beta: Double

        init(_ a: FixtureArguments<Double>) throws {
            better = try a.float("better_log_probs")
            worse = try a.float("worse_log_probs")
            refBetter = try a.float("ref_better_log_probs")
            refWorse = try a.float("ref_worse_log_probs")
            beta = try a.real("beta")
        }

        /// The library's DPO on these inputs, as forward outputs.
        func outputs(better: Tensor<Double>? = nil, worse: Tensor<Double>? = nil, refBetter: Tensor<Double>? = nil,
                     refWorse: Tensor<Double>? = nil) throws -> [String: FixtureTensor] {
            let r = try dpoLoss(betterLogProbs: better ?? self.better, worseLogProbs: worse ?? self.worse,
                                refBetterLogProbs: refBetter ?? self.refBetter, refWorseLogProbs: refWorse ?? self.refWorse,
                                beta: beta)
            return ["loss": FixtureTensor(scalar: r.loss), "reward": FixtureTensor(r.reward),
                    "better_sample_reward": FixtureTensor(r.betterSampleReward),
                    "worse_sample_reward": FixtureTensor(r.worseSampleReward),
                    "reward_accuracy": FixtureTensor(scalar: r.rewardAccuracy), "reward_margin": FixtureTensor(r.rewardMargin)]
        }

        /// The pairs' margins h_w - h_l of summed log-ratios.
        var margins: [Double] {
            let steps = better.shape[1]
            return (0..<better.shape[0]).map { i in
                (0..<steps).reduce(0.0) { $0 + (better[i, $1] - refBetter[i, $1]) - (worse[i, $1] - refWorse[i, $1]) }
            }
        }
    }

    static let pairSwapped = Mistake(
        id: "dpo_loss.pair-swapped", stage: "dpo_loss", chapter: chapter,
        title: "-log σ(β·(h_l - h_w)): chosen and rejected swapped in the margin",
        explanation: "The loss pushes the preferred answer's log-ratio above the other's: -log σ(β·(h_w - h_l)) with h_w from the better answer. Swapped, training teaches the policy to prefer the worse answers.") { a in
        let x = try Inputs(a)
        let losses = x.margins.map { -logSig(-x.beta * $0) }
        return ["loss": output(losses.reduce(0, +) / Double(losses.count))]
    }

    static let noReference = Mistake(
        id: "dpo_loss.no-reference", stage: "dpo_loss", chapter: chapter,
        title: "the reference log-probs left out (taken as 0)",
        explanation: "DPO's implicit reward is β·log(π/π_ref): the reference anchors it, and at the start (π = π_ref) the loss is ln 2 whatever the answers. Without it the loss rewards raw likelihood gaps the reference already had.") { a in
        let x = try Inputs(a)
        let zeros = Tensor<Double>(shape: x.better.shape, repeating: 0)
        return try x.outputs(refBetter: zeros, refWorse: zeros)
    }

    static let betaOutsideSigmoid = Mistake(
        id: "dpo_loss.beta-outside-sigmoid", stage: "dpo_loss", chapter: chapter,
        title: "-β·log σ(h_w - h_l): β multiplies the loss instead of the margin",
        explanation: "β scales the margin inside the sigmoid, -log σ(β·(h_w - h_l)); it sets how far the policy may move from the reference (a higher β keeps it closer). Outside the log-sigmoid it only rescales the learning rate.") { a in
        let x = try Inputs(a)
        let losses = x.margins.map { -x.beta * logSig($0) }
        return ["loss": output(losses.reduce(0, +) / Double(losses.count))]
    }

    static let averagedLogProbs = Mistake(
        id: "dpo_loss.averaged-log-probs", stage: "dpo_loss", chapter: chapter,
        title: "mean over the padded length instead of the sum of the answer's log-probs",
        explanation: "A sequence's log-prob is the sum of its token log-probs (pads add 0). Averaging over the padded length T divides every log-ratio by T, a different objective (and with padding, a bug: the count includes pads).") { a in
        let x = try Inputs(a)
        let steps = Double(x.better.shape[1])
        func mean(_ t: Tensor<Double>) -> Tensor<Double> { Tensor.make(t.shape, t.scalars.map { $0 / steps }) }
        return try x.outputs(better: mean(x.better), worse: mean(x.worse), refBetter: mean(x.refBetter), refWorse: mean(x.refWorse))
    }

    static let marginTimesBeta = Mistake(
        id: "dpo_loss.margin-times-beta", stage: "dpo_loss", chapter: chapter,
        title: "reward_margin multiplied by β a second time",
        explanation: "The logged sample rewards are already β·(log π - log π_ref); the margin is their difference, better - worse. Multiplying it by β again logs a margin β times too small.") { a in
        let x = try Inputs(a)
        let right = try dpoLoss(betterLogProbs: x.better, worseLogProbs: x.worse, refBetterLogProbs: x.refBetter,
                                refWorseLogProbs: x.refWorse, beta: x.beta)
        return ["reward_margin": output(right.rewardMargin.shape, right.rewardMargin.scalars.map { $0 * x.beta })]
    }
}
