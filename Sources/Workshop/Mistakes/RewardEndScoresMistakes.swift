import TensorCore
import Golden

/// The well-known wrong end scores of DeepSpeed-Chat's reward model.
enum RewardEndScoresMistakes {
    static let chapter = "Chapters/02-pairwise-reward-loss"

    static let entry = StageMistakes(stage: "reward_end_scores", mistakes: [lastColumn, padSearchFromStart, atThePad])

    /// The first position t >= from with input_ids[b, t] == pad_id, or L.
    static func firstPad(_ ids: Tensor<Int64>, row b: Int, from: Int, pad: Int64) -> Int {
        let length = ids.shape[1]
        return (from..<length).first { ids[b, $0] == pad } ?? length
    }

    static let lastColumn = Mistake(
        id: "reward_end_scores.last-column", stage: "reward_end_scores", chapter: chapter,
        title: "values[:, -1]: the last column, a pad for every shorter answer",
        explanation: "With right padding the last column is padding for every answer shorter than the batch. The score is the value at the last answer token: one before the first pad after the prompt.") { a in
        let values = try a.float("values")
        let (batch, length) = (values.shape[0], values.shape[1])
        return ["end_scores": output([batch], (0..<batch).map { values[$0, length - 1] })]
    }

    static let padSearchFromStart = Mistake(
        id: "reward_end_scores.pad-search-from-start", stage: "reward_end_scores", chapter: chapter,
        title: "the first pad searched from position 0, so a left-padded prompt ends the answer",
        explanation: "Pads inside the prompt (left padding, or OPT's BOS that shares the pad id) are not the answer's end. DeepSpeed-Chat searches for the first pad from prompt_length on and scores the position before it.") { a in
        let ids = try a.ids("input_ids"), values = try a.float("values"), pad = Int64(try a.int("pad_id"))
        let (batch, length) = (values.shape[0], values.shape[1])
        return ["end_scores": output([batch], (0..<batch).map { b in
            let end = firstPad(ids, row: b, from: 0, pad: pad)
            return values[b, (end - 1 + length) % length]
        })]
    }

    static let atThePad = Mistake(
        id: "reward_end_scores.at-the-pad", stage: "reward_end_scores", chapter: chapter,
        title: "the value at the first pad instead of the token before it",
        explanation: "The end index c_end is the first pad after the prompt; the last answer token is c_end - 1, and that is where the score is read. Reading at c_end scores a pad (a row without pad is read at L - 1 either way).") { a in
        let ids = try a.ids("input_ids"), values = try a.float("values"), pad = Int64(try a.int("pad_id"))
        let promptLength = try a.int("prompt_length")
        let (batch, length) = (values.shape[0], values.shape[1])
        return ["end_scores": output([batch], (0..<batch).map { b in
            values[b, min(firstPad(ids, row: b, from: promptLength, pad: pad), length - 1)]
        })]
    }
}
