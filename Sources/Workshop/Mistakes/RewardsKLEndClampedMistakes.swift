import TensorCore
import Golden

/// The well-known wrong align-anything per-token rewards.
enum RewardsKLEndClampedMistakes {
    static let chapter = "Chapters/12-three-ppo-steps"

    static let entry = StageMistakes(stage: "rewards_kl_end_clamped", mistakes: [scoreClampedAlone])

    static let scoreClampedAlone = Mistake(
        id: "rewards_kl_end_clamped.score-clamped-alone", stage: "rewards_kl_end_clamped", chapter: chapter,
        title: "the score clamped alone, DeepSpeed-Chat's way, instead of each position's total",
        explanation: "align-anything clamps every position's total reward, -β·(log π - log π_ref) plus the score where it lands, to [-C, C]: the clamp hits the KL terms too. DeepSpeed-Chat clamps only the score; that is another system's rule.") { a in
        let reward = try a.float("reward"), logProbs = try a.float("log_probs"), ref = try a.float("ref_log_probs")
        let mask = try a.mask("sequence_mask"), beta = try a.real("kl_coeff"), c = try a.real("clip_range_score")
        let (batch, positions) = (logProbs.shape[0], logProbs.shape[1])
        var rewards = [Double]()
        for b in 0..<batch {
            let end = (0..<positions).last { mask[b, $0] != 0 } ?? (positions - 1)
            for t in 0..<positions {
                rewards.append(-beta * (logProbs[b, t] - ref[b, t]) + (t == end ? min(max(reward.scalars[b], -c), c) : 0))
            }
        }
        return ["rewards": output([batch, positions], rewards)]
    }
}
