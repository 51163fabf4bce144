import TensorCore

/// `z = logits / (temperature + 1e-7)`: TRL PPO's tempered logits.
///
/// `temperature + 1e-7` is formed in Double, as the Python expression is, and
/// rounded once to T; each logit is then divided by it in T (torch's division of a
/// float32 tensor by a Python float). The `+ 1e-7` is TRL's guard against a
/// temperature of 0; the stage still requires the sum to be positive.
@inlinable
public func temperedLogits<T: FloatScalar>(_ logits: Tensor<T>, temperature: Double) -> Tensor<T> {
    let divisor = T(temperature + 1e-7)
    var scaled = logits
    for i in scaled.scalars.indices {
        scaled.scalars[i] = logits.scalars[i] / divisor
    }
    return scaled
}
