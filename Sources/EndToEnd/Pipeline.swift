import TensorCore
import TinyLM

/// Every knob of the end-to-end run; one seed fixes every number.
public struct PipelineSettings: Sendable {
    public var seed: UInt64 = 7
    public var model = TinyLMConfig(vocabularySize: ToyLanguage.vocabularySize, contextLength: ToyLanguage.sequenceLength,
                                    width: 24, hidden: 48)
    public var sftSteps = 300
    public var sftBatchSize = 32
    public var sftLearningRate = 3e-3
    public var rewardSteps = 150
    public var rewardBatchSize = 16
    public var rewardLearningRate = 5e-4
    public var ppo = PPOSettings()
    public var dpoSteps = 150
    public var dpoBatchSize = 16
    public var dpoBeta = 0.1
    public var dpoLearningRate = 1e-3
    /// Answers sampled per model to measure its mean reward.
    public var evaluationSamples = 256

    public init() {}

    /// The seed the toy data is drawn from (its own stream, so changing a phase's
    /// settings never changes the data).
    public var dataSeed: UInt64 { seed &+ 1 }
}

/// Mean and standard deviation of the reward model's scores of a model's answers.
public struct RewardStatistics: Sendable {
    public var mean: Double
    public var standardDeviation: Double
    public var count: Int
}

/// Samples `count` answers from `policy` to random prompts and scores them with
/// the reward model (`rewardEndScores`).
///
/// - Throws: ``StageError`` (stage `evaluation`), before sampling, for a `count`
///   outside [1, 2^31], a temperature that is not finite and > 0, or a model
///   that cannot read the toy language in one batch of `count` (see
///   ``checkToyModel(_:_:batchSize:_:)``); then what sampling and scoring throw.
public func rewardStatistics(of policy: TinyLM, rewardModel: TinyLM, count: Int, temperature: Double = 1,
                             rng: inout SplitMix64) throws(StageError) -> RewardStatistics {
    let check = InputCheck(stage: "evaluation")
    try checkBatchSize(count, "count", check)
    guard temperature.isFinite, temperature > 0 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "temperature",
                         "temperature = \(temperature) must be finite and > 0 (it divides the logits)")
    }
    try checkToyModel(policy, "policy", batchSize: count, check)
    try checkToyModel(rewardModel, "reward_model", batchSize: count, check)
    let P = ToyLanguage.promptLength
    let prompts = Tensor.make([count, P], (0..<count).flatMap { _ in ToyLanguage.prompt(rng: &rng) })
    let sequences = try policy.generate(prompts: prompts, maxNewTokens: ToyLanguage.maxAnswerTokens,
                                        temperature: temperature, endOfSequence: ToyLanguage.endOfSequence,
                                        padId: ToyLanguage.padId, rng: &rng)
    let scores = try rewardScores(rewardModel, sequences: sequences).scalars
    let mean = scores.reduce(0, +) / Double(count)
    let variance = scores.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(count)
    return RewardStatistics(mean: mean, standardDeviation: variance.squareRoot(), count: count)
}

/// The models and the numbers of phases 1 and 2, which PPO and DPO start from.
public struct PreparedModels: Sendable {
    public var data: ToyData
    public var sft: TinyLM
    public var rewardModel: TinyLM
    public var sftLosses: [Double]
    public var rewardLosses: [Double]
    /// Held-out pair accuracy of the reward model.
    public var rewardAccuracy: Double
    /// The reward of the SFT model's own answers: the baseline PPO must beat.
    public var sftReward: RewardStatistics
}

