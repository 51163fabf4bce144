// Exercise 15: GRPO's and RLOO's group advantages. Fill in the body below, then run
//   make exercise N=15
// Chapters/15-critic-free-advantages/README.md explains the rule. The harness grades
// the fixtures with one reward function and no RLOO KL penalty, clamp or
// normalisation, and skips the others.
import TensorCore
import Workshop

/// One advantage per completion, from its reward and the rewards of its group
/// (rows iG … iG+G-1 answer prompt i, G = groupSize).
///
/// ```
/// "grpo":  μ_n = the mean of r over n's group
///          s_n = scaleRewards "group": the std of r over n's group    (0 when G = 1)
///                             "batch": the std of all N rewards       (0 when N = 1)
///          A_n = r_n - μ_n,  then, unless scaleRewards is "none":  A_n ← A_n / (s_n + 1e-4)
/// "rloo":  A_n = r_n - (Σ_group r - r_n)/(G - 1)      (G = 1: A_n = 0; scaleRewards not read)
/// ```
///
/// "std" is the unbiased sample std, sqrt(Σ (r - μ)² / (n - 1)). Shapes: `rewards`
/// [N] -> [N].
func groupAdvantages(rewards: Tensor<Double>, groupSize: Int, estimator: String, scaleRewards: String) throws -> Tensor<Double> {
    // Your code here.
    throw ExerciseNotImplemented()
}
