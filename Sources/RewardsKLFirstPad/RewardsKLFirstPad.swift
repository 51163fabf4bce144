import TensorCore
import MaskedWhiten

/// TRL's log-prob fill for positions past the response (`INVALID_LOGPROB`).
///
/// Both the policy's and the reference's log-probs get it, so their difference,
/// and with it the KL term, is exactly 0 there.
public let invalidLogprob = 1.0

/// Every tensor of TRL's PPO rollout from the responses to the per-token rewards.
public struct RewardsKLFirstPadResult<T: FloatScalar>: Sendable {
    /// The truncated responses `R` and each row's last position before its first pad.
    public var lengths: FirstPadSequenceLengths
    /// sequence_lengths as the fixture output (int64). Shape [B].
    public var sequenceLengths: Tensor<Int64>
    /// j > sequence_lengths[b]: past the response. Shape [B, T].
    public var paddingMask: Tensor<Bool>
    /// j > sequence_lengths[b] + 1: past the score position. Shape [B, T].
    public var paddingMaskP1: Tensor<Bool>
    /// scores - missing_eos_penalty for rows of R without an EOS. Shape [B].
    public var penalizedScores: Tensor<T>
    /// logprobs with 1.0 (INVALID_LOGPROB) where `paddingMask`. Shape [B, T].
    public var filledLogprobs: Tensor<T>
    /// ref_logprobs with 1.0 where `paddingMask`. Shape [B, T].
    public var filledRefLogprobs: Tensor<T>
    /// values with 0 where `paddingMaskP1`. Shape [B, T].
    public var maskedValues: Tensor<T>
    /// The k1 or k3 estimate from the filled log-probs (0 under padding). Shape [B, T].
    public var kl: Tensor<T>
    /// -kl_coef · kl. Shape [B, T].
    public var nonScoreReward: Tensor<T>
    /// non_score_reward plus the score at j*, whitened and re-zeroed if asked. Shape [B, T].
    public var rewards: Tensor<T>
    /// j*: where each row's score was added. Shape [B].
    public var scorePositions: [Int]

    @inlinable
    public init(lengths: FirstPadSequenceLengths, sequenceLengths: Tensor<Int64>, paddingMask: Tensor<Bool>,
                paddingMaskP1: Tensor<Bool>, penalizedScores: Tensor<T>, filledLogprobs: Tensor<T>,
                filledRefLogprobs: Tensor<T>, maskedValues: Tensor<T>, kl: Tensor<T>, nonScoreReward: Tensor<T>,
                rewards: Tensor<T>, scorePositions: [Int]) {
        self.lengths = lengths
        self.sequenceLengths = sequenceLengths
        self.paddingMask = paddingMask
        self.paddingMaskP1 = paddingMaskP1
        self.penalizedScores = penalizedScores
        self.filledLogprobs = filledLogprobs
        self.filledRefLogprobs = filledRefLogprobs
        self.maskedValues = maskedValues
        self.kl = kl
        self.nonScoreReward = nonScoreReward
        self.rewards = rewards
        self.scorePositions = scorePositions
    }
}

