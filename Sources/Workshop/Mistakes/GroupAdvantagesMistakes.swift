import TensorCore
import Golden
import CriticFreeAdvantages

/// The well-known wrong group advantages (TRL's GRPO and RLOO).
enum GroupAdvantagesMistakes {
    static let chapter = "Chapters/15-critic-free-advantages"

    static let entry = StageMistakes(stage: "group_advantages", mistakes: [biasedStd, epsInsideSqrt, batchForGroup, rlooIncludesSelf]) { a, output, index in
        guard output == "advantages", index.count == 1 else { return nil }
        let result = try GroupAdvantagesStage.forward(a), n = index[0]
        let estimator = try a.string("estimator"), g = try a.int("group_size")
        let group = n / g * g
        var lines = ["completion \(n), group rows \(group)…\(group + g - 1) (group_size \(g))",
                     "r_n = \(show(result.rewards.scalars[n]))\(estimator == "rloo" ? " (weighted, clamped, minus β·Σ KL)" : " (weighted sum of the reward functions)")"]
        if estimator == "grpo" {
            lines.append("baseline μ = \(show(result.baselines.scalars[n])) (the mean of the group's r\(try a.string("multi_objective_aggregation") == "normalize_then_sum" ? ", here of the batch" : ""))")
            if let scales = result.scales {
                lines.append("s = \(show(scales.scalars[n])): the unbiased std, sqrt(Σ (r - μ)² / (n - 1))")
                lines.append("A_n = (r_n - μ) / (s + 1e-4) = \(show(result.advantages.scalars[n]))")
            } else {
                lines.append("A_n = r_n - μ = \(show(result.advantages.scalars[n])) (scale_rewards none)")
            }
        } else {
            lines.append("baseline = \(show(result.baselines.scalars[n])): the mean of the other G - 1 rewards of the group, not counting r_n")
            lines.append("A_n = r_n - baseline\(try a.bool("normalize_advantages") ? ", then (A - mean(A)) / (std(A) + 1e-4) over the batch" : "") = \(show(result.advantages.scalars[n]))")
        }
        return lines
    }

    /// A grpo run with sum_then_normalize and a std (group or batch): its r, μ, s and the scaling's group length.
    static func grpoScaled(_ a: FixtureArguments<Double>) throws -> (r: [Double], mu: [Double], s: [Double], length: Int) {
        guard try a.string("estimator") == "grpo", try a.string("multi_objective_aggregation") == "sum_then_normalize"
        else { throw NotApplicable("not grpo with sum_then_normalize") }
        let scaling = try requireParam(a, "scale_rewards", in: ["group", "batch"])
        let result = try GroupAdvantagesStage.forward(a)
        let scales = try require(result.scales, "the scales")
        let length = scaling == "group" ? try a.int("group_size") : result.rewards.count
        return (result.rewards.scalars, result.baselines.scalars, scales.scalars, length)
    }

    static let biasedStd = Mistake(
        id: "group_advantages.grpo-biased-std", stage: "group_advantages", chapter: chapter,
        title: "GRPO's std taken biased (divide by G) instead of unbiased (G - 1)",
        explanation: "TRL divides by the unbiased sample std of the group (torch's std, Bessel-corrected: Σ (r - μ)² / (G - 1)). numpy's default and many hand-written versions divide by G, which for the small groups of GRPO (G = 4 to 16) makes every advantage larger by sqrt(G/(G - 1)): 15% at G = 4.") { a in
        let x = try grpoScaled(a)
        guard x.length > 1 else { throw NotApplicable("a group of one") }
        let factor = (Double(x.length - 1) / Double(x.length)).squareRoot()
        let advantages = (0..<x.r.count).map { (x.r[$0] - x.mu[$0]) / (x.s[$0] * factor + 1e-4) }
        return ["advantages": output([advantages.count], advantages)]
    }

    static let epsInsideSqrt = Mistake(
        id: "group_advantages.grpo-eps-inside-sqrt", stage: "group_advantages", chapter: chapter,
        title: "(r - μ) / sqrt(σ² + 1e-4) instead of (r - μ) / (σ + 1e-4)",
        explanation: "TRL adds its 1e-4 to the std, after the square root. Inside the root it keeps the divisor above 0.01, a hundred times the intended guard: groups with a small spread of rewards get visibly smaller advantages.") { a in
        let x = try grpoScaled(a)
        let advantages = (0..<x.r.count).map { (x.r[$0] - x.mu[$0]) / (x.s[$0] * x.s[$0] + 1e-4).squareRoot() }
        return ["advantages": output([advantages.count], advantages)]
    }

    static let batchForGroup = Mistake(
        id: "group_advantages.grpo-batch-for-group", stage: "group_advantages", chapter: chapter,
        title: "the std of the whole batch where scale_rewards = group asks for the group's",
        explanation: "With scale_rewards = group each completion is divided by the std of its own group (the GRPO paper); batch, the Lite-PPO choice, divides by the std of all N rewards. The mean is the group's either way; mixing the two up changes how strongly easy and hard prompts are weighted.") { a in
        guard try a.string("estimator") == "grpo", try a.string("scale_rewards") == "group",
              try a.string("multi_objective_aggregation") == "sum_then_normalize" else { throw NotApplicable("not grpo/group") }
        let result = try grpoAdvantages(rewards: a.float("rewards"), groupSize: a.int("group_size"),
                                        rewardWeights: a.optionalRealList("reward_weights"), scaleRewards: .batch)
        return ["advantages": FixtureTensor(result.advantages)]
    }

    static let rlooIncludesSelf = Mistake(
        id: "group_advantages.rloo-includes-self", stage: "group_advantages", chapter: chapter,
        title: "RLOO's baseline as the mean of the whole group, the sample itself included",
        explanation: "Leave-one-out means the baseline of completion n is the mean of the other G - 1 rewards, so it does not depend on r_n and the estimate stays unbiased. Including r_n gives r_n - mean(group), which is the leave-one-out advantage shrunk by (G - 1)/G: GRPO's centring without the std.") { a in
        guard try a.string("estimator") == "rloo" else { throw NotApplicable("not rloo") }
        let result = try GroupAdvantagesStage.forward(a)
        let g = try a.int("group_size"), r = result.rewards.scalars
        guard g > 1 else { throw NotApplicable("a group of one") }
        var advantages = r.indices.map { n -> Double in
            let start = n / g * g
            return r[n] - r[start..<start + g].reduce(0, +) / Double(g)
        }
        if try a.bool("normalize_advantages"), advantages.count > 1 {
            let mean = advantages.reduce(0, +) / Double(advantages.count)
            let variance = advantages.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) } / Double(advantages.count - 1)
            advantages = advantages.map { ($0 - mean) / (variance.squareRoot() + 1e-4) }
        }
        return ["advantages": output([advantages.count], advantages)]
    }
}
