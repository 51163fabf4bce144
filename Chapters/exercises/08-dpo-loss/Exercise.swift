// Exercise 08: the DPO loss. Fill in the body below, then run
//   make exercise N=8
// Chapters/08-dpo-loss/README.md explains the rule.
import TensorCore
import Workshop

/// Direct preference optimization, align-anything's way: the policy's log-ratio
/// to the reference as the implicit reward.
///
/// ```
/// S(x)  = Σ_t x[t]                                  (sequence log-prob; pads are 0)
/// h_w   = S(betterLogProbs) - S(refBetterLogProbs)
/// h_l   = S(worseLogProbs)  - S(refWorseLogProbs)
/// loss  = mean_i -log σ(β · (h_w,i - h_l,i))
/// betterSampleReward = β · h_w,   worseSampleReward = β · h_l
/// ```
///
/// Shapes: the four inputs [B, T] (per-token log-probs, zero-padded) -> a scalar
/// loss and two [B] tensors. Use `logSigmoid(_:)` (TensorCore) for log σ.
func dpoLoss(betterLogProbs: Tensor<Double>, worseLogProbs: Tensor<Double>, refBetterLogProbs: Tensor<Double>,
             refWorseLogProbs: Tensor<Double>, beta: Double) throws
    -> (loss: Double, betterSampleReward: Tensor<Double>, worseSampleReward: Tensor<Double>) {
    // Your code here.
    throw ExerciseNotImplemented()
}
