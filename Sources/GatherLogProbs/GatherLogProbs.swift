import TensorCore

/// The log-probability the model gives each label: `log_softmax(logits)[label]`.
///
/// ```
/// log_probs[b, t] = log softmax(logits[b, t, :])[labels[b, t]]
///                 = (logits[b, t, y] - m) - log Σ_v exp(logits[b, t, v] - m),
///   y = labels[b, t],  m = max_v logits[b, t, v]
/// ```
///
/// Shapes: `logits` [B, T, V] float, `labels` [B, T] int64 -> `log_probs` [B, T].
/// Nothing is masked; every position is scored.
///
/// In RLHF the caller does the one-token shift: `logits[:, :-1]` against
/// `input_ids[:, 1:]`, because the logits at position t predict token t + 1. The
/// result then has N = L - 1 positions and the answer starts at
/// `start = prompt_length - 1`.
///
/// Matches DeepSpeed-Chat `dschat/rlhf/ppo_trainer.py :: gather_log_probs`
/// (`F.log_softmax` then `gather`) and align-anything
/// `utils/tools.py :: gather_log_probabilities`.
///
/// - Throws: ``StageError`` for shapes that do not agree, a label outside
///   `[0, V)`, NaN in `logits`, or a row whose log-softmax is NaN (all `-inf`).
@inlinable
public func gatherLogProbs<T: FloatScalar>(logits: Tensor<T>, labels: Tensor<Int64>) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "gather_log_probs")
    try checkGatherLogProbsInputs(logits: logits, labels: labels, check)
    let batchSize = logits.shape[0], length = logits.shape[1], vocabularySize = logits.shape[2]
    try check.noNaN(logits, "logits")

    var logProbs = [T](repeating: 0, count: batchSize * length)
    for position in 0..<(batchSize * length) {
        let rowStart = position * vocabularySize
        let row = logits.scalars[rowStart..<(rowStart + vocabularySize)]
        let (maximum, logSumShifted) = logSumExpParts(row)
        let label = Int(labels.scalars[position])
        // Same order as PyTorch: (x - max) - log Σ exp(x - max). Forming
        // x - (max + log Σ) instead rounds max + log Σ first, which for logits of
        // 1e6 in float32 (ulp 0.0625) loses the small log Σ term.
        logProbs[position] = (logits.scalars[rowStart + label] - maximum) - logSumShifted
    }
    let result = Tensor.make([batchSize, length], logProbs)
    try check.noNaNInResult(result, "log_probs")
    return result
}

/// The checks on shapes and labels (O(B·T)) that `gatherLogProbs` and the fused
/// kernels (`FusedKernels`) both run first, in this order, so both throw alike.
@inlinable
public func checkGatherLogProbsInputs<T>(logits: Tensor<T>, labels: Tensor<Int64>, _ check: InputCheck) throws(StageError) {
    try check.rank(logits, "logits", is: 3, legend: "[B, T, V]")
    let batchSize = logits.shape[0], length = logits.shape[1], vocabularySize = logits.shape[2]
    try check.shape(labels, "labels", equals: [batchSize, length], sameAs: "[B, T] from logits \(describe(shape: logits.shape))")
    if batchSize * length > 0 {
        try check.parameter("V", vocabularySize, in: 1..<Int.max, "the vocabulary axis of logits cannot be empty")
    }
    try check.labels(labels, "labels", vocabularySize: vocabularySize)
}