/// TRL PPO's per-token rewards: a KL penalty on every response token and the
/// score one past the response's end, in response coordinates.
///
/// ```
/// R, sequence_lengths  = firstPadSequenceLengths(responses, pad, stop)      (s_b below)
/// penalized_scores[b]  = scores[b] - missing_eos_penalty   if the penalty is set and R[b] holds no eos_token_id
/// padding_mask[b, j]   = j > s_b          padding_mask_p1[b, j] = j > s_b + 1
/// lp'  = logprobs with 1.0 where padding_mask;   ref' = ref_logprobs likewise
/// masked_values        = values with 0 where padding_mask_p1
/// logr = ref' - lp';   kl = -logr (k1)  or  (e^logr - 1) - logr (k3)
/// non_score_reward     = -kl_coef · kl
/// rewards = non_score_reward;  rewards[b, j*_b] += penalized_scores[b],
///   j*_b = s_b + 1 if s_b + 1 < T, else s_b          (= 0 for an empty row, T - 1 for a full one)
/// whiten_rewards: rewards = masked_whiten(rewards, ¬padding_mask_p1, shift_mean: false),
///                 then 0 where padding_mask_p1
/// ```
///
/// Shapes: `responses` [B, T] int64 (as generated, before truncation); `logprobs`,
/// `refLogprobs`, `values` [B, T] float (response coordinates: j = 0 is the first
/// generated token); `scores` [B] (the reward model's score of each truncated
/// response) -> `sequence_lengths` [B] int64, `padding_mask`, `padding_mask_p1`
/// [B, T] bool, `penalized_scores` [B], `kl`, `non_score_reward`, `rewards`,
/// `masked_values` [B, T].
///
/// Quirks reproduced from the peer:
/// - Truncation keeps the first stop token and pads everything after it;
///   `sequence_lengths` comes from the **first pad** and is -1 for a row that starts
///   with one.
/// - The missing-EOS test looks for `eos_token_id` in R even when the stop token
///   is another id; with pad == eos every row that has any padding counts as holding
///   an EOS, so only a row that fills all T positions without an EOS is penalized.
/// - The 1.0 fill (`INVALID_LOGPROB`) makes logr = 0, so kl = 0 exactly under
///   padding (k1 gives -0.0 there, and non_score_reward +0.0).
/// - The score lands one past the response (the first pad). With pad ≠ eos the EOS
///   is the last response position and the score sits on the pad after it; with
///   pad == eos the EOS is the first pad, so the score sits on the EOS position and
///   the EOS's own log-prob is filled. A full row takes it on its last position, an
///   empty row on position 0.
/// - Whitening (off by default) runs over ¬padding_mask_p1 (the score position
///   included) and keeps the mean (`shift_mean=False`), then re-zeroes the rest.
/// - k3 is `exp(logr) - 1 - logr` as written, not `expm1`: for |logr| < 1e-8 the
///   `- 1` loses every digit (exactly what TRL computes), a loss far below the
///   fixtures' tolerance for log-ratios of ordinary size.
///
/// Matches TRL `trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train`, rollout
/// steps "Response Processing 1-3", "4. compute rewards" and "5. whiten rewards".
///
/// - Throws: ``StageError`` for shapes that do not agree (T = 0 included: TRL's
///   `first_true_indices` reduces over an empty axis), NaN in a float input, a
///   non-finite `kl_coef` or `missing_eos_penalty`, `whiten_rewards` with fewer than
///   two positions in ¬padding_mask_p1 (`emptyMask`: TRL's whitening would be NaN),
///   or a NaN result from infinite inputs (`nonFiniteResult`).
@inlinable
public func rewardsKLFirstPad<T: FloatScalar>(
    responses: Tensor<Int64>,
    logprobs: Tensor<T>,
    refLogprobs: Tensor<T>,
    values: Tensor<T>,
    scores: Tensor<T>,
    padTokenId: Int,
    eosTokenId: Int,
    stopTokenId: Int?,
    missingEOSPenalty: Double?,
    klCoef: Double,
    klEstimator: KLEstimator,
    whitenRewards: Bool
) throws(StageError) -> RewardsKLFirstPadResult<T> {
    let check = InputCheck(stage: "rewards_kl_first_pad")
    try checkRolloutInputs(responses: responses, logprobs: logprobs, refLogprobs: refLogprobs, values: values,
                           scores: scores, check)
    try check.finite("kl_coef", klCoef)
    if let missingEOSPenalty {
        try check.finite("missing_eos_penalty", missingEOSPenalty)
    }
    try check.noNaN(logprobs, "logprobs")
    try check.noNaN(refLogprobs, "ref_logprobs")
    try check.noNaN(values, "values")
    try check.noNaN(scores, "scores")
    let batchSize = responses.shape[0], length = responses.shape[1]

    // Response Processing 1-2: truncation after the stop token, lengths from the first pad.
    let lengths = firstPadSequenceLengths(responses: responses, padTokenId: padTokenId, stopTokenId: stopTokenId)
    let sequenceLengths = lengths.sequenceLengths
    var paddingMask = Tensor<Bool>(shape: [batchSize, length], repeating: false)
    var paddingMaskP1 = Tensor<Bool>(shape: [batchSize, length], repeating: false)
    for b in 0..<batchSize {
        for j in 0..<length {
            paddingMask[b, j] = j > sequenceLengths[b]
            paddingMaskP1[b, j] = j > sequenceLengths[b] + 1
        }
    }
    if whitenRewards {
        let kept = paddingMaskP1.scalars.reduce(0) { $0 + ($1 ? 0 : 1) }
        guard kept >= 2 else {
            throw StageError(.emptyMask, stage: check.stage, argument: "whiten_rewards",
                             "whitening the rewards needs at least 2 positions with j <= sequence_lengths + 1, got \(kept) (TRL's unbiased variance would be NaN)")
        }
    }

    // Response Processing 3: the missing-EOS penalty, tested on eos_token_id in R.
    var penalizedScores = scores
    if let missingEOSPenalty {
        let penalty = T(missingEOSPenalty)
        for b in 0..<batchSize where !(0..<length).contains(where: { lengths.truncatedResponses[b, $0] == Int64(eosTokenId) }) {
            penalizedScores.scalars[b] -= penalty
        }
    }

    // The fills: INVALID_LOGPROB past the response, 0 values past the score position.
    var filledLogprobs = logprobs, filledRefLogprobs = refLogprobs, maskedValues = values
    for i in 0..<logprobs.count {
        if paddingMask.scalars[i] {
            filledLogprobs.scalars[i] = T(invalidLogprob)
            filledRefLogprobs.scalars[i] = T(invalidLogprob)
        }
        if paddingMaskP1.scalars[i] {
            maskedValues.scalars[i] = 0
        }
    }

    // 4. The rewards: the KL penalty everywhere, the score at j*.
    var kl = Tensor<T>(shape: [batchSize, length], repeating: 0)
    var nonScoreReward = kl
    let negativeKLCoef = T(-klCoef)
    for i in 0..<kl.count {
        kl.scalars[i] = klEstimator.kl(logRatio: filledRefLogprobs.scalars[i] - filledLogprobs.scalars[i])
        nonScoreReward.scalars[i] = negativeKLCoef * kl.scalars[i]
    }
    var rewards = nonScoreReward
    var scorePositions = [Int](repeating: 0, count: batchSize)
    for b in 0..<batchSize {
        let onePast = sequenceLengths[b] + 1
        scorePositions[b] = onePast < length ? onePast : sequenceLengths[b]
        rewards[b, scorePositions[b]] += penalizedScores.scalars[b]
    }

    // 5. Optional whitening over ¬padding_mask_p1, keeping the mean, then re-zeroing.
    if whitenRewards {
        let keep = Tensor.make(paddingMaskP1.shape, paddingMaskP1.scalars.map { $0 ? Int64(0) : 1 })
        do {
            rewards = try maskedWhiten(values: rewards, mask: keep, shiftMean: false).whitened
        } catch {
            throw StageError(error.kind, stage: check.stage, argument: error.argument == "whitened" ? "rewards" : error.argument,
                             "in \(error.stage): \(error.detail)")
        }
        for i in 0..<rewards.count where paddingMaskP1.scalars[i] {
            rewards.scalars[i] = 0
        }
    }

    try check.noNaNInResult(penalizedScores, "penalized_scores")
    try check.noNaNInResult(kl, "kl")
    try check.noNaNInResult(nonScoreReward, "non_score_reward")
    try check.noNaNInResult(rewards, "rewards")
    try check.noNaNInResult(maskedValues, "masked_values")
    return RewardsKLFirstPadResult(
        lengths: lengths, sequenceLengths: Tensor.make([batchSize], sequenceLengths.map(Int64.init)),
        paddingMask: paddingMask, paddingMaskP1: paddingMaskP1, penalizedScores: penalizedScores,
        filledLogprobs: filledLogprobs, filledRefLogprobs: filledRefLogprobs, maskedValues: maskedValues, kl: kl,
        nonScoreReward: nonScoreReward, rewards: rewards, scorePositions: scorePositions)
}

