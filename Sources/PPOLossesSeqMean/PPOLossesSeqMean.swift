import TensorCore
import RewardsKLEndClamped
import GAEMasked
import ActorLossSeqMean
import CriticLossSeqMean
import MaskedMeanOverRows

/// Every tensor and logged number of one align-anything `rl_step`, from rewards to
/// losses and their gradients.
public struct PPOLossesSeqMeanResult<T: FloatScalar>: Sendable {
    /// s = prompt_length - 1: the first answer position in log-prob coordinates.
    public var start: Int
    /// m = attention_mask[:, 1:]. Shape [B, N].
    public var sequenceMask: Tensor<Int64>
    /// e_b, where each row's score went (the last 1 of m). Shape [B].
    public var endIndices: [Int]
    /// `rewards_kl_end_clamped`. Shape [B, N].
    public var rewards: Tensor<T>
    /// `gae_masked` from s. Shape [B, N - s].
    public var advantages: Tensor<T>
    /// advantages + (reward_values · m)[:, s:]. Shape [B, N - s].
    public var returns: Tensor<T>
    /// The actor loss with its per-token terms.
    public var actor: ActorLossSeqMeanResult<T>
    /// The critic loss with its per-token terms.
    public var critic: CriticLossSeqMeanResult<T>
    /// ∂actor_loss/∂new_log_probs, zero on columns < s. Shape [B, N].
    public var gradNewLogProbs: Tensor<T>
    /// ∂critic_loss/∂new_values, zero on columns < s. Shape [B, N].
    public var gradNewValues: Tensor<T>
    /// The numbers `rl_step` logs besides the two losses.
    public var statistics: PPOStepStatistics<T>

    @inlinable
    public init(start: Int, sequenceMask: Tensor<Int64>, endIndices: [Int], rewards: Tensor<T>, advantages: Tensor<T>,
                returns: Tensor<T>, actor: ActorLossSeqMeanResult<T>, critic: CriticLossSeqMeanResult<T>,
                gradNewLogProbs: Tensor<T>, gradNewValues: Tensor<T>, statistics: PPOStepStatistics<T>) {
        self.start = start
        self.sequenceMask = sequenceMask
        self.endIndices = endIndices
        self.rewards = rewards
        self.advantages = advantages
        self.returns = returns
        self.actor = actor
        self.critic = critic
        self.gradNewLogProbs = gradNewLogProbs
        self.gradNewValues = gradNewValues
        self.statistics = statistics
    }
}

/// What align-anything's `rl_step` returns besides `train/actor_loss` and
/// `train/reward_critic_loss` (and the learning rates), in one process. All are
/// scalars in the fixture's dtype; with m_s = m[:, s:] and n_b = Σ_t m_s[b, t]:
public struct PPOStepStatistics<T: FloatScalar>: Sendable {
    /// `train/reward`: mean_b reward[b].
    public var rewardMean: T
    /// `train/reward_with_kl_penalty`: mean_b Σ_{t>=s} rewards·m.
    public var rewardWithKLPenalty: T
    /// `train/reward_advantage`: masked mean over rows (mask m_s) of the advantages.
    public var rewardAdvantage: T
    /// `train/reward_return`: masked mean over rows of the returns.
    public var rewardReturn: T
    /// `train/reward_value`: masked mean over rows of `new_values[:, s:]` (the critic after the actor's step).
    public var rewardValue: T
    /// `train/kl_divergence`: mean_b Σ_{t>=s} (log_probs - ref_log_probs)·m, the per-token k1 summed over the answer.
    public var klDivergence: T
    /// `train/mean_generated_length`: mean_b n_b, the exact fraction Σ n_b / B rounded once.
    public var meanGeneratedLength: T
    /// `train/max_generated_length`: max_b n_b.
    public var maxGeneratedLength: T

    @inlinable
    public init(rewardMean: T, rewardWithKLPenalty: T, rewardAdvantage: T, rewardReturn: T, rewardValue: T,
                klDivergence: T, meanGeneratedLength: T, maxGeneratedLength: T) {
        self.rewardMean = rewardMean
        self.rewardWithKLPenalty = rewardWithKLPenalty
        self.rewardAdvantage = rewardAdvantage
        self.rewardReturn = rewardReturn
        self.rewardValue = rewardValue
        self.klDivergence = klDivergence
        self.meanGeneratedLength = meanGeneratedLength
        self.maxGeneratedLength = maxGeneratedLength
    }
}

