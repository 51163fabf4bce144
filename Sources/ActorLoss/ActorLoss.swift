import TensorCore

/// The clipped PPO surrogate loss of the actor, with the per-token terms a reader
/// wants to see.
public struct ActorLossResult<T: FloatScalar>: Sendable {
    /// The masked token-mean of the per-token loss. Shape [].
    public var loss: T
    /// ratio_t = exp((logπ_t - logπ_old,t) · m_t). Shape [B, M].
    public var ratios: Tensor<T>
    /// max(-A·ratio, -A·clip(ratio, 1-ε, 1+ε)), before masking. Shape [B, M].
    public var tokenLosses: Tensor<T>
    /// How many tokens the mask keeps (the mean's denominator).
    public var tokenCount: Int

    @inlinable
    public init(loss: T, ratios: Tensor<T>, tokenLosses: Tensor<T>, tokenCount: Int) {
        self.loss = loss
        self.ratios = ratios
        self.tokenLosses = tokenLosses
        self.tokenCount = tokenCount
    }
}

/// PPO's clipped policy loss, DeepSpeed-Chat's way: a token-mean over the mask.
///
/// ```
/// ratio_t        = exp((log_probs_t - old_log_probs_t) · m_t)
/// clippedRatio_t = clamp(ratio_t, 1 - ε, 1 + ε)
/// loss_t         = max(-A_t · ratio_t, -A_t · clippedRatio_t)
/// loss           = Σ_{b,t} loss_t · m_t / Σ_{b,t} m_t
/// ```
///
/// Shapes: `logProbs`, `oldLogProbs`, `advantages` [B, M] float, `mask` [B, M]
/// int64 -> `loss` []. In the PPO step, M = N - start: the answer part.
///
/// The mean runs over every kept token of the whole batch (token-mean), not per
/// sequence first. Masked positions get ratio exp(0) = 1, because the log-ratio is
/// multiplied by the mask before `exp`, and are then left out of the sum. The
/// `max` of the two negated terms is the pessimistic bound: for A > 0 the loss
/// stops rewarding a ratio above 1 + ε, for A < 0 a ratio below 1 - ε.
///
/// Matches DeepSpeed-Chat `dschat/rlhf/ppo_trainer.py :: actor_loss_fn`.
///
/// Infinite inputs give what PyTorch gives (an infinite ratio or advantage can
/// make the loss ±inf), and where PyTorch's loss is NaN the stage throws: an
/// infinite input at a masked token (its log-ratio `(inf - x) · 0`, or its loss
/// term times the mask 0, is NaN in PyTorch's `sum(loss · mask)`), or a kept
/// token whose term is NaN (equal infinite log-probs, inf - inf; an infinite
/// advantage times a ratio of 0).
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1
///   or selects no element (the mean would be 0/0), NaN in an input, a negative
///   `cliprange`, or a loss that would be NaN (`nonFiniteResult` naming `loss`).
@inlinable
public func actorLoss<T: FloatScalar>(
    logProbs: Tensor<T>,
    oldLogProbs: Tensor<T>,
    advantages: Tensor<T>,
    mask: Tensor<Int64>,
    cliprange: Double
) throws(StageError) -> ActorLossResult<T> {
    let check = InputCheck(stage: "actor_loss")
    try check.rank(logProbs, "log_probs", is: 2, legend: "[B, M]")
    try check.shape(oldLogProbs, "old_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(advantages, "advantages", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(mask, "mask", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.binaryMask(mask, "mask")
    try check.nonNegative("cliprange", cliprange)
    try check.noNaN(logProbs, "log_probs")
    try check.noNaN(oldLogProbs, "old_log_probs")
    try check.noNaN(advantages, "advantages")

    // 1 - ε and 1 + ε are formed in Double, as Python does before `torch.clamp`.
    let lowerBound = T(1.0 - cliprange), upperBound = T(1.0 + cliprange)
    // Two loops, one per line of the formula. `expInline` is exp in plain Swift
    // (TensorCore's `exponential`, within an ulp of libm's and equal to it at the
    // clip bounds the fixtures test), so the compiler vectorises this loop too; a
    // call to libm's exp per token would keep it scalar.
    var ratios = [T](repeating: 0, count: logProbs.count)
    for i in 0..<logProbs.count {
        let maskValue: T = mask.scalars[i] != 0 ? 1 : 0  // a select: AVX2 has no vector Int64 -> float conversion
        let logRatio = (logProbs.scalars[i] - oldLogProbs.scalars[i]) * maskValue
        ratios[i] = T.expInline(logRatio)
    }
    var tokenLosses = [T](repeating: 0, count: logProbs.count)
    for i in 0..<logProbs.count {
        let ratio = ratios[i]
        let clippedRatio = min(max(ratio, lowerBound), upperBound)
        let advantage = advantages.scalars[i]
        let unclippedLoss = -advantage * ratio
        let clippedLoss = -advantage * clippedRatio
        tokenLosses[i] = maximumPropagatingNaN(unclippedLoss, clippedLoss)  // a NaN term stays NaN, as in torch.max
    }
    let (sum, count) = maskedSum(tokenLosses, mask: mask.scalars)
    guard count > 0 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "mask",
                         "the mask \(describe(shape: mask.shape)) selects no token; the token-mean would be 0/0")
    }
    let loss = sum / T(count)
    // The sum above skips masked tokens; PyTorch's sum(loss_t · mask_t) multiplies
    // them by 0, and a masked token with an infinite input has an infinite or NaN
    // term (its log-ratio is (inf - x) · 0 = NaN already): inf · 0 makes the loss NaN.
    try check.noNonFiniteDroppedByMask(tokenLosses, mask: mask.scalars, shape: mask.shape, "loss",
                                       what: "the token loss (an infinite input at a masked token)")
    let result = ActorLossResult(loss: loss, ratios: Tensor.make(logProbs.shape, ratios),
                                 tokenLosses: Tensor.make(logProbs.shape, tokenLosses), tokenCount: count)
    try check.noNaNInResult(loss, "loss", terms: result.tokenLosses, "the token loss")
    return result
}

