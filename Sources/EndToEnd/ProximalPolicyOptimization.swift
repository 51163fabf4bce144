import TensorCore
import ActorLoss
import CriticLoss
import PPOStep
import TinyLM

/// The knobs of phase 3, with DeepSpeed-Chat's defaults where it has one, except
/// `klCtl`.
public struct PPOSettings: Sendable {
    public var steps = 100
    /// Prompts per step (each gets one sampled answer).
    public var batchSize = 32
    public var temperature = 1.0
    /// β of the per-token KL penalty. DeepSpeed-Chat's `kl_ctl` is 0.1; this toy's
    /// reward model spreads answers over a few points, and the KL-regularised
    /// optimum `π ∝ π_ref · exp(r / β)` only cares about r / β, so the same leash
    /// needs a larger β here (0.1 is a loose one: try `--kl-ctl 0.1`).
    public var klCtl = 0.8
    public var clipRewardValue = 5.0
    public var cliprange = 0.2
    public var cliprangeValue = 0.2
    public var gamma = 1.0
    public var lambda = 0.95
    /// Passes over each batch of experience (DeepSpeed-Chat `--ppo_epochs`).
    public var epochs = 4
    public var actorLearningRate = 1e-3
    public var criticLearningRate = 3e-3

    public init() {}
}

/// What one PPO step saw and did.
public struct PPOStepRecord: Sendable {
    public var step: Int
    /// Mean reward-model score of the step's sampled answers.
    public var meanReward: Double
    /// Mean over the batch of Σ_answer (log π - log π_ref): the sequence KL to the reference.
    public var meanKL: Double
    /// The actor and critic losses of the first epoch (before any update on this batch).
    public var actorLoss: Double
    public var criticLoss: Double
    /// Mean answer tokens per sample, `<eos>` included.
    public var meanAnswerLength: Double
}

/// The four models of DeepSpeed-Chat's step 3.
public struct PPOModels: Sendable {
    /// The policy being trained, from the SFT model.
    public var actor: TinyLM
    /// A frozen copy of the SFT model: the KL penalty's anchor.
    public let reference: TinyLM
    /// Frozen: scores each finished answer.
    public let rewardModel: TinyLM
    /// The value function, from the reward model.
    public var critic: TinyLM

    public init(actor: TinyLM, reference: TinyLM, rewardModel: TinyLM, critic: TinyLM) {
        self.actor = actor
        self.reference = reference
        self.rewardModel = rewardModel
        self.critic = critic
    }
}

