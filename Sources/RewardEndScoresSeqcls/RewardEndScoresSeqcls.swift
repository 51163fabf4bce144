import TensorCore

/// The reward a Hugging Face `AutoModelForSequenceClassification(num_labels=1)`
/// gives a sequence: the score head at the last token whose id is not the pad id.
///
/// ```
/// end_index[b]  = max { t : input_ids[b, t] != pad_token_id },  or 0 if the row is all pad
///                 (pad_token_id null: the batch must have one row, end_index = L - 1)
/// end_scores[b] = scores[b, end_index[b]]
/// ```
///
/// Shapes: `inputIds` [B, L] int64, `scores` [B, L] float (the score head at every
/// token) -> `(endIndex, endScores)`: `end_index` [B] int64, `end_scores` [B].
///
/// The ids decide, not the attention mask (it plays no part). This is the rule
/// since transformers PR #35911 (January 2025), which TRL's `RewardTrainer` trains
/// with:
/// - the last non-pad token, whatever the padding side, pads inside the row
///   skipped (left padding ends a row at L - 1);
/// - a row made only of pad ids gets index 0: the peer takes the argmax of
///   `t · [id_t != pad]`, which is all zeros there, and argmax picks the first;
/// - `pad_token_id` null is allowed only for a batch of one row, scored at L - 1
///   (the peer raises `ValueError` for more rows).
///
/// Before that PR transformers took the token before the *first* pad. With
/// pad == eos and an EOS inside the prompt that scored a prompt token; here EOS
/// ids earlier in the row are ordinary tokens.
///
/// The pad == eos case the TRL article sets up (`tokenizer.pad_token =
/// tokenizer.eos_token`, and `RewardTrainer` appends an EOS to non-conversational
/// text): the trailing EOS counts as padding, so the score comes from the token
/// before it, not from the EOS the reward model was meant to read.
///
/// Matches transformers `modeling_layers.py :: GenericForSequenceClassification.forward`
/// (GPT-2's own class has the same rule).
///
/// - Throws: ``StageError`` for `inputIds` not [B, L] with L >= 1 (the peer's argmax
///   over no position raises), `scores` of another shape, NaN in `scores` (also at
///   a pad), or `padTokenId` nil with a batch of other than one row.
@inlinable
public func rewardEndScoresSeqcls<T: FloatScalar>(
    inputIds: Tensor<Int64>,
    scores: Tensor<T>,
    padTokenId: Int64?
) throws(StageError) -> (endIndex: Tensor<Int64>, endScores: Tensor<T>) {
    let check = InputCheck(stage: "reward_end_scores_seqcls")
    try check.rank(inputIds, "input_ids", is: 2, legend: "[B, L]")
    let batchSize = inputIds.shape[0], length = inputIds.shape[1]
    try check.shape(scores, "scores", equals: inputIds.shape, sameAs: "same as input_ids")
    guard length >= 1 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "input_ids",
                         "expected at least one position, got shape \(describe(shape: inputIds.shape))")
    }
    if padTokenId == nil && batchSize != 1 {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "pad_token_id",
                         "pad_token_id is null: only a batch of one row can be scored (at L - 1), got input_ids \(describe(shape: inputIds.shape))")
    }
    try check.noNaN(scores, "scores")

    var endIndex = [Int64](), endScores = [T]()
    for row in 0..<batchSize {
        var end = length - 1
        if let padTokenId {
            end = 0
            for t in 0..<length where inputIds[row, t] != padTokenId {
                end = t
            }
        }
        endIndex.append(Int64(end))
        endScores.append(scores[row, end])
    }
    let scoresAtEnd = Tensor.make([batchSize], endScores)
    try check.noNaNInResult(scoresAtEnd, "end_scores")
    return (Tensor.make([batchSize], endIndex), scoresAtEnd)
}
