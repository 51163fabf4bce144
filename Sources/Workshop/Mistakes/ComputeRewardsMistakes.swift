import TensorCore
import Golden
import ComputeRewards

/// The well-known wrong per-token PPO rewards.
enum ComputeRewardsMistakes {
    static let chapter = "Chapters/03-compute-rewards"

    static let entry = StageMistakes(stage: "compute_rewards", mistakes: [klSign, scoreOnLastAnswerToken, unclippedScore]) { a, output, index in
        guard output == "rewards", index.count == 2 else { return nil }
        let (b, t) = (index[0], index[1])
        let logProbs = try a.float("log_probs"), refLogProbs = try a.float("ref_log_probs")
        let mask = try a.mask("action_mask"), start = try a.int("prompt_length") - 1
        let klCtl = try a.real("kl_ctl"), clip = try a.real("clip_reward_value")
        let score = try a.float("reward_score").scalars[b]
        var lines = ["KL term -kl_ctl·(log_probs - ref_log_probs) = -\(show(klCtl))·(\(show(logProbs[b, t])) - \(show(refLogProbs[b, t]))) = \(show(-klCtl * (logProbs[b, t] - refLogProbs[b, t])))"]
        let position = scorePositions(actionMask: mask, start: start)[b]
        if t == position {
            lines.append("plus the clipped score clamp(\(show(score)), -\(show(clip)), \(show(clip))) = \(show(min(max(score, -clip), clip))): this is where row \(b)'s score lands")
        } else {
            lines.append("no score here: row \(b)'s score lands at position \(position) (start + answer tokens = one past the last answer token)")
        }
        return lines
    }

    static func inputs(_ a: FixtureArguments<Double>) throws -> (lp: Tensor<Double>, ref: Tensor<Double>, score: Tensor<Double>, mask: Tensor<Int64>, start: Int, kl: Double, clip: Double) {
        (try a.float("log_probs"), try a.float("ref_log_probs"), try a.float("reward_score"), try a.mask("action_mask"),
         try a.int("prompt_length") - 1, try a.real("kl_ctl"), try a.real("clip_reward_value"))
    }

    static let klSign = Mistake(
        id: "compute_rewards.kl-sign", stage: "compute_rewards", chapter: chapter,
        title: "+kl_ctl·(log_probs - ref_log_probs): the KL penalty with its sign flipped",
        explanation: "The penalty is r_t = -β·(log π(a_t) - log π_ref(a_t)): it lowers the reward where the policy is more confident than the reference. With the sign flipped (or ref - logprob written the other way round) drifting away from the reference is rewarded.") { a in
        // The same computation with the two log-probs swapped: the KL term changes sign, the score does not.
        let x = try inputs(a)
        return ["rewards": FixtureTensor(try computeRewards(logProbs: x.ref, refLogProbs: x.lp, rewardScore: x.score, actionMask: x.mask,
                                                            promptLength: x.start + 1, klCtl: x.kl, clipRewardValue: x.clip))]
    }

    static let scoreOnLastAnswerToken = Mistake(
        id: "compute_rewards.score-on-last-answer-token", stage: "compute_rewards", chapter: chapter,
        title: "the score on the last answer token instead of one past it",
        explanation: "DeepSpeed-Chat adds the score at rewards[j, start:ends[j]][-1] with ends = start + n + 1: one position past the last answer token, the action that produced the EOS (or first pad). OpenRLHF and align-anything put it on the last answer token; this stage follows DeepSpeed-Chat.") { a in
        let x = try inputs(a)
        var rewards = try computeRewards(logProbs: x.lp, refLogProbs: x.ref, rewardScore: x.score, actionMask: x.mask,
                                         promptLength: x.start + 1, klCtl: x.kl, clipRewardValue: x.clip)
        let positions = scorePositions(actionMask: x.mask, start: x.start), width = x.mask.shape[1]
        for b in 0..<x.mask.shape[0] {
            let lastAnswer = (x.start..<width).last { x.mask[b, $0] != 0 } ?? x.start
            let clipped = min(max(x.score.scalars[b], -x.clip), x.clip)
            rewards.scalars[b * width + positions[b]] -= clipped
            rewards.scalars[b * width + lastAnswer] += clipped
        }
        return ["rewards": FixtureTensor(rewards)]
    }

    static let unclippedScore = Mistake(
        id: "compute_rewards.unclipped-score", stage: "compute_rewards", chapter: chapter,
        title: "the score added without clamping it to ±clip_reward_value",
        explanation: "DeepSpeed-Chat clamps the reward model's score to [-clip_reward_value, clip_reward_value] (5 by default) before adding it, so one outlier score cannot dominate the advantages. The KL terms are not clamped.") { a in
        let x = try inputs(a)
        var rewards = try computeRewards(logProbs: x.lp, refLogProbs: x.ref, rewardScore: x.score, actionMask: x.mask,
                                         promptLength: x.start + 1, klCtl: x.kl, clipRewardValue: x.clip)
        let positions = scorePositions(actionMask: x.mask, start: x.start), width = x.mask.shape[1]
        for b in 0..<x.mask.shape[0] {
            let score = x.score.scalars[b]
            rewards.scalars[b * width + positions[b]] += score - min(max(score, -x.clip), x.clip)
        }
        return ["rewards": FixtureTensor(rewards)]
    }
}
