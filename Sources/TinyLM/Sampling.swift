#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore

/// Draws the next token from one row of logits at a temperature.
///
/// ```
/// p_v = softmax(logits / temperature)_v,   token ~ Categorical(p)
/// ```
///
/// Temperature 1 samples the model as it is; below 1 sharpens it, above 1
/// flattens it. The max is subtracted before exp (see `logSumExpParts`), so
/// finite logits of any size give finite weights, the largest exactly 1; a token
/// of weight 0 (a `-inf` logit, or one far below the max) is never drawn.
///
/// Where the softmax has no answer, it throws instead of picking a token:
/// every logit `-inf` (no token has any mass), a `+inf` logit, or logits so large
/// for the temperature that `logits / temperature` overflows (`inf - inf`).
/// PyTorch's softmax gives NaN there, and `torch.multinomial` refuses it.
///
/// - Throws: ``StageError`` for a temperature that is not finite and > 0, empty
///   logits (`.shapeMismatch`), a NaN logit, or `.nonFiniteResult` naming
///   `probabilities` when the softmax is NaN (see above).
public func sampleToken(logits: ArraySlice<Double>, temperature: Double,
                        rng: inout SplitMix64) throws(StageError) -> Int {
    try checkTemperature(temperature, stage: "sample")
    guard !logits.isEmpty else {
        throw StageError(.shapeMismatch, stage: "sample", argument: "logits", "no logits: nothing to sample from")
    }
    guard !logits.contains(where: \.isNaN) else {
        throw StageError(.notANumber, stage: "sample", argument: "logits",
                         "NaN among the \(logits.count) logits: nothing to sample from")
    }
    let scaled = logits.map { $0 / temperature }
    let maximum = scaled.max() ?? 0
    let weights = scaled.map { exp($0 - maximum) }
    if let bad = weights.firstIndex(where: \.isNaN) {
        let why = maximum == -.infinity ? "every logit is -inf: no token has any probability"
            : "logit \(bad) / temperature is \(scaled[bad]) (a +inf logit, or too large for temperature \(temperature))"
        throw StageError(.nonFiniteResult, stage: "sample", argument: "probabilities", "the softmax is NaN: " + why)
    }
    return rng.categorical(weights)
}

/// Throws unless `temperature` is finite and > 0: it divides the logits.
func checkTemperature(_ temperature: Double, stage: String) throws(StageError) {
    guard temperature.isFinite, temperature > 0 else {
        throw StageError(.parameterOutOfRange, stage: stage, argument: "temperature",
                         "temperature = \(temperature) must be finite and > 0 (it divides the logits)")
    }
}

extension TinyLM {
    /// Continues each prompt by sampling up to `maxNewTokens` tokens, stopping a
    /// row at `endOfSequence` (or a sampled `padId`) and filling the rest of it
    /// with `padId`.
    ///
    /// ```
    /// ids = prompts;  repeat maxNewTokens times:
    ///   next[b] = sample(forward(ids).logits[b, last], temperature)   (pad once row b has ended)
    ///   ids = concat(ids, next)
    /// ```
    ///
    /// Shapes: `prompts` [B, P] -> sequences [B, P + maxNewTokens], as DeepSpeed-Chat's
    /// `generate_experience` gets them from Hugging Face `generate` with
    /// `max_new_tokens` (prompts of one length, answers right-padded with the pad id).
    /// Each step re-runs the whole prefix: no KV cache, fine at this size.
    ///
    /// Every argument is checked before the first forward pass, so a run that
    /// cannot finish fails before it starts.
    ///
    /// - Throws: ``StageError`` for prompts that are not [B, P] with B >= 1 and
    ///   1 <= P <= contextLength, `maxNewTokens < 0` or P + maxNewTokens beyond the
    ///   context length, a batch whose activations would pass ``TensorLimits``, a
    ///   temperature that is not finite and > 0, a prompt id, `endOfSequence` or
    ///   `padId` outside `[0, V)`, or what ``forward(_:)`` and ``sampleToken(logits:temperature:rng:)``
    ///   throw for the model's own output (NaN logits, a softmax with no mass).
    public func generate(prompts: Tensor<Int64>, maxNewTokens: Int, temperature: Double, endOfSequence: Int64,
                         padId: Int64, rng: inout SplitMix64) throws(StageError) -> Tensor<Int64> {
        let check = InputCheck(stage: "generate")
        try check.rank(prompts, "prompts", is: 2, legend: "[B, P]")
        let B = prompts.shape[0], P = prompts.shape[1], V = config.vocabularySize
        try check.parameter("B", B, in: 1..<Int.max, "prompts \(describe(shape: prompts.shape)) must hold at least one prompt")
        try check.parameter("P", P, in: 1..<(config.contextLength + 1),
                            "prompts \(describe(shape: prompts.shape)) must hold 1 to contextLength = \(config.contextLength) tokens")
        try check.parameter("max_new_tokens", maxNewTokens, in: 0..<(config.contextLength - P + 1),
                            "P + max_new_tokens must fit the context length \(config.contextLength) (P = \(P))")
        try config.checkBatch(batchSize: B, length: P + maxNewTokens, check, argument: "prompts")
        try checkTemperature(temperature, stage: check.stage)
        try check.labels(prompts, "prompts", vocabularySize: V)
        for (name, id) in [("end_of_sequence", endOfSequence), ("pad_id", padId)] where id < 0 || id >= Int64(V) {
            throw StageError(.labelOutOfRange, stage: check.stage, argument: name,
                             "\(name) = \(id) is outside [0, V) = [0, \(V)): the model can neither emit nor read it")
        }
        var rows = (0..<B).map { Array(prompts.row($0)) }
        var ended = [Bool](repeating: false, count: B)
        for _ in 0..<maxNewTokens {
            let length = rows[0].count
            let logits = try forward(Tensor.make([B, length], rows.flatMap { $0 })).logits
            for b in 0..<B {
                if ended[b] {
                    rows[b].append(padId)
                    continue
                }
                let last = (b * length + length - 1) * V
                let token = Int64(try sampleToken(logits: logits.scalars[last..<(last + V)],
                                                  temperature: temperature, rng: &rng))
                rows[b].append(token)
                if token == endOfSequence || token == padId { ended[b] = true }  // a sampled pad ends the answer too
            }
        }
        return Tensor.make([B, P + maxNewTokens], rows.flatMap { $0 })
    }
}
