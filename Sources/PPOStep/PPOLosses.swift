import TensorCore
import ComputeRewards
import GAE
import ActorLoss
import CriticLoss

/// Every tensor one DeepSpeed-Chat PPO step computes, from rewards to losses.
public struct PPOLossesResult<T: FloatScalar>: Sendable {
    /// start = prompt_length - 1: the first answer position in log-prob coordinates.
    public var start: Int
    /// attention_mask[:, 1:]. Shape [B, N].
    public var actionMask: Tensor<Int64>
    /// ends[b] = start + Σ_{t >= start} action_mask[b, t] + 1. Shape [B].
    public var ends: [Int]
    /// compute_rewards, then zeroed from each row's end on. Shape [B, N].
    public var rewards: Tensor<T>
    /// The critic's values at rollout time, zeroed from each row's end on. Shape [B, N].
    public var oldValues: Tensor<T>
    /// GAE from `start`. Shape [B, N - start].
    public var advantages: Tensor<T>
    /// advantages + old_values[:, start:]. Shape [B, N - start].
    public var returns: Tensor<T>
    /// The actor loss with its per-token terms.
    public var actor: ActorLossResult<T>
    /// The critic loss with its per-token terms.
    public var critic: CriticLossResult<T>

    @inlinable
    public init(start: Int, actionMask: Tensor<Int64>, ends: [Int], rewards: Tensor<T>, oldValues: Tensor<T>, advantages: Tensor<T>, returns: Tensor<T>, actor: ActorLossResult<T>, critic: CriticLossResult<T>) {
        self.start = start
        self.actionMask = actionMask
        self.ends = ends
        self.rewards = rewards
        self.oldValues = oldValues
        self.advantages = advantages
        self.returns = returns
        self.actor = actor
        self.critic = critic
    }
}

