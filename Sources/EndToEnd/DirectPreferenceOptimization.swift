import TensorCore
import SFTLoss
import DPOLoss
import TinyLM

/// Per-token log-probs of each answer, zero-padded: the inputs `dpo_loss` takes.
///
/// ```
/// x[b, t] = log π(ids[b, t + 1] | ids[b, ..t])   for answer positions (t >= start, not a pad)
///         = 0                                    elsewhere
/// ```
///
/// Shapes: `sequences` [B, L] -> [B, N]. Returns the model's activations too, for
/// the backward pass.
func answerLogProbs(_ model: TinyLM, sequences: Tensor<Int64>) throws(StageError)
    -> (logProbs: Tensor<Double>, mask: Tensor<Int64>, activations: TinyLMActivations) {
    let activations = try model.forward(sequences)
    var logProbs = try nextTokenLogProbs(logits: activations.logits, inputIds: sequences)
    let mask = try answerTokenMask(inputIds: sequences, promptLength: ToyLanguage.promptLength, padId: ToyLanguage.padId)
    for i in 0..<mask.count where mask.scalars[i] == 0 { logProbs.scalars[i] = 0 }
    return (logProbs, mask, activations)
}

/// Phase 4, DPO: from the SFT model, on the reward model's preference pairs, with
/// the SFT model as the frozen reference; no reward model, no sampling.
///
/// ```
/// per step: B pairs
///   better, worse         = per-token answer log-probs of the policy      [B, N] each
///   ref_better, ref_worse = the same under the reference
///   loss = dpo_loss(better, worse, ref_better, ref_worse, β)
///   θ ← Adam(∂loss/∂θ)   (dpoLossGradLogProbs, masked to answer tokens -> gather backward -> model)
/// ```
///
/// As align-anything's `DPOTrainer` (`loss`, with `compute_log_probs` summing the
/// answer tokens). Returns the loss of every step. The pairs may have any one
/// length from the toy prompt's 3 tokens to the models' context.
///
/// - Throws: ``StageError`` (stage `dpo`), before the first step, for `steps`
///   outside [0, 2^31], a `batchSize` outside [1, 2^31], a learning rate that is
///   not finite and >= 0, a `beta` that is not finite, no pairs, rows of
///   different lengths or of a length either model cannot take, a mask that is
///   not 0/1, an id outside `[0, V)`, or a batch beyond ``TensorLimits``; then
///   what the stages throw on the way (a NaN result).
public func directPreferenceOptimization(policy: inout TinyLM, reference: TinyLM,
                                         pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)],
                                         steps: Int, batchSize: Int, beta: Double, learningRate: Double,
                                         rng: inout SplitMix64) throws(StageError) -> [Double] {
    try checkLoop(stage: "dpo", steps: steps, batchSize: batchSize, learningRate: learningRate)
    try InputCheck(stage: "dpo").finite("beta", beta)
    let L = try checkSequences(pairs.lazy.flatMap { [$0.chosen, $0.rejected] }, for: [policy, reference],
                               batchSize: batchSize, minimumLength: ToyLanguage.promptLength, stage: "dpo",
                               argument: "pairs")
    var optimizer = try Adam(for: policy.parameters, learningRate: learningRate)
    var losses = [Double]()
    for _ in 0..<steps {
        let batch = try drawBatch(pairs, count: batchSize, rng: &rng, stage: "dpo", argument: "pairs")
        let chosen = Tensor.make([batchSize, L], batch.flatMap(\.chosen.inputIds))
        let rejected = Tensor.make([batchSize, L], batch.flatMap(\.rejected.inputIds))
        let better = try answerLogProbs(policy, sequences: chosen)
        let worse = try answerLogProbs(policy, sequences: rejected)
        let refBetter = try answerLogProbs(reference, sequences: chosen).logProbs
        let refWorse = try answerLogProbs(reference, sequences: rejected).logProbs
        losses.append(try dpoLoss(betterLogProbs: better.logProbs, worseLogProbs: worse.logProbs,
                                  refBetterLogProbs: refBetter, refWorseLogProbs: refWorse, beta: beta).loss)
        let grads = try dpoLossGradLogProbs(betterLogProbs: better.logProbs, worseLogProbs: worse.logProbs,
                                            refBetterLogProbs: refBetter, refWorseLogProbs: refWorse, beta: beta)
        // The zeros outside the answer were constants, not log-probs: no gradient flows there.
        var gradient = try TinyLMParameters(zerosFor: policy.config)
        for (side, grad) in [(better, grads.gradBetterLogProbs), (worse, grads.gradWorseLogProbs)] {
            var masked = grad
            for i in 0..<masked.count where side.mask.scalars[i] == 0 { masked.scalars[i] = 0 }
            let gradLogits = try nextTokenLogProbsGradLogits(logits: side.activations.logits,
                                                             inputIds: side.activations.inputIds, gradOutput: masked)
            let part = try policy.backward(side.activations, gradLogits: gradLogits, gradValues: nil)
            for i in gradient.storage.indices { gradient.storage[i] += part.storage[i] }
        }
        try optimizer.step(&policy.parameters, gradient: gradient)
    }
    return losses
}

/// The fraction of pairs whose chosen answer the model finds more likely than the
/// rejected one: `mean(Σ_answer log π(chosen) > Σ_answer log π(rejected))`.
///
/// A model-only preference accuracy, so the SFT model and the DPO policy are
/// judged by the same rule. (DPO's own `reward_accuracy` compares implicit
/// rewards against the reference, which is 0 for the SFT model itself.)
///
/// - Throws: ``StageError`` as ``directPreferenceOptimization(policy:reference:pairs:steps:batchSize:beta:learningRate:rng:)``
///   does for its pairs (no pairs: the accuracy would be 0/0), all pairs being
///   one batch.
public func preferenceAccuracy(_ model: TinyLM,
                               pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)]) throws(StageError) -> Double {
    let L = try checkSequences(pairs.lazy.flatMap { [$0.chosen, $0.rejected] }, for: [model], batchSize: pairs.count,
                               minimumLength: ToyLanguage.promptLength, stage: "dpo", argument: "pairs")
    let chosen = try answerLogProbs(model, sequences: Tensor.make([pairs.count, L], pairs.flatMap(\.chosen.inputIds)))
    let rejected = try answerLogProbs(model, sequences: Tensor.make([pairs.count, L], pairs.flatMap(\.rejected.inputIds)))
    let N = L - 1
    var wins = 0
    for b in 0..<pairs.count {
        let chosenSum = chosen.logProbs.scalars[(b * N)..<((b + 1) * N)].reduce(0, +)
        let rejectedSum = rejected.logProbs.scalars[(b * N)..<((b + 1) * N)].reduce(0, +)
        if chosenSum > rejectedSum { wins += 1 }
    }
    return Double(wins) / Double(pairs.count)
}
