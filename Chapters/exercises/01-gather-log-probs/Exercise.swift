// Exercise 01: gather_log_probs. Fill in the body below, then run
//   make exercise N=1
// Chapters/01-gather-log-probs/README.md explains the rule.
import TensorCore
import Workshop

/// The log-probability of each label under the softmax of its logits.
///
/// ```
/// log_probs[b, t] = logits[b, t, y] - logsumexp_v logits[b, t, v],   y = labels[b, t]
/// ```
///
/// Shapes: `logits` [B, T, V], `labels` [B, T] (token ids in [0, V)) -> [B, T].
///
/// The inputs are already shifted by the caller (`logits[:, :-1]` against
/// `input_ids[:, 1:]`): position t of `logits` goes with position t of `labels`.
/// Subtract the row's maximum before exponentiating (exp(1e4) overflows).
/// Useful: `logits[b, t, v]`, `labels[b, t]`, `Tensor<Double>(shape:repeating:)`,
/// and `result[b, t] = x` to fill the result.
func gatherLogProbs(logits: Tensor<Double>, labels: Tensor<Int64>) throws -> Tensor<Double> {
    // Your code here.
    throw ExerciseNotImplemented()
}
