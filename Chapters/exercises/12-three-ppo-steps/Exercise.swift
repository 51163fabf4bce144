// Exercise 12: TRL's masked whitening. Fill in the body below, then run
//   make exercise N=12
// Chapters/12-three-ppo-steps/README.md explains the rule.
import TensorCore
import Workshop

/// Shift and scale every value by the mean and the unbiased standard deviation of
/// the values the mask selects (TRL's `masked_whiten`).
///
/// ```
/// n  = Σ_{b,t} mask[b,t]                                (all rows together)
/// μ  = Σ_{b,t} values·mask / n
/// σ² = Σ_{b,t} (values - μ)²·mask / (n - 1)
/// whitened[b,t] = (values[b,t] - μ) / sqrt(σ² + 1e-8)         (every position)
/// shiftMean == false:  whitened[b,t] += μ
/// ```
///
/// Shapes: `values` [B, T], `mask` [B, T] 0/1 -> [B, T]. Masked positions are
/// transformed too, not zeroed.
func maskedWhiten(values: Tensor<Double>, mask: Tensor<Int64>, shiftMean: Bool) throws -> Tensor<Double> {
    // Your code here.
    throw ExerciseNotImplemented()
}