/// Phase 3, PPO: sample answers, score them, and move the actor toward higher
/// reward while the KL penalty holds it near the reference.
///
/// ```
/// per step:
///   seq          = actor.generate(prompts)                       [B, L]  (experience)
///   log_probs    = gather_log_probs(actor(seq)[:, :-1], seq[:, 1:])      [B, N]
///   ref_log_probs = the same with the reference                            [B, N]
///   reward_score = reward_end_scores(seq, reward_model(seq).values)       [B]
///   values       = critic(seq).values[:, :-1]                              [B, N]
///   repeat epochs times:
///     new_log_probs, new_values from the current actor and critic
///     ppo_losses(...)  = compute_rewards -> zero past the end -> gae -> actor_loss, critic_loss
///     actor  ← Adam(∂ actor_loss / ∂θ)   (actorLossGradLogProbs -> gather backward -> model backward)
///     critic ← Adam(∂ critic_loss / ∂φ)  (criticLossGradValues -> value head backward)
/// ```
///
/// The data flow of DeepSpeed-Chat `DeepSpeedPPOTrainer.generate_experience` and
/// `train_rlhf`; every formula is the library's (`ppoLosses` chains
/// `computeRewards`, `gae`, `actorLoss`, `criticLoss`).
///
/// - Throws: ``StageError`` (stage `ppo`), before the first step, for a setting
///   the stages would refuse (see ``checkPPOSettings(_:)``), or a model that
///   cannot read the toy language (see ``checkToyModel(_:_:batchSize:_:)``);
///   then what the stages throw on the way (a NaN result, a softmax with no mass).
public func proximalPolicyOptimization(models: inout PPOModels, settings: PPOSettings,
                                       rng: inout SplitMix64,
                                       progress: (PPOStepRecord) -> Void = { _ in }) throws(StageError) -> [PPOStepRecord] {
    let check = InputCheck(stage: "ppo")
    try checkPPOSettings(settings)
    for (model, name) in [(models.actor, "actor"), (models.reference, "reference"), (models.rewardModel, "reward_model"),
                          (models.critic, "critic")] {
        try checkToyModel(model, name, batchSize: settings.batchSize, check)
    }
    var actorOptimizer = try Adam(for: models.actor.parameters, learningRate: settings.actorLearningRate)
    var criticOptimizer = try Adam(for: models.critic.parameters, learningRate: settings.criticLearningRate)
    let P = ToyLanguage.promptLength, start = P - 1
    let B = settings.batchSize
    var records = [PPOStepRecord]()

    for step in stride(from: 1, through: settings.steps, by: 1) {
        // Experience.
        let prompts = Tensor.make([B, P], (0..<B).flatMap { _ in ToyLanguage.prompt(rng: &rng) })
        let sequences = try models.actor.generate(prompts: prompts, maxNewTokens: ToyLanguage.maxAnswerTokens,
                                                  temperature: settings.temperature,
                                                  endOfSequence: ToyLanguage.endOfSequence,
                                                  padId: ToyLanguage.padId, rng: &rng)
        let attentionMask = Tensor.make(sequences.shape, sequences.scalars.map { $0 != ToyLanguage.padId ? Int64(1) : 0 })
        let logProbs = try nextTokenLogProbs(logits: models.actor.forward(sequences).logits, inputIds: sequences)
        let refLogProbs = try nextTokenLogProbs(logits: models.reference.forward(sequences).logits, inputIds: sequences)
        let rewardScore = try rewardScores(models.rewardModel, sequences: sequences)
        let L = sequences.shape[1]
        // values[:, :-1]: [B, L] -> [B, N], as `generate_experience` cuts the critic's output.
        let values = try models.critic.forward(sequences).values.columns(..<(L - 1))

        let answerMask = try answerTokenMask(inputIds: sequences, promptLength: P, padId: ToyLanguage.padId)
        var klSum = 0.0
        for i in 0..<answerMask.count where answerMask.scalars[i] == 1 {
            klSum += logProbs.scalars[i] - refLogProbs.scalars[i]
        }

        var record = PPOStepRecord(step: step, meanReward: rewardScore.scalars.reduce(0, +) / Double(B),
                                   meanKL: klSum / Double(B), actorLoss: 0, criticLoss: 0,
                                   meanAnswerLength: Double(answerMask.scalars.reduce(0, +)) / Double(B))
        for epoch in 0..<settings.epochs {
            let actorPass = try models.actor.forward(sequences)
            let criticPass = try models.critic.forward(sequences)
            let newLogProbs = try nextTokenLogProbs(logits: actorPass.logits, inputIds: sequences)
            let newValues = criticPass.values.columns(..<(L - 1))
            let losses = try ppoLosses(attentionMask: attentionMask, logProbs: logProbs, refLogProbs: refLogProbs,
                                       values: values, newLogProbs: newLogProbs, newValues: newValues,
                                       rewardScore: rewardScore, promptLength: P, klCtl: settings.klCtl,
                                       clipRewardValue: settings.clipRewardValue, cliprange: settings.cliprange,
                                       cliprangeValue: settings.cliprangeValue, gamma: settings.gamma,
                                       lambda: settings.lambda)
            if epoch == 0 {
                record.actorLoss = losses.actor.loss
                record.criticLoss = losses.critic.loss
            }
            let answerPartMask = losses.actionMask.columns(start...)

            // Actor: ∂ actor_loss / ∂ new_log_probs[:, start:], then through the gather and the model.
            let gradAnswerLogProbs = try actorLossGradLogProbs(
                logProbs: newLogProbs.columns(start...), oldLogProbs: logProbs.columns(start...),
                advantages: losses.advantages, mask: answerPartMask, cliprange: settings.cliprange)
            let gradLogits = try nextTokenLogProbsGradLogits(logits: actorPass.logits, inputIds: sequences,
                                                             gradOutput: widen(gradAnswerLogProbs, start: start))
            let actorGradient = try models.actor.backward(actorPass, gradLogits: gradLogits, gradValues: nil)
            try actorOptimizer.step(&models.actor.parameters, gradient: actorGradient)

            // Critic: ∂ critic_loss / ∂ new_values[:, start:], into the value head at [B, L].
            let gradAnswerValues = try criticLossGradValues(
                values: newValues.columns(start...), oldValues: losses.oldValues.columns(start...),
                returns: losses.returns, mask: answerPartMask, cliprangeValue: settings.cliprangeValue)
            let gradValues = widenToSequence(widen(gradAnswerValues, start: start))
            let criticGradient = try models.critic.backward(criticPass, gradLogits: nil, gradValues: gradValues)
            try criticOptimizer.step(&models.critic.parameters, gradient: criticGradient)
        }
        records.append(record)
        progress(record)
    }
    return records
}

