import TensorCore
import RewardEndLossMarginCenter

/// `reward_end_loss_margin_center`: TRL's reward-model loss with its optional
/// margin and centering term, its logged metrics, and the gradient with respect
/// to the rewards.
public enum RewardEndLossMarginCenterStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "reward_end_loss_margin_center", module: "RewardEndLossMarginCenter",
        function: "rewardEndLossMarginCenter(rewards:margin:centerRewardsCoefficient:), rewardEndLossMarginCenterGradRewards(...)",
        peer: "TRL trl/trainer/reward_trainer.py :: RewardTrainer.compute_loss",
        params: [.optionalReal("center_rewards_coefficient")],
        inputs: [.float("rewards"), .float("margin", optional: true)],
        outputs: ["loss", "accuracy", "mean_margin", "min_reward", "mean_reward", "max_reward", "grad_rewards"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let rewards = try a.float("rewards"), margin = try a.optionalFloat("margin")
        let kappa = try a.optionalReal("center_rewards_coefficient")
        let result = try rewardEndLossMarginCenter(rewards: rewards, margin: margin, centerRewardsCoefficient: kappa)
        let grad = try rewardEndLossMarginCenterGradRewards(rewards: rewards, margin: margin,
                                                            centerRewardsCoefficient: kappa)
        return ["loss": FixtureTensor(scalar: result.loss),
                "accuracy": FixtureTensor(scalar: result.accuracy),
                "mean_margin": FixtureTensor(scalar: result.meanMargin),
                "min_reward": FixtureTensor(scalar: result.minReward),
                "mean_reward": FixtureTensor(scalar: result.meanReward),
                "max_reward": FixtureTensor(scalar: result.maxReward),
                "grad_rewards": FixtureTensor(grad)]
    }
}
