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
/// - Throws: ``StageError`` if `maxSeqLen < 1`.
@inlinable
public func tokenizedSequence(
    promptIds: [Int64], answerIds: [Int64], endOfConversationIds: [Int64],
    maxSeqLen: Int, padId: Int64, beginningOfSequenceId: Int64? = nil
) throws(StageError) -> TokenizedSequence {
    guard maxSeqLen >= 1 else {
        throw StageError(.parameterOutOfRange, stage: "sft_data", argument: "max_seq_len",
                         "max_seq_len = \(maxSeqLen) must be at least 1")
    }
    var tokens = (beginningOfSequenceId.map { [$0] } ?? []) + promptIds + answerIds + endOfConversationIds
    if tokens.count > maxSeqLen { tokens.removeLast(tokens.count - maxSeqLen) }
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
/// - Throws: ``StageError`` for no pairs, or rows of different lengths.
@inlinable
public func collateRewardBatch(
    _ pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)]
) throws(StageError) -> (inputIds: Tensor<Int64>, attentionMask: Tensor<Int64>) {
    guard let length = pairs.first?.chosen.inputIds.count else {
        throw StageError(.shapeMismatch, stage: "sft_data", argument: "pairs", "expected at least one chosen/rejected pair")
    }
    for (index, pair) in pairs.enumerated()
    where pair.chosen.inputIds.count != length || pair.rejected.inputIds.count != length {
        throw StageError(.shapeMismatch, stage: "sft_data", argument: "pairs",
                         "pair \(index) has rows of length \(pair.chosen.inputIds.count) and \(pair.rejected.inputIds.count), expected \(length)")
    }
    let rows = pairs.map(\.chosen) + pairs.map(\.rejected)
    return (Tensor.make([rows.count, length], rows.flatMap(\.inputIds)),
            Tensor.make([rows.count, length], rows.flatMap(\.attentionMask)))
}