/// The gradient of `gatherLogProbs` with respect to the logits, given the
/// upstream gradient of each log-prob.
///
/// ```
/// log_probs[b, t] = x_y - log Σ_v exp(x_v)            (x = logits[b, t, :], y = label)
/// ∂ log_probs[b, t] / ∂ x_v = 1[v = y] - softmax(x)_v
/// grad_logits[b, t, v] = grad_output[b, t] · (1[v = y] - softmax(x)_v)
/// ```
///
/// Shapes: `logits` [B, T, V], `labels` [B, T], `gradOutput` [B, T] ->
/// `grad_logits` [B, T, V] = ∂ Σ_{b,t} (log_probs · grad_output) / ∂ logits.
///
/// Every row of `grad_logits` sums to zero (the softmax sums to one), and a
/// `-inf` logit gets exactly zero gradient (its softmax is 0). The softmax is
/// formed as `exp(log_softmax)`, as PyTorch's `log_softmax` backward does.
///
/// Matches PyTorch autograd through DeepSpeed-Chat's `gather_log_probs`.
///
/// An infinite `grad_output[b, t]` g makes the label's gradient g - p·g NaN for
/// every p in [0, 1] (inf - inf, or inf - 0·inf), in PyTorch too (the other
/// entries are ∓inf, or NaN where p = 0): the stage throws, naming
/// `grad_logits` at the label. Infinite logits need no care beyond the forward's:
/// a row the forward accepts has every softmax p in [0, 1].
///
/// - Throws: ``StageError`` as `gatherLogProbs` does, for a `gradOutput` whose
///   shape is not [B, T] or that holds NaN, and `nonFiniteResult` naming
///   `grad_logits` for an infinite `gradOutput` (its gradient would be NaN).
@inlinable
public func gatherLogProbsGradLogits<T: FloatScalar>(
    logits: Tensor<T>, labels: Tensor<Int64>, gradOutput: Tensor<T>
) throws(StageError) -> Tensor<T> {
    _ = try gatherLogProbs(logits: logits, labels: labels)  // every input check, once
    let check = InputCheck(stage: "gather_log_probs")
    let batchSize = logits.shape[0], length = logits.shape[1], vocabularySize = logits.shape[2]
    try check.shape(gradOutput, "grad_output", equals: [batchSize, length], sameAs: "[B, T] from logits \(describe(shape: logits.shape))")
    try check.noNaN(gradOutput, "grad_output")
    try checkGatherGradOutputIsFinite(labels: labels, gradOutput: gradOutput, check)

    var gradLogits = Tensor<T>(shape: logits.shape, repeating: 0)
    for position in 0..<(batchSize * length) {
        let rowStart = position * vocabularySize
        let (maximum, logSumShifted) = logSumExpParts(logits.scalars[rowStart..<(rowStart + vocabularySize)])
        let upstream = gradOutput.scalars[position]
        let label = Int(labels.scalars[position])
        for v in 0..<vocabularySize {
            let probability = T.exp((logits.scalars[rowStart + v] - maximum) - logSumShifted)
            let oneHot: T = v == label ? upstream : 0
            gradLogits.scalars[rowStart + v] = oneHot - probability * upstream
        }
    }
    try check.noNaNInResult(gradLogits, "grad_logits")
    return gradLogits
}

/// Throws at the first infinite `grad_output[b, t]`, which makes the gradient
/// NaN at the label `y` of that row, as in PyTorch (the log-softmax backward
/// there is g - p_y·g: inf - inf for p_y > 0, inf - 0·inf for p_y = 0). O(B·T);
/// the plain and the fused backward (`FusedKernels`) both run it after their
/// input checks.
@inlinable
public func checkGatherGradOutputIsFinite<T: FloatScalar>(
    labels: Tensor<Int64>, gradOutput: Tensor<T>, _ check: InputCheck
) throws(StageError) {
    for position in 0..<gradOutput.count where !gradOutput.scalars[position].isFinite {
        let label = Int(labels.scalars[position])
        let (b, t) = position.quotientAndRemainder(dividingBy: max(gradOutput.shape[1], 1))
        throw StageError(.nonFiniteResult, stage: check.stage, argument: "grad_logits",
                         "the result is NaN at index \(describe(shape: [b, t, label])): grad_output[\(b), \(t)] = "
                         + "\(gradOutput.scalars[position]), and the label's gradient g - p·g is NaN for an infinite g")
    }
}
