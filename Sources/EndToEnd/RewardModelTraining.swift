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
public func trainRewardModel(model: inout TinyLM, pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)],
                             steps: Int, batchSize: Int, learningRate: Double,
                             rng: inout SplitMix64) throws(StageError) -> [Double] {
    try checkLoop(stage: "reward_model", steps: steps, learningRate: learningRate)
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
public func rewardModelAccuracy(_ model: TinyLM,
                                pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)]) throws(StageError) -> Double {
    let ids = try collateRewardBatch(pairs).inputIds
    let result = try pairwiseRewardLoss(inputIds: ids, rewards: model.forward(ids).values, padId: ToyLanguage.padId,
                                        numPaddingAtBeginning: 0)
    let wins = zip(result.chosenMeanScores.scalars, result.rejectedMeanScores.scalars).filter { $0 > $1 }.count
    return Double(wins) / Double(pairs.count)
}

/// The reward model's score of each sequence, read at its last answer token
/// (`rewardEndScores`, DeepSpeed-Chat `RewardModel.forward_value`). Shape [B].
public func rewardScores(_ rewardModel: TinyLM, sequences: Tensor<Int64>) throws(StageError) -> Tensor<Double> {
    try rewardEndScores(inputIds: sequences, values: rewardModel.forward(sequences).values,
                        padId: ToyLanguage.padId, promptLength: ToyLanguage.promptLength)
}
