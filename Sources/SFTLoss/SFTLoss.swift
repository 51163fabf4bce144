import TensorCore

/// The supervised fine-tuning loss and what it averaged over.
public struct SFTLossResult<T: FloatScalar>: Sendable {
    /// Mean negative log-likelihood over the labels that are not ignored. Shape [].
    public var loss: T
    /// -log p(labels[b, t+1] | logits[b, t]) where counted, 0 elsewhere. Shape [B, L - 1].
    public var tokenLosses: Tensor<T>
    /// How many labels were counted (the mean's denominator).
    public var tokenCount: Int

    @inlinable
    public init(loss: T, tokenLosses: Tensor<T>, tokenCount: Int) {
        self.loss = loss
        self.tokenLosses = tokenLosses
        self.tokenCount = tokenCount
    }
}

/// The causal-LM cross-entropy loss that SFT trains with (DeepSpeed-Chat step 1).
///
/// ```
/// for t in [0, L-1), y = labels[b, t+1]:
///     counted when y != ignore_index
///     nll[b, t] = -log softmax(logits[b, t, :])[y]
/// loss = Σ_{counted} nll / (number counted)
/// ```
///
/// Shapes: `logits` [B, L, V] float, `labels` [B, L] int64 -> `loss` [].
///
/// The shift is inside: the logits at position t are scored against the label at
/// t + 1, so the last position's logits and the first label are never used. The
/// mean runs over every counted label of the batch. DeepSpeed-Chat builds labels
/// as the input ids where the attention mask is 1 and -100 elsewhere, so the
/// prompt is trained on too; align-anything sets the prompt's labels to -100.
///
/// Matches Hugging Face `transformers`' causal-LM loss (`model(**batch).loss`,
/// `CrossEntropyLoss(ignore_index=-100)` after the shift), which DeepSpeed-Chat
/// `training/step1_supervised_finetuning/main.py` trains with.
///
/// Infinite logits give what PyTorch gives: a `-inf` logit at a counted label
/// makes its term, and the loss, +inf. A counted position whose logits hold a
/// `+inf` or nothing but `-inf` has a NaN log-softmax (inf - inf), in PyTorch too:
/// the stage throws.
///
/// - Throws: ``StageError`` for shapes that do not agree, NaN in `logits`, a label
///   in `labels[:, 1:]` outside `[0, V)` that is not `ignoreIndex`, no label left
///   to count (the mean would be 0/0), or a loss that would be NaN
///   (`nonFiniteResult` naming `loss`).
@inlinable
public func sftLoss<T: FloatScalar>(
    logits: Tensor<T>, labels: Tensor<Int64>, ignoreIndex: Int64 = -100
) throws(StageError) -> SFTLossResult<T> {
    let check = InputCheck(stage: "sft_loss")
    try check.rank(logits, "logits", is: 3, legend: "[B, L, V]")
    let batchSize = logits.shape[0], length = logits.shape[1], vocabularySize = logits.shape[2]
    try check.shape(labels, "labels", equals: [batchSize, length], sameAs: "[B, L] from logits \(describe(shape: logits.shape))")
    try check.noNaN(logits, "logits")
    for b in 0..<batchSize {
        for t in 1..<max(length, 1) {
            let label = labels[b, t]
            guard label == ignoreIndex || (label >= 0 && label < Int64(vocabularySize)) else {
                throw StageError(.labelOutOfRange, stage: check.stage, argument: "labels",
                                 "label \(label) at index [\(b), \(t)] is outside [0, V) = [0, \(vocabularySize)) and is not ignore_index \(ignoreIndex)")
            }
        }
    }

    let positions = max(length - 1, 0)
    var tokenLosses = Tensor<T>(shape: [batchSize, positions], repeating: 0)
    var sum = 0.0
    var count = 0
    for b in 0..<batchSize {
        for t in 0..<positions where labels[b, t + 1] != ignoreIndex {
            let rowStart = (b * length + t) * vocabularySize
            let (maximum, logSumShifted) = logSumExpParts(logits.scalars[rowStart..<(rowStart + vocabularySize)])
            let label = Int(labels[b, t + 1])
            let nll = -((logits.scalars[rowStart + label] - maximum) - logSumShifted)
            tokenLosses[b, t] = nll
            sum += Double(nll)
            count += 1
        }
    }
    guard count > 0 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "labels",
                         "no label is left in labels[:, 1:] of \(describe(shape: labels.shape)) after ignoring \(ignoreIndex); the mean would be 0/0")
    }
    let loss = T(sum) / T(count)
    try check.noNaNInResult(loss, "loss", terms: tokenLosses, "the token loss -log p")
    return SFTLossResult(loss: loss, tokenLosses: tokenLosses, tokenCount: count)
}

