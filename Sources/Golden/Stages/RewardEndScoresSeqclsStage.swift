import TensorCore
import RewardEndScoresSeqcls

/// `reward_end_scores_seqcls`: the score a Hugging Face sequence-classification
/// head pools, at the last non-pad token (TRL's reward model).
public enum RewardEndScoresSeqclsStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "reward_end_scores_seqcls", module: "RewardEndScoresSeqcls",
        function: "rewardEndScoresSeqcls(inputIds:scores:padTokenId:)",
        peer: "transformers src/transformers/modeling_layers.py :: GenericForSequenceClassification.forward",
        // Required, and it may be null (the peer's None): no default.
        params: [ParamDeclaration(name: "pad_token_id", kind: .int, nullable: true)],
        inputs: [.ids("input_ids"), .float("scores")],
        outputs: ["end_index", "end_scores"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try rewardEndScoresSeqcls(inputIds: a.ids("input_ids"), scores: a.float("scores"),
                                               padTokenId: a.optionalInt("pad_token_id").map(Int64.init))
        return ["end_index": .int64(result.endIndex), "end_scores": FixtureTensor(result.endScores)]
    }
}
