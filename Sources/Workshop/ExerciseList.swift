import TensorCore
import Golden

/// The attendee's functions, one type per exercise, all in Double.
public typealias GatherLogProbsFunction = (_ logits: Tensor<Double>, _ labels: Tensor<Int64>) throws -> Tensor<Double>
public typealias PairwiseRewardLossFunction = (_ inputIds: Tensor<Int64>, _ rewards: Tensor<Double>, _ padId: Int64,
                                               _ numPaddingAtBeginning: Int) throws
    -> (loss: Double, chosenMeanScores: Tensor<Double>, rejectedMeanScores: Tensor<Double>)
public typealias ComputeRewardsFunction = (_ logProbs: Tensor<Double>, _ refLogProbs: Tensor<Double>,
                                           _ rewardScore: Tensor<Double>, _ actionMask: Tensor<Int64>, _ promptLength: Int,
                                           _ klCtl: Double, _ clipRewardValue: Double) throws -> Tensor<Double>
public typealias GAEFunction = (_ values: Tensor<Double>, _ rewards: Tensor<Double>, _ start: Int, _ gamma: Double,
                                _ lambda: Double) throws -> (advantages: Tensor<Double>, returns: Tensor<Double>)
public typealias ActorLossFunction = (_ logProbs: Tensor<Double>, _ oldLogProbs: Tensor<Double>,
                                      _ advantages: Tensor<Double>, _ mask: Tensor<Int64>, _ cliprange: Double) throws -> Double
public typealias CriticLossFunction = (_ values: Tensor<Double>, _ oldValues: Tensor<Double>, _ returns: Tensor<Double>,
                                       _ mask: Tensor<Int64>, _ cliprangeValue: Double) throws -> Double
public typealias PPOStepFunction = (_ inputs: PPOStepInputs) throws -> PPOStepOutputs
public typealias DPOLossFunction = (_ betterLogProbs: Tensor<Double>, _ worseLogProbs: Tensor<Double>,
                                    _ refBetterLogProbs: Tensor<Double>, _ refWorseLogProbs: Tensor<Double>,
                                    _ beta: Double) throws
    -> (loss: Double, betterSampleReward: Tensor<Double>, worseSampleReward: Tensor<Double>)
public typealias RewardEndScoresAttnFunction = (_ scores: Tensor<Double>, _ attentionMask: Tensor<Int64>?) throws
    -> (endIndex: [Int], endScores: Tensor<Double>)
public typealias MaskedWhitenFunction = (_ values: Tensor<Double>, _ mask: Tensor<Int64>, _ shiftMean: Bool) throws -> Tensor<Double>
public typealias KLEstimatorsFunction = (_ logProbs: Tensor<Double>, _ refLogProbs: Tensor<Double>, _ mask: Tensor<Int64>?,
                                         _ estimator: String, _ clipRange: (lo: Double, hi: Double)?) throws
    -> (kl: Tensor<Double>, klMean: Tensor<Double>?)
public typealias DPOVariantsFunction = (_ chosenLogps: Tensor<Double>, _ rejectedLogps: Tensor<Double>,
                                        _ refChosenLogps: Tensor<Double>, _ refRejectedLogps: Tensor<Double>,
                                        _ chosenLengths: Tensor<Int64>, _ rejectedLengths: Tensor<Int64>,
                                        _ lossType: String, _ beta: Double, _ labelSmoothing: Double) throws
    -> (losses: Tensor<Double>, loss: Double, chosenRewards: Tensor<Double>, rejectedRewards: Tensor<Double>,
        rewardAccuracy: Double, rewardMargin: Tensor<Double>)
public typealias GroupAdvantagesFunction = (_ rewards: Tensor<Double>, _ groupSize: Int, _ estimator: String,
                                            _ scaleRewards: String) throws -> Tensor<Double>

/// The inputs of one DeepSpeed-Chat PPO step (exercise 07), by their fixture names.
public struct PPOStepInputs: Sendable {
    /// [B, L] 0/1.
    public let attentionMask: Tensor<Int64>
    /// [B, N] with N = L - 1: the rollout policy's, the reference's, the critic's at rollout time.
    public let logProbs: Tensor<Double>, refLogProbs: Tensor<Double>, values: Tensor<Double>
    /// [B, N]: the policy's and the critic's outputs in this training step.
    public let newLogProbs: Tensor<Double>, newValues: Tensor<Double>
    /// [B]: the reward model's scores.
    public let rewardScore: Tensor<Double>
    public let promptLength: Int
    public let klCtl: Double, clipRewardValue: Double, cliprange: Double, cliprangeValue: Double, gamma: Double, lambda: Double
}

/// The outputs of one PPO step (exercise 07).
public struct PPOStepOutputs: Sendable {
    public var rewards: Tensor<Double>, oldValues: Tensor<Double>, advantages: Tensor<Double>, returns: Tensor<Double>
    public var actorLoss: Double, criticLoss: Double

