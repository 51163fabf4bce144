import TensorCore
import GAE

/// Advantages and returns of align-anything's GAE, with the masked inputs it ran on.
public struct GAEMaskedResult<T: FloatScalar>: Sendable {
    /// A_t for t in [start, N). Shape [B, N - start].
    public var advantages: Tensor<T>
    /// A_t + v_t, with the masked values v. Shape [B, N - start].
    public var returns: Tensor<T>
    /// v = values · sequence_mask, from `start` on. Shape [B, N - start].
    public var maskedValues: Tensor<T>
    /// r = rewards · sequence_mask, from `start` on. Shape [B, N - start].
    public var maskedRewards: Tensor<T>

    @inlinable
    public init(advantages: Tensor<T>, returns: Tensor<T>, maskedValues: Tensor<T>, maskedRewards: Tensor<T>) {
        self.advantages = advantages
        self.returns = returns
        self.maskedValues = maskedValues
        self.maskedRewards = maskedRewards
    }
}

/// Generalized advantage estimation on masked values and rewards, align-anything's way.
///
/// ```
/// v = values · sequence_mask,   r = rewards · sequence_mask      (every 0 of the mask, holes too)
/// v_N = 0,  A_N = 0
/// for t = N-1 down to start:
///   delta_t = r_t + γ·v_{t+1} - v_t
///   A_t     = delta_t + γ·λ·A_{t+1}
/// advantages[:, t - start] = A_t,   returns = advantages + v[:, start:]
/// ```
///
/// with γ = `gamma` (align-anything's default 1.0) and λ = `gaeLambda` (default
/// 0.95). Shapes: `values`, `rewards` [B, N] float, `sequenceMask` [B, N] 0/1 ->
/// `advantages`, `returns` [B, N - start].
///
/// Quirks of the peer, reproduced:
/// - Values and rewards are multiplied by the mask before the recursion, so the
///   last attended action bootstraps from exactly 0, and whatever the critic said
///   past the end never leaks in.
/// - A hole (a 0 inside the answer) is zeroed too, and the recursion runs on
///   through it: it does not restart there, the advantage before a hole still
///   sums the rewards after it.
/// - The returns add the masked values, so they are 0 past the end.
/// - The mask multiplies: an infinite value under a 0 of the mask becomes
///   inf·0 = NaN, and so do the advantages that read it (we throw).
///
/// After the masking this is v1's `gae` line for line (the same `γ·λ` formed in
/// Double), so it calls it on the columns from `start` with start 0: the
/// recursion reads nothing before `start`. Against DeepSpeed-Chat's data flow
/// (v1 `ppoLosses`): there rewards and values are zeroed only from one past the
/// score position on, so the pad-target action's reward and value survive and
/// the last answer token bootstraps from that value; holes are not zeroed.
///
/// Matches align-anything `align_anything/trainers/text_to_text/ppo.py ::
/// PPOTrainer.get_advantages_and_returns`.
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   NaN in an input, `start` outside `[0, N)` (the peer raises for `start = N`
///   and silently wraps a negative one), a non-finite γ or λ, or a NaN result.
///   An error of v1's `gae` is re-thrown under `gae_masked`.
@inlinable
public func gaeMasked<T: FloatScalar>(
    values: Tensor<T>,
    rewards: Tensor<T>,
    sequenceMask: Tensor<Int64>,
    start: Int,
    gamma: Double = 1.0,
    gaeLambda: Double = 0.95
) throws(StageError) -> GAEMaskedResult<T> {
    let check = InputCheck(stage: "gae_masked")
    try check.rank(values, "values", is: 2, legend: "[B, N]")
    try check.shape(rewards, "rewards", equals: values.shape, sameAs: "same as values")
    try check.shape(sequenceMask, "sequence_mask", equals: values.shape, sameAs: "same as values")
    try check.binaryMask(sequenceMask, "sequence_mask")
    try check.parameter("start", start, in: 0..<values.shape[1],
                        "the first answer position, in [0, N) for values \(describe(shape: values.shape))")
    try check.finite("gamma", gamma)
    try check.finite("gae_lambda", gaeLambda)
    try check.noNaN(values, "values")
    try check.noNaN(rewards, "rewards")

    let maskedValues = maskedColumns(values, sequenceMask, from: start)
    let maskedRewards = maskedColumns(rewards, sequenceMask, from: start)
    for (masked, name) in [(maskedValues, "values"), (maskedRewards, "rewards")] where containsNaN(masked.scalars) {
        let flat = masked.scalars.firstIndex(where: \.isNaN) ?? 0
        let index = masked.index(ofFlat: flat)
        throw StageError(.nonFiniteResult, stage: check.stage, argument: "advantages",
                         "\(name)[\(index[0]), \(index[1] + start)] is infinite under a 0 of sequence_mask: \(name) · sequence_mask is inf · 0 = NaN there (the peer multiplies), and the recursion reads it")
    }
    let estimate: GAEResult<T>
    do {
        estimate = try gae(values: maskedValues, rewards: maskedRewards, start: 0, gamma: gamma, lambda: gaeLambda)
    } catch {
        throw StageError(error.kind, stage: check.stage, argument: error.argument, "in \(error.stage): \(error.detail)")
    }
    try check.noNaNInResult(estimate.returns, "returns")
    return GAEMaskedResult(advantages: estimate.advantages, returns: estimate.returns,
                           maskedValues: maskedValues, maskedRewards: maskedRewards)
}

/// `(x * mask)[:, start:]`: every element multiplied by its 0/1 mask value, so a
/// masked ±inf becomes NaN, as in PyTorch.
///
/// Shapes: `x` [B, N] float, `mask` [B, N] -> [B, N - start].
@inlinable
func maskedColumns<T: FloatScalar>(_ x: Tensor<T>, _ mask: Tensor<Int64>, from start: Int) -> Tensor<T> {
    var masked = x.columns(start...)
    let maskPart = mask.columns(start...)
    for i in 0..<masked.count {
        masked.scalars[i] *= T(maskPart.scalars[i])
    }
    return masked
}