/// The gradient of `actorLoss` with respect to the new log-probs.
///
/// ```
/// loss = Σ_t m_t · max(u_t, c_t) / n,   u_t = -A_t·ratio_t,   c_t = -A_t·clip(ratio_t)
/// ratio_t = exp((logπ_t - logπ_old,t)·m_t)  ->  ∂ratio_t/∂logπ_t = ratio_t·m_t
/// ∂u_t/∂ratio_t = -A_t,   ∂c_t/∂ratio_t = -A_t·1[1-ε <= ratio_t <= 1+ε]
/// grad_log_probs_t = (m_t / n) · (w_u·(-A_t) + w_c·(-A_t)·1[inside]) · ratio_t·m_t
///   (w_u, w_c) = (1, 0) if u > c, (0, 1) if u < c, (1/2, 1/2) on a tie
/// ```
///
/// Shapes: as `actorLoss`; `grad_log_probs` [B, M].
///
/// Where the clip is active the clipped branch wins the `max` and its ratio is
/// outside [1-ε, 1+ε], so the gradient is exactly zero: PPO stops pushing a
/// token whose ratio already moved far enough in the advantage's direction.
/// Masked tokens get zero. At a kink (ratio exactly 1±ε, so u = c) the tie rule
/// and the inclusive clamp bounds follow PyTorch's autograd.
///
/// Infinite inputs follow autograd too: the branch `max` does not take gets an
/// exact 0, and so does the clipped branch outside the clip range (a select, not
/// a multiply by 0, so an infinite advantage there adds 0, not NaN); an infinite
/// advantage or ratio gives ±inf. Where autograd gives NaN (a term of 0 times an
/// infinite ratio: a clipped token whose log-ratio is +inf), the stage throws.
///
/// - Throws: ``StageError`` as `actorLoss` does, and `nonFiniteResult` naming
///   `grad_log_probs` where the gradient would be NaN.
@inlinable
public func actorLossGradLogProbs<T: FloatScalar>(
    logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>, mask: Tensor<Int64>, cliprange: Double
) throws(StageError) -> Tensor<T> {
    let forward = try actorLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                mask: mask, cliprange: cliprange)
    let lowerBound = T(1.0 - cliprange), upperBound = T(1.0 + cliprange)
    let perToken = T(1) / T(forward.tokenCount)
    var gradLogProbs = Tensor<T>(shape: logProbs.shape, repeating: 0)
    for i in 0..<logProbs.count where mask.scalars[i] != 0 {
        let ratio = forward.ratios.scalars[i]
        let advantage = advantages.scalars[i]
        let clippedRatio = min(max(ratio, lowerBound), upperBound)
        let (toUnclipped, toClipped) = maximumGradientShares(-advantage * ratio, -advantage * clippedRatio)
        // In autograd's order: the share of the upstream 1/n times -A, per branch.
        // The clamp passes its gradient only inside [1-ε, 1+ε] and gives an exact 0
        // outside (PyTorch's clamp backward is a select): multiplying by a 0/1
        // indicator instead would turn an infinite A into inf · 0 = NaN there.
        let throughUnclipped = (toUnclipped * perToken) * -advantage
        let throughClipped = ratio >= lowerBound && ratio <= upperBound ? (toClipped * perToken) * -advantage : 0
        gradLogProbs.scalars[i] = (throughUnclipped + throughClipped) * ratio
    }
    // 0 · inf is NaN in autograd too: a token whose ratio is inf and whose
    // gradient with respect to the ratio is 0 (the clipped branch won).
    try InputCheck(stage: "actor_loss").noNaNInResult(gradLogProbs, "grad_log_probs")
    return gradLogProbs
}
