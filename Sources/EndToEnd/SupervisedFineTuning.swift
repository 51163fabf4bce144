import TensorCore
import SFTLoss
import TinyLM

/// A batch of `count` rows drawn with replacement, the same rows for the same rng.
func drawBatch<Element>(_ pool: [Element], count: Int, rng: inout SplitMix64) -> [Element] {
    (0..<count).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }
}

/// Phase 1, SFT: teach the model the demonstrations with the causal-LM loss.
///
/// ```
/// per step: batch of B demonstrations [B, L]
///   labels = input_ids where attention_mask is 1, else -100   (the prompt is trained on too)
///   loss   = sft_loss(model(ids).logits, labels)
///   θ ← Adam(θ, ∂loss/∂θ)       (sftLossGradLogits, then the model's backward)
/// ```
///
/// As DeepSpeed-Chat's step 1 (`training/step1_supervised_finetuning`) trains,
/// with the library's `sftLoss` and `sftLossGradLogits`. Returns the loss of
/// every step.
public func supervisedFineTuning(model: inout TinyLM, demonstrations: [TokenizedSequence], steps: Int,
                                 batchSize: Int, learningRate: Double,
                                 rng: inout SplitMix64) throws(StageError) -> [Double] {
    var optimizer = Adam(for: model.parameters, learningRate: learningRate)
    var losses = [Double]()
    let L = ToyLanguage.sequenceLength
    for _ in 0..<steps {
        let batch = drawBatch(demonstrations, count: batchSize, rng: &rng)
        let ids = Tensor.make([batchSize, L], batch.flatMap(\.inputIds))
        let labels = Tensor.make([batchSize, L], batch.flatMap { $0.labels() })
        let activations = try model.forward(ids)
        losses.append(try sftLoss(logits: activations.logits, labels: labels).loss)
        let gradLogits = try sftLossGradLogits(logits: activations.logits, labels: labels)
        let gradient = try model.backward(activations, gradLogits: gradLogits, gradValues: nil)
        optimizer.step(&model.parameters, gradient: gradient)
    }
    return losses
}
