// Exercise 13: the three KL estimators, clamped, and their masked mean. Fill in
// the body below, then run
//   make exercise N=13
// Chapters/13-kl-estimators/README.md explains the rule.
import TensorCore
import Workshop

/// Schulman's single-sample KL estimates of a policy against a reference, per
/// token, as OpenRLHF computes them; with a mask, the per-sequence mean it logs.
///
/// ```
/// r[b,t]  = logProbs[b,t] - refLogProbs[b,t]
/// k1 = r      k2 = r·r / 2      k3 = (exp(-r) - 1) + r
/// kl[b,t] = min(max(k(r[b,t]), lo), hi)        (clipRange nil: no clamp)
/// klMean[b] = Σ_t kl[b,t]·mask[b,t] / Σ_t mask[b,t]          (nil without a mask)
/// ```
///
/// Shapes: `logProbs`, `refLogProbs` [B, T]; `mask` [B, T] 0/1 or nil;
/// `estimator` "k1", "k2" or "k3" -> `kl` [B, T] (every position, masked or not),
/// `klMean` [B].
func klEstimators(logProbs: Tensor<Double>, refLogProbs: Tensor<Double>, mask: Tensor<Int64>?, estimator: String,
                  clipRange: (lo: Double, hi: Double)?) throws -> (kl: Tensor<Double>, klMean: Tensor<Double>?) {
    // Your code here.
    throw ExerciseNotImplemented()
}
