// Exercise 04: generalized advantage estimation. Fill in the body below, then run
//   make exercise N=4
// Chapters/04-gae/README.md explains the rule.
import TensorCore
import Workshop

/// Generalized advantage estimation, run backwards from the last position.
///
/// ```
/// V_N = 0 (nothing after the last column),  A_N = 0
/// for t = N-1 down to start:
///   delta_t = r_t + γ·V_t+1 - V_t
///   A_t     = delta_t + γ·λ·A_t+1
/// R_t = A_t + V_t
/// ```
///
/// Shapes: `values`, `rewards` [B, N] -> `advantages`, `returns` [B, N - start]
/// (column j of the outputs is position start + j of the inputs). Nothing is
/// masked here. Useful: `values[b, t]`, `Tensor<Double>(shape: [B, W], repeating: 0)`
/// and `advantages[b, j] = x`.
func gae(values: Tensor<Double>, rewards: Tensor<Double>, start: Int, gamma: Double, lambda: Double) throws
    -> (advantages: Tensor<Double>, returns: Tensor<Double>) {
    // Your code here.
    throw ExerciseNotImplemented()
}
