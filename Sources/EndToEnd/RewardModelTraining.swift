import TensorCore
import SFTLoss
import PairwiseRewardLoss
import TinyLM

/// Phase 2, the reward model: the SFT body with its value head, trained with the
/// pairwise loss so that the chosen answer scores above the rejected one.
///
/// ```
/// per step: B pairs, stacked [chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}]  [2B, L]
///   rewards = model(ids).values                                    [2B, L] (every token)
///   loss    = reward_pairwise_loss(ids, rewards, pad_id, num_padding_at_beginning = 0)
///   θ ← Adam(θ, ∂loss/∂θ)     (pairwiseRewardLossGradRewards into the value head)
/// ```
///
/// As DeepSpeed-Chat's step 2 (`RewardModel.forward` on a `DataCollatorReward`
/// batch). Returns the loss of every step.
///
/// - Throws: ``StageError`` (stage `reward_model`), before the first step, for
///   `steps` outside [0, 2^31], a `batchSize` outside [1, 2^31], a learning rate
///   that is not finite and >= 0, no pairs, rows of different lengths or of a
///   length the model cannot take (2 to its context), a mask that is not 0/1, an
///   id outside `[0, V)`, or a batch [2B, L] beyond ``TensorLimits``; then what
///   the stages throw on the way (a pair that differs at its first token, a NaN
///   result).
public func trainRewardModel(model: inout TinyLM, pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)],
                             steps: Int, batchSize: Int, learningRate: Double,
                             rng: inout SplitMix64) throws(StageError) -> [Double] {
    try checkLoop(stage: "reward_model", steps: steps, batchSize: batchSize, learningRate: learningRate)
    _ = try checkSequences(pairs.lazy.flatMap { [$0.chosen, $0.rejected] }, for: [model], batchSize: 2 * batchSize,
                           minimumLength: 2, stage: "reward_model", argument: "pairs")
    var optimizer = try Adam(for: model.parameters, learningRate: learningRate)
    var losses = [Double]()
    for _ in 0..<steps {
        let batch = try drawBatch(pairs, count: batchSize, rng: &rng, stage: "reward_model", argument: "pairs")
        let ids = try collateRewardBatch(batch).inputIds
        let activations = try model.forward(ids)
        let result = try pairwiseRewardLoss(inputIds: ids, rewards: activations.values, padId: ToyLanguage.padId,
                                            numPaddingAtBeginning: 0)
        losses.append(result.loss)
        let gradRewards = try pairwiseRewardLossGradRewards(inputIds: ids, rewards: activations.values,
                                                            padId: ToyLanguage.padId, numPaddingAtBeginning: 0)
        let gradient = try model.backward(activations, gradLogits: nil, gradValues: gradRewards)
        try optimizer.step(&model.parameters, gradient: gradient)
    }
    return losses
}

/// The fraction of pairs whose chosen answer the reward model scores higher:
/// `mean(chosen_mean_scores > rejected_mean_scores)`, DeepSpeed-Chat step 2's
/// evaluation accuracy.
///
/// - Throws: ``StageError`` as ``trainRewardModel(model:pairs:steps:batchSize:learningRate:rng:)``
///   does for its pairs (no pairs: the accuracy would be 0/0), all pairs being
///   one batch.
public func rewardModelAccuracy(_ model: TinyLM,
                                pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)]) throws(StageError) -> Double {
    _ = try checkSequences(pairs.lazy.flatMap { [$0.chosen, $0.rejected] }, for: [model], batchSize: 2 * pairs.count,
                           minimumLength: 2, stage: "reward_model", argument: "pairs")
    let ids = try collateRewardBatch(pairs).inputIds
    let result = try pairwiseRewardLoss(inputIds: ids, rewards: model.forward(ids).values, padId: ToyLanguage.padId,
                                        numPaddingAtBeginning: 0)
    let wins = zip(result.chosenMeanScores.scalars, result.rejectedMeanScores.scalars).filter { $0 > $1 }.count
    return Double(wins) / Double(pairs.count)
}

/// The reward model's score of each sequence, read at its last answer token
/// (`rewardEndScores`, DeepSpeed-Chat `RewardModel.forward_value`). Shape [B].
///
/// - Throws: ``StageError`` for sequences that are not [B, L] with the toy
///   language's prompt and at least one answer token (L > 3), before the
///   forward pass; then what ``TinyLM/forward(_:)`` and `rewardEndScores` throw.
public func rewardScores(_ rewardModel: TinyLM, sequences: Tensor<Int64>) throws(StageError) -> Tensor<Double> {
    let check = InputCheck(stage: "reward_model")
    try check.rank(sequences, "sequences", is: 2, legend: "[B, L]")
    try check.parameter("sequences", sequences.shape[1], in: (ToyLanguage.promptLength + 1)..<Int.max,
                        "L = prompt (\(ToyLanguage.promptLength) tokens) + at least one answer token")
    return try rewardEndScores(inputIds: sequences, values: rewardModel.forward(sequences).values,
                               padId: ToyLanguage.padId, promptLength: ToyLanguage.promptLength)
}