    public init(rewards: Tensor<Double>, oldValues: Tensor<Double>, advantages: Tensor<Double>, returns: Tensor<Double>,
                actorLoss: Double, criticLoss: Double) {
        self.rewards = rewards
        self.oldValues = oldValues
        self.advantages = advantages
        self.returns = returns
        self.actorLoss = actorLoss
        self.criticLoss = criticLoss
    }
}

/// Every exercise of the workshop, one per stage chapter.
public enum Exercises {
    public static let gatherLogProbs = Exercise<GatherLogProbsFunction>(
        number: 1, slug: "01-gather-log-probs", stage: "gather_log_probs", function: "gatherLogProbs(logits:labels:)",
        chapter: "Chapters/01-gather-log-probs") { f, a in
        ["log_probs": FixtureTensor(try f(a.float("logits"), a.ids("labels")))]
    }

    public static let pairwiseRewardLoss = Exercise<PairwiseRewardLossFunction>(
        number: 2, slug: "02-pairwise-reward-loss", stage: "reward_pairwise_loss",
        function: "pairwiseRewardLoss(inputIds:rewards:padId:numPaddingAtBeginning:)",
        chapter: "Chapters/02-pairwise-reward-loss") { f, a in
        let r = try f(a.ids("input_ids"), a.float("rewards"), Int64(a.int("pad_id")), a.int("num_padding_at_beginning"))
        return ["loss": FixtureTensor(scalar: r.loss), "chosen_mean_scores": FixtureTensor(r.chosenMeanScores),
                "rejected_mean_scores": FixtureTensor(r.rejectedMeanScores)]
    }

    public static let computeRewards = Exercise<ComputeRewardsFunction>(
        number: 3, slug: "03-compute-rewards", stage: "compute_rewards",
        function: "computeRewards(logProbs:refLogProbs:rewardScore:actionMask:promptLength:klCtl:clipRewardValue:)",
        chapter: "Chapters/03-compute-rewards") { f, a in
        ["rewards": FixtureTensor(try f(a.float("log_probs"), a.float("ref_log_probs"), a.float("reward_score"),
                                        a.mask("action_mask"), a.int("prompt_length"), a.real("kl_ctl"),
                                        a.real("clip_reward_value")))]
    }

    public static let gae = Exercise<GAEFunction>(
        number: 4, slug: "04-gae", stage: "gae", function: "gae(values:rewards:start:gamma:lambda:)",
        chapter: "Chapters/04-gae") { f, a in
        let r = try f(a.float("values"), a.float("rewards"), a.int("start"), a.real("gamma"), a.real("lambda"))
        return ["advantages": FixtureTensor(r.advantages), "returns": FixtureTensor(r.returns)]
    }

    public static let actorLoss = Exercise<ActorLossFunction>(
        number: 5, slug: "05-actor-loss", stage: "actor_loss",
        function: "actorLoss(logProbs:oldLogProbs:advantages:mask:cliprange:)", chapter: "Chapters/05-actor-loss") { f, a in
        ["loss": FixtureTensor(scalar: try f(a.float("log_probs"), a.float("old_log_probs"), a.float("advantages"),
                                             a.mask("mask"), a.real("cliprange")))]
    }

    public static let criticLoss = Exercise<CriticLossFunction>(
        number: 6, slug: "06-critic-loss", stage: "critic_loss",
        function: "criticLoss(values:oldValues:returns:mask:cliprangeValue:)", chapter: "Chapters/06-critic-loss") { f, a in
        ["loss": FixtureTensor(scalar: try f(a.float("values"), a.float("old_values"), a.float("returns"), a.mask("mask"),
                                             a.real("cliprange_value")))]
    }

    public static let ppoStep = Exercise<PPOStepFunction>(
        number: 7, slug: "07-ppo-step", stage: "ppo_losses", function: "ppoStep(_:)", chapter: "Chapters/07-ppo-step") { f, a in
        let r = try f(PPOStepInputs(
            attentionMask: a.mask("attention_mask"), logProbs: a.float("log_probs"), refLogProbs: a.float("ref_log_probs"),
            values: a.float("values"), newLogProbs: a.float("new_log_probs"), newValues: a.float("new_values"),
            rewardScore: a.float("reward_score"), promptLength: a.int("prompt_length"), klCtl: a.real("kl_ctl"),
            clipRewardValue: a.real("clip_reward_value"), cliprange: a.real("cliprange"),
            cliprangeValue: a.real("cliprange_value"), gamma: a.real("gamma"), lambda: a.real("lambda")))
        return ["rewards": FixtureTensor(r.rewards), "old_values": FixtureTensor(r.oldValues),
                "advantages": FixtureTensor(r.advantages), "returns": FixtureTensor(r.returns),
                "actor_loss": FixtureTensor(scalar: r.actorLoss), "critic_loss": FixtureTensor(scalar: r.criticLoss)]
    }

    public static let dpoLoss = Exercise<DPOLossFunction>(
        number: 8, slug: "08-dpo-loss", stage: "dpo_loss",
        function: "dpoLoss(betterLogProbs:worseLogProbs:refBetterLogProbs:refWorseLogProbs:beta:)",
        chapter: "Chapters/08-dpo-loss") { f, a in
        let r = try f(a.float("better_log_probs"), a.float("worse_log_probs"), a.float("ref_better_log_probs"),
                      a.float("ref_worse_log_probs"), a.real("beta"))
        return ["loss": FixtureTensor(scalar: r.loss), "better_sample_reward": FixtureTensor(r.betterSampleReward),
                "worse_sample_reward": FixtureTensor(r.worseSampleReward)]
    }

