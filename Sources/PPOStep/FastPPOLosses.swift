import TensorCore
import ComputeRewards
import GAE
import ActorLoss
import CriticLoss

/// `ppoLosses` for float32, at memory speed: the same data flow through the fast
/// stages (`computeRewardsFast`, `gaeFast`, `actorLossFast`, `criticLossFast`).
///
/// ```
/// start       = prompt_length - 1,   action_mask = attention_mask[:, 1:]
/// rewards     = compute_rewards(...);  rewards[b, ends[b]:] = 0,  old_values[b, ends[b]:] = 0
/// advantages, returns = gae(old_values, rewards, start, γ, λ)
/// actor_loss  = actor_loss(new_log_probs[:, start:], log_probs[:, start:], advantages, action_mask[:, start:])
/// critic_loss = critic_loss(new_values[:, start:], old_values[:, start:], returns, action_mask[:, start:])
/// ```
///
/// Shapes: `attentionMask` [B, L] int64; `logProbs`, `refLogProbs`, `values`,
/// `newLogProbs`, `newValues` [B, N] float32 with N = L - 1; `rewardScore` [B].
/// B batch, L sequence length, N log-prob positions.
///
/// Equals the plain `ppoLosses(...)` bit for bit (each fast stage equals its
/// plain one, and both run the same composition), and through it DeepSpeed-Chat
/// `ppo_trainer.py :: DeepSpeedPPOTrainer.train_rlhf`. One thread; allocates
/// the result's tensors and the [B, N - start] answer parts, each written once.
///
/// - Throws: the same ``StageError``s as `ppoLosses`, in the same order.
public func ppoLossesFast(
    attentionMask: Tensor<Int64>,
    logProbs: Tensor<Float>,
    refLogProbs: Tensor<Float>,
    values: Tensor<Float>,
    newLogProbs: Tensor<Float>,
    newValues: Tensor<Float>,
    rewardScore: Tensor<Float>,
    promptLength: Int,
    klCtl: Double,
    clipRewardValue: Double,
    cliprange: Double,
    cliprangeValue: Double,
    gamma: Double,
    lambda: Double
) throws(StageError) -> PPOLossesResult<Float> {
    try ppoLossesComposed(
        attentionMask: attentionMask, logProbs: logProbs, refLogProbs: refLogProbs, values: values,
        newLogProbs: newLogProbs, newValues: newValues, rewardScore: rewardScore, promptLength: promptLength,
        klCtl: klCtl, clipRewardValue: clipRewardValue, cliprange: cliprange, cliprangeValue: cliprangeValue,
        gamma: gamma, lambda: lambda,
        stages: PPOStages(
            computeRewards: computeRewardsFast(logProbs:refLogProbs:rewardScore:actionMask:promptLength:klCtl:clipRewardValue:),
            gae: gaeFast(values:rewards:start:gamma:lambda:),
            actorLoss: actorLossFast(logProbs:oldLogProbs:advantages:mask:cliprange:),
            criticLoss: criticLossFast(values:oldValues:returns:mask:cliprangeValue:)))
}
