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

/// Throws unless `count` (`steps`, `epochs`) is a number of passes a loop can
/// run: at least 0, and at most ``TensorLimits/maximumElements`` (2^31), since
/// one loss or record per step is kept.
func checkStepCount(_ count: Int, _ argument: String, _ check: InputCheck) throws(StageError) {
    guard count >= 0 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: argument,
                         "\(argument) = \(count) must be at least 0")
    }
    guard count <= TensorLimits.maximumElements else {
        throw StageError(.tooLarge, stage: check.stage, argument: argument,
                         "\(argument) = \(count) is beyond the limit of 2^31 (one result is kept per step)")
    }
}

/// Throws unless `size` (a batch size, a number of samples) is in [1, 2^31].
func checkBatchSize(_ size: Int, _ argument: String, _ check: InputCheck) throws(StageError) {
    guard size >= 1 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: argument,
                         "\(argument) = \(size) must be at least 1")
    }
    guard size <= TensorLimits.maximumElements else {
        throw StageError(.tooLarge, stage: check.stage, argument: argument,
                         "\(argument) = \(size) is beyond the limit of 2^31 rows")
    }
}

/// Throws unless the knobs every training loop shares can run: `steps` in
/// [0, 2^31], `batchSize` in [1, 2^31], a learning rate Adam takes (finite, >= 0).
func checkLoop(stage: String, steps: Int, batchSize: Int, learningRate: Double) throws(StageError) {
    let check = InputCheck(stage: stage)
    try checkStepCount(steps, "steps", check)
    try checkBatchSize(batchSize, "batch_size", check)
    try check.nonNegative("learning_rate", learningRate)
}

/// Throws unless `rows` is a set of sequences every model in `models` can be
/// trained on in batches of `batchSize`: at least one row; one length L for all
/// (ids and attention masks) with `minimumLength <= L <= contextLength`; masks of
/// 0/1; every id in `[0, V)`; activations within ``TensorLimits``; and each
/// model's weights intact. Returns L.
///
/// Rows are counted from 0 in the order given (for pairs: chosen 0, rejected 0,
/// chosen 1, ...).
func checkSequences(_ rows: some Collection<TokenizedSequence>, for models: [TinyLM], batchSize: Int,
                    minimumLength: Int, stage: String, argument: String) throws(StageError) -> Int {
    let check = InputCheck(stage: stage)
    guard let length = rows.first?.inputIds.count else {
        throw StageError(.shapeMismatch, stage: stage, argument: argument, "no rows to draw a batch from")
    }
    guard length >= minimumLength else {
        throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                         "sequences of \(length) tokens: this phase needs at least \(minimumLength)")
    }
    for model in models {
        try model.config.checkBatch(batchSize: batchSize, length: length, check, argument: argument)
        try model.parameters.checkWeights(check, "model")
    }
    let V = models.map(\.config.vocabularySize).min() ?? 0
    for (index, row) in rows.enumerated() {
        guard row.inputIds.count == length, row.attentionMask.count == length else {
            throw StageError(.shapeMismatch, stage: stage, argument: argument,
                             "row \(index) has \(row.inputIds.count) ids and an attention mask of \(row.attentionMask.count), "
                             + "expected \(length) (the first row's length)")
        }
        if let bad = row.attentionMask.first(where: { $0 != 0 && $0 != 1 }) {
            throw StageError(.invalidMask, stage: stage, argument: argument,
                             "row \(index)'s attention mask holds \(bad); masks hold 0/1")
        }
        if let bad = row.inputIds.first(where: { $0 < 0 || $0 >= Int64(V) }) {
            throw StageError(.labelOutOfRange, stage: stage, argument: argument,
                             "row \(index) holds id \(bad), outside the model's [0, V) = [0, \(V))")
        }
    }
    return length
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
/// every step. The demonstrations may have any one length from 2 to the model's
/// context.
///
/// - Throws: ``StageError`` (stage `sft`), before the first step, for `steps`
///   outside [0, 2^31], a `batchSize` outside [1, 2^31], a learning rate that is
///   not finite and >= 0, no demonstrations, demonstrations of different lengths
///   or of a length the model cannot take, a mask that is not 0/1, an id outside
///   `[0, V)`, or a batch beyond ``TensorLimits``; then what the stages throw on
///   the way (a batch with no token to score, a NaN result).
public func supervisedFineTuning(model: inout TinyLM, demonstrations: [TokenizedSequence], steps: Int,
                                 batchSize: Int, learningRate: Double,
                                 rng: inout SplitMix64) throws(StageError) -> [Double] {
    try checkLoop(stage: "sft", steps: steps, batchSize: batchSize, learningRate: learningRate)
    let L = try checkSequences(demonstrations, for: [model], batchSize: batchSize, minimumLength: 2,
                               stage: "sft", argument: "demonstrations")
    var optimizer = try Adam(for: model.parameters, learningRate: learningRate)
    var losses = [Double]()
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
