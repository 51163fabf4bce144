import TensorCore

/// `criticLoss` for float32, at memory speed: the same loop over flat arrays,
/// with no generic dispatch per element.
///
/// ```
/// V_clipped_t = clamp(V_t, V_old,t - ε_v, V_old,t + ε_v)
/// loss_t      = max((V_t - R_t)², (V_clipped_t - R_t)²)
/// loss        = 0.5 · Σ_{b,t} loss_t · m_t / Σ_{b,t} m_t
/// ```
///
/// Shapes: `values`, `oldValues`, `returns` [B, M] float32, `mask` [B, M] int64
/// -> `loss` []. B batch, M the answer positions.
///
/// Equals the plain `criticLoss(values:oldValues:returns:mask:cliprangeValue:)`
/// bit for bit (the same float32 operations in the same order), and through it
/// DeepSpeed-Chat `ppo_trainer.py :: critic_loss_fn`. The plain one is generic
/// and runs unspecialised when called from another module; this one does not.
/// One thread; allocates its two [B, M] outputs only.
///
/// - Throws: the same ``StageError``s as `criticLoss`, in the same order.
public func criticLossFast(
    values: Tensor<Float>,
    oldValues: Tensor<Float>,
    returns: Tensor<Float>,
    mask: Tensor<Int64>,
    cliprangeValue: Double
) throws(StageError) -> CriticLossResult<Float> {
    let check = InputCheck(stage: "critic_loss")
    try checkCriticLossInputs(values: values, oldValues: oldValues, returns: returns, mask: mask,
                              cliprangeValue: cliprangeValue, check)
    // A concrete scan first; the generic check runs only to name the NaN.
    for (name, tensor) in [("values", values), ("old_values", oldValues), ("returns", returns)]
    where containsNaN(tensor.scalars) {
        try check.noNaN(tensor, name)
    }

    let clipRange = Float(cliprangeValue)
    let count = values.count
    var clippedValues = [Float](repeating: 0, count: count)
    var tokenLosses = [Float](repeating: 0, count: count)
    for i in 0..<count {
        let value = values.scalars[i], target = returns.scalars[i]
        let valueClipped = min(max(value, oldValues.scalars[i] - clipRange), oldValues.scalars[i] + clipRange)
        clippedValues[i] = valueClipped
        tokenLosses[i] = max((value - target) * (value - target), (valueClipped - target) * (valueClipped - target))
    }
    let (sum, kept) = maskedSum(tokenLosses, mask: mask.scalars)
    let loss = try criticTokenMean(sum: sum, count: kept, mask: mask, check)
    return CriticLossResult(loss: loss, clippedValues: Tensor.make(values.shape, clippedValues),
                            tokenLosses: Tensor.make(values.shape, tokenLosses), tokenCount: kept)
}
