// Exercise 07: one DeepSpeed-Chat PPO step, chaining the library's stages.
// Fill in the body below, then run
//   make exercise N=7
// Chapters/07-ppo-step/README.md explains the data flow.
import TensorCore
import Workshop
import ComputeRewards
import GAE
import ActorLoss
import CriticLoss

/// One PPO step's losses as DeepSpeed-Chat's `train_rlhf` computes them. Call the
/// library's `computeRewards`, `gae`, `actorLoss` and `criticLoss`; the exercise is
/// the data flow between them (which columns, which mask, what is zeroed).
///
/// ```
/// start       = promptLength - 1
/// action_mask = attentionMask[:, 1:]                 (attentionMask.columns(1...))
/// rewards     = computeRewards(logProbs, refLogProbs, rewardScore, action_mask, promptLength, ...)
/// ends[b]     = start + Σ_{t >= start} action_mask[b, t] + 1    (answerEnds(actionMask:start:))
/// rewards[b, ends[b]:] = 0,   oldValues[b, ends[b]:] = 0        (oldValues = values)
/// advantages, returns = gae(oldValues, rewards, start, γ, λ)
/// actorLoss  = actorLoss(newLogProbs[:, start:], logProbs[:, start:], advantages, action_mask[:, start:])
/// criticLoss = criticLoss(newValues[:, start:], oldValues[:, start:], returns, action_mask[:, start:])
/// ```
///
/// Shapes: `attentionMask` [B, L]; the five float inputs [B, N] with N = L - 1;
/// `rewardScore` [B] -> `rewards`, `oldValues` [B, N]; `advantages`, `returns`
/// [B, N - start]; two scalar losses.
func ppoStep(_ x: PPOStepInputs) throws -> PPOStepOutputs {
    // Your code here.
    throw ExerciseNotImplemented()
}
