import TensorCore
import MaskedWhiten
import RewardsKLFirstPad
import GAE
import GatherLogProbs
import ActorLoss
import CriticLoss

/// Every tensor and statistic of one TRL PPO update, from the rollout to the
/// joint loss.
public struct PPOLossesJointWhitenedResult<T: FloatScalar>: Sendable {
    /// The raw responses (the labels of the new log-probs). Shape [B, T].
    public var responses: Tensor<Int64>
    /// z = new_logits / (temperature + 1e-7). Shape [B, T, V].
    public var temperedLogits: Tensor<T>
    /// The settings the backward pass needs besides the tensors above.
    public var temperature: Double, cliprange: Double, cliprangeValue: Double, vfCoef: Double
    /// The rollout: lengths, masks, fills, KL and per-token rewards.
    public var rollout: RewardsKLFirstPadResult<T>
    /// M = ¬padding_mask (j <= sequence_lengths): the policy-loss mask. Shape [B, T].
    public var policyMask: Tensor<Int64>
    /// M1 = ¬padding_mask_p1 (j <= sequence_lengths + 1): the value-loss mask. Shape [B, T].
    public var valueMask: Tensor<Int64>
    /// Â: GAE from start 0 over all T positions, before whitening. Shape [B, T].
    public var unwhitenedAdvantages: Tensor<T>
    /// masked_whiten(Â, M), then 0 where padding_mask. Shape [B, T].
    public var advantages: Tensor<T>
    /// Â + masked_values (from the un-whitened Â). Shape [B, T].
    public var returns: Tensor<T>
    /// log_softmax(new_logits / (temperature + 1e-7))[responses], then 1.0 where padding_mask. Shape [B, T].
    public var newLogprobs: Tensor<T>
    /// new_values with 0 where padding_mask_p1 (TRL's `vpred`). Shape [B, T].
    public var predictedValues: Tensor<T>
    /// logsumexp(z) - Σ_v softmax(z)_v·z_v at every position. Shape [B, T].
    public var entropy: Tensor<T>
    /// The policy loss (v1 `actor_loss` on M) with its ratios and per-token terms.
    public var actor: ActorLossResult<T>
    /// The value loss (v1 `critic_loss` on M1) with its clipped values and per-token terms.
    public var critic: CriticLossResult<T>
    /// pg_loss + vf_coef · vf_loss.
    public var loss: T
    public var pgClipfrac: T
    public var vfClipfrac: T
    public var approxkl: T
    public var policyEntropy: T
    public var ratioMean: T
    public var objectiveKL: T
    public var objectiveEntropy: T
    public var objectiveNonScoreReward: T
    public var objectiveRLHFReward: T
    public var objectiveScores: T
    /// How many entries of the raw responses equal eos_token_id.
    public var numEOSTokens: Int

    @inlinable
    public init(responses: Tensor<Int64>, temperedLogits: Tensor<T>, temperature: Double, cliprange: Double,
                cliprangeValue: Double, vfCoef: Double, rollout: RewardsKLFirstPadResult<T>, policyMask: Tensor<Int64>, valueMask: Tensor<Int64>,
                unwhitenedAdvantages: Tensor<T>, advantages: Tensor<T>, returns: Tensor<T>, newLogprobs: Tensor<T>,
                predictedValues: Tensor<T>, entropy: Tensor<T>, actor: ActorLossResult<T>, critic: CriticLossResult<T>,
                loss: T, pgClipfrac: T, vfClipfrac: T, approxkl: T, policyEntropy: T, ratioMean: T, objectiveKL: T,
                objectiveEntropy: T, objectiveNonScoreReward: T, objectiveRLHFReward: T, objectiveScores: T,
                numEOSTokens: Int) {
        self.responses = responses
        self.temperedLogits = temperedLogits
        self.temperature = temperature
        self.cliprange = cliprange
        self.cliprangeValue = cliprangeValue
        self.vfCoef = vfCoef
        self.rollout = rollout
        self.policyMask = policyMask
        self.valueMask = valueMask
        self.unwhitenedAdvantages = unwhitenedAdvantages
        self.advantages = advantages
        self.returns = returns
        self.newLogprobs = newLogprobs
        self.predictedValues = predictedValues
        self.entropy = entropy
        self.actor = actor
        self.critic = critic
        self.loss = loss
        self.pgClipfrac = pgClipfrac
        self.vfClipfrac = vfClipfrac
        self.approxkl = approxkl
        self.policyEntropy = policyEntropy
        self.ratioMean = ratioMean
        self.objectiveKL = objectiveKL
        self.objectiveEntropy = objectiveEntropy
        self.objectiveNonScoreReward = objectiveNonScoreReward
        self.objectiveRLHFReward = objectiveRLHFReward
        self.objectiveScores = objectiveScores
        self.numEOSTokens = numEOSTokens
    }