    public static let rewardEndScoresAttn = Exercise<RewardEndScoresAttnFunction>(
        number: 11, slug: "11-three-reward-models", stage: "reward_end_scores_attn",
        function: "rewardEndScoresAttn(scores:attentionMask:)", chapter: "Chapters/11-three-reward-models") { f, a in
        let r = try f(a.float("scores"), a.optionalMask("attention_mask"))
        return ["end_index": .int64(Tensor.make([r.endIndex.count], r.endIndex.map(Int64.init))),
                "end_scores": FixtureTensor(r.endScores)]
    }

    public static let maskedWhiten = Exercise<MaskedWhitenFunction>(
        number: 12, slug: "12-three-ppo-steps", stage: "masked_whiten", function: "maskedWhiten(values:mask:shiftMean:)",
        chapter: "Chapters/12-three-ppo-steps") { f, a in
        ["whitened": FixtureTensor(try f(a.float("values"), a.mask("mask"), a.bool("shift_mean")))]
    }

    public static let klEstimators = Exercise<KLEstimatorsFunction>(
        number: 13, slug: "13-kl-estimators", stage: "kl_estimators",
        function: "klEstimators(logProbs:refLogProbs:mask:estimator:clipRange:)", chapter: "Chapters/13-kl-estimators") { f, a in
        let range = try a.optionalRange("clip_range")
        let r = try f(a.float("log_probs"), a.float("ref_log_probs"), a.optionalMask("mask"), a.string("estimator"),
                      range.map { (lo: $0.lo, hi: $0.hi) })
        var outputs = ["kl": FixtureTensor(r.kl)]
        if let klMean = r.klMean { outputs["kl_mean"] = FixtureTensor(klMean) }
        return outputs
    }

    /// The loss types exercise 14 covers (on plain log-ratios, f_divergence reverse_kl).
    public static let dpoVariantsLossTypes: Set<String> = ["sigmoid", "hinge", "ipo", "ipo_sum"]

    public static let dpoVariants = Exercise<DPOVariantsFunction>(
        number: 14, slug: "14-dpo-family", stage: "dpo_variants",
        function: "dpoVariants(chosenLogps:rejectedLogps:refChosenLogps:refRejectedLogps:chosenLengths:rejectedLengths:lossType:beta:labelSmoothing:)",
        chapter: "Chapters/14-dpo-family",
        scope: "fixtures of the other loss types or of another f_divergence",
        outOfScope: { a in
            try !dpoVariantsLossTypes.contains(a.string("loss_type")) || a.string("f_divergence") != "reverse_kl"
        }) { f, a in
        let r = try f(a.float("chosen_logps"), a.float("rejected_logps"), a.float("ref_chosen_logps"),
                      a.float("ref_rejected_logps"), a.ids("chosen_lengths"), a.ids("rejected_lengths"),
                      a.string("loss_type"), a.real("beta"), a.real("label_smoothing"))
        return ["losses": FixtureTensor(r.losses), "loss": FixtureTensor(scalar: r.loss),
                "chosen_rewards": FixtureTensor(r.chosenRewards), "rejected_rewards": FixtureTensor(r.rejectedRewards),
                "reward_accuracy": FixtureTensor(scalar: r.rewardAccuracy), "reward_margin": FixtureTensor(r.rewardMargin)]
    }

    public static let groupAdvantages = Exercise<GroupAdvantagesFunction>(
        number: 15, slug: "15-critic-free-advantages", stage: "group_advantages",
        function: "groupAdvantages(rewards:groupSize:estimator:scaleRewards:)", chapter: "Chapters/15-critic-free-advantages",
        scope: "fixtures with several reward functions, reward weights, GDPO, or RLOO's KL, clamp or normalisation",
        outOfScope: { a in
            let rewards = try a.float("rewards")
            if try rewards.rank != 1 || a.optionalRealList("reward_weights") != nil { return true }
            if try a.string("multi_objective_aggregation") != "sum_then_normalize" { return true }
            if try a.string("estimator") == "rloo" {
                return try a.real("beta") != 0 || a.optionalRealList("reward_clip_range") != nil || a.bool("normalize_advantages")
            }
            return false
        }) { f, a in
        ["advantages": FixtureTensor(try f(a.float("rewards"), a.int("group_size"), a.string("estimator"),
                                           a.string("scale_rewards")))]
    }

    /// The slugs of every exercise, in order (the folders under `Chapters/exercises/`).
    public static let slugs = [gatherLogProbs.slug, pairwiseRewardLoss.slug, computeRewards.slug, gae.slug, actorLoss.slug,
                               criticLoss.slug, ppoStep.slug, dpoLoss.slug, rewardEndScoresAttn.slug, maskedWhiten.slug,
                               klEstimators.slug, dpoVariants.slug, groupAdvantages.slug]
}