/// One PPO step's losses as align-anything's `rl_step` computes them, with the
/// actor forward (+ gather) and the reward critic's forward replaced by the given
/// `newLogProbs` and `newValues`.
///
/// ```
/// s       = prompt_length - 1              (prompt_length: the width of the left-padded prompt batch)
/// m       = attention_mask[:, 1:],   m_s = m[:, s:]
/// rewards = rewards_kl_end_clamped(reward, log_probs, ref_log_probs, m, β, C)
/// advantages, returns = gae_masked(reward_values, rewards, m, start: s, γ, λ)
/// actor_loss  = actor_loss_seq_mean(new_log_probs[:, s:], log_probs[:, s:], advantages, m_s, ε)
/// critic_loss = critic_loss_seq_mean(new_values[:, s:], reward_values[:, s:], returns, m_s, c)
/// ```
///
/// and the statistics `rl_step` logs (``PPOStepStatistics``). Defaults are
/// align-anything's (`configs/train/text_to_text/ppo.yaml`): β = `klCoeff` 0.02,
/// C = `clipRangeScore` 50, ε = `clipRangeRatio` 0.2, c = `clipRangeValue` 5,
/// γ = `gamma` 1, λ = `gaeLambda` 0.95.
///
/// Shapes: `attentionMask` [B, L] 0/1 (align-anything builds it as `ids != pad`);
/// `logProbs`, `refLogProbs`, `rewardValues`, `newLogProbs`, `newValues` [B, N]
/// float with N = L - 1; `reward` [B] -> `rewards` [B, N]; `advantages`,
/// `returns` [B, N - s]; the losses and statistics []; `gradNewLogProbs`,
/// `gradNewValues` [B, N].
///
/// Quirks of the peer, reproduced:
/// - The score goes on the last attended action of the whole row, and the clamp
///   to ±C acts on each position's total (see `rewardsKLEndClamped`).
/// - GAE runs on `reward_values · m` and `rewards · m`: holes zeroed, the
///   recursion not restarting at them (see `gaeMasked`).
/// - Both losses are means per sequence, then over the batch: a one-token answer
///   weighs as much as a long one.
/// - The critic's old values are the raw `reward_values[:, s:]`, not the masked
///   ones GAE used. Under the loss mask they are the same numbers; they differ
///   only where m_s is 0, which the mean multiplies by 0.
/// - The two gradients are two separate backward passes (the actor steps before
///   the critic runs), each zero on the prompt columns < s.
///
/// Against DeepSpeed-Chat's `ppoLosses` (v1): there the score lands one past the
/// answer (clipped alone to ±5), rewards and values are zeroed only from one past
/// it, the critic clips against those zeroed values with c = 0.2, the losses are
/// token means over the batch, and the actor's log-ratio is masked before `exp`.
///
/// Matches align-anything `align_anything/trainers/text_to_text/ppo.py ::
/// PPOTrainer.rl_step` (data flow and logged statistics, one process).
///
/// - Throws: ``StageError`` for shapes that do not agree (`attention_mask` not
///   [B, N + 1], `reward` not [B]), a mask that is not 0/1, NaN in an input,
///   `promptLength` outside `[1, N]` (the peer raises for P = L and silently wraps
///   P = 0), a row with no answer token (m_s all zero: the peer's per-row means are
///   0/0 = NaN), or a NaN output. An error of one of the four stages is re-thrown
///   under `ppo_losses_seq_mean`, its detail saying which stage it came from.
@inlinable
public func ppoLossesSeqMean<T: FloatScalar>(
    attentionMask: Tensor<Int64>,
    logProbs: Tensor<T>,
    refLogProbs: Tensor<T>,
    rewardValues: Tensor<T>,
    newLogProbs: Tensor<T>,
    newValues: Tensor<T>,
    reward: Tensor<T>,
    promptLength: Int,
    klCoeff: Double = 0.02,
    clipRangeScore: Double = 50.0,
    clipRangeRatio: Double = 0.2,
    clipRangeValue: Double = 5.0,
    gamma: Double = 1.0,
    gaeLambda: Double = 0.95
) throws(StageError) -> PPOLossesSeqMeanResult<T> {
    let check = InputCheck(stage: "ppo_losses_seq_mean")
    try check.rank(logProbs, "log_probs", is: 2, legend: "[B, N]")
    let batchSize = logProbs.shape[0], positions = logProbs.shape[1]
    try check.shape(attentionMask, "attention_mask", equals: [batchSize, positions + 1],
                    sameAs: "[B, N + 1] from log_probs \(describe(shape: logProbs.shape))")
    for (tensor, name) in [(refLogProbs, "ref_log_probs"), (rewardValues, "reward_values"),
                           (newLogProbs, "new_log_probs"), (newValues, "new_values")] {
        try check.shape(tensor, name, equals: logProbs.shape, sameAs: "same as log_probs")
    }
    try check.shape(reward, "reward", equals: [batchSize], sameAs: "[B] from log_probs \(describe(shape: logProbs.shape))")
    try check.binaryMask(attentionMask, "attention_mask")
    try check.parameter("prompt_length", promptLength, in: 1..<(positions + 1),
                        "s = prompt_length - 1 must be an answer position in [0, N) with N = \(positions)")
    for (tensor, name) in [(logProbs, "log_probs"), (refLogProbs, "ref_log_probs"), (rewardValues, "reward_values"),
                           (newLogProbs, "new_log_probs"), (newValues, "new_values"), (reward, "reward")] {
        try check.noNaN(tensor, name)
    }

    let start = promptLength - 1
    // m = attention_mask[:, 1:]: position t of a log-prob scores token t + 1.
    let sequenceMask = attentionMask.columns(1...)
    let answerMask = sequenceMask.columns(start...)
    try check.everyRowSelects(answerMask, "attention_mask", describedAs: "attention_mask[:, 1:][:, \(start):]")

    let result = try check.underThisStage { () throws(StageError) in
        // 1. The rewards: a KL penalty on every token, the score on the last attended action, all clamped.
        let shaped = try rewardsKLEndClamped(reward: reward, logProbs: logProbs, refLogProbs: refLogProbs,
                                             sequenceMask: sequenceMask, klCoeff: klCoeff, clipRangeScore: clipRangeScore)

        // 2. Advantages and returns, on masked values and rewards, from s on.
        let estimate = try gaeMasked(values: rewardValues, rewards: shaped.rewards, sequenceMask: sequenceMask,
                                     start: start, gamma: gamma, gaeLambda: gaeLambda)

        // 3. The actor loss on the answer part, and its backward.
        let actor = try actorLossSeqMean(logProbs: newLogProbs.columns(start...), oldLogProbs: logProbs.columns(start...),
                                         advantages: estimate.advantages, mask: answerMask, clipRangeRatio: clipRangeRatio)
        let actorGradient = try actorLossSeqMeanGradLogProbs(
            logProbs: newLogProbs.columns(start...), oldLogProbs: logProbs.columns(start...),
            advantages: estimate.advantages, mask: answerMask, clipRangeRatio: clipRangeRatio)

        // 4. The critic loss on the answer part, against the raw reward_values, and its backward.
        let critic = try criticLossSeqMean(values: newValues.columns(start...), oldValues: rewardValues.columns(start...),
                                           returns: estimate.returns, mask: answerMask, clipRangeValue: clipRangeValue)
        let criticGradient = try criticLossSeqMeanGradValues(
            values: newValues.columns(start...), oldValues: rewardValues.columns(start...),
            returns: estimate.returns, mask: answerMask, clipRangeValue: clipRangeValue)

        // The logged statistics, as rl_step computes them.
        let lengths = rowCounts(answerMask)
        let klTerms = Tensor.make(logProbs.shape, (0..<logProbs.count).map { logProbs.scalars[$0] - refLogProbs.scalars[$0] })
        let statistics = PPOStepStatistics(
            rewardMean: meanOverRows(reward.scalars),
            rewardWithKLPenalty: meanOverRows(maskedRowSums(shaped.rewards.columns(start...), mask: answerMask)),
            rewardAdvantage: maskedMeanOverRows(estimate.advantages, mask: answerMask),
            rewardReturn: maskedMeanOverRows(estimate.returns, mask: answerMask),
            rewardValue: maskedMeanOverRows(newValues.columns(start...), mask: answerMask),
            klDivergence: meanOverRows(maskedRowSums(klTerms.columns(start...), mask: answerMask)),
            meanGeneratedLength: T(Double(lengths.reduce(0, +)) / Double(batchSize)),
            maxGeneratedLength: T(lengths.max() ?? 0))

        return PPOLossesSeqMeanResult(
            start: start, sequenceMask: sequenceMask, endIndices: shaped.endIndices, rewards: shaped.rewards,
            advantages: estimate.advantages, returns: estimate.returns, actor: actor, critic: critic,
            gradNewLogProbs: placedFromColumn(start, actorGradient, width: positions),
            gradNewValues: placedFromColumn(start, criticGradient, width: positions), statistics: statistics)
    }
    let s = result.statistics
    for (value, name) in [(s.rewardMean, "reward_mean"), (s.rewardWithKLPenalty, "reward_with_kl_penalty"),
                          (s.rewardAdvantage, "reward_advantage"), (s.rewardReturn, "reward_return"),
                          (s.rewardValue, "reward_value"), (s.klDivergence, "kl_divergence")] {
        try check.noNaNInResult(Tensor(scalar: value), name)
    }
    return result
}

/// The inverse of `x.columns(start...)`: `part` [B, N - start] placed in a
/// [B, width] tensor of zeros, from column `start` on (the gradient of a slice).
@inlinable
func placedFromColumn<T: FloatScalar>(_ start: Int, _ part: Tensor<T>, width: Int) -> Tensor<T> {
    let batchSize = part.shape[0], partWidth = part.shape[1]
    var placed = Tensor<T>(shape: [batchSize, width], repeating: 0)
    for row in 0..<batchSize {
        for t in 0..<partWidth {
            placed[row, start + t] = part[row, t]
        }
    }
    return placed
}
