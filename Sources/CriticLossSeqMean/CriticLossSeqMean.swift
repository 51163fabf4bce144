import TensorCore
import CriticLoss
import MaskedMeanOverRows

/// align-anything's clipped value loss, with the per-token terms.
public struct CriticLossSeqMeanResult<T: FloatScalar>: Sendable {
    /// 0.5 times the masked mean over rows of the larger squared error. Shape [].
    public var loss: T
    /// clamp(V, V_old - c, V_old + c). Shape [B, M].
    public var clippedValues: Tensor<T>
    /// max((V - R)², (V_clipped - R)²), before masking and the 0.5. Shape [B, M].
    public var tokenLosses: Tensor<T>
    /// n_b: how many tokens each row's mask keeps. Shape [B].
    public var tokenCounts: [Int]

    @inlinable
    public init(loss: T, clippedValues: Tensor<T>, tokenLosses: Tensor<T>, tokenCounts: [Int]) {
        self.loss = loss
        self.clippedValues = clippedValues
        self.tokenLosses = tokenLosses
        self.tokenCounts = tokenCounts
    }
}

/// PPO's clipped value loss, align-anything's way: a mean per sequence, then over
/// the batch.
///
/// ```
/// valuesClipped_t = clamp(V_t, V_old,t - c, V_old,t + c)
/// e_t  = max((V_t - R_t)², (valuesClipped_t - R_t)²)
/// loss = 0.5 · (1/B) · Σ_b ( Σ_t e_t · m_t / n_b ),   n_b = Σ_t m_t
/// ```
///
/// with c = `clipRangeValue`. Shapes: `values`, `oldValues`, `returns` [B, M]
/// float, `mask` [B, M] 0/1 -> `loss` []. In the PPO step, M = N - start.
///
/// Quirks of the peer, reproduced:
/// - align-anything's default clip range is 5.0 (`configs/train/text_to_text/ppo.yaml`),
///   25 times DeepSpeed-Chat's 0.2: with rewards of a few units, values rarely
///   move that far in one rollout, and the clip is mostly idle.
/// - The mean runs per sequence first (`masked_mean`): a one-token row weighs as
///   much as a long one. With every row of the same length it is v1's token mean.
/// - The mask multiplies after the squares: an infinite error under a 0 of the
///   mask gives inf · 0 = NaN in the peer; we throw.
/// - In the PPO step the old values are the critic's raw `reward_values`, not the
///   masked ones GAE used (see `ppoLossesSeqMean`).
///
/// The per-token errors are v1's `criticLoss` ones (called with a mask of ones),
/// `torch.square` being the same product. Against DeepSpeed-Chat's
/// `critic_loss_fn` (v1): the same formula, but a token mean over the whole batch,
/// a default clip range of 0.2, and old values zeroed past each answer.
///
/// Matches align-anything `align_anything/trainers/text_to_text/ppo.py ::
/// PPOTrainer.critic_loss_fn` with `align_anything/utils/tools.py :: masked_mean`.
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   a row whose mask selects nothing (peer: NaN), a batch of no rows, NaN in an
///   input, a negative or non-finite `clipRangeValue`, or a NaN loss.
@inlinable
public func criticLossSeqMean<T: FloatScalar>(
    values: Tensor<T>,
    oldValues: Tensor<T>,
    returns: Tensor<T>,
    mask: Tensor<Int64>,
    clipRangeValue: Double = 5.0
) throws(StageError) -> CriticLossSeqMeanResult<T> {
    let check = InputCheck(stage: "critic_loss_seq_mean")
    try check.maskedLossInputs([(values, "values"), (oldValues, "old_values"), (returns, "returns")], mask: mask)
    try check.nonNegative("clip_range_value", clipRangeValue)

    let perToken = try check.underThisStage { () throws(StageError) in
        try criticLoss(values: values, oldValues: oldValues, returns: returns,
                       mask: Tensor(shape: mask.shape, repeating: 1), cliprangeValue: clipRangeValue)
    }
    let loss = 0.5 * maskedMeanOverRows(perToken.tokenLosses, mask: mask)
    try check.noNaNInResult(Tensor(scalar: loss), "loss")
    return CriticLossSeqMeanResult(loss: loss, clippedValues: perToken.clippedValues,
                                   tokenLosses: perToken.tokenLosses, tokenCounts: rowCounts(mask))
}

/// The gradient of `criticLossSeqMean` with respect to the new values.
///
/// ```
/// loss = 0.5 · (1/B) · Σ_b Σ_t m_t · max(e_t, f_t) / n_b,   e_t = (V_t - R_t)²,   f_t = (Vc_t - R_t)²
/// Vc_t = clamp(V_t, V_old,t - c, V_old,t + c)  ->  ∂Vc_t/∂V_t = 1[inside the bounds]
/// grad_values_t = (0.5 · m_t / (B·n_b)) · (w_e · 2(V_t - R_t) + w_f · 2(Vc_t - R_t) · 1[inside])
///   (w_e, w_f) = (1, 0) if e > f, (0, 1) if e < f, (1/2, 1/2) on a tie
/// ```
///
/// Shapes: as `criticLossSeqMean`; `grad_values` [B, M].
///
/// The per-token factor is the one v1's `criticLossGradValues` computes; called
/// with a mask of ones it returns it times 0.5/(B·M), and
/// ``maskedMeanOverRowsGradient(fromTokenMeanGradient:mask:)`` turns 1/(B·M) into
/// m_t/(B·n_b). When the clipped error wins with V outside the bounds the
/// gradient is exactly zero. Ties and the inclusive bounds follow PyTorch's
/// autograd. Masked tokens get 0.
///
/// - Throws: ``StageError`` as `criticLossSeqMean` does, and for a NaN gradient.
@inlinable
public func criticLossSeqMeanGradValues<T: FloatScalar>(
    values: Tensor<T>, oldValues: Tensor<T>, returns: Tensor<T>, mask: Tensor<Int64>, clipRangeValue: Double = 5.0
) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "critic_loss_seq_mean")
    // The checks, and a loss that is a number.
    _ = try criticLossSeqMean(values: values, oldValues: oldValues, returns: returns, mask: mask,
                              clipRangeValue: clipRangeValue)
    let tokenMeanGradient = try check.underThisStage { () throws(StageError) in
        try criticLossGradValues(values: values, oldValues: oldValues, returns: returns,
                                 mask: Tensor(shape: mask.shape, repeating: 1), cliprangeValue: clipRangeValue)
    }
    let gradient = maskedMeanOverRowsGradient(fromTokenMeanGradient: tokenMeanGradient, mask: mask)
    try check.noNaNInResult(gradient, "grad_values")
    return gradient
}
