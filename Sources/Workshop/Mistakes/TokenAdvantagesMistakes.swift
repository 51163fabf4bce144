import TensorCore
import Golden
import CriticFreeAdvantages

/// The well-known wrong token advantages (OpenRLHF's critic-free estimators).
enum TokenAdvantagesMistakes {
    static let chapter = "Chapters/15-critic-free-advantages"

    static let entry = StageMistakes(stage: "token_advantages", mistakes: [gammaNotForced, whitenRezeroed, groupNormEps])

    static let baselineEstimators: Set<String> = ["rloo", "reinforce_baseline", "group_norm", "dr_grpo"]
    static let whitenedEstimators: Set<String> = ["gae", "reinforce", "reinforce_baseline"]

    /// G_t = r'_t + γ·G_t+1 over token_rewards·mask, backwards from G_T = 0.
    static func returnsToGo(_ tokenRewards: Tensor<Double>, _ mask: Tensor<Int64>, gamma: Double) -> Tensor<Double> {
        var g = tokenRewards
        let (rows, columns) = (g.shape[0], g.shape[1])
        for b in 0..<rows {
            var next = 0.0
            for t in stride(from: columns - 1, through: 0, by: -1) {
                next = tokenRewards[b, t] * Double(mask[b, t]) + gamma * next
                g[b, t] = next
            }
        }
        return g
    }

    /// OpenRLHF's whitening over the batch's unmasked positions (biased variance), applied everywhere.
    static func whitened(_ x: Tensor<Double>, _ mask: Tensor<Int64>, noStdNorm: Bool) -> Tensor<Double> {
        let kept = x.scalars.indices.filter { mask.scalars[$0] != 0 }
        let mean = kept.reduce(0.0) { $0 + x.scalars[$1] } / Double(kept.count)
        if noStdNorm { return Tensor.make(x.shape, x.scalars.map { $0 - mean }) }
        let variance = kept.reduce(0.0) { $0 + (x.scalars[$1] - mean) * (x.scalars[$1] - mean) } / Double(kept.count)
        let inverse = 1 / max(variance, 1e-8).squareRoot()
        return Tensor.make(x.shape, x.scalars.map { ($0 - mean) * inverse })
    }

    static let gammaNotForced = Mistake(
        id: "token_advantages.reinforce-gamma-not-forced", stage: "token_advantages", chapter: chapter,
        title: "the baseline estimators' returns discounted by gamma instead of γ = 1",
        explanation: "OpenRLHF forces γ = 1 for rloo, reinforce_baseline, group_norm and dr_grpo: their baseline is a per-prompt scalar subtracted from the whole-sequence reward, which only makes sense if the return at every token is that undiscounted reward. Only reinforce (and gae) read gamma; discounting here shrinks the credit of early tokens.") { a in
        let estimator = try requireParam(a, "estimator", in: baselineEstimators)
        let gamma = try a.real("gamma")
        guard gamma != 1 else { throw NotApplicable("gamma = 1") }
        let right = try TokenAdvantagesStage.forward(a), mask = try a.mask("action_mask")
        let returns = returnsToGo(right.tokenRewards, mask, gamma: gamma)
        let advantages = whitenedEstimators.contains(estimator) ? whitened(returns, mask, noStdNorm: try a.bool("no_std_norm")) : returns
        return ["returns": FixtureTensor(returns), "advantages": FixtureTensor(advantages)]
    }

    static let whitenRezeroed = Mistake(
        id: "token_advantages.whiten-rezeroed", stage: "token_advantages", chapter: chapter,
        title: "the whitened advantages multiplied by the mask again (padding re-zeroed)",
        explanation: "OpenRLHF whitens with statistics over the unmasked positions but applies the transform at every position and does not re-zero: a pad where A was 0 ends at -μ/σ. The loss masks those positions anyway, so re-zeroing is harmless in training but gives different advantages than the peer's.") { a in
        _ = try requireParam(a, "estimator", in: whitenedEstimators)
        let right = try TokenAdvantagesStage.forward(a), mask = try a.mask("action_mask")
        let advantages = Tensor.make(right.advantages.shape, right.advantages.scalars.indices.map {
            right.advantages.scalars[$0] * Double(mask.scalars[$0])
        })
        return ["advantages": FixtureTensor(advantages)]
    }

    static let groupNormEps = Mistake(
        id: "token_advantages.group-norm-eps-1e-4", stage: "token_advantages", chapter: chapter,
        title: "group_norm divided by (std + 1e-4), TRL's epsilon, where OpenRLHF adds 1e-9",
        explanation: "OpenRLHF's group_norm is (r - mean) / (std + 1e-9); TRL's GRPO uses 1e-4. The two agree for a large spread, but for a group whose rewards differ by 1e-3 the 1e-4 shrinks the shaped reward by 10%, and a group of equal rewards differs in what its rounding noise is multiplied by.") { a in
        _ = try requireParam(a, "estimator", in: ["group_norm"])
        let rewards = try a.float("rewards").scalars, n = try a.int("n_samples_per_prompt")
        let mask = try a.mask("action_mask"), kl = try a.float("kl")
        var shaped = rewards
        for start in stride(from: 0, to: rewards.count, by: n) {
            let group = rewards[start..<start + n], mean = group.reduce(0, +) / Double(n)
            let std = (group.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)).squareRoot()
            for i in start..<start + n { shaped[i] = (rewards[i] - mean) / (std + 1e-4) }
        }
        let c = max(try a.real("kl_coef"), 0), range = try a.optionalRange("reward_clip_range")
        var tokenRewards = Tensor.make(kl.shape, kl.scalars.map { -c * $0 })
        let columns = kl.shape[1]
        for b in 0..<rewards.count {
            let end = (0..<columns).last { mask[b, $0] == 1 } ?? columns - 1
            let clamped = range.map { min(max(shaped[b], $0.lo), $0.hi) } ?? shaped[b]
            tokenRewards[b, end] = clamped + (-c * kl[b, end])
        }
        let returns = returnsToGo(tokenRewards, mask, gamma: 1)
        return ["shaped_rewards": output([shaped.count], shaped), "token_rewards": FixtureTensor(tokenRewards),
                "returns": FixtureTensor(returns), "advantages": FixtureTensor(returns)]
    }
}
