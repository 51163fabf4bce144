import TensorCore
import CriticFreeAdvantages

/// `token_advantages`: OpenRLHF's per-token advantages and returns (GAE, REINFORCE++,
/// RLOO, REINFORCE++-baseline, GRPO's group_norm, Dr. GRPO).
public enum TokenAdvantagesStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "token_advantages", module: "CriticFreeAdvantages",
        function: "tokenAdvantages(rewards:kl:actionMask:values:estimator:nSamplesPerPrompt:klCoef:rewardClipRange:gamma:lambd:noStdNorm:)",
        peer: "OpenRLHF openrlhf/trainer/ppo_utils/experience_maker.py :: "
            + "RemoteExperienceMaker.compute_advantages_and_returns; openrlhf/models/utils.py :: compute_reward",
        params: [.string("estimator", default: "gae"), .int("n_samples_per_prompt", default: 1),
                 .real("kl_coef", default: 0.01), .optionalRealList("reward_clip_range", default: [-10, 10]),
                 .real("gamma", default: 1.0), .real("lambd", default: 1.0), .bool("no_std_norm", default: false)],
        inputs: [.float("rewards"), .float("kl"), .mask("action_mask"), .float("values", optional: true)],
        outputs: ["shaped_rewards", "token_rewards", "returns", "advantages"])

    /// The stage on a fixture's arguments, with its intermediates (for `run` and the chapters).
    public static func forward<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> TokenAdvantagesResult<T> {
        let estimator = try TokenAdvantageEstimator(named: a.string("estimator"), stage: declaration.name)
        let range = try a.optionalRange("reward_clip_range")
        return try tokenAdvantages(
            rewards: a.float("rewards"), kl: a.float("kl"), actionMask: a.mask("action_mask"),
            values: a.optionalFloat("values"), estimator: estimator,
            nSamplesPerPrompt: a.int("n_samples_per_prompt"), klCoef: a.real("kl_coef"),
            rewardClipRange: range.map { (lo: $0.lo, hi: $0.hi) }, gamma: a.real("gamma"), lambd: a.real("lambd"),
            noStdNorm: a.bool("no_std_norm"))
    }

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try forward(a)
        return ["shaped_rewards": FixtureTensor(result.shapedRewards), "token_rewards": FixtureTensor(result.tokenRewards),
                "returns": FixtureTensor(result.returns), "advantages": FixtureTensor(result.advantages)]
    }
}