/// The shape checks of TRL's rollout tensors, shared with `ppo_losses_joint_whitened`:
/// `responses` [B, T] with T >= 1, `logprobs`, `ref_logprobs`, `values` [B, T],
/// `scores` [B].
@inlinable
public func checkRolloutInputs<T>(
    responses: Tensor<Int64>, logprobs: Tensor<T>, refLogprobs: Tensor<T>, values: Tensor<T>, scores: Tensor<T>,
    _ check: InputCheck
) throws(StageError) {
    try check.rank(responses, "responses", is: 2, legend: "[B, T]")
    try check.rank(logprobs, "logprobs", is: 2, legend: "[B, T]")
    try check.rank(refLogprobs, "ref_logprobs", is: 2, legend: "[B, T]")
    try check.rank(values, "values", is: 2, legend: "[B, T]")
    try check.rank(scores, "scores", is: 1, legend: "[B]")
    guard responses.shape[1] >= 1 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "responses",
                         "expected at least one response position, got shape \(describe(shape: responses.shape)) (TRL's first_true_indices reduces over the empty axis)")
    }
    let source = "[B, T] from responses \(describe(shape: responses.shape))"
    try check.shape(logprobs, "logprobs", equals: responses.shape, sameAs: source)
    try check.shape(refLogprobs, "ref_logprobs", equals: responses.shape, sameAs: source)
    try check.shape(values, "values", equals: responses.shape, sameAs: source)
    try check.shape(scores, "scores", equals: [responses.shape[0]], sameAs: "[B] from responses \(describe(shape: responses.shape))")
}
