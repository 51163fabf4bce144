import TensorCore
import CriticFreeAdvantages

/// `group_advantages`: TRL's GRPO and RLOO advantages, one scalar per completion.
public enum GroupAdvantagesStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "group_advantages", module: "CriticFreeAdvantages",
        function: "grpoAdvantages(rewards:groupSize:...) / rlooAdvantages(rewards:groupSize:...)",
        peer: "TRL trl/trainer/grpo_trainer.py :: GRPOTrainer._generate_and_score_completions; "
            + "trl/trainer/rloo_trainer.py :: RLOOTrainer._generate_and_score_completions",
        params: [.string("estimator"), .int("group_size"), .optionalRealList("reward_weights"),
                 .string("scale_rewards", default: "group"),
                 .string("multi_objective_aggregation", default: "sum_then_normalize"),
                 .real("beta", default: 0.05), .optionalRealList("reward_clip_range"),
                 .bool("normalize_advantages", default: false)],
        inputs: [.float("rewards"), .float("old_log_probs", optional: true), .float("ref_log_probs", optional: true),
                 .mask("completion_mask", optional: true)],
        outputs: ["advantages"])

    /// The stage on a fixture's arguments, with its intermediates (for `run` and the chapters).
    public static func forward<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> GroupAdvantagesResult<T> {
        let stage = declaration.name
        let estimator = try GroupAdvantageEstimator(named: a.string("estimator"), stage: stage)
        // Every enum param is checked, whichever estimator reads it.
        let scaling = try RewardScaling(named: a.string("scale_rewards"), stage: stage)
        let aggregation = try MultiObjectiveAggregation(named: a.string("multi_objective_aggregation"), stage: stage)
        let weights = try a.optionalRealList("reward_weights")
        switch estimator {
        case .grpo:
            return try grpoAdvantages(rewards: a.float("rewards"), groupSize: a.int("group_size"),
                                      rewardWeights: weights, scaleRewards: scaling,
                                      multiObjectiveAggregation: aggregation)
        case .rloo:
            let range = try a.optionalRange("reward_clip_range")
            return try rlooAdvantages(rewards: a.float("rewards"), groupSize: a.int("group_size"),
                                      rewardWeights: weights, beta: a.real("beta"),
                                      rewardClipRange: range.map { (lo: $0.lo, hi: $0.hi) },
                                      normalizeAdvantages: a.bool("normalize_advantages"),
                                      oldLogProbs: a.optionalFloat("old_log_probs"),
                                      refLogProbs: a.optionalFloat("ref_log_probs"),
                                      completionMask: a.optionalMask("completion_mask"))
        }
    }

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        ["advantages": FixtureTensor(try forward(a).advantages)]
    }
}
