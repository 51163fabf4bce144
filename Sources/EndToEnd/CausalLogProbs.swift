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
/// As in PyTorch, L = 0 or 1 gives N = 0 positions, and the first token of each
/// row and the last position's logits are not read.
///
/// - Throws: ``StageError`` (stage `next_token_log_probs`) for logits that are not
///   [B, L, V], ids that are not [B, L], or an id in `ids[:, 1:]` outside
///   `[0, V)`, all before anything is copied; then what `gatherLogProbs` throws
///   for the scored logits (a NaN, a row of all `-inf`).
public func nextTokenLogProbs(logits: Tensor<Double>, inputIds: Tensor<Int64>) throws(StageError) -> Tensor<Double> {
    try checkShiftInputs(logits: logits, inputIds: inputIds)
    let (shiftedLogits, labels) = shifted(logits: logits, inputIds: inputIds)
    return try gatherLogProbs(logits: shiftedLogits, labels: labels)
}

/// The backward of `nextTokenLogProbs`: d(Σ log_probs · gradOutput) / d logits.
///
/// Shapes: `gradOutput` [B, N] -> [B, L, V]; the last position's logits score no
/// token, so their gradient is 0.
///
/// - Throws: ``StageError`` as ``nextTokenLogProbs(logits:inputIds:)``, and for a
///   `gradOutput` that is not [B, N] (checked first too) or holds NaN.
public func nextTokenLogProbsGradLogits(logits: Tensor<Double>, inputIds: Tensor<Int64>,
                                        gradOutput: Tensor<Double>) throws(StageError) -> Tensor<Double> {
    try checkShiftInputs(logits: logits, inputIds: inputIds)
    let B = logits.shape[0], L = logits.shape[1], V = logits.shape[2], N = max(L - 1, 0)
    try InputCheck(stage: "next_token_log_probs").shape(gradOutput, "grad_output", equals: [B, N],
                                                         sameAs: "[B, L - 1] from logits \(describe(shape: logits.shape))")
    let (shiftedLogits, labels) = shifted(logits: logits, inputIds: inputIds)
    let grad = try gatherLogProbsGradLogits(logits: shiftedLogits, labels: labels, gradOutput: gradOutput)
    var full = Tensor<Double>(shape: [B, L, V], repeating: 0)
    for b in 0..<B {
        let from = b * N * V, to = b * L * V
        full.scalars.replaceSubrange(to..<(to + N * V), with: grad.scalars[from..<(from + N * V)])
    }
    return full
}

/// The shape and id checks of the shift, before it copies anything: logits
/// [B, L, V], ids [B, L], and every id that is scored (`ids[:, 1:]`) in `[0, V)`.
private func checkShiftInputs(logits: Tensor<Double>, inputIds: Tensor<Int64>) throws(StageError) {
    let check = InputCheck(stage: "next_token_log_probs")
    try check.rank(logits, "logits", is: 3, legend: "[B, L, V]")
    let B = logits.shape[0], L = logits.shape[1], V = logits.shape[2]
    try check.shape(inputIds, "input_ids", equals: [B, L], sameAs: "[B, L] from logits \(describe(shape: logits.shape))")
    for b in 0..<B {
        for t in 1..<max(L, 1) where inputIds[b, t] < 0 || inputIds[b, t] >= Int64(V) {
            throw StageError(.labelOutOfRange, stage: check.stage, argument: "input_ids",
                             "id \(inputIds[b, t]) at index [\(b), \(t)] is scored against logits[\(b), \(t - 1)] "
                             + "but is outside [0, V) = [0, \(V))")
        }
    }
}

/// logits[:, :-1, :] and ids[:, 1:] (both empty along the sequence when L <= 1).
private func shifted(logits: Tensor<Double>, inputIds: Tensor<Int64>) -> (Tensor<Double>, Tensor<Int64>) {
    let B = logits.shape[0], L = logits.shape[1], V = logits.shape[2], N = max(L - 1, 0)
    var cut = [Double]()
    cut.reserveCapacity(B * N * V)
    var labels = [Int64]()
    labels.reserveCapacity(B * N)
    for b in 0..<B where N > 0 {
        cut.append(contentsOf: logits.scalars[(b * L * V)..<((b * L + N) * V)])
        labels.append(contentsOf: inputIds.scalars[(b * L + 1)..<((b + 1) * L)])
    }
    return (Tensor.make([B, N, V], cut), Tensor.make([B, N], labels))
}

/// 1 where position t of [B, N] scores an answer token (t >= start and
/// ids[b, t + 1] is not the pad), else 0: DeepSpeed-Chat's
/// `action_mask[:, start:]`, widened back to [B, N], with `start = promptLength - 1`.
///
/// - Throws: ``StageError`` (stage `answer_token_mask`) for ids that are not
///   [B, L] with L >= 1, or a `promptLength` outside `[1, L]` (at L the answer is
///   empty and the mask all 0).
public func answerTokenMask(inputIds: Tensor<Int64>, promptLength: Int, padId: Int64) throws(StageError) -> Tensor<Int64> {
    let check = InputCheck(stage: "answer_token_mask")
    try check.rank(inputIds, "input_ids", is: 2, legend: "[B, L]")
    let B = inputIds.shape[0], L = inputIds.shape[1]
    try check.parameter("L", L, in: 1..<Int.max, "input_ids \(describe(shape: inputIds.shape)) need a token per row")
    try check.parameter("prompt_length", promptLength, in: 1..<(L + 1),
                        "start = prompt_length - 1 must be a position in [0, N] with L = \(L)")
    let N = L - 1
    var mask = Tensor<Int64>(shape: [B, N], repeating: 0)
    for b in 0..<B {
        for t in (promptLength - 1)..<N where inputIds[b, t + 1] != padId {
            mask[b, t] = 1
        }
    }
    return mask
}
