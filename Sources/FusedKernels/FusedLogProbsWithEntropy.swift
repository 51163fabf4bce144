// The fused float32 log-probs with entropy: TRL's PPO step's new log-probs and
// policy entropy from the tempered logits, one streaming pass per vocabulary
// row, SIMD over the row, rows spread over the cores. No [B, T, V] intermediate.
//
// The plain `logProbsWithEntropy` (GatherLogProbs) is the reference: same
// checks, same errors, results equal to float32 round-off
// (FusedLogProbsWithEntropyTests).

import TensorCore
import GatherLogProbs

/// The fused, multi-threaded `logProbsWithEntropy` for float32 logits.
///
/// ```
/// z = x / d,   d = Float(temperature + 1e-7),   x = logits[b, t, :]
/// m = max_v z_v,   S = Σ_v e^(z_v - m),   W = Σ_v e^(z_v - m)·(z_v - m)
/// log_probs[b, t] = (z_y - m) - log S,    y = labels[b, t]
/// entropy[b, t]   = log S - W / S
///                 = logsumexp(z) - Σ_v softmax(z)_v · z_v
/// ```
///
/// Shapes: `logits` [B, T, V] float32, `labels` [B, T] int64 -> `log_probs`,
/// `entropy` [B, T]. B batch, T any token axis, V vocabulary.
///
/// Matches the plain `logProbsWithEntropy(logits:labels:temperature:)`, and
/// through it TRL's PPO step (`logits /= temperature + 1e-7`, the new log-probs,
/// `policy_entropy`'s per-token entropy), to float32 round-off: log-probs within
/// abs 1e-6 + rel 1e-6, the entropy within about an ulp of max|z| (see the
/// tests). The entropy is formed as log S - W / S, with z - m inside the sum: the
/// plain form m + log S - Σ p·z subtracts two numbers near m, and carries that
/// rounding; both are the same number to that rounding.
///
/// Each logit is read from memory once: ``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``
/// exponentiates each 4 KB block against the max so far, finds the block's own max
/// in the same loop, and rescales the sums when it is higher. Inside the sums, z - m is
/// formed as (x - m_x) · (1/d), with m_x the max logit, not as the plain
/// `temperedLogits`' x / d then - m: a vector division per 16 logits cost as much
/// as the rest of the pass. It is exactly 0 at the max, and otherwise within an
/// ulp or two of z - m, inside the tolerance above. The row's max and the label's
/// z are divided as the plain stage does.
/// Memory beyond the two [B, T] results: a few bytes per chunk of rows.
///
/// What limits it: the exp of every logit, as `gatherLogProbsFused`, plus a
/// multiply (· 1/d) and a multiply-add (W) per logit. PyTorch's unfused form
/// writes and reads three [B, T, V] tensors (log_softmax, softmax, their product).
///
/// A row with a NaN or an infinite logit makes TRL's entropy NaN (softmax 0
/// times z = -inf; inf - inf): the whole call then goes to the plain stage,
/// which throws what it throws (the logits' NaN, or the NaN result). So does a
/// row whose z - m passes the float range (logits of ±3e38): the plain stage
/// gives such a term softmax 0 and a finite entropy, where the pass's
/// e^(z - m)·(z - m) would be 0·(-inf). The pass finds all of these from its
/// own sums (``OnlineRowSums/isValid``).
///
/// - Throws: the same ``StageError``s as `logProbsWithEntropy`, in the same
///   order: shapes that do not agree, a label outside `[0, V)`, an empty
///   vocabulary axis, a `temperature + 1e-7` that is not finite and positive,
///   NaN in `logits`, or a NaN result (`log_probs`, then `entropy`).
public func logProbsWithEntropyFused(
    logits: Tensor<Float>, labels: Tensor<Int64>, temperature: Double
) throws(StageError) -> LogProbsAndEntropy<Float> {
    let check = InputCheck(stage: "log_probs_with_entropy")
    try checkLogProbsWithEntropyInputs(logits: logits, labels: labels, temperature: temperature, check)
    let rows = logits.shape[0] * logits.shape[1]
    let vocabularySize = logits.shape[2]
    let divisor = Float(temperature + 1e-7)  // as `temperedLogits`: formed in Double, rounded once

    var logProbs = [Float](repeating: 0, count: rows)
    var entropy = [Float](repeating: 0, count: rows)
    var sawNonFinite = false
    logits.scalars.withUnsafeBufferPointer { logitsBuffer in
        labels.scalars.withUnsafeBufferPointer { labelsBuffer in
            logProbs.withUnsafeMutableBufferPointer { logProbsBuffer in
                entropy.withUnsafeMutableBufferPointer { entropyBuffer in
                    let input = UnsafeShared(logitsBuffer.baseAddress), labelsBase = UnsafeShared(labelsBuffer.baseAddress)
                    let logProbsBase = UnsafeShared(logProbsBuffer.baseAddress)
                    let entropyBase = UnsafeShared(entropyBuffer.baseAddress)
                    sawNonFinite = forEachRowChunk(rows: rows, vocabularySize: vocabularySize) { rowRange in
                        var chunkSawNonFinite = false
                        for position in rowRange {
                            let row = input.pointer! + position * vocabularySize
                            let sums = onlineRowPass(row, vocabularySize, divisor: divisor, entropy: true,
                                                     expInto: nil, blockShifts: nil)
                            // NaN or ±inf in the row (or a z - m past the float range): the plain stage decides.
                            chunkSawNonFinite = chunkSawNonFinite || !sums.isValid
                            let logSumShifted = Float.log(Float(sums.sumOfExp))
                            let label = Int(labelsBase.pointer![position])
                            logProbsBase.pointer![position] = (row[label] / divisor - sums.maximum) - logSumShifted
                            entropyBase.pointer![position] = Float(Double.log(sums.sumOfExp) - sums.weighted / sums.sumOfExp)
                        }
                        return chunkSawNonFinite
                    }
                }
            }
        }
    }
    if sawNonFinite {
        return try logProbsWithEntropy(logits: logits, labels: labels, temperature: temperature)
    }
    return LogProbsAndEntropy(logProbs: Tensor.make(labels.shape, logProbs), entropy: Tensor.make(labels.shape, entropy))
}

