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
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   NaN in an input, a `promptLength` outside `[1, L)`, or an answer mask that
///   selects no token.
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
    try ppoLossesComposed(
        attentionMask: attentionMask, logProbs: logProbs, refLogProbs: refLogProbs, values: values,
        newLogProbs: newLogProbs, newValues: newValues, rewardScore: rewardScore, promptLength: promptLength,
        klCtl: klCtl, clipRewardValue: clipRewardValue, cliprange: cliprange, cliprangeValue: cliprangeValue,
        gamma: gamma, lambda: lambda,
        stages: PPOStages(
            computeRewards: computeRewards(logProbs:refLogProbs:rewardScore:actionMask:promptLength:klCtl:clipRewardValue:),
            gae: gae(values:rewards:start:gamma:lambda:),
            actorLoss: actorLoss(logProbs:oldLogProbs:advantages:mask:cliprange:),
            criticLoss: criticLoss(values:oldValues:returns:mask:cliprangeValue:)))
}

/// The four stages `ppoLossesComposed` chains: the plain generic ones for
/// `ppoLosses`, the float32 fast ones for `ppoLossesFast`.
struct PPOStages<T: FloatScalar> {
    var computeRewards: (Tensor<T>, Tensor<T>, Tensor<T>, Tensor<Int64>, Int, Double, Double) throws(StageError) -> Tensor<T>
    var gae: (Tensor<T>, Tensor<T>, Int, Double, Double) throws(StageError) -> GAEResult<T>
    var actorLoss: (Tensor<T>, Tensor<T>, Tensor<T>, Tensor<Int64>, Double) throws(StageError) -> ActorLossResult<T>
    var criticLoss: (Tensor<T>, Tensor<T>, Tensor<T>, Tensor<Int64>, Double) throws(StageError) -> CriticLossResult<T>
}

/// `ppoLosses` with its four stages given: the checks, the data flow between the
/// stages, and the errors, over flat arrays.
func ppoLossesComposed<T: FloatScalar>(
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
    lambda: Double,
    stages: PPOStages<T>
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
    for (name, tensor) in [("log_probs", logProbs), ("ref_log_probs", refLogProbs), ("values", values),
                           ("new_log_probs", newLogProbs), ("new_values", newValues), ("reward_score", rewardScore)]
    where tensor.scalars.contains(where: \.isNaN) {
        try check.noNaN(tensor, name)  // names the first NaN
    }

    let start = promptLength - 1
    // action_mask = attention_mask[:, 1:]: position t of a log-prob scores token t + 1.
    var actionMask = Tensor<Int64>(shape: logProbShape, repeating: 0)
    for row in 0..<batchSize {
        for t in 0..<positions {
            actionMask.scalars[row * positions + t] = attentionMask.scalars[row * length + t + 1]
        }
    }
    let answerMask = answerPart(actionMask, start: start)
    guard answerMask.scalars.contains(1) else {
        throw StageError(.emptyMask, stage: check.stage, argument: "attention_mask",
                         "attention_mask[:, 1:][:, \(start):] selects no answer token; the losses' token-mean would be 0/0")
    }

    var rewards: Tensor<T>
    do {
        rewards = try stages.computeRewards(logProbs, refLogProbs, rewardScore, actionMask, promptLength, klCtl,
                                            clipRewardValue)
    } catch {
        throw StageError(error.kind, stage: check.stage, argument: error.argument, "in compute_rewards: \(error.detail)")
    }

    // Zero rewards and values from each row's end on (the end itself is one past
    // the score position, so the score survives).
    var oldValues = values
    let ends = answerEnds(actionMask: actionMask, start: start)
    for row in 0..<batchSize {
        for t in min(ends[row], positions)..<positions {
            rewards.scalars[row * positions + t] = 0
            oldValues.scalars[row * positions + t] = 0
        }
    }

    do {
        let estimate = try stages.gae(oldValues, rewards, start, gamma, lambda)
        let actor = try stages.actorLoss(answerPart(newLogProbs, start: start), answerPart(logProbs, start: start),
                                         estimate.advantages, answerMask, cliprange)
        let critic = try stages.criticLoss(answerPart(newValues, start: start), answerPart(oldValues, start: start),
                                           estimate.returns, answerMask, cliprangeValue)
        return PPOLossesResult(start: start, actionMask: actionMask, ends: ends, rewards: rewards,
                               oldValues: oldValues, advantages: estimate.advantages, returns: estimate.returns,
                               actor: actor, critic: critic)
    } catch {
        throw StageError(error.kind, stage: check.stage, argument: error.argument, "in \(error.stage): \(error.detail)")
    }
}

/// x[:, start:] of a [B, N] tensor.
func answerPart<S>(_ x: Tensor<S>, start: Int) -> Tensor<S> {
    let batchSize = x.shape[0], positions = x.shape[1]
    var part: [S] = []
    part.reserveCapacity(batchSize * (positions - start))
    for row in 0..<batchSize {
        part += x.scalars[(row * positions + start)..<((row + 1) * positions)]
    }
    return Tensor.make([batchSize, positions - start], part)
}
