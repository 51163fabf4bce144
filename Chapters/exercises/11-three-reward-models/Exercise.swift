// Exercise 11: align-anything's end scores. Fill in the body below, then run
//   make exercise N=11
// Chapters/11-three-reward-models/README.md explains the rule.
import TensorCore
import Workshop

/// Each sequence's reward is the score head's output at its last attended position.
///
/// ```
/// endIndex[b]  = max { t : attentionMask[b, t] != 0 }
///                (no attentionMask: the batch has one row, endIndex = L - 1)
/// endScores[b] = scores[b, endIndex[b]]
/// ```
///
/// Shapes: `scores` [B, L], `attentionMask` [B, L] 0/1 or nil -> B indices and a
/// [B] tensor. The mask decides, whatever the padding side; a 0 inside a row is
/// skipped.
func rewardEndScoresAttn(scores: Tensor<Double>, attentionMask: Tensor<Int64>?) throws
    -> (endIndex: [Int], endScores: Tensor<Double>) {
    // Your code here.
    throw ExerciseNotImplemented()
}
