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
/// logits of any size give finite weights.
///
/// - Throws: ``StageError`` for a temperature that is not finite and > 0, empty
///   logits, or a NaN logit.
public func sampleToken(logits: ArraySlice<Double>, temperature: Double,
                        rng: inout SplitMix64) throws(StageError) -> Int {
    guard temperature.isFinite, temperature > 0 else {
        throw StageError(.parameterOutOfRange, stage: "sample", argument: "temperature",
                         "temperature = \(temperature) must be finite and > 0 (it divides the logits)")
    }
    guard !logits.isEmpty, !logits.contains(where: \.isNaN) else {
        throw StageError(.notANumber, stage: "sample", argument: "logits",
                         "\(logits.count) logits, empty or holding NaN: nothing to sample from")
    }
    let scaled = logits.map { $0 / temperature }
    let maximum = scaled.max() ?? 0
    return rng.categorical(scaled.map { exp($0 - maximum) })
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
    /// - Throws: ``StageError`` for prompts that are not [B, P] with B >= 1 and
    ///   P >= 1, `maxNewTokens < 0`, P + maxNewTokens beyond the context length, a
    ///   bad temperature, or a prompt id outside `[0, V)`.
    public func generate(prompts: Tensor<Int64>, maxNewTokens: Int, temperature: Double, endOfSequence: Int64,
                         padId: Int64, rng: inout SplitMix64) throws(StageError) -> Tensor<Int64> {
        let check = InputCheck(stage: "generate")
        try check.rank(prompts, "prompts", is: 2, legend: "[B, P]")
        let B = prompts.shape[0], P = prompts.shape[1], V = config.vocabularySize
        try check.parameter("B", B, in: 1..<Int.max, "prompts \(describe(shape: prompts.shape)) must hold at least one prompt")
        try check.parameter("P", P, in: 1..<Int.max, "prompts \(describe(shape: prompts.shape)) must hold at least one token")
        try check.parameter("max_new_tokens", maxNewTokens, in: 0..<(config.contextLength - P + 1),
                            "P + max_new_tokens must fit the context length \(config.contextLength) (P = \(P))")
        try check.labels(prompts, "prompts", vocabularySize: V)
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
