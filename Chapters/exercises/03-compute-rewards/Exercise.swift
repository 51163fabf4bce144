// Exercise 03: the per-token PPO rewards. Fill in the body below, then run
//   make exercise N=3
// Chapters/03-compute-rewards/README.md explains the rule.
import TensorCore
import Workshop

/// A KL penalty on every token, plus the reward model's clipped score on one
/// token per row (DeepSpeed-Chat's `compute_rewards`).
///
/// ```
/// start   = promptLength - 1
/// n[b]    = Σ_{t >= start} actionMask[b, t]                 (answer tokens of row b)
/// end[b]  = start + n[b] + 1
/// rewards[b, t] = -klCtl · (logProbs[b, t] - refLogProbs[b, t])        for every t
/// rewards[b, min(end[b], N) - 1] += clamp(rewardScore[b], -clipRewardValue, clipRewardValue)
/// ```
///
/// Shapes: `logProbs`, `refLogProbs` [B, N], `rewardScore` [B], `actionMask`
/// [B, N] 0/1 -> [B, N]. The score lands one past the last answer token (the
/// action that produced the EOS); the KL term stays on every position.
func computeRewards(logProbs: Tensor<Double>, refLogProbs: Tensor<Double>, rewardScore: Tensor<Double>,
                    actionMask: Tensor<Int64>, promptLength: Int, klCtl: Double, clipRewardValue: Double) throws -> Tensor<Double> {
    // Your code here.
    throw ExerciseNotImplemented()
}