/// The gradient of `sftLoss` with respect to the logits.
///
/// ```
/// loss = (1/n) Σ_{counted (b,t)} -log softmax(x_{b,t})[y],   y = labels[b, t+1]
/// ∂ loss / ∂ x_{b,t,v} = (softmax(x_{b,t})_v - 1[v = y]) / n     for counted (b, t)
///                      = 0                                      for ignored t and t = L-1
/// ```
///
/// Shapes: as `sftLoss`; `grad_logits` [B, L, V]. Each counted row sums to zero.
///
/// Infinite logits: a `-inf` logit gets exactly 0 (its softmax is 0), or -1/n at
/// the label, as in autograd. An ignored position's gradient is 0 only while its
/// log-softmax is a number: PyTorch's `cross_entropy` forms the log-softmax of
/// every position of `logits[:, :-1]`, ignored ones included, and its backward
/// there is 0 - exp(log_softmax)·0, which is NaN for a row holding a `+inf` or
/// nothing but `-inf` (its log-softmax is NaN throughout). The stage throws there.
///
/// - Throws: ``StageError`` as `sftLoss` does, and `nonFiniteResult` naming
///   `grad_logits` for such an ignored row (the loss itself is a number there).
@inlinable
public func sftLossGradLogits<T: FloatScalar>(
    logits: Tensor<T>, labels: Tensor<Int64>, ignoreIndex: Int64 = -100
) throws(StageError) -> Tensor<T> {
    let forward = try sftLoss(logits: logits, labels: labels, ignoreIndex: ignoreIndex)
    let batchSize = logits.shape[0], length = logits.shape[1], vocabularySize = logits.shape[2]
    let weight = T(1) / T(forward.tokenCount)
    let check = InputCheck(stage: "sft_loss")
    var gradLogits = Tensor<T>(shape: logits.shape, repeating: 0)
    for b in 0..<batchSize {
        for t in 0..<(length - 1) {
            let rowStart = (b * length + t) * vocabularySize
            let row = logits.scalars[rowStart..<(rowStart + vocabularySize)]
            if labels[b, t + 1] == ignoreIndex {
                // Not counted, so 0 here, but PyTorch still forms this row's
                // log-softmax and multiplies its exp by the gradient 0: a +inf logit,
                // or a row of nothing but -inf, makes the log-softmax NaN
                // (inf - inf, -inf - (-inf)), and NaN · 0 = NaN in every entry.
                if let maximum = row.max(), maximum.isInfinite {
                    throw StageError(.nonFiniteResult, stage: check.stage, argument: "grad_logits",
                                     "the result is NaN at index [\(b), \(t), 0]: labels[\(b), \(t + 1)] is ignored, "
                                     + "but the log-softmax of logits[\(b), \(t)] (max \(maximum)) is NaN, "
                                     + "and PyTorch's backward multiplies its exp by 0")
                }
                continue
            }
            let (maximum, logSumShifted) = logSumExpParts(row)
            let label = Int(labels[b, t + 1])
            for v in 0..<vocabularySize {
                let probability = T.exp((logits.scalars[rowStart + v] - maximum) - logSumShifted)
                gradLogits.scalars[rowStart + v] = probability * weight - (v == label ? weight : 0)
            }
        }
    }
    try check.noNaNInResult(gradLogits, "grad_logits")
    return gradLogits
}
