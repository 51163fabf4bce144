import TensorCore

/// One tokenized training sequence, padded to a fixed length.
public struct TokenizedSequence: Sendable, Equatable {
    /// The token ids, right-padded with the pad id. Length `maxSeqLen`.
    public var inputIds: [Int64]
    /// 1 for a real token, 0 for padding. Length `maxSeqLen`.
    public var attentionMask: [Int64]

    /// The SFT labels: the id where the mask is 1, `ignoreIndex` where it is 0.
    ///
    /// The prompt is labelled too: DeepSpeed-Chat step 1 trains on prompt tokens.
    @inlinable
    public func labels(ignoreIndex: Int64 = -100) -> [Int64] {
        zip(inputIds, attentionMask).map { id, mask in mask == 1 ? id : ignoreIndex }
    }

    @inlinable
    public init(inputIds: [Int64], attentionMask: [Int64]) {
        self.inputIds = inputIds
        self.attentionMask = attentionMask
    }
}

/// DeepSpeed-Chat's step 1 and 2 data preparation, on token ids (no tokenizer).
///
/// ```
/// tokens = [bos] + prompt + answer + end_of_conversation      (bos only if given)
/// tokens = tokens[:max_seq_len]                               (truncate on the right)
/// input_ids      = tokens + [pad] * (max_seq_len - len(tokens))
/// attention_mask = [1] * len(tokens) + [0] * (max_seq_len - len(tokens))
/// ```
///
/// The end-of-conversation marker is the text `<|endoftext|>` appended before
/// tokenizing, in DeepSpeed-Chat; pass its ids. OPT's tokenizer prepends `</s>`
/// (id 2) as its BOS, which is also its pad id: hence `num_padding_at_beginning = 1`
/// in the reward model. Since padding uses the pad id and pad == eos for OPT, a
/// real end token and padding can share an id: only the attention mask tells them
/// apart.
///
/// Matches DeepSpeed-Chat `dschat/utils/data/data_utils.py :: create_dataset_split`
/// (the tokenizer call with `padding="max_length", truncation=True`) and
/// `PromptDataset.__getitem__` (the labels).
///
/// `maxSeqLen` is a length the result is allocated at, so it is held to
/// ``TensorLimits/maximumElements`` (2^31) like any shape from outside.
///
/// - Throws: ``StageError`` if `maxSeqLen < 1` (`.parameterOutOfRange`) or
///   beyond 2^31 (`.tooLarge`), or for a negative id in any argument
///   (`.labelOutOfRange`; token ids index a vocabulary), all before anything is
///   allocated.
@inlinable
public func tokenizedSequence(
    promptIds: [Int64], answerIds: [Int64], endOfConversationIds: [Int64],
    maxSeqLen: Int, padId: Int64, beginningOfSequenceId: Int64? = nil
) throws(StageError) -> TokenizedSequence {
    guard maxSeqLen >= 1 else {
        throw StageError(.parameterOutOfRange, stage: "sft_data", argument: "max_seq_len",
                         "max_seq_len = \(maxSeqLen) must be at least 1")
    }
    guard maxSeqLen <= TensorLimits.maximumElements else {
        throw StageError(.tooLarge, stage: "sft_data", argument: "max_seq_len",
                         "max_seq_len = \(maxSeqLen) is beyond the limit of 2^31 tokens")
    }
    for (name, ids) in [("prompt_ids", promptIds), ("answer_ids", answerIds),
                        ("end_of_conversation_ids", endOfConversationIds), ("pad_id", [padId]),
                        ("beginning_of_sequence_id", beginningOfSequenceId.map { [$0] } ?? [])] {
        if let index = ids.firstIndex(where: { $0 < 0 }) {
            throw StageError(.labelOutOfRange, stage: "sft_data", argument: name,
                             "id \(ids[index]) at index \(index) is negative: token ids index a vocabulary")
        }
    }
    // Only the first max_seq_len tokens are kept, so no more are copied.
    var tokens = [Int64]()
    for part in [beginningOfSequenceId.map { [$0] } ?? [], promptIds, answerIds, endOfConversationIds] {
        tokens += part.prefix(maxSeqLen - tokens.count)
    }
    let padding = maxSeqLen - tokens.count
    return TokenizedSequence(inputIds: tokens + Array(repeating: padId, count: padding),
                             attentionMask: Array(repeating: 1, count: tokens.count) + Array(repeating: 0, count: padding))
}

/// A reward-model batch as `DataCollatorReward` stacks it: every chosen row, then
/// every rejected row.
///
/// ```
/// input_ids      = cat([chosen_0, ..., chosen_{B-1}, rejected_0, ..., rejected_{B-1}])   [2B, L]
/// attention_mask = the same order                                                       [2B, L]
/// ```
///
/// So pair i is rows i and B + i, which is how `pairwiseRewardLoss` reads it.
///
/// Matches DeepSpeed-Chat `dschat/utils/data/data_utils.py :: DataCollatorReward`.
///
/// - Throws: ``StageError`` for no pairs, rows (ids or attention masks) of
///   different lengths, an attention mask holding anything but 0/1, or a batch
///   [2B, L] beyond ``TensorLimits`` (`.tooLarge`), all before anything is
///   allocated.
@inlinable
public func collateRewardBatch(
    _ pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)]
) throws(StageError) -> (inputIds: Tensor<Int64>, attentionMask: Tensor<Int64>) {
    guard let length = pairs.first?.chosen.inputIds.count else {
        throw StageError(.shapeMismatch, stage: "sft_data", argument: "pairs", "expected at least one chosen/rejected pair")
    }
    for (index, pair) in pairs.enumerated() {
        for (side, row) in [("chosen", pair.chosen), ("rejected", pair.rejected)] {
            guard row.inputIds.count == length, row.attentionMask.count == length else {
                throw StageError(.shapeMismatch, stage: "sft_data", argument: "pairs",
                                 "pair \(index)'s \(side) row has \(row.inputIds.count) ids and an attention mask of "
                                 + "\(row.attentionMask.count), expected \(length) (the first chosen row's length)")
            }
            if let bad = row.attentionMask.first(where: { $0 != 0 && $0 != 1 }) {
                throw StageError(.invalidMask, stage: "sft_data", argument: "pairs",
                                 "pair \(index)'s \(side) attention mask holds \(bad); masks hold 0/1")
            }
        }
    }
    guard TensorLimits.elementCount([2 * pairs.count, length]) != nil else {
        throw StageError(.tooLarge, stage: "sft_data", argument: "pairs",
                         TensorLimits.refusal([2 * pairs.count, length]))
    }
    let rows = pairs.map(\.chosen) + pairs.map(\.rejected)
    return (Tensor.make([rows.count, length], rows.flatMap(\.inputIds)),
            Tensor.make([rows.count, length], rows.flatMap(\.attentionMask)))
}
