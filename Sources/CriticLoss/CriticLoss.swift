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

    @inlinable
    public init(loss: T, clippedValues: Tensor<T>, tokenLosses: Tensor<T>, tokenCount: Int) {
        self.loss = loss
        self.clippedValues = clippedValues
        self.tokenLosses = tokenLosses
        self.tokenCount = tokenCount
    }
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
/// Infinite inputs give what PyTorch gives (an infinite value, old value or
/// return makes a squared error, and so the loss, +inf), and where PyTorch's loss
/// is NaN the stage throws: an infinite input at a masked token (its squared
/// error inf times the mask 0 is NaN in PyTorch's `sum(... · mask)`), or a kept
/// token with V = R = ±inf (inf - inf).
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1
///   or selects no element, NaN in an input, a negative `cliprangeValue`, or a
///   loss that would be NaN (`nonFiniteResult` naming `loss`).
@inlinable
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
    var clippedValues = [T](repeating: 0, count: values.count)
    var tokenLosses = [T](repeating: 0, count: values.count)
    for i in 0..<values.count {
        let value = values.scalars[i], target = returns.scalars[i]
        let valueClipped = min(max(value, oldValues.scalars[i] - clipRange), oldValues.scalars[i] + clipRange)
        let unclippedError = (value - target) * (value - target)
        let clippedError = (valueClipped - target) * (valueClipped - target)
        clippedValues[i] = valueClipped
        // NaN-propagating, as torch.max: with V_old = R = inf the clipped error is
        // (inf - inf)² = NaN beside an unclipped inf, and PyTorch's loss is NaN.
        tokenLosses[i] = maximumPropagatingNaN(unclippedError, clippedError)
    }
    let (sum, count) = maskedSum(tokenLosses, mask: mask.scalars)
    guard count > 0 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "mask",
                         "the mask \(describe(shape: mask.shape)) selects no token; the token-mean would be 0/0")
    }
    let loss = (0.5 * sum) / T(count)
    // The sum above skips masked tokens; PyTorch's sum(error_t · mask_t) multiplies
    // them by 0, and a masked token with an infinite input (or a squared error that
    // overflows) has an error of inf: inf · 0 makes the loss NaN.
    try check.noNonFiniteDroppedByMask(tokenLosses, mask: mask.scalars, shape: mask.shape, "loss",
                                       what: "the squared error (an infinite input at a masked token)")
    let result = CriticLossResult(loss: loss, clippedValues: Tensor.make(values.shape, clippedValues),
                                  tokenLosses: Tensor.make(values.shape, tokenLosses), tokenCount: count)
    try check.noNaNInResult(loss, "loss", terms: result.tokenLosses, "the squared error")
    return result
}

/// The gradient of `criticLoss` with respect to the new values.
///
/// ```
/// loss = 0.5 · Σ_t m_t · max(e_t, f_t) / n,   e_t = (V_t - R_t)²,   f_t = (Vc_t - R_t)²
/// Vc_t = clamp(V_t, V_old,t - ε_v, V_old,t + ε_v)  ->  ∂Vc_t/∂V_t = 1[inside the bounds]
/// grad_values_t = (0.5 · m_t / n) · (w_e · 2(V_t - R_t) + w_f · 2(Vc_t - R_t) · 1[inside])
///   (w_e, w_f) = (1, 0) if e > f, (0, 1) if e < f, (1/2, 1/2) on a tie
/// ```
///
/// Shapes: as `criticLoss`; `grad_values` [B, M].
///
/// When the clipped error wins the `max` with V outside the bounds, the gradient
/// is exactly zero: the value has already moved ε_v from the old one. Masked
/// tokens get zero. Ties and the inclusive bounds follow PyTorch's autograd.
///
/// Infinite inputs follow autograd too: outside the clip bounds the clipped
/// branch gives an exact 0 (a select, as PyTorch's clamp backward, not a multiply
/// by 0: with V_old = ±inf the clipped value is ±inf, and inf · 0 would be NaN),
/// and an infinite error gives ±inf. `2·(V - R)` is formed first, then scaled, as
/// autograd does, so a difference near the float range overflows as PyTorch's does.
///
/// - Throws: ``StageError`` as `criticLoss` does, and `nonFiniteResult` naming
///   `grad_values` where the gradient would be NaN.
@inlinable
public func criticLossGradValues<T: FloatScalar>(
    values: Tensor<T>, oldValues: Tensor<T>, returns: Tensor<T>, mask: Tensor<Int64>, cliprangeValue: Double
) throws(StageError) -> Tensor<T> {
    let forward = try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                 cliprangeValue: cliprangeValue)
    let clipRange = T(cliprangeValue)
    let perToken = T(0.5) / T(forward.tokenCount)
    var gradValues = Tensor<T>(shape: values.shape, repeating: 0)
    for i in 0..<values.count where mask.scalars[i] != 0 {
        let value = values.scalars[i], target = returns.scalars[i]
        let valueClipped = forward.clippedValues.scalars[i]
        let unclippedError = (value - target) * (value - target)
        let clippedError = (valueClipped - target) * (valueClipped - target)
        let (toUnclipped, toClipped) = maximumGradientShares(unclippedError, clippedError)
        let lower = oldValues.scalars[i] - clipRange, upper = oldValues.scalars[i] + clipRange
        // In autograd's order: (share of the upstream 0.5/n) · 2(x - R) per branch;
        // the clamp passes its gradient only inside the bounds and gives an exact 0
        // outside (a select: a 0/1 indicator times an infinite error would be NaN).
        let throughUnclipped = (toUnclipped * perToken) * (2 * (value - target))
        let throughClipped = value >= lower && value <= upper ? (toClipped * perToken) * (2 * (valueClipped - target)) : 0
        gradValues.scalars[i] = throughUnclipped + throughClipped
    }
    try InputCheck(stage: "critic_loss").noNaNInResult(gradValues, "grad_values")
    return gradValues
}
