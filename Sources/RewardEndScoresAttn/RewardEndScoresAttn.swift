import TensorCore

/// align-anything's score model: each sequence's reward is the score head's
/// output at its last attended position.
///
/// ```
/// end_index[b]  = max { t : attention_mask[b, t] != 0 }
///                 (no attention_mask: the batch must have one row, end_index = L - 1)
/// end_scores[b] = scores[b, end_index[b]]
/// ```
///
/// Shapes: `scores` [B, L] float (the score head at every token), `attentionMask`
/// [B, L] 0/1 or nil -> `(endIndex, endScores)`: `end_index` [B] int64, `end_scores` [B].
///
/// The mask decides, not the token ids, and the search runs over the whole row:
/// - the last attended position whatever the padding side: right padding ends a
///   row before its pads, left padding ends it at L - 1;
/// - holes are allowed: a 0 inside the row is skipped, only the last 1 counts
///   (mask `[1, 1, 0, 1, 0]` ends at 3);
/// - without a mask, the single-row rule: one row is scored at L - 1, more rows
///   are an error (the peer raises `ValueError`).
///
/// In reward-model training the tokenizer's mask covers the EOS, so the EOS
/// position is scored. In PPO align-anything builds the mask as `ids != pad`: with
/// pad == eos the EOS is not attended and the token before it is scored.
///
/// Matches align-anything `align_anything/models/llama.py ::
/// AccustomedLlamaRewardModel.forward` (`m.nonzero()[-1]` per row; the same line is
/// in `qwen2.py`, `opt.py` and the other score models). The peer casts the head's
/// output to float32 before the gather; here the scores keep their own precision
/// (a gather is exact either way).
///
/// - Throws: ``StageError`` for `scores` not [B, L] with B >= 1 and L >= 1 (the peer
///   concatenates no rows, or finds no position), an `attentionMask` of another
///   shape or not 0/1, NaN in `scores` (also where the mask is 0), a row with no
///   attended position (`emptyMask`; the peer's `nonzero()[-1]` raises
///   `IndexError`), or no `attentionMask` with more than one row.
@inlinable
public func rewardEndScoresAttn<T: FloatScalar>(
    scores: Tensor<T>,
    attentionMask: Tensor<Int64>?
) throws(StageError) -> (endIndex: Tensor<Int64>, endScores: Tensor<T>) {
    let check = InputCheck(stage: "reward_end_scores_attn")
    try check.rank(scores, "scores", is: 2, legend: "[B, L]")
    let batchSize = scores.shape[0], length = scores.shape[1]
    guard batchSize >= 1, length >= 1 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "scores",
                         "expected at least one row and one position, got shape \(describe(shape: scores.shape))")
    }
    if let attentionMask {
        try check.shape(attentionMask, "attention_mask", equals: scores.shape, sameAs: "same as scores")
        try check.binaryMask(attentionMask, "attention_mask")
    } else if batchSize > 1 {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "attention_mask",
                         "attention_mask is required when the batch has more than one row, got scores \(describe(shape: scores.shape))")
    }
    try check.noNaN(scores, "scores")

    var endIndex = [Int64](), endScores = [T]()
    for row in 0..<batchSize {
        var end = -1
        if let attentionMask {
            for t in 0..<length where attentionMask[row, t] != 0 {
                end = t
            }
        } else {
            end = length - 1
        }
        guard end >= 0 else {
            throw StageError(.emptyMask, stage: check.stage, argument: "attention_mask",
                             "row \(row) of attention_mask \(describe(shape: scores.shape)) attends to no position; it has no end to score")
        }
        endIndex.append(Int64(end))
        endScores.append(scores[row, end])
    }
    let scoresAtEnd = Tensor.make([batchSize], endScores)
    try check.noNaNInResult(scoresAtEnd, "end_scores")
    return (Tensor.make([batchSize], endIndex), scoresAtEnd)
}
