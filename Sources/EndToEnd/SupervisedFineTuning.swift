import TensorCore
import SFTLoss
import TinyLM

/// A batch of `count` rows drawn with replacement, the same rows for the same rng.
///
/// - Throws: ``StageError`` for an empty pool or a count below 1, naming `argument`.
func drawBatch<Element>(_ pool: [Element], count: Int, rng: inout SplitMix64,
                        stage: String, argument: String) throws(StageError) -> [Element] {
    guard !pool.isEmpty else {
        throw StageError(.shapeMismatch, stage: stage, argument: argument, "no rows to draw a batch from")
    }
    try InputCheck(stage: stage).parameter("batch_size", count, in: 1..<Int.max, "a batch holds at least one row")
    return (0..<count).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }
}

/// Throws unless `steps >= 0` and a finite `learningRate >= 0`: the knobs every
/// training loop shares.
func checkLoop(stage: String, steps: Int, learningRate: Double) throws(StageError) {
    let check = InputCheck(stage: stage)
    try check.parameter("steps", steps, in: 0..<Int.max, "a number of optimizer steps")
    try check.nonNegative("learning_rate", learningRate)
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
    try checkLoop(stage: "sft", steps: steps, learningRate: learningRate)
    var optimizer = try Adam(for: model.parameters, learningRate: learningRate)
    var losses = [Double]()
    let L = ToyLanguage.sequenceLength
    for _ in 0..<steps {
        let batch = try drawBatch(demonstrations, count: batchSize, rng: &rng, stage: "sft", argument: "demonstrations")
        let ids = Tensor.make([batchSize, L], batch.flatMap(\.inputIds))
        let labels = Tensor.make([batchSize, L], batch.flatMap { $0.labels() })
        let activations = try model.forward(ids)
        losses.append(try sftLoss(logits: activations.logits, labels: labels).loss)
        let gradLogits = try sftLossGradLogits(logits: activations.logits, labels: labels)
        let gradient = try model.backward(activations, gradLogits: gradLogits, gradValues: nil)
        try optimizer.step(&model.parameters, gradient: gradient)
    }
    return losses
}