/// Phases 1 and 2: the toy data, SFT from a random model, the reward model from
/// the SFT model, and the SFT model's reward baseline. `phase` is told "sft" and
/// then "reward model" as each begins, for a progress line.
///
/// - Throws: ``StageError``, before anything is trained, for a model config that
///   cannot read the toy language or be built (stage `end_to_end`, naming
///   `model.<size>`, or `tiny_lm` naming the weight past the size limit), SFT or
///   reward-model settings their loops refuse (stages `sft`, `reward_model`),
///   an `evaluationSamples` outside [1, 2^31], or batches whose activations would
///   pass ``TensorLimits``; then what the phases throw on the way.
public func prepareModels(_ settings: PipelineSettings,
                          phase: (String) -> Void = { _ in }) throws(StageError) -> PreparedModels {
    let check = InputCheck(stage: "end_to_end")
    try check.parameter("model.vocabularySize", settings.model.vocabularySize,
                        in: ToyLanguage.vocabularySize..<(ToyLanguage.vocabularySize + 1), "the toy language's V")
    try check.parameter("model.contextLength", settings.model.contextLength, in: ToyLanguage.sequenceLength..<Int.max,
                        "room for prompt + answer")
    try check.parameter("model.width", settings.model.width, in: 1..<Int.max, "C >= 1")
    try check.parameter("model.hidden", settings.model.hidden, in: 1..<Int.max, "H >= 1")
    _ = try settings.model.checkedWeightCount(stage: "tiny_lm")
    try checkLoop(stage: "sft", steps: settings.sftSteps, batchSize: settings.sftBatchSize,
                  learningRate: settings.sftLearningRate)
    try checkLoop(stage: "reward_model", steps: settings.rewardSteps, batchSize: settings.rewardBatchSize,
                  learningRate: settings.rewardLearningRate)
    try checkBatchSize(settings.evaluationSamples, "evaluation_samples", check)
    let L = ToyLanguage.sequenceLength
    try settings.model.checkBatch(batchSize: settings.sftBatchSize, length: L, InputCheck(stage: "sft"),
                                  argument: "batch_size")
    try settings.model.checkBatch(batchSize: 2 * settings.rewardBatchSize, length: L, InputCheck(stage: "reward_model"),
                                  argument: "batch_size")
    try settings.model.checkBatch(batchSize: settings.evaluationSamples, length: L, check, argument: "evaluation_samples")
    var rng = SplitMix64(seed: settings.seed)
    let data = ToyData(seed: settings.dataSeed)
    phase("sft")
    var sft = try TinyLM(config: settings.model, rng: &rng)
    let sftLosses = try supervisedFineTuning(model: &sft, demonstrations: data.demonstrations,
                                             steps: settings.sftSteps, batchSize: settings.sftBatchSize,
                                             learningRate: settings.sftLearningRate, rng: &rng)
    phase("reward model")
    var rewardModel = sft  // DeepSpeed-Chat starts the reward model from a trained LM
    let rewardLosses = try trainRewardModel(model: &rewardModel, pairs: data.trainingPairs, steps: settings.rewardSteps,
                                            batchSize: settings.rewardBatchSize,
                                            learningRate: settings.rewardLearningRate, rng: &rng)
    let accuracy = try rewardModelAccuracy(rewardModel, pairs: data.heldOutPairs)
    let baseline = try rewardStatistics(of: sft, rewardModel: rewardModel, count: settings.evaluationSamples, rng: &rng)
    return PreparedModels(data: data, sft: sft, rewardModel: rewardModel, sftLosses: sftLosses,
                          rewardLosses: rewardLosses, rewardAccuracy: accuracy, sftReward: baseline)
}

/// Phase 3 from prepared models: actor and reference from SFT, critic from the
/// reward model. Returns the trained actor and every step's record.
///
/// - Throws: ``StageError`` as ``proximalPolicyOptimization(models:settings:rng:progress:)``.
public func runPPO(_ prepared: PreparedModels, settings: PPOSettings, seed: UInt64,
                   progress: (PPOStepRecord) -> Void = { _ in }) throws(StageError) -> (actor: TinyLM, records: [PPOStepRecord]) {
    var rng = SplitMix64(seed: seed)
    var models = PPOModels(actor: prepared.sft, reference: prepared.sft, rewardModel: prepared.rewardModel,
                           critic: prepared.rewardModel)
    let records = try proximalPolicyOptimization(models: &models, settings: settings, rng: &rng, progress: progress)
    return (models.actor, records)
}

/// Phase 3 with GRPO instead of PPO, from the same prepared models: policy and
/// reference from SFT, the same frozen reward model, no critic. Returns the
/// trained policy and every step's record.
///
/// - Throws: ``StageError`` as ``groupRelativePolicyOptimization(models:settings:rng:progress:)``.
public func runGRPO(_ prepared: PreparedModels, settings: GRPOSettings, seed: UInt64,
                    progress: (GRPOStepRecord) -> Void = { _ in }) throws(StageError) -> (policy: TinyLM, records: [GRPOStepRecord]) {
    var rng = SplitMix64(seed: seed)
    var models = GRPOModels(policy: prepared.sft, reference: prepared.sft, rewardModel: prepared.rewardModel)
    let records = try groupRelativePolicyOptimization(models: &models, settings: settings, rng: &rng,
                                                      progress: progress)
    return (models.policy, records)
}

/// Phase 4 from prepared models: the policy and the reference from SFT.
///
/// - Throws: ``StageError`` as ``directPreferenceOptimization(policy:reference:pairs:steps:batchSize:beta:learningRate:rng:)``.
public func runDPO(_ prepared: PreparedModels, _ settings: PipelineSettings,
                   seed: UInt64) throws(StageError) -> (policy: TinyLM, losses: [Double]) {
    var rng = SplitMix64(seed: seed)
    var policy = prepared.sft
    let losses = try directPreferenceOptimization(policy: &policy, reference: prepared.sft,
                                                  pairs: prepared.data.trainingPairs, steps: settings.dpoSteps,
                                                  batchSize: settings.dpoBatchSize, beta: settings.dpoBeta,
                                                  learningRate: settings.dpoLearningRate, rng: &rng)
    return (policy, losses)
}
