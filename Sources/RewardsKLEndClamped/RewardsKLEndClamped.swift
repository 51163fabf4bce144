import TensorCore

/// The per-token rewards of align-anything's PPO, and where each row's score went.
public struct RewardsKLEndClampedResult<T: FloatScalar>: Sendable {
    /// clamp(-β·(log_probs - ref_log_probs) + [t = e_b]·reward, -C, C). Shape [B, N].
    public var rewards: Tensor<T>
    /// e_b: the last position of each row whose `sequence_mask` is 1. Shape [B].
    public var endIndices: [Int]

    @inlinable
    public init(rewards: Tensor<T>, endIndices: [Int]) {
        self.rewards = rewards
        self.endIndices = endIndices
    }
}

/// The per-token rewards of align-anything's PPO: a KL penalty on every token,
/// the reward model's score on the last attended action, and a clamp on the total.
///
/// ```
/// e_b           = max { t : sequence_mask[b, t] != 0 }          (the whole row)
/// rewards[b, t] = clamp(-β·(log_probs[b, t] - ref_log_probs[b, t]) + [t = e_b]·reward[b], -C, C)
/// ```
///
/// with β = `klCoeff` (align-anything's default 0.02) and C = `clipRangeScore`
/// (default 50.0). Shapes: `reward` [B] float, `logProbs`, `refLogProbs` [B, N]
/// float, `sequenceMask` [B, N] 0/1 (= `attention_mask[:, 1:]`: position t is the
/// action that produced token t + 1) -> `rewards` [B, N].
///
/// Quirks of the peer, reproduced:
/// - e_b is searched over the whole row, prompt part included. A row whose answer
///   is empty gets its score on the last prompt action, before `start`, where GAE
///   never reads it: that score never reaches the advantages.
/// - The clamp acts on each position's total, so it hits the KL terms too, and at
///   e_b it clamps score + KL together, not the score alone.
/// - Nothing is masked: positions under a 0 of the mask keep their KL term (GAE
///   masks later).
/// - align-anything builds `attention_mask` as `ids != pad`. With pad == eos the
///   EOS is not attended, so the score sits on the action that produced the last
///   token before it; with pad != eos it sits on the action that produced the EOS.
///
/// Against DeepSpeed-Chat's `computeRewards` (v1): there the score lands at
/// `start + Σ mask`, one past the last answer token (ones counted, so a hole
/// moves it), it is clipped alone to ±5 before it is added, and the KL terms are
/// never clipped.
///
/// Matches align-anything `align_anything/trainers/text_to_text/ppo.py ::
/// PPOTrainer.add_kl_divergence_regularization` (the same in `ppo_remote_rm.py`
/// and `multi_ppo.py`). `-β` is formed in Double and rounded to `T` once, as the
/// Python float `-self.kl_coeff` is when it meets the tensor; so are ±C.
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   a row whose `sequence_mask` is all zero (the peer's `nonzero()[-1]` raises an
///   `IndexError`; also a batch of no rows, where its `torch.cat` of nothing
///   raises), NaN in an input, a non-finite `klCoeff`, a negative or non-finite
///   `clipRangeScore`, or a NaN result (`inf - inf` in the log-probs).
@inlinable
public func rewardsKLEndClamped<T: FloatScalar>(
    reward: Tensor<T>,
    logProbs: Tensor<T>,
    refLogProbs: Tensor<T>,
    sequenceMask: Tensor<Int64>,
    klCoeff: Double = 0.02,
    clipRangeScore: Double = 50.0
) throws(StageError) -> RewardsKLEndClampedResult<T> {
    let check = InputCheck(stage: "rewards_kl_end_clamped")
    try check.rank(logProbs, "log_probs", is: 2, legend: "[B, N]")
    let batchSize = logProbs.shape[0], positions = logProbs.shape[1]
    try check.shape(refLogProbs, "ref_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(sequenceMask, "sequence_mask", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(reward, "reward", equals: [batchSize], sameAs: "[B] from log_probs \(describe(shape: logProbs.shape))")
    try check.binaryMask(sequenceMask, "sequence_mask")
    try check.finite("kl_coeff", klCoeff)
    try check.nonNegative("clip_range_score", clipRangeScore)
    try check.noNaN(reward, "reward")
    try check.noNaN(logProbs, "log_probs")
    try check.noNaN(refLogProbs, "ref_log_probs")
    let endIndices = try lastSelectedPositions(sequenceMask, check)

    let negativeKLCoefficient = T(-klCoeff)
    let bound = T(clipRangeScore)
    var rewards = Tensor<T>(shape: logProbs.shape, repeating: 0)
    for row in 0..<batchSize {
        for t in 0..<positions {
            var total = negativeKLCoefficient * (logProbs[row, t] - refLogProbs[row, t])
            if t == endIndices[row] {
                total += reward.scalars[row]
            }
            rewards[row, t] = min(max(total, -bound), bound)
        }
    }
    try check.noNaNInResult(rewards, "rewards")
    return RewardsKLEndClampedResult(rewards: rewards, endIndices: endIndices)
}

/// e_b for every row: the last position whose mask is not 0, searched over the
/// whole row (the peer's `m.nonzero()[-1]`).
///
/// Shapes: `sequenceMask` [B, N] -> [B].
///
/// - Throws: ``StageError`` (`emptyMask`, naming `sequence_mask`) for a row with no
///   1, and for a batch with no row.
@inlinable
func lastSelectedPositions(_ sequenceMask: Tensor<Int64>, _ check: InputCheck) throws(StageError) -> [Int] {
    guard sequenceMask.shape[0] > 0 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "sequence_mask",
                         "sequence_mask \(describe(shape: sequenceMask.shape)) has no row (the peer's torch.cat of no end index raises)")
    }
    var endIndices = [Int]()
    for row in 0..<sequenceMask.shape[0] {
        guard let last = sequenceMask.row(row).lastIndex(of: 1) else {
            throw StageError(.emptyMask, stage: check.stage, argument: "sequence_mask",
                             "row \(row) of sequence_mask \(describe(shape: sequenceMask.shape)) is all zero: no position to put the score on (the peer's nonzero()[-1] raises an IndexError)")
        }
        endIndices.append(last - sequenceMask.row(row).startIndex)
    }
    return endIndices
}
