// Exercise 05: PPO's clipped policy loss. Fill in the body below, then run
//   make exercise N=5
// Chapters/05-actor-loss/README.md explains the rule.
import TensorCore
import Workshop

/// PPO's clipped policy loss, DeepSpeed-Chat's way: a token-mean over the mask.
///
/// ```
/// ratio_t        = exp((logProbs_t - oldLogProbs_t) · m_t)
/// clippedRatio_t = clamp(ratio_t, 1 - ε, 1 + ε)                      (ε = cliprange)
/// loss_t         = max(-A_t · ratio_t, -A_t · clippedRatio_t)
/// loss           = Σ_{b,t} loss_t · m_t / Σ_{b,t} m_t
/// ```
///
/// Shapes: `logProbs`, `oldLogProbs`, `advantages` [B, M], `mask` [B, M] 0/1 -> a
/// scalar. Leave masked tokens out of the sum (do not multiply a NaN by 0).
func actorLoss(logProbs: Tensor<Double>, oldLogProbs: Tensor<Double>, advantages: Tensor<Double>, mask: Tensor<Int64>,
               cliprange: Double) throws -> Double {
    // Your code here.
    throw ExerciseNotImplemented()
}
