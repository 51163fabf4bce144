import TensorCore

/// The clipped value loss of the critic, with the per-token terms.
public struct CriticLossResult<T: FloatScalar>: Sendable {
    /// 0.5 times the masked token-mean of the larger squared error. Shape [].
    public var loss: T
    /// clamp(V, V_old - ε_v, V_old + ε_v). Shape [B, M].
    public var clippedValues: Tensor<T>
    /// max((V - R)², (V_clipped - R)²), before masking and the 0.5. Shape [B, M].
    public var tokenLosses: Tensor<T>
    /// How many tokens the mask keeps.
    public var tokenCount: Int
}

/// PPO's clipped value loss, DeepSpeed-Chat's way.
///
/// ```
/// valuesClipped_t = clamp(V_t, V_old,t - ε_v, V_old,t + ε_v)
/// loss = 0.5 · Σ_{b,t} max((V_t - R_t)², (valuesClipped_t - R_t)²) · m_t / Σ_{b,t} m_t
/// ```
///
/// Shapes: `values`, `oldValues`, `returns` [B, M] float, `mask` [B, M] int64 ->
/// `loss` []. In the PPO step, M = N - start.
///
/// The `max` keeps the larger error: once V has moved more than ε_v past V_old
/// toward R, the clipped error is the larger one and its gradient is zero, so a
/// value can move only about ε_v per rollout. The clip range is absolute, in
/// reward units. The mean runs over every kept token of the batch.
///
/// Matches DeepSpeed-Chat `dschat/rlhf/ppo_trainer.py :: critic_loss_fn`
/// (the computation order `0.5 * sum(...) / mask.sum()` included).
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1
///   or selects no element, NaN in an input, or a negative `cliprangeValue`.
public func criticLoss<T: FloatScalar>(
    values: Tensor<T>,
    oldValues: Tensor<T>,
    returns: Tensor<T>,
    mask: Tensor<Int64>,
    cliprangeValue: Double
) throws(StageError) -> CriticLossResult<T> {
    let check = InputCheck(stage: "critic_loss")
    try check.rank(values, "values", is: 2, legend: "[B, M]")
    try check.shape(oldValues, "old_values", equals: values.shape, sameAs: "same as values")
    try check.shape(returns, "returns", equals: values.shape, sameAs: "same as values")
    try check.shape(mask, "mask", equals: values.shape, sameAs: "same as values")
    try check.binaryMask(mask, "mask")
    try check.nonNegative("cliprange_value", cliprangeValue)
    try check.noNaN(values, "values")
    try check.noNaN(oldValues, "old_values")
    try check.noNaN(returns, "returns")

    let clipRange = T(cliprangeValue)
    var clippedValues = Tensor<T>(shape: values.shape, repeating: 0)
    var tokenLosses = Tensor<T>(shape: values.shape, repeating: 0)
    for i in 0..<values.count {
        let value = values.scalars[i], target = returns.scalars[i]
        let valueClipped = min(max(value, oldValues.scalars[i] - clipRange), oldValues.scalars[i] + clipRange)
        let unclippedError = (value - target) * (value - target)
        let clippedError = (valueClipped - target) * (valueClipped - target)
        clippedValues.scalars[i] = valueClipped
        tokenLosses.scalars[i] = max(unclippedError, clippedError)
    }
    let (sum, count) = maskedSum(tokenLosses.scalars, mask: mask.scalars)
    guard count > 0 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "mask",
                         "the mask \(describe(shape: mask.shape)) selects no token; the token-mean would be 0/0")
    }
    let loss = (0.5 * sum) / T(count)
    try check.noNaNInResult(Tensor(scalar: loss), "loss")
    return CriticLossResult(loss: loss, clippedValues: clippedValues, tokenLosses: tokenLosses, tokenCount: count)
}