    /// pg_loss: the token mean over M of max(-A·ρ, -A·clamp(ρ, 1 - ε, 1 + ε)).
    public var pgLoss: T { actor.loss }
    /// vf_loss: 0.5 · the token mean over M1 of the larger squared error.
    public var vfLoss: T { critic.loss }
}

/// One TRL PPO update as `PPOTrainer.train` computes it: the rollout's rewards,
/// GAE and whitened advantages, then the joint policy + value loss of one
/// micro-batch that holds the whole batch, with the model forward replaced by the
/// given `new_logits` and `new_values`.
///
/// ```
/// rollout = rewards_kl_first_pad(...)       -> s_b, padding_mask, padding_mask_p1, lp', mv, kl, rewards
/// M = ¬padding_mask (j <= s_b),   M1 = ¬padding_mask_p1 (j <= s_b + 1)
/// Â       = gae(values: mv, rewards, start: 0, γ, λ)       over all T positions, V_T = 0
/// returns = Â + mv                                         (the un-whitened Â)
/// advantages = masked_whiten(Â, M, shift_mean: true), then 0 where padding_mask
/// z   = new_logits / (temperature + 1e-7)
/// nlp = log_softmax(z)[responses]  (the RAW responses), then 1.0 where padding_mask
/// vpred = new_values, then 0 where padding_mask_p1
/// ρ = exp(nlp - lp')                                       (exactly 1 under padding)
/// pg_loss = Σ_M max(-A·ρ, -A·clamp(ρ, 1 - ε, 1 + ε)) / |M|                  (v1 actor_loss on M)
/// vf_loss = 0.5 · Σ_M1 max((vpred - R)², (clamp(vpred, mv ± ε_v) - R)²) / |M1|  (v1 critic_loss on M1)
/// loss    = pg_loss + vf_coef · vf_loss
/// ```
///
/// Logged (per micro-batch, here the whole batch): `pg_clipfrac` = the share of M
/// where the clipped term is strictly larger; `vf_clipfrac` = the share of M1 where
/// the clipped squared error is strictly larger; `approxkl` = 0.5 · mean over all
/// B·T positions of (nlp - lp')²; `policy_entropy` = mean over all B·T positions of
/// the entropy of softmax(z); `ratio_mean` = mean of ρ over all B·T positions.
/// Logged per rollout: `objective_kl` = mean_b Σ_j kl; `objective_entropy` =
/// mean_b Σ_j (-lp'); `objective_non_score_reward` = mean_b Σ_j non_score_reward;
/// `objective_scores` = mean_b penalized_scores; `objective_rlhf_reward` = their
/// sum; `num_eos_tokens` = #(responses == eos_token_id).
///
/// Shapes: the rollout's (`responses`, `logprobs`, `refLogprobs`, `values` [B, T],
/// `scores` [B]), plus `newLogits` [B, T, V] float (the policy's raw logits at the
/// positions that score each response token) and `newValues` [B, T] float ->
/// `advantages`, `returns` [B, T] and the scalars above.
///
/// Quirks reproduced from the peer (beyond those of ``rewardsKLFirstPad``):
/// - GAE runs from 0 over **all** T positions, padding included (rewards and values
///   are already 0 past j* = s_b + 1); the value at s_b + 1 bootstraps the last
///   response token and is itself trained (it is in M1).
/// - The returns come from the un-whitened Â; only the advantages are whitened, over
///   M (j <= s_b, the score position excluded), and then zeroed under padding.
/// - The new log-probs gather the **raw** responses (a token after the stop token
///   included) from logits divided by `temperature + 1e-7`; the fill then replaces
///   every position past s_b with 1.0, so ρ = exp(1 - 1) = 1 there.
/// - The statistics average over all B·T positions, padding included: approxkl gets
///   0 and ratio_mean 1 from each padded position, policy_entropy the entropy of
///   whatever logits sit there. objective_entropy adds -1 per padded position (the
///   1.0 fill). num_eos_tokens counts the raw responses, so with pad == eos it counts
///   the padding too.
/// - The clip fractions are k/n, computed exactly and rounded once (TRL's `.float()`
///   rounds them to float32 whatever the dtype).
///
/// The entropy: `logsumexp(z) - Σ_v softmax(z)_v·z_v`, both with the row's max m
/// subtracted before `exp`: e^z overflows for z > 88.7 in float32 (709.8 in
/// float64), and e^z / Σ e^z would then be ∞/∞ = NaN; after the shift every
/// exponent is <= 0 and the sum is >= 1. The final subtraction of two numbers close
/// to m is kept as TRL writes it, so the logged value carries the peer's rounding.
///
/// Matches TRL `trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train`, steps 1-6 of
/// the rollout and the statements of one micro-batch (first PPO epoch, the whole
/// batch in its original order), with the metrics it logs.
///
/// - Throws: ``StageError`` for shapes that do not agree (`new_logits` not [B, T, V],
///   `new_values` not [B, T], ...), a response token outside `[0, V)`, NaN in a float
///   input, fewer than two positions in M (`emptyMask` on `responses`: TRL raises for
///   0 and gives NaN for 1), a `kl_estimator` TRL does not name (at the adapter), a
///   non-finite γ, λ, `vf_coef` or `kl_coef`, a negative clip range, a
///   `temperature + 1e-7` that is not positive and finite (transformers refuses such
///   a sampling temperature), or a NaN result from infinite inputs
///   (`nonFiniteResult`: any infinite logit makes TRL's entropy NaN). An error of a
///   chained stage is re-thrown under `ppo_losses_joint_whitened`, its detail
///   saying which stage it came from.
@inlinable
public func ppoLossesJointWhitened<T: FloatScalar>(
    responses: Tensor<Int64>,
    logprobs: Tensor<T>,
    refLogprobs: Tensor<T>,
    values: Tensor<T>,
    scores: Tensor<T>,
    newLogits: Tensor<T>,
    newValues: Tensor<T>,
    padTokenId: Int,
    eosTokenId: Int,
    stopTokenId: Int?,
    missingEOSPenalty: Double?,
    klCoef: Double,
    klEstimator: KLEstimator,
    whitenRewards: Bool,
    gamma: Double,
    lam: Double,
    cliprange: Double,
    cliprangeValue: Double,
    vfCoef: Double,
    temperature: Double
) throws(StageError) -> PPOLossesJointWhitenedResult<T> {
    let check = InputCheck(stage: "ppo_losses_joint_whitened")
    try checkRolloutInputs(responses: responses, logprobs: logprobs, refLogprobs: refLogprobs, values: values,
                           scores: scores, check)
    try check.rank(newLogits, "new_logits", is: 3, legend: "[B, T, V]")
    try check.rank(newValues, "new_values", is: 2, legend: "[B, T]")
    let batchSize = responses.shape[0], length = responses.shape[1], vocabularySize = newLogits.shape[2]
    try check.shape(newLogits, "new_logits", equals: [batchSize, length, vocabularySize],
                    sameAs: "[B, T, V] with [B, T] from responses \(describe(shape: responses.shape))")
    try check.parameter("V", vocabularySize, in: 1..<Int.max, "the vocabulary axis of new_logits cannot be empty")
    try check.shape(newValues, "new_values", equals: responses.shape,
                    sameAs: "[B, T] from responses \(describe(shape: responses.shape))")
    try check.labels(responses, "responses", vocabularySize: vocabularySize)
    for (name, value) in [("kl_coef", klCoef), ("gamma", gamma), ("lam", lam), ("vf_coef", vfCoef)] {
        try check.finite(name, value)
    }
    try check.nonNegative("cliprange", cliprange)
    try check.nonNegative("cliprange_value", cliprangeValue)
    let divisor = temperature + 1e-7
    guard divisor.isFinite, divisor > 0 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "temperature",
                         "temperature + 1e-7 = \(divisor) must be finite and > 0 (the logits are divided by it)")
    }
    try check.noNaN(logprobs, "logprobs")
    try check.noNaN(refLogprobs, "ref_logprobs")
    try check.noNaN(values, "values")
    try check.noNaN(scores, "scores")
    try check.noNaN(newLogits, "new_logits")
    try check.noNaN(newValues, "new_values")
    let policyPositions = firstPadSequenceLengths(responses: responses, padTokenId: padTokenId,
                                                  stopTokenId: stopTokenId).policyPositionCount
    guard policyPositions >= 2 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "responses",
                         "the responses hold \(policyPositions) position(s) before their first pad (after truncation); whitening the advantages over them needs at least 2")
    }

    // 1-5. The rollout: truncation, lengths, EOS penalty, fills, KL, rewards (whitened if asked).
    let rollout = try relabelled(check.stage) { () throws(StageError) in
        try rewardsKLFirstPad(responses: responses, logprobs: logprobs, refLogprobs: refLogprobs, values: values,
                              scores: scores, padTokenId: padTokenId, eosTokenId: eosTokenId, stopTokenId: stopTokenId,
                              missingEOSPenalty: missingEOSPenalty, klCoef: klCoef, klEstimator: klEstimator,
                              whitenRewards: whitenRewards)
    }
    let policyMask = Tensor.make(rollout.paddingMask.shape, rollout.paddingMask.scalars.map { $0 ? Int64(0) : 1 })
    let valueMask = Tensor.make(rollout.paddingMaskP1.shape, rollout.paddingMaskP1.scalars.map { $0 ? Int64(0) : 1 })

    // 6. Advantages and returns: GAE from 0 over every position, returns from the
    // un-whitened advantages, then the advantages whitened over M and zeroed past it.
    let estimate = try relabelled(check.stage) { () throws(StageError) in
        try gae(values: rollout.maskedValues, rewards: rollout.rewards, start: 0, gamma: gamma, lambda: lam)
    }
    try check.noNaNInResult(estimate.returns, "returns")
    var advantages = try relabelled(check.stage, renaming: ["whitened": "advantages"]) { () throws(StageError) in
        try maskedWhiten(values: estimate.advantages, mask: policyMask, shiftMean: true).whitened
    }
    for i in 0..<advantages.count where rollout.paddingMask.scalars[i] {
        advantages.scalars[i] = 0
    }

    // The new log-probs from the tempered logits, on the raw responses, then the fill.
    let scaled = temperedLogits(newLogits, temperature: temperature)
    let entropy = softmaxEntropy(scaled)
    try check.noNaNInResult(entropy, "policy_entropy")
    var newLogprobs = try relabelled(check.stage, renaming: ["log_probs": "new_logits"]) { () throws(StageError) in
        try gatherLogProbs(logits: scaled, labels: responses)
    }
    var predictedValues = newValues
    for i in 0..<newLogprobs.count {
        if rollout.paddingMask.scalars[i] {
            newLogprobs.scalars[i] = T(invalidLogprob)
        }
        if rollout.paddingMaskP1.scalars[i] {
            predictedValues.scalars[i] = 0
        }
    }

    // The two losses, value for value v1's actor_loss and critic_loss on TRL's masks.
    let actor = try relabelled(check.stage, renaming: ["loss": "pg_loss"]) { () throws(StageError) in
        try actorLoss(logProbs: newLogprobs, oldLogProbs: rollout.filledLogprobs, advantages: advantages,
                      mask: policyMask, cliprange: cliprange)
    }
    let critic = try relabelled(check.stage, renaming: ["loss": "vf_loss"]) { () throws(StageError) in
        try criticLoss(values: predictedValues, oldValues: rollout.maskedValues, returns: estimate.returns,
                       mask: valueMask, cliprangeValue: cliprangeValue)
    }
    let loss = actor.loss + T(vfCoef) * critic.loss

    // The statistics of the micro-batch.
    let lowerBound = T(1.0 - cliprange), upperBound = T(1.0 + cliprange)
    var pgClipped = 0, vfClipped = 0
    var squaredLogRatioSum = 0.0
    for i in 0..<advantages.count {
        let ratio = actor.ratios.scalars[i], advantage = advantages.scalars[i]
        if policyMask.scalars[i] != 0 && -advantage * min(max(ratio, lowerBound), upperBound) > -advantage * ratio {
            pgClipped += 1
        }
        let target = estimate.returns.scalars[i]
        let clippedError = (critic.clippedValues.scalars[i] - target) * (critic.clippedValues.scalars[i] - target)
        let error = (predictedValues.scalars[i] - target) * (predictedValues.scalars[i] - target)
        if valueMask.scalars[i] != 0 && clippedError > error {
            vfClipped += 1
        }
        let logRatio = newLogprobs.scalars[i] - rollout.filledLogprobs.scalars[i]
        squaredLogRatioSum += Double(logRatio * logRatio)
    }
    let positions = T(batchSize * length)
    let pgClipfrac = T(pgClipped) / T(actor.tokenCount)
    let vfClipfrac = T(vfClipped) / T(critic.tokenCount)
    let approxkl = 0.5 * (T(squaredLogRatioSum) / positions)
    let policyEntropy = T(entropy.scalars.reduce(0.0) { $0 + Double($1) }) / positions
    let ratioMean = T(actor.ratios.scalars.reduce(0.0) { $0 + Double($1) }) / positions

    // The statistics of the rollout.
    let objectiveKL = meanOfRowSums(rollout.kl)
    let objectiveEntropy = meanOfRowSums(Tensor.make(rollout.filledLogprobs.shape, rollout.filledLogprobs.scalars.map { -$0 }))
    let objectiveNonScoreReward = meanOfRowSums(rollout.nonScoreReward)
    let objectiveScores = T(rollout.penalizedScores.scalars.reduce(0.0) { $0 + Double($1) }) / T(batchSize)
    let objectiveRLHFReward = objectiveNonScoreReward + objectiveScores
    let numEOSTokens = responses.scalars.reduce(0) { $0 + ($1 == Int64(eosTokenId) ? 1 : 0) }

    try check.noNaNInResult(advantages, "advantages")
    for (name, value) in [("loss", loss), ("approxkl", approxkl), ("policy_entropy", policyEntropy),
                          ("ratio_mean", ratioMean), ("objective_kl", objectiveKL),
                          ("objective_entropy", objectiveEntropy),
                          ("objective_non_score_reward", objectiveNonScoreReward),
                          ("objective_rlhf_reward", objectiveRLHFReward), ("objective_scores", objectiveScores)] {
        try check.noNaNInResult(Tensor(scalar: value), name)
    }
    return PPOLossesJointWhitenedResult(
        responses: responses, temperedLogits: scaled, temperature: temperature, cliprange: cliprange,
        cliprangeValue: cliprangeValue, vfCoef: vfCoef, rollout: rollout, policyMask: policyMask, valueMask: valueMask, unwhitenedAdvantages: estimate.advantages,
        advantages: advantages, returns: estimate.returns, newLogprobs: newLogprobs, predictedValues: predictedValues,
        entropy: entropy, actor: actor, critic: critic, loss: loss, pgClipfrac: pgClipfrac, vfClipfrac: vfClipfrac,
        approxkl: approxkl, policyEntropy: policyEntropy, ratioMean: ratioMean, objectiveKL: objectiveKL,
        objectiveEntropy: objectiveEntropy, objectiveNonScoreReward: objectiveNonScoreReward,
        objectiveRLHFReward: objectiveRLHFReward, objectiveScores: objectiveScores, numEOSTokens: numEOSTokens)
}

