import TensorCore
import ActorLoss
import MaskedMeanOverRows

/// align-anything's clipped policy loss, with the per-token terms a reader wants to see.
public struct ActorLossSeqMeanResult<T: FloatScalar>: Sendable {
    /// -(masked mean over rows of u). Shape [].
    public var loss: T
    /// ratio_t = exp(log_probs_t - old_log_probs_t), not masked. Shape [B, M].
    public var ratios: Tensor<T>
    /// -u_t = max(-A·ratio, -A·clip(ratio, 1-ε, 1+ε)), before masking. Shape [B, M].
    public var tokenLosses: Tensor<T>
    /// n_b: how many tokens each row's mask keeps (each row's denominator). Shape [B].
    public var tokenCounts: [Int]

    @inlinable
    public init(loss: T, ratios: Tensor<T>, tokenLosses: Tensor<T>, tokenCounts: [Int]) {
        self.loss = loss
        self.ratios = ratios
        self.tokenLosses = tokenLosses
        self.tokenCounts = tokenCounts
    }
}

/// PPO's clipped policy loss, align-anything's way: a mean per sequence, then over
/// the batch.
///
/// ```
/// ratio_t = exp(log_probs_t - old_log_probs_t)                       (not masked)
/// u_t     = min(A_t · ratio_t, A_t · clamp(ratio_t, 1 - ε, 1 + ε))
/// loss    = -(1/B) · Σ_b ( Σ_t u_t · m_t / n_b ),   n_b = Σ_t m_t
/// ```
///
/// with ε = `clipRangeRatio` (align-anything's default 0.2). Shapes: `logProbs`,
/// `oldLogProbs`, `advantages` [B, M] float, `mask` [B, M] 0/1 -> `loss` []. In the
/// PPO step, M = N - start: the answer part.
///
/// Quirks of the peer, reproduced:
/// - The mean runs per sequence first (`utils/tools.py :: masked_mean`): a
///   one-token row weighs as much as a long one, so its token weighs more than
///   each of theirs. With every row of the same length it is v1's token mean.
/// - The log-ratio is not masked: a masked token keeps its real ratio, and is
///   multiplied by 0 only after the surrogate. If that surrogate is infinite (a
///   masked ratio that overflows with A < 0), inf · 0 makes the peer's loss NaN:
///   we throw.
///
/// The per-token terms are v1's `actorLoss` ones: called with a mask of ones, its
/// ratio `exp((log_probs - old)·1)` is this unmasked ratio, and its
/// `max(-A·ratio, -A·clip)` is `-u` exactly (negation is exact). Against
/// DeepSpeed-Chat's `actor_loss_fn` (v1): there the log-ratio is multiplied by the
/// mask before `exp` (ratio 1 under the mask), and the mean is one token mean
/// over the whole batch.
///
/// Matches align-anything `align_anything/trainers/text_to_text/ppo.py ::
/// PPOTrainer.actor_loss_fn` with `align_anything/utils/tools.py :: masked_mean`.
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   a row whose mask selects nothing (the peer's 0/0 makes the whole loss NaN),
///   a batch of no rows, NaN in an input, a negative or non-finite
///   `clipRangeRatio`, or a NaN loss (infinite inputs).
@inlinable
public func actorLossSeqMean<T: FloatScalar>(
    logProbs: Tensor<T>,
    oldLogProbs: Tensor<T>,
    advantages: Tensor<T>,
    mask: Tensor<Int64>,
    clipRangeRatio: Double = 0.2
) throws(StageError) -> ActorLossSeqMeanResult<T> {
    let check = InputCheck(stage: "actor_loss_seq_mean")
    try check.maskedLossInputs([(logProbs, "log_probs"), (oldLogProbs, "old_log_probs"), (advantages, "advantages")],
                               mask: mask)
    try check.nonNegative("clip_range_ratio", clipRangeRatio)

    let perToken = try check.underThisStage { () throws(StageError) in
        try actorLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                      mask: Tensor(shape: mask.shape, repeating: 1), cliprange: clipRangeRatio)
    }
    // -(masked mean of u) = masked mean of -u: the same additions, every sign flipped.
    let loss = maskedMeanOverRows(perToken.tokenLosses, mask: mask)
    try check.noNaNInResult(Tensor(scalar: loss), "loss")
    return ActorLossSeqMeanResult(loss: loss, ratios: perToken.ratios, tokenLosses: perToken.tokenLosses,
                                  tokenCounts: rowCounts(mask))
}

/// The gradient of `actorLossSeqMean` with respect to the new log-probs.
///
/// ```
/// loss = -(1/B) · Σ_b Σ_t m_t · u_t / n_b,   u_t = min(A_t·ratio_t, A_t·clip(ratio_t))
/// ∂ratio_t/∂logπ_t = ratio_t,   ∂(A·ratio)/∂ratio = A,   ∂(A·clip(ratio))/∂ratio = A·1[1-ε <= ratio_t <= 1+ε]
/// grad_log_probs_t = -(m_t / (B·n_b)) · (w_u·A_t + w_c·A_t·1[inside]) · ratio_t
///   (w_u, w_c) = (1, 0) if A·ratio < A·clip, (0, 1) if greater, (1/2, 1/2) on a tie
/// ```
///
/// Shapes: as `actorLossSeqMean`; `grad_log_probs` [B, M].
///
/// The per-token factor `-(w_u·A + w_c·A·1[inside])·ratio_t` is the one v1's
/// `actorLossGradLogProbs` computes; called with a mask of ones it returns it
/// times 1/(B·M), and ``maskedMeanOverRowsGradient(fromTokenMeanGradient:mask:)``
/// turns that weight into m_t/(B·n_b). A clipped token gets exactly zero, as in
/// v1. At a kink (ratio exactly 1±ε) the tie rule and the inclusive clamp bounds
/// follow PyTorch's autograd (`torch.minimum` splits a tie half/half). A masked
/// token gets 0, or NaN when its ratio overflowed to inf (autograd's 0 · inf in
/// the `exp` backward; we throw).
///
/// - Throws: ``StageError`` as `actorLossSeqMean` does, and for a NaN gradient.
@inlinable
public func actorLossSeqMeanGradLogProbs<T: FloatScalar>(
    logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>, mask: Tensor<Int64>,
    clipRangeRatio: Double = 0.2
) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "actor_loss_seq_mean")
    // The checks, and a loss that is a number.
    _ = try actorLossSeqMean(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                             clipRangeRatio: clipRangeRatio)
    let tokenMeanGradient = try check.underThisStage { () throws(StageError) in
        try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                  mask: Tensor(shape: mask.shape, repeating: 1), cliprange: clipRangeRatio)
    }
    let gradient = maskedMeanOverRowsGradient(fromTokenMeanGradient: tokenMeanGradient, mask: mask)
    try check.noNaNInResult(gradient, "grad_log_probs")
    return gradient
}
