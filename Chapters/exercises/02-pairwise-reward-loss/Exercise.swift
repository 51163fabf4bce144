// Exercise 02: DeepSpeed-Chat's pairwise reward loss. Fill in the body below, then run
//   make exercise N=2
// Chapters/02-pairwise-reward-loss/README.md explains the rule.
import TensorCore
import Workshop

/// DeepSpeed-Chat's pairwise reward loss: per token, over the span where the two
/// answers differ, and the end scores it logs.
///
/// ```
/// for each pair i (chosen row i, rejected row B + i):
///   c_end = index of the (k+1)-th pad id in the chosen ids, or L if there are fewer
///   r_end = the same for the rejected ids                 (k = numPaddingAtBeginning)
///   if the two rows are identical:  div = L - 1, end = L, r_end = c_end
///   else:                           div = first t with chosen[t] != rejected[t]
///                                   end = max(c_end, r_end)
///   loss_i = mean over t in [div, end) of -log σ(rewards[i, t] - rewards[B + i, t])
/// loss = (1/B) Σ_i loss_i
/// chosenMeanScores[i]   = rewards[i, c_end - 1]
/// rejectedMeanScores[i] = rewards[B + i, r_end - 1]     (index -1 means the last column)
/// ```
///
/// Shapes: `inputIds` [2B, L] (chosen rows first, then rejected), `rewards` [2B, L]
/// -> a scalar loss, two [B] tensors. Use `logSigmoid(_:)` (TensorCore) for
/// log σ: -log(sigmoid(x)) overflows for very negative x.
func pairwiseRewardLoss(inputIds: Tensor<Int64>, rewards: Tensor<Double>, padId: Int64, numPaddingAtBeginning: Int) throws
    -> (loss: Double, chosenMeanScores: Tensor<Double>, rejectedMeanScores: Tensor<Double>) {
    // Your code here.
    throw ExerciseNotImplemented()
}
