import TensorCore
import Golden

/// The well-known wrong end index of align-anything's score model.
enum RewardEndScoresAttnMistakes {
    static let chapter = "Chapters/11-three-reward-models"

    static let entry = StageMistakes(stage: "reward_end_scores_attn", mistakes: [maskSumMinusOne])

    static let maskSumMinusOne = Mistake(
        id: "reward_end_scores_attn.mask-sum-minus-one", stage: "reward_end_scores_attn", chapter: chapter,
        title: "end index = attention_mask.sum() - 1: right only for right padding without holes",
        explanation: "The count of attended tokens minus one is the last attended position only when every row starts at 0 and has no hole. With left padding it lands inside the row. align-anything takes the last position whose mask is 1 (m.nonzero()[-1]).") { a in
        let scores = try a.float("scores")
        guard let mask = try a.optionalMask("attention_mask") else {
            throw StageError(.emptyMask, stage: "reward_end_scores_attn", argument: "attention_mask", "no mask: the mistake needs one")
        }
        let (batch, length) = (scores.shape[0], scores.shape[1])
        let ends = (0..<batch).map { b in max((0..<length).reduce(0) { $0 + Int(mask[b, $1]) } - 1, 0) }
        return ["end_index": .int64(Tensor.make([batch], ends.map(Int64.init))),
                "end_scores": output([batch], (0..<batch).map { scores[$0, ends[$0]] })]
    }
}
