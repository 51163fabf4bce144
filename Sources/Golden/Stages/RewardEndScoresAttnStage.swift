import TensorCore
import RewardEndScoresAttn

/// `reward_end_scores_attn`: align-anything's score model reads each sequence's
/// score at its last attended position.
public enum RewardEndScoresAttnStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "reward_end_scores_attn", module: "RewardEndScoresAttn",
        function: "rewardEndScoresAttn(scores:attentionMask:)",
        peer: "align-anything align_anything/models/llama.py :: AccustomedLlamaRewardModel.forward",
        params: [],
        inputs: [.float("scores"), .mask("attention_mask", optional: true)],
        outputs: ["end_index", "end_scores"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try rewardEndScoresAttn(scores: a.float("scores"), attentionMask: a.optionalMask("attention_mask"))
        return ["end_index": .int64(result.endIndex), "end_scores": FixtureTensor(result.endScores)]
    }
}