/// Throws unless every PPO setting is one the stages take, so a run fails before
/// it samples anything: `steps` and `epochs` in [0, 2^31], `batchSize` in
/// [1, 2^31], a finite `temperature > 0`, learning rates, `cliprange`,
/// `cliprangeValue` and `clipRewardValue` finite and >= 0, and a finite `klCtl`,
/// `gamma` and `lambda`.
///
/// - Throws: ``StageError`` (stage `ppo`) naming the setting.
public func checkPPOSettings(_ settings: PPOSettings) throws(StageError) {
    let check = InputCheck(stage: "ppo")
    try checkStepCount(settings.steps, "steps", check)
    try checkStepCount(settings.epochs, "epochs", check)
    try checkBatchSize(settings.batchSize, "batch_size", check)
    guard settings.temperature.isFinite, settings.temperature > 0 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "temperature",
                         "temperature = \(settings.temperature) must be finite and > 0 (it divides the logits)")
    }
    try check.nonNegative("actor_learning_rate", settings.actorLearningRate)
    try check.nonNegative("critic_learning_rate", settings.criticLearningRate)
    try check.nonNegative("clip_reward_value", settings.clipRewardValue)
    try check.nonNegative("cliprange", settings.cliprange)
    try check.nonNegative("cliprange_value", settings.cliprangeValue)
    try check.finite("kl_ctl", settings.klCtl)
    try check.finite("gamma", settings.gamma)
    try check.finite("lambda", settings.lambda)
}

/// Throws unless `model` can read and write the toy language in batches of
/// `batchSize`: its V is the language's, its context holds prompt + answer
/// (`ToyLanguage.sequenceLength`), the activations fit ``TensorLimits``, and its
/// weights are intact.
///
/// - Throws: ``StageError`` naming `<name>.vocabularySize`, `<name>.contextLength`,
///   `name`, or the weight at fault.
public func checkToyModel(_ model: TinyLM, _ name: String, batchSize: Int, _ check: InputCheck) throws(StageError) {
    try check.parameter("\(name).vocabularySize", model.config.vocabularySize,
                        in: ToyLanguage.vocabularySize..<(ToyLanguage.vocabularySize + 1), "the toy language's V")
    try check.parameter("\(name).contextLength", model.config.contextLength, in: ToyLanguage.sequenceLength..<Int.max,
                        "room for prompt + answer")
    try model.config.checkBatch(batchSize: batchSize, length: ToyLanguage.sequenceLength, check, argument: name)
    try model.parameters.checkWeights(check, name)
}

/// The inverse of `x.columns(start...)` for a gradient: [B, N - start] -> [B, N], zeros before start.
func widen(_ x: Tensor<Double>, start: Int) -> Tensor<Double> {
    let B = x.shape[0], M = x.shape[1]
    return Tensor.make([B, M + start], (0..<B).flatMap { [Double](repeating: 0, count: start) + x.row($0) })
}

/// A [B, N] gradient of `values[:, :-1]` back at [B, L]: the last position gets 0.
func widenToSequence(_ x: Tensor<Double>) -> Tensor<Double> {
    let B = x.shape[0]
    return Tensor.make([B, x.shape[1] + 1], (0..<B).flatMap { Array(x.row($0)) + [0] })
}
