import TensorCore

/// The label's log-prob and the policy's entropy at every position, both under
/// the tempered logits: what TRL's PPO step computes from one forward pass.
public struct LogProbsAndEntropy<T: FloatScalar>: Sendable {
    /// log softmax(z)[label]. Shape [B, T].
    public var logProbs: Tensor<T>
    /// logsumexp(z) - Σ_v softmax(z)_v · z_v. Shape [B, T].
    public var entropy: Tensor<T>

    @inlinable
    public init(logProbs: Tensor<T>, entropy: Tensor<T>) {
        self.logProbs = logProbs
        self.entropy = entropy
    }
}

/// The new log-probs and the entropy of TRL's PPO step, from raw logits.
///
/// ```
/// z = logits / (temperature + 1e-7)                         (temperedLogits)
/// m = max_v z_v,   S = Σ_v exp(z_v - m)
/// log_probs[b, t] = (z_y - m) - log S,    y = labels[b, t]  (gatherLogProbs on z)
/// entropy[b, t]   = logsumexp(z) - Σ_v softmax(z)_v · z_v   (softmaxEntropy)
/// ```
///
/// Shapes: `logits` [B, T, V] float, `labels` [B, T] int64 -> `log_probs`,
/// `entropy` [B, T]. Nothing is masked: every position is scored.
///
/// The plain reference for the fused `logProbsWithEntropyFused` (FusedKernels):
/// three readable steps, each a stage of this module, forming z, the
/// log-softmax's parts and the softmax one row at a time.
///
/// Matches TRL `trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train`: the
/// micro-batch's `logits /= args.temperature + 1e-7`, `selective_log_softmax`
/// (`new_logprobs`) and `entropy = torch.logsumexp(logits, dim=-1) -
/// torch.sum(prob_dist * logits, dim=-1)` (logged as `policy_entropy`, its mean).
///
/// TRL's entropy is NaN for a row with any infinite logit: a `-inf` entry (a
/// masked vocabulary) gives softmax 0 times z = -inf, which is NaN in torch, and
/// a `+inf` one gives inf - inf. Where TRL's result is NaN, this stage throws.
///
/// - Throws: ``StageError`` for shapes that do not agree, a label outside
///   `[0, V)`, an empty vocabulary axis, a `temperature + 1e-7` that is not
///   finite and positive, NaN in `logits`, or a NaN result (`nonFiniteResult`
///   naming `log_probs`, then `entropy`): a row of nothing but `-inf` for both,
///   any infinite logit for the entropy.
@inlinable
public func logProbsWithEntropy<T: FloatScalar>(
    logits: Tensor<T>, labels: Tensor<Int64>, temperature: Double
) throws(StageError) -> LogProbsAndEntropy<T> {
    let check = InputCheck(stage: "log_probs_with_entropy")
    try checkLogProbsWithEntropyInputs(logits: logits, labels: labels, temperature: temperature, check)
    try check.noNaN(logits, "logits")
    let rows = logits.shape[0] * logits.shape[1], vocabularySize = logits.shape[2]

    let z = temperedLogits(logits, temperature: temperature)
    var logProbs = [T](repeating: 0, count: rows)
    for position in 0..<rows {
        let rowStart = position * vocabularySize
        let (maximum, logSumShifted) = logSumExpParts(z.scalars[rowStart..<(rowStart + vocabularySize)])
        let label = Int(labels.scalars[position])
        logProbs[position] = (z.scalars[rowStart + label] - maximum) - logSumShifted
    }
    let result = LogProbsAndEntropy(logProbs: Tensor.make(labels.shape, logProbs), entropy: softmaxEntropy(z))
    try check.noNaNInResult(result.logProbs, "log_probs")
    try check.noNaNInResult(result.entropy, "entropy")
    return result
}

/// The checks on shapes, labels and the temperature (O(B·T)) that
/// `logProbsWithEntropy` and the fused kernel (`FusedKernels`) both run first,
/// in this order, so both throw alike.
@inlinable
public func checkLogProbsWithEntropyInputs<T>(
    logits: Tensor<T>, labels: Tensor<Int64>, temperature: Double, _ check: InputCheck
) throws(StageError) {
    try checkGatherLogProbsInputs(logits: logits, labels: labels, check)
    let divisor = temperature + 1e-7
    guard divisor.isFinite, divisor > 0 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "temperature",
                         "temperature + 1e-7 = \(divisor) must be finite and > 0 (the logits are divided by it)")
    }
}
