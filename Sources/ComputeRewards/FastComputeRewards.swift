import TensorCore

/// `computeRewards` for float32, at memory speed: the same arithmetic over flat
/// arrays, with no generic dispatch per element.
///
/// ```
/// rewards[b, t]  = -kl_ctl · (log_probs[b, t] - ref_log_probs[b, t])
/// rewards[b, s_b] += clamp(reward_score[b], -clip, clip),   s_b = min(ends[b], N) - 1
/// ```
///
/// Shapes: `logProbs`, `refLogProbs` [B, N] float32, `rewardScore` [B],
/// `actionMask` [B, N] int64 -> `rewards` [B, N]. B batch, N log-prob positions.
///
/// Equals the plain `computeRewards(...)` bit for bit (the same float32
/// operations in the same order), and through it DeepSpeed-Chat
/// `ppo_trainer.py :: compute_rewards`. The plain one is generic and runs
/// unspecialised when called from another module; this one does not. One
/// thread; allocates the [B, N] result only.
///
/// - Throws: the same ``StageError``s as `computeRewards`, in the same order.
public func computeRewardsFast(
    logProbs: Tensor<Float>,
    refLogProbs: Tensor<Float>,
    rewardScore: Tensor<Float>,
    actionMask: Tensor<Int64>,
    promptLength: Int,
    klCtl: Double,
    clipRewardValue: Double
) throws(StageError) -> Tensor<Float> {
    let check = InputCheck(stage: "compute_rewards")
    try checkComputeRewardsInputs(logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: rewardScore,
                                  actionMask: actionMask, promptLength: promptLength, klCtl: klCtl,
                                  clipRewardValue: clipRewardValue, check)
    // A concrete scan first; the generic check runs only to name the NaN.
    for (name, tensor) in [("log_probs", logProbs), ("ref_log_probs", refLogProbs), ("reward_score", rewardScore)]
    where containsNaN(tensor.scalars) {
        try check.noNaN(tensor, name)
    }

    let positions = logProbs.shape[1]
    let negativeKLCoefficient = Float(-klCtl)  // -kl_ctl in Double first, as in `computeRewards`
    let clipBound = Float(clipRewardValue)
    var rewards = [Float](repeating: 0, count: logProbs.count)
    for i in 0..<logProbs.count {
        rewards[i] = negativeKLCoefficient * (logProbs.scalars[i] - refLogProbs.scalars[i])
    }
    for (row, scorePosition) in scorePositions(actionMask: actionMask, start: promptLength - 1).enumerated() {
        rewards[row * positions + scorePosition] += min(max(rewardScore.scalars[row], -clipBound), clipBound)
    }
    let result = Tensor.make(logProbs.shape, rewards)
    if containsNaN(rewards) { try check.noNaNInResult(result, "rewards") }
    return result
}
