import TensorCore
import GatherLogProbs

/// The log-prob of every next token: `gather_log_probs(logits[:, :-1], ids[:, 1:])`.
///
/// ```
/// log_probs[b, t] = log softmax(logits[b, t, :])[ids[b, t + 1]]     t in [0, N), N = L - 1
/// ```
///
/// Shapes: `logits` [B, L, V], `inputIds` [B, L] -> [B, N]. The shift is
/// DeepSpeed-Chat's (`gather_log_probs(logits[:, :-1, :], seq[:, 1:])` in
/// `generate_experience` and `train_rlhf`); the gather is the library's stage.
public func nextTokenLogProbs(logits: Tensor<Double>, inputIds: Tensor<Int64>) throws(StageError) -> Tensor<Double> {
    let (shiftedLogits, labels) = shifted(logits: logits, inputIds: inputIds)
    return try gatherLogProbs(logits: shiftedLogits, labels: labels)
}

/// The backward of `nextTokenLogProbs`: d(Σ log_probs · gradOutput) / d logits.
///
/// Shapes: `gradOutput` [B, N] -> [B, L, V]; the last position's logits score no
/// token, so their gradient is 0.
public func nextTokenLogProbsGradLogits(logits: Tensor<Double>, inputIds: Tensor<Int64>,
                                        gradOutput: Tensor<Double>) throws(StageError) -> Tensor<Double> {
    let (shiftedLogits, labels) = shifted(logits: logits, inputIds: inputIds)
    let grad = try gatherLogProbsGradLogits(logits: shiftedLogits, labels: labels, gradOutput: gradOutput)
    let B = logits.shape[0], L = logits.shape[1], V = logits.shape[2]
    var full = Tensor<Double>(shape: [B, L, V], repeating: 0)
    for b in 0..<B {
        let from = b * (L - 1) * V, to = b * L * V
        full.scalars.replaceSubrange(to..<(to + (L - 1) * V), with: grad.scalars[from..<(from + (L - 1) * V)])
    }
    return full
}

/// logits[:, :-1, :] and ids[:, 1:].
private func shifted(logits: Tensor<Double>, inputIds: Tensor<Int64>) -> (Tensor<Double>, Tensor<Int64>) {
    let B = logits.shape[0], L = logits.shape[1], V = logits.shape[2]
    var cut = [Double]()
    cut.reserveCapacity(B * (L - 1) * V)
    var labels = [Int64]()
    labels.reserveCapacity(B * (L - 1))
    for b in 0..<B {
        cut.append(contentsOf: logits.scalars[(b * L * V)..<((b * L + L - 1) * V)])
        labels.append(contentsOf: inputIds.scalars[(b * L + 1)..<((b + 1) * L)])
    }
    return (Tensor.make([B, L - 1, V], cut), Tensor.make([B, L - 1], labels))
}

/// 1 where position t of [B, N] scores an answer token (t >= start and
/// ids[b, t + 1] is not the pad), else 0: DeepSpeed-Chat's
/// `action_mask[:, start:]`, widened back to [B, N].
public func answerTokenMask(inputIds: Tensor<Int64>, promptLength: Int, padId: Int64) -> Tensor<Int64> {
    let B = inputIds.shape[0], N = inputIds.shape[1] - 1
    var mask = Tensor<Int64>(shape: [B, N], repeating: 0)
    for b in 0..<B {
        for t in (promptLength - 1)..<N where inputIds[b, t + 1] != padId {
            mask[b, t] = 1
        }
    }
    return mask
}