/// The gradients of `loss = pg_loss + vf_coef · vf_loss` with respect to the
/// model's outputs.
public struct PPOLossesJointWhitenedGradients<T: FloatScalar>: Sendable {
    /// ∂loss/∂new_logits. Shape [B, T, V].
    public var gradNewLogits: Tensor<T>
    /// ∂loss/∂new_values. Shape [B, T].
    public var gradNewValues: Tensor<T>

    @inlinable
    public init(gradNewLogits: Tensor<T>, gradNewValues: Tensor<T>) {
        self.gradNewLogits = gradNewLogits
        self.gradNewValues = gradNewValues
    }
}

/// The backward pass of ``ppoLossesJointWhitened``: the gradient TRL's one
/// `accelerator.backward(loss)` sends into the policy's logits and the value head.
///
/// ```
/// loss = pg_loss + vf_coef · vf_loss
/// g_nlp[b,j]  = ∂pg_loss/∂nlp[b,j]        = actorLossGradLogProbs(nlp, lp', advantages, M)   (0 off M)
/// ∂nlp[b,j]/∂z[b,j,v] = 1[v = y] - softmax(z[b,j])_v         (y = responses[b,j]; off M the
///                                                             1.0 fill cuts the path: 0)
/// ∂z/∂new_logits      = 1 / (temperature + 1e-7)
/// grad_new_logits[b,j,v] = g_nlp[b,j] · (1[v = y] - softmax(z[b,j])_v) / (temperature + 1e-7)
/// grad_new_values[b,j]   = vf_coef · criticLossGradValues(vpred, mv, returns, M1)[b,j]
///                          (0 where padding_mask_p1: the fill replaced new_values there)
/// ```
///
/// The advantages, the returns, the old log-probs lp' and the old values mv are
/// rollout tensors: constants here, as in TRL (whitening happened before the
/// update, so its statistics carry no gradient). The entropy, the clip fractions
/// and the other statistics are logged under `no_grad` and add nothing. Ties in the
/// two `max`es and the clamps' closed intervals follow PyTorch's autograd, as in
/// `actorLossGradLogProbs` and `criticLossGradValues`, whose results this chains.
///
/// It takes the forward result, which holds the tempered logits, the masks, the
/// fills and the settings: `ppoLossesJointWhitenedGradients(try ppoLossesJointWhitened(...))`.
///
/// Shapes: as ``ppoLossesJointWhitened``; `grad_new_logits` [B, T, V],
/// `grad_new_values` [B, T].
///
/// - Throws: ``StageError`` `nonFiniteResult` for a NaN gradient (an infinite
///   `vf_coef` in float32 times a zero, say); the input checks ran in the forward.
@inlinable
public func ppoLossesJointWhitenedGradients<T: FloatScalar>(
    _ forward: PPOLossesJointWhitenedResult<T>
) throws(StageError) -> PPOLossesJointWhitenedGradients<T> {
    let stage = "ppo_losses_joint_whitened"
    let gradNewLogprobs = try relabelled(stage) { () throws(StageError) in
        try actorLossGradLogProbs(logProbs: forward.newLogprobs, oldLogProbs: forward.rollout.filledLogprobs,
                                  advantages: forward.advantages, mask: forward.policyMask,
                                  cliprange: forward.cliprange)
    }
    var gradNewLogits = try relabelled(stage) { () throws(StageError) in
        try gatherLogProbsGradLogits(logits: forward.temperedLogits, labels: forward.responses,
                                     gradOutput: gradNewLogprobs)
    }
    let divisor = T(forward.temperature + 1e-7)
    for i in 0..<gradNewLogits.count {
        gradNewLogits.scalars[i] = gradNewLogits.scalars[i] / divisor
    }
    var gradNewValues = try relabelled(stage) { () throws(StageError) in
        try criticLossGradValues(values: forward.predictedValues, oldValues: forward.rollout.maskedValues,
                                 returns: forward.returns, mask: forward.valueMask,
                                 cliprangeValue: forward.cliprangeValue)
    }
    let valueWeight = T(forward.vfCoef)
    for i in 0..<gradNewValues.count {
        gradNewValues.scalars[i] = valueWeight * gradNewValues.scalars[i]
    }
    let check = InputCheck(stage: stage)
    try check.noNaNInResult(gradNewLogits, "grad_new_logits")
    try check.noNaNInResult(gradNewValues, "grad_new_values")
    return PPOLossesJointWhitenedGradients(gradNewLogits: gradNewLogits, gradNewValues: gradNewValues)
}
