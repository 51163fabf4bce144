import TensorCore
import Golden
import ComputeRewards
import GAE
import ActorLoss
import CriticLoss
import PPOStep

/// The well-known wrong data flows of DeepSpeed-Chat's PPO step.
enum PPOLossesMistakes {
    static let chapter = "Chapters/07-ppo-step"

    static let entry = StageMistakes(stage: "ppo_losses", mistakes: [valuesNotZeroed, startAtPromptLength])

    static let valuesNotZeroed = Mistake(
        id: "ppo_losses.values-not-zeroed", stage: "ppo_losses", chapter: chapter,
        title: "old values past each answer's end left in, so GAE bootstraps from padding",
        explanation: "train_rlhf zeroes rewards and values from ends[b] = start + n + 1 on before GAE: past the end there is no next state, so V_t+1 must be 0. Left in, the critic's guess at a pad leaks into the last answer tokens' advantages and returns.") { a in
        let attention = try a.mask("attention_mask"), logProbs = try a.float("log_probs")
        let promptLength = try a.int("prompt_length"), start = promptLength - 1
        let actionMask = attention.columns(1...), answerMask = actionMask.columns(start...)
        var rewards = try computeRewards(logProbs: logProbs, refLogProbs: a.float("ref_log_probs"),
                                         rewardScore: a.float("reward_score"), actionMask: actionMask,
                                         promptLength: promptLength, klCtl: a.real("kl_ctl"),
                                         clipRewardValue: a.real("clip_reward_value"))
        let (batch, positions) = (rewards.shape[0], rewards.shape[1])
        let ends = answerEnds(actionMask: actionMask, start: start)
        for b in 0..<batch { for t in min(ends[b], positions)..<positions { rewards[b, t] = 0 } }
        let values = try a.float("values")  // the mistake: not zeroed from the ends on
        let estimate = try gae(values: values, rewards: rewards, start: start, gamma: a.real("gamma"), lambda: a.real("lambda"))
        let actor = try actorLoss(logProbs: a.float("new_log_probs").columns(start...), oldLogProbs: logProbs.columns(start...),
                                  advantages: estimate.advantages, mask: answerMask, cliprange: a.real("cliprange"))
        let critic = try criticLoss(values: a.float("new_values").columns(start...), oldValues: values.columns(start...),
                                    returns: estimate.returns, mask: answerMask, cliprangeValue: a.real("cliprange_value"))
        return ["rewards": FixtureTensor(rewards), "old_values": FixtureTensor(values),
                "advantages": FixtureTensor(estimate.advantages), "returns": FixtureTensor(estimate.returns),
                "actor_loss": FixtureTensor(scalar: actor.loss), "critic_loss": FixtureTensor(scalar: critic.loss)]
    }

    static let startAtPromptLength = Mistake(
        id: "ppo_losses.start-at-prompt-length", stage: "ppo_losses", chapter: chapter,
        title: "start = prompt_length instead of prompt_length - 1",
        explanation: "In log-prob coordinates position t scores token t + 1, so the first answer token is scored at prompt_length - 1. Starting at prompt_length drops the first answer action from the rewards, the advantages and both losses.") { a in
        // The whole step, with every use of start moved one position right.
        let result = try ppoLosses(
            attentionMask: a.mask("attention_mask"), logProbs: a.float("log_probs"), refLogProbs: a.float("ref_log_probs"),
            values: a.float("values"), newLogProbs: a.float("new_log_probs"), newValues: a.float("new_values"),
            rewardScore: a.float("reward_score"), promptLength: a.int("prompt_length") + 1, klCtl: a.real("kl_ctl"),
            clipRewardValue: a.real("clip_reward_value"), cliprange: a.real("cliprange"),
            cliprangeValue: a.real("cliprange_value"), gamma: a.real("gamma"), lambda: a.real("lambda"))
        return ["rewards": FixtureTensor(result.rewards), "old_values": FixtureTensor(result.oldValues),
                "advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns),
                "actor_loss": FixtureTensor(scalar: result.actor.loss), "critic_loss": FixtureTensor(scalar: result.critic.loss)]
    }
}
