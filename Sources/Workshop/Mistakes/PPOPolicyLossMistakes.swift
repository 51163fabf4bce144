import TensorCore
import Golden
import PolicyLosses

/// The well-known wrong PPO policy losses (OpenRLHF's PolicyLoss).
enum PPOPolicyLossMistakes {
    static let chapter = "Chapters/07-ppo-step"

    static let entry = StageMistakes(stage: "ppo_policy_loss", mistakes: [ratioInverted, asymmetricClipIgnored, dualClipEverywhere, sampleLevelEmptyRows, ppoKLSign])

    /// The inputs, the config and the library's result on them.
    struct Inputs {
        let logProbs: Tensor<Double>, oldLogProbs: Tensor<Double>, advantages: Tensor<Double>, mask: Tensor<Int64>
        let refLogProbs: Tensor<Double>?
        let config: PPOPolicyLossConfig
        let right: PPOPolicyLossResult<Double>

        init(_ a: FixtureArguments<Double>) throws {
            logProbs = try a.float("log_probs")
            oldLogProbs = try a.float("old_log_probs")
            advantages = try a.float("advantages")
            mask = try a.mask("action_mask")
            refLogProbs = try a.optionalFloat("ref_log_probs")
            config = try PPOPolicyLossStage.config(a)
            right = try ppoPolicyLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                      actionMask: mask, refLogProbs: refLogProbs, config: config)
        }

        func run(_ config: PPOPolicyLossConfig, logProbs: Tensor<Double>? = nil, oldLogProbs: Tensor<Double>? = nil) throws
            -> PPOPolicyLossResult<Double> {
            try ppoPolicyLoss(logProbs: logProbs ?? self.logProbs, oldLogProbs: oldLogProbs ?? self.oldLogProbs,
                              advantages: advantages, actionMask: mask, refLogProbs: refLogProbs, config: config)
        }

        /// `policy_loss` and `loss` with a wrong policy loss (the KL term as it is).
        func withPolicyLoss(_ policyLoss: Double, clipRatio: Double? = nil) -> [String: FixtureTensor] {
            var result = ["policy_loss": output(policyLoss), "loss": output(policyLoss + (right.loss - right.policyLoss))]
            if let clipRatio { result["clip_ratio"] = output(clipRatio) }
            return result
        }

        /// The token losses q reduced as the config says (token mean, or the mean of the kept rows' means).
        func reduce(_ q: [Double]) -> Double {
            let (rows, columns) = (mask.shape[0], mask.shape[1])
            if config.reducesPerToken {
                let n = mask.scalars.reduce(0) { $0 + Int($1) }
                return q.indices.reduce(0.0) { $0 + q[$1] * Double(mask.scalars[$1]) } / Double(n)
            }
            var sum = 0.0, kept = 0.0
            for b in 0..<rows {
                let count = (0..<columns).reduce(0) { $0 + Int(mask[b, $1]) }
                guard count > 0 else { continue }
                sum += (0..<columns).reduce(0.0) { $0 + q[b * columns + $1] * Double(mask[b, $1]) } / (Double(count) + 1e-8)
                kept += 1
            }
            return sum / kept
        }
    }

    static let ratioInverted = Mistake(
        id: "ppo_policy_loss.ratio-inverted", stage: "ppo_policy_loss", chapter: chapter,
        title: "ρ = π_old/π instead of π/π_old: the log-ratio taken old minus new",
        explanation: "The importance ratio reweights samples drawn from the old policy toward the current one, ρ = exp(log_probs - old_log_probs). Inverted, a token the policy now likes more gets a smaller weight and the gradient points the other way.") { a in
        let x = try Inputs(a)
        let wrong = try x.run(x.config, logProbs: x.oldLogProbs, oldLogProbs: x.logProbs)
        return x.withPolicyLoss(wrong.policyLoss, clipRatio: wrong.clipRatio)
    }

    static let asymmetricClipIgnored = Mistake(
        id: "ppo_policy_loss.asym-clip-ignored", stage: "ppo_policy_loss", chapter: chapter,
        title: "the clip range [1 - clip_eps_low, 1 + clip_eps_low]: clip_eps_high ignored",
        explanation: "DAPO's clip-higher widens only the upper bound, [1 - ε_low, 1 + ε_high], so that unlikely tokens with a positive advantage can grow faster and the policy keeps exploring. Using ε_low on both sides silently turns it back into symmetric PPO.") { a in
        let x = try Inputs(a)
        guard x.config.clipEpsHigh != x.config.clipEpsLow else { throw NotApplicable("symmetric clip") }
        var config = x.config
        config.clipEpsHigh = config.clipEpsLow
        let wrong = try x.run(config)
        return x.withPolicyLoss(wrong.policyLoss, clipRatio: wrong.clipRatio)
    }

    static let dualClipEverywhere = Mistake(
        id: "ppo_policy_loss.dual-clip-everywhere", stage: "ppo_policy_loss", chapter: chapter,
        title: "the dual clip max(min(s1, s2), c·A) applied to every token, not only where A < 0",
        explanation: "Dual-clip PPO bounds the loss of a token with a negative advantage whose ratio has run far up: for A < 0, -max(min(s1, s2), c·A). For A > 0, c·A (c > 1) is above min(s1, s2) always, so applied there it replaces every positive token's surrogate by the constant c·A and its gradient by 0.") { a in
        let x = try Inputs(a)
        let c = try require(x.config.dualClip, "dual_clip")
        let lower = 1 - x.config.clipEpsLow, upper = 1 + x.config.clipEpsHigh
        let q = x.advantages.scalars.indices.map { i -> Double in
            let rho = x.right.ratios.scalars[i], adv = x.advantages.scalars[i]
            return -max(min(rho * adv, min(max(rho, lower), upper) * adv), c * adv)
        }
        return x.withPolicyLoss(x.reduce(q))
    }

    static let sampleLevelEmptyRows = Mistake(
        id: "ppo_policy_loss.sample-level-empty-rows", stage: "ppo_policy_loss", chapter: chapter,
        title: "at sample level, the mean of the row means over all B rows, empty rows included",
        explanation: "OpenRLHF's sample-level reduction averages the row means over the rows that keep at least one token; a fully masked row has no mean. Counting it as a 0 in a mean over B dilutes the loss by kept/B.") { a in
        let x = try Inputs(a)
        guard !x.config.reducesPerToken else { throw NotApplicable("token level") }
        let (rows, columns) = (x.mask.shape[0], x.mask.shape[1])
        let kept = (0..<rows).filter { b in (0..<columns).contains { x.mask[b, $0] == 1 } }.count
        return x.withPolicyLoss(x.right.policyLoss * Double(kept) / Double(rows))
    }

    static let ppoKLSign = Mistake(
        id: "ppo_policy_loss.ppo-kl-sign", stage: "ppo_policy_loss", chapter: chapter,
        title: "ppo_kl logged as the mean of log_probs - old_log_probs instead of old - new",
        explanation: "The logged ppo_kl is the k1 estimate of KL(π_old‖π) on the old policy's samples: the mean of old_log_probs - log_probs. With the sign flipped it reads negative whenever the update did what it should.") { a in
        let x = try Inputs(a)
        return ["ppo_kl": output(-x.right.ppoKL)]
    }
}