/// One PPO step's losses as DeepSpeed-Chat's `train_rlhf` computes them, with the
/// two model forwards replaced by given tensors.
///
/// ```
/// start       = prompt_length - 1
/// action_mask = attention_mask[:, 1:]
/// rewards     = compute_rewards(log_probs, ref_log_probs, reward_score, action_mask)
/// ends[b]     = start + Σ_{t >= start} action_mask[b, t] + 1
/// rewards[b, ends[b]:] = 0,   old_values[b, ends[b]:] = 0       (old_values = values)
/// advantages, returns = gae(old_values, rewards, start, γ, λ)
/// actor_loss  = actor_loss(new_log_probs[:, start:], log_probs[:, start:], advantages, action_mask[:, start:])
/// critic_loss = critic_loss(new_values[:, start:], old_values[:, start:], returns, action_mask[:, start:])
/// ```
///
/// Shapes: `attentionMask` [B, L] int64; `logProbs`, `refLogProbs`, `values`,
/// `newLogProbs`, `newValues` [B, N] float with N = L - 1; `rewardScore` [B] ->
/// `rewards`, `old_values` [B, N]; `advantages`, `returns` [B, N - start];
/// `actor_loss`, `critic_loss` [].
///
/// The zeroing starts at `ends[b]`, one past the position where the score landed,
/// so that position's reward and value survive (DeepSpeedExamples PR #672 points
/// at this). The losses then mask it out: `action_mask[:, start:]` is 0 there for
/// a padded answer. `values` are the critic's outputs already cut to N
/// (`values[:, :-1]` in DeepSpeed-Chat's `generate_experience`).
///
/// Matches DeepSpeed-Chat `dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.train_rlhf`.
///
/// Infinite inputs give what PyTorch gives, stage by stage: an infinite value, or
/// a NaN KL term, past a row's end is zeroed before GAE reads it, as in PyTorch.
/// Where PyTorch gives NaN in an output, the stage throws `nonFiniteResult`
/// naming the first such output in the order `rewards`, `advantages`, `returns`,
/// `actor_loss`, `critic_loss`: e.g. an infinite value in the answer part makes
/// its return inf - inf, and an infinite log-prob, new log-prob or new value past
/// the end meets the answer mask's 0 in a loss's masked sum (inf · 0).
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   NaN in an input, a `promptLength` outside `[1, L)`, an answer mask that
///   selects no token, or an output that would be NaN (`nonFiniteResult` naming
///   it). An error of one of the four stages is re-thrown under `ppo_losses`,
///   naming our input or output (see `ppoLossesError`), its detail saying which
///   stage it came from.
@inlinable
public func ppoLosses<T: FloatScalar>(
    attentionMask: Tensor<Int64>,
    logProbs: Tensor<T>,
    refLogProbs: Tensor<T>,
    values: Tensor<T>,
    newLogProbs: Tensor<T>,
    newValues: Tensor<T>,
    rewardScore: Tensor<T>,
    promptLength: Int,
    klCtl: Double,
    clipRewardValue: Double,
    cliprange: Double,
    cliprangeValue: Double,
    gamma: Double,
    lambda: Double
) throws(StageError) -> PPOLossesResult<T> {
    let check = InputCheck(stage: "ppo_losses")
    try check.rank(attentionMask, "attention_mask", is: 2, legend: "[B, L]")
    let batchSize = attentionMask.shape[0], length = attentionMask.shape[1]
    let positions = length - 1
    guard positions >= 1 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "attention_mask",
                         "expected L >= 2 tokens (N = L - 1 >= 1 log-prob positions), got shape \(describe(shape: attentionMask.shape))")
    }
    let logProbShape = [batchSize, positions]
    let source = "[B, N] = [B, L - 1] from attention_mask \(describe(shape: attentionMask.shape))"
    try check.shape(logProbs, "log_probs", equals: logProbShape, sameAs: source)
    try check.shape(refLogProbs, "ref_log_probs", equals: logProbShape, sameAs: source)
    try check.shape(values, "values", equals: logProbShape, sameAs: source)
    try check.shape(newLogProbs, "new_log_probs", equals: logProbShape, sameAs: source)
    try check.shape(newValues, "new_values", equals: logProbShape, sameAs: source)
    try check.shape(rewardScore, "reward_score", equals: [batchSize], sameAs: "[B] from attention_mask \(describe(shape: attentionMask.shape))")
    try check.binaryMask(attentionMask, "attention_mask")
    try check.parameter("prompt_length", promptLength, in: 1..<length,
                        "start = prompt_length - 1 must be an answer position in [0, N) with L = \(length)")
    try check.noNaN(logProbs, "log_probs")
    try check.noNaN(refLogProbs, "ref_log_probs")
    try check.noNaN(values, "values")
    try check.noNaN(newLogProbs, "new_log_probs")
    try check.noNaN(newValues, "new_values")
    try check.noNaN(rewardScore, "reward_score")

    let start = promptLength - 1
    // action_mask = attention_mask[:, 1:]: position t of a log-prob scores token t + 1.
    let actionMask = attentionMask.columns(1...)
    let answerMask = actionMask.columns(start...)
    guard answerMask.scalars.contains(1) else {
        throw StageError(.emptyMask, stage: check.stage, argument: "attention_mask",
                         "attention_mask[:, 1:][:, \(start):] selects no answer token; the losses' token-mean would be 0/0")
    }

    // 1. The rewards: a KL penalty on every token, the clipped score one past the answer.
    var rewards: Tensor<T>
    do {
        // Not yet checked for NaN: the zeroing below may remove it, as in PyTorch.
        rewards = try computeRewardsWithoutResultCheck(
            logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: rewardScore, actionMask: actionMask,
            promptLength: promptLength, klCtl: klCtl, clipRewardValue: clipRewardValue)
    } catch {
        throw ppoLossesError(error, names: ["action_mask": "attention_mask"])
    }

    // Zero rewards and values from each row's end on (the end itself is one past
    // the score position, so the score survives).
    var oldValues = values
    let ends = answerEnds(actionMask: actionMask, start: start)
    for row in 0..<batchSize {
        for t in min(ends[row], positions)..<positions {
            rewards[row, t] = 0
            oldValues[row, t] = 0
        }
    }
    // A KL term of inf - inf or 0 · inf (equal infinite log-probs, kl_ctl = 0) is
    // NaN, in PyTorch too, unless it lies past the row's end and was just zeroed.
    // old_values is `values` (NaN-free) with zeros: nothing to check.
    try check.noNaNInResult(rewards, "rewards")

    // 2. Advantages and returns, from start on (gae checks both for NaN).
    let estimate: GAEResult<T>
    do {
        estimate = try gae(values: oldValues, rewards: rewards, start: start, gamma: gamma, lambda: lambda)
    } catch {
        throw ppoLossesError(error, names: ["values": "old_values", "start": "prompt_length"])
    }

    // 3. The actor loss on the answer part.
    let actor: ActorLossResult<T>
    do {
        actor = try actorLoss(logProbs: newLogProbs.columns(start...), oldLogProbs: logProbs.columns(start...),
                              advantages: estimate.advantages, mask: answerMask, cliprange: cliprange)
    } catch {
        throw ppoLossesError(error, names: ["log_probs": "new_log_probs", "old_log_probs": "log_probs",
                                            "mask": "attention_mask", "loss": "actor_loss"])
    }

    // 4. The critic loss on the answer part.
    let critic: CriticLossResult<T>
    do {
        critic = try criticLoss(values: newValues.columns(start...), oldValues: oldValues.columns(start...),
                                returns: estimate.returns, mask: answerMask, cliprangeValue: cliprangeValue)
    } catch {
        throw ppoLossesError(error, names: ["values": "new_values", "mask": "attention_mask", "loss": "critic_loss"])
    }

    return PPOLossesResult(start: start, actionMask: actionMask, ends: ends, rewards: rewards,
                           oldValues: oldValues, advantages: estimate.advantages, returns: estimate.returns,
                           actor: actor, critic: critic)
}

/// An error of one of the four stages, re-thrown as `ppo_losses`' own: its
/// argument renamed to what `ppo_losses` calls it (`names`: the stage's name ->
/// ours, e.g. critic_loss's `values` is our `new_values`, its `loss` our
/// `critic_loss`), so it names one of our inputs or one of our outputs. A NaN a
/// stage finds in its input is a fault of ours, not of the caller, when that input
/// is a quantity we computed (`rewards`, `old_values`, `advantages`, `returns`:
/// our inputs were checked for NaN first): it becomes a `nonFiniteResult` naming
/// that quantity. The detail says which stage threw.
@inlinable
func ppoLossesError(_ error: StageError, names: [String: String]) -> StageError {
    let computed: Set<String> = ["rewards", "old_values", "advantages", "returns", "actor_loss", "critic_loss"]
    let argument = names[error.argument] ?? error.argument
    let kind: StageError.Kind = error.kind == .notANumber && computed.contains(argument) ? .nonFiniteResult : error.kind
    let asNamed = argument == error.argument ? "" : " (its '\(error.argument)')"
    return StageError(kind, stage: "ppo_losses", argument: argument, "in \(error.stage)\(asNamed): \(error.detail)")
}
