// Exercise 06: PPO's clipped value loss. Fill in the body below, then run
//   make exercise N=6
// Chapters/06-critic-loss/README.md explains the rule.
import TensorCore
import Workshop

/// PPO's clipped value loss, DeepSpeed-Chat's way.
///
/// ```
/// valuesClipped_t = clamp(V_t, V_old,t - ε_v, V_old,t + ε_v)          (ε_v = cliprangeValue)
/// loss = 0.5 · Σ_{b,t} max((V_t - R_t)², (valuesClipped_t - R_t)²) · m_t / Σ_{b,t} m_t
/// ```
///
/// Shapes: `values`, `oldValues`, `returns` [B, M], `mask` [B, M] 0/1 -> a scalar.
func criticLoss(values: Tensor<Double>, oldValues: Tensor<Double>, returns: Tensor<Double>, mask: Tensor<Int64>,
                cliprangeValue: Double) throws -> Double {
    // Your code here.
    throw ExerciseNotImplemented()
}
