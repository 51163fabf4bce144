import TensorCore
import PairwiseRewardLoss

/// `reward_end_scores`: the value at each answer's end, DeepSpeed-Chat's
/// `forward_value` rule.
public enum RewardEndScoresStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "reward_end_scores", module: "PairwiseRewardLoss",
        function: "rewardEndScores(inputIds:values:padId:promptLength:)",
        peer: "DeepSpeed-Chat dschat/utils/model/reward_model.py :: RewardModel.forward_value",
        params: [.int("pad_id"), .int("prompt_length")],
        inputs: [.ids("input_ids"), .float("values")],
        outputs: ["end_scores"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let endScores = try rewardEndScores(inputIds: a.ids("input_ids"), values: a.float("values"),
                                            padId: Int64(a.int("pad_id")), promptLength: a.int("prompt_length"))
        return ["end_scores": FixtureTensor(endScores)]
    }
}
