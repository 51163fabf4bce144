import TensorCore
import Golden
import RewardEndLossMarginCenter

/// The well-known wrong TRL reward-model losses.
enum RewardEndLossMarginCenterMistakes {
    static let chapter = "Chapters/11-three-reward-models"

    static let entry = StageMistakes(stage: "reward_end_loss_margin_center", mistakes: [marginAdded, noCentering])

    static let marginAdded = Mistake(
        id: "reward_end_loss_margin_center.margin-added", stage: "reward_end_loss_margin_center", chapter: chapter,
        title: "-log σ(chosen - rejected + margin): the margin with the wrong sign",
        explanation: "TRL's margin asks the chosen score to beat the rejected one by at least the margin: -log σ(r_c - r_r - m). Adding it makes the loss easier to satisfy the larger the margin, the opposite of its purpose.") { a in
        guard let margin = try a.optionalFloat("margin") else {
            throw StageError(.shapeMismatch, stage: "reward_end_loss_margin_center", argument: "margin", "no margin: the mistake needs one")
        }
        let result = try rewardEndLossMarginCenter(rewards: a.float("rewards"), margin: Tensor.make(margin.shape, margin.scalars.map { -$0 }),
                                                   centerRewardsCoefficient: a.optionalReal("center_rewards_coefficient"))
        return ["loss": FixtureTensor(scalar: result.loss)]
    }

    static let noCentering = Mistake(
        id: "reward_end_loss_margin_center.no-centering", stage: "reward_end_loss_margin_center", chapter: chapter,
        title: "center_rewards_coefficient ignored: no centering term",
        explanation: "With center_rewards_coefficient κ set, TRL adds κ · mean((r_c + r_r)²) to the loss, pulling the rewards toward mean 0 (Eisenstein et al., 2023). Ignoring κ leaves the loss of plain pairwise training.") { a in
        let result = try rewardEndLossMarginCenter(rewards: a.float("rewards"), margin: a.optionalFloat("margin"),
                                                   centerRewardsCoefficient: nil)
        return ["loss": FixtureTensor(scalar: result.loss)]
    }
}
