import TensorCore

/// TRL's response processing before the rewards: truncation after the first stop
/// token, then each row's length up to its first pad.
public struct FirstPadSequenceLengths: Sendable {
    /// `R`: the responses with every position after the first `stop_token_id` of a
    /// row set to `pad_token_id` (the responses unchanged when there is no stop
    /// token). Shape [B, T].
    public var truncatedResponses: Tensor<Int64>
    /// (first j with R[b, j] = pad_token_id, or T if none) - 1: the last position
    /// before the first pad, -1 for a row that starts with a pad. Shape [B].
    public var sequenceLengths: [Int]

    @inlinable
    public init(truncatedResponses: Tensor<Int64>, sequenceLengths: [Int]) {
        self.truncatedResponses = truncatedResponses
        self.sequenceLengths = sequenceLengths
    }

    /// How many positions have `j <= sequence_lengths[b]` (TRL's `~padding_mask`):
    /// the positions of the policy loss and of the advantages' whitening.
    @inlinable
    public var policyPositionCount: Int {
        sequenceLengths.reduce(0) { $0 + $1 + 1 }
    }
}

/// Response Processing 1 and the `sequence_length` line of TRL's PPO rollout.
///
/// ```
/// stop = first j with responses[b, j] == stop_token_id           (T if none)
/// R[b, j] = j > stop ? pad_token_id : responses[b, j]            (stop token kept)
/// sequence_lengths[b] = (first j with R[b, j] == pad_token_id, or T) - 1
/// ```
///
/// Shapes: `responses` [B, T] int64 -> `R` [B, T], `sequence_lengths` [B].
///
/// With `stopTokenId` nil nothing is truncated (TRL tests `is not None`, so a stop
/// token id of 0 truncates). The length comes from the **first** pad of the row,
/// whatever follows it; a row whose first token is a pad gets -1. With pad == eos
/// (the seed article's setup) the EOS is itself the first pad: the length stops
/// before it.
///
/// Matches TRL `trl/experimental/ppo/ppo_trainer.py :: truncate_response` and the
/// `first_true_indices(postprocessed_response == pad_token_id) - 1` of
/// `PPOTrainer.train` (`trl/experimental/utils.py :: first_true_indices`).
///
/// Precondition: `responses` has rank 2 and T >= 1 (the callers check it).
@inlinable
public func firstPadSequenceLengths(
    responses: Tensor<Int64>, padTokenId: Int, stopTokenId: Int?
) -> FirstPadSequenceLengths {
    let batchSize = responses.shape[0], length = responses.shape[1]
    let pad = Int64(padTokenId)
    var truncated = responses
    var sequenceLengths = [Int](repeating: length - 1, count: batchSize)
    for b in 0..<batchSize {
        if let stopTokenId {
            if let stop = (0..<length).first(where: { responses[b, $0] == Int64(stopTokenId) }) {
                for j in (stop + 1)..<length {
                    truncated[b, j] = pad
                }
            }
        }
        if let firstPad = (0..<length).first(where: { truncated[b, $0] == pad }) {
            sequenceLengths[b] = firstPad - 1
        }
    }
    return FirstPadSequenceLengths(truncatedResponses: truncated, sequenceLengths: sequenceLengths)
}
