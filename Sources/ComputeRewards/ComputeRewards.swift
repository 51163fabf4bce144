import TensorCore

/// The per-token rewards of PPO: a KL penalty on every token, plus the reward
/// model's clipped score on one token per row.
///
/// ```
/// start   = prompt_length - 1
/// n[b]    = Σ_{t >= start} action_mask[b, t]            (answer tokens of row b)
/// end[b]  = start + n[b] + 1
/// rewards[b, t] = -kl_ctl * (log_probs[b, t] - ref_log_probs[b, t])     for every t
/// rewards[b, min(end[b], N) - 1] += clamp(reward_score[b], -clip_reward_value, clip_reward_value)
/// ```
///
/// Shapes: `logProbs`, `refLogProbs` [B, N] float, `rewardScore` [B] float,
/// `actionMask` [B, N] int64 (= `attention_mask[:, 1:]`) -> `rewards` [B, N].
///
/// Where the score lands: at `start + n`, one position past the last answer token.
/// In log-prob coordinates position t scores token t + 1, so `start + n` is the
/// action whose target is the first pad (the end-of-sequence token when pad ==
/// eos), outside the answer mask. A row that runs to full length has no such
/// position; the slice `rewards[b, start:end[b]]` stops at N, and the score lands
/// on the last position, N - 1. The KL term stays on every position, prompt and
/// padding included: masking happens later, in the losses.
///
/// Matches DeepSpeed-Chat `dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.compute_rewards`
/// (`rewards[j, start:ends[j]][-1] += reward_clip[j]`). align-anything and OpenRLHF
/// put the score on the last answer token instead (see the chapter on it).
///
/// Infinite inputs give what PyTorch gives: an infinite log-prob makes the KL term
/// ±inf, and an infinite score is clamped to ±clip_reward_value. Where PyTorch's
/// reward is NaN the stage throws: where both log-probs are the same infinity
/// (inf - inf), or `klCtl` = 0 meets an infinite difference (0 · inf).
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   NaN in a float input, `promptLength` outside `[1, N]` (no answer position), a
///   negative `clipRewardValue`, or a reward that would be NaN (`nonFiniteResult`
///   naming `rewards` and the index).
@inlinable
public func computeRewards<T: FloatScalar>(
    logProbs: Tensor<T>,
    refLogProbs: Tensor<T>,
    rewardScore: Tensor<T>,
    actionMask: Tensor<Int64>,
    promptLength: Int,
    klCtl: Double,
    clipRewardValue: Double
) throws(StageError) -> Tensor<T> {
    let rewards = try computeRewardsWithoutResultCheck(
        logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: rewardScore, actionMask: actionMask,
        promptLength: promptLength, klCtl: klCtl, clipRewardValue: clipRewardValue)
    // -kl_ctl · (log_probs - ref_log_probs) is NaN where both log-probs are the same
    // infinity (inf - inf) or a kl_ctl of 0 meets an infinite difference (0 · inf),
    // in PyTorch too. The clamped score added on top is finite.
    try InputCheck(stage: "compute_rewards").noNaNInResult(rewards, "rewards")
    return rewards
}

/// `computeRewards` with every input check but without the last check, that the
/// result holds no NaN.
///
/// For `ppoLosses`, which zeroes each row from its end on before anything reads
/// the rewards, as DeepSpeed-Chat's `train_rlhf` does: a NaN KL term there is
/// gone in PyTorch's result too, so `ppoLosses` checks the rewards after zeroing.
///
/// - Throws: ``StageError`` as `computeRewards` does, except for a NaN result.
@inlinable
public func computeRewardsWithoutResultCheck<T: FloatScalar>(
    logProbs: Tensor<T>,
    refLogProbs: Tensor<T>,
    rewardScore: Tensor<T>,
    actionMask: Tensor<Int64>,
    promptLength: Int,
    klCtl: Double,
    clipRewardValue: Double
) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "compute_rewards")
    try check.rank(logProbs, "log_probs", is: 2, legend: "[B, N]")
    let batchSize = logProbs.shape[0], positions = logProbs.shape[1]
    try check.shape(refLogProbs, "ref_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(rewardScore, "reward_score", equals: [batchSize], sameAs: "[B] from log_probs \(describe(shape: logProbs.shape))")
    try check.shape(actionMask, "action_mask", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.binaryMask(actionMask, "action_mask")
    try check.parameter("prompt_length", promptLength, in: 1..<(positions + 1),
                        "start = prompt_length - 1 must be an answer position in [0, N) with N = \(positions)")
    try check.finite("kl_ctl", klCtl)
    try check.nonNegative("clip_reward_value", clipRewardValue)
    try check.noNaN(logProbs, "log_probs")
    try check.noNaN(refLogProbs, "ref_log_probs")
    try check.noNaN(rewardScore, "reward_score")

    let start = promptLength - 1
    // -kl_ctl is formed first, in Double, as Python does with `-self.kl_ctl * (...)`.
    let negativeKLCoefficient = T(-klCtl)
    let clipBound = T(clipRewardValue)
    var rewards = Tensor<T>(shape: logProbs.shape, repeating: 0)
    let landing = scorePositions(actionMask: actionMask, start: start)
    for row in 0..<batchSize {
        for t in 0..<positions {
            rewards[row, t] = negativeKLCoefficient * (logProbs[row, t] - refLogProbs[row, t])
        }
        let scorePosition = landing[row]
        let clippedScore = min(max(rewardScore.scalars[row], -clipBound), clipBound)
        rewards[row, scorePosition] += clippedScore
    }
    return rewards
}

/// DeepSpeed-Chat's `ends`: one past where each row's score lands.
///
/// ```
/// n[b]    = Σ_{t >= start} action_mask[b, t]      ones counted, not positions
/// ends[b] = start + n[b] + 1
/// ```
///
/// Shapes: `actionMask` [B, N] int64 -> one index per row, in `[start + 1, N + 1]`.
/// `compute_rewards` adds the score at `rewards[b, start:ends[b]][-1]`, and
/// `train_rlhf` zeroes rewards and values from `ends[b]` on.
@inlinable
public func answerEnds(actionMask: Tensor<Int64>, start: Int) -> [Int] {
    let batchSize = actionMask.shape[0], positions = actionMask.shape[1]
    return (0..<batchSize).map { row in
        start + (start..<positions).reduce(0) { $0 + Int(actionMask.scalars[row * positions + $1]) } + 1
    }
}

/// Where `computeRewards` puts each row's score: `min(ends, N) - 1`, which is
/// `start + n` (one past the last answer token) for a padded answer and `N - 1`
/// for an answer that runs to the end of the row.
///
/// Shapes: `actionMask` [B, N] int64 -> one position per row.
@inlinable
public func scorePositions(actionMask: Tensor<Int64>, start: Int) -> [Int] {
    let positions = actionMask.shape[1]
    return answerEnds(actionMask: actionMask, start: start).map { min($0, positions) - 1 }
}
