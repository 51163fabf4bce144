import TensorCore
import Golden

/// The well-known wrong pooling of a sequence-classification reward model.
enum RewardEndScoresSeqclsMistakes {
    static let chapter = "Chapters/11-three-reward-models"

    static let entry = StageMistakes(stage: "reward_end_scores_seqcls", mistakes: [beforeFirstPad])

    static let beforeFirstPad = Mistake(
        id: "reward_end_scores_seqcls.before-first-pad", stage: "reward_end_scores_seqcls", chapter: chapter,
        title: "the token before the first pad id (transformers' rule before January 2025)",
        explanation: "argmax(input_ids == pad) - 1 finds the token before the first pad: with left padding that wraps to the last column's neighbour, and with pad == eos an EOS inside the prompt ends the row early. Today's rule is the last token whose id is not the pad id.") { a in
        let ids = try a.ids("input_ids"), scores = try a.float("scores")
        guard let pad = try a.optionalInt("pad_token_id").map(Int64.init) else {
            throw StageError(.parameterOutOfRange, stage: "reward_end_scores_seqcls", argument: "pad_token_id", "no pad id: the mistake needs one")
        }
        let (batch, length) = (ids.shape[0], ids.shape[1])
        let ends = (0..<batch).map { b in (((0..<length).first { ids[b, $0] == pad } ?? 0) - 1 + length) % length }
        return ["end_index": .int64(Tensor.make([batch], ends.map(Int64.init))),
                "end_scores": output([batch], (0..<batch).map { scores[$0, ends[$0]] })]
    }
}
