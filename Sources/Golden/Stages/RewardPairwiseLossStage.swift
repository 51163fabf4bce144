import TensorCore
import PairwiseRewardLoss

/// `reward_pairwise_loss`: DeepSpeed-Chat's per-token divergence-window reward
/// loss, its mean end scores, and its gradient with respect to the rewards.
public enum RewardPairwiseLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "reward_pairwise_loss", module: "PairwiseRewardLoss",
        function: "pairwiseRewardLoss(inputIds:rewards:padId:numPaddingAtBeginning:), pairwiseRewardLossGradRewards(...)",
        peer: "DeepSpeed-Chat dschat/utils/model/reward_model.py :: RewardModel.forward",
        params: [.int("pad_id"), .int("num_padding_at_beginning")],
        inputs: [.ids("input_ids"), .float("rewards")],
        outputs: ["loss", "chosen_mean_scores", "rejected_mean_scores", "grad_rewards"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let inputIds = try a.ids("input_ids"), rewards = try a.float("rewards")
        let padId = Int64(try a.int("pad_id")), skipped = try a.int("num_padding_at_beginning")
        let result = try pairwiseRewardLoss(inputIds: inputIds, rewards: rewards, padId: padId,
                                            numPaddingAtBeginning: skipped)
        let grad = try pairwiseRewardLossGradRewards(inputIds: inputIds, rewards: rewards, padId: padId,
                                                     numPaddingAtBeginning: skipped)
        return ["loss": FixtureTensor(scalar: result.loss),
                "chosen_mean_scores": FixtureTensor(result.chosenMeanScores),
                "rejected_mean_scores": FixtureTensor(result.rejectedMeanScores),
                "grad_rewards": FixtureTensor(grad)]
    }
}
