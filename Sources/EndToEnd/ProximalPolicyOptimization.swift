import TensorCore
import ActorLoss
import CriticLoss
import PPOStep
import PPOLossesSeqMean
import PPOLossesJointWhitened
import RewardsKLFirstPad
import RewardEndScoresAttn
import GatherLogProbs
import TinyLM

/// Whose PPO step the loop calls for its losses and gradients. The experience
/// (sampling, the four forward passes), the optimisers, `epochs`, the learning
/// rates and `klCtl` are the run's whatever the recipe, so the three are
/// comparable; the rest of each step's hyperparameters are the peer's own
/// defaults where they are part of its recipe:
///
/// - ``deepSpeedChat``: `ppoLosses` with the run's `clipRewardValue` (5),
///   `cliprange` (0.2), `cliprangeValue` (0.2), `gamma` (1), `lambda` (0.95),
///   which are DeepSpeed-Chat's. The score lands one past the answer, clipped alone
///   to ±5; both losses are token means over the batch.
/// - ``alignAnything``: `ppoLossesSeqMean` with align-anything's
///   `configs/train/text_to_text/ppo.yaml` defaults, except β = `klCtl`:
///   `clip_range_score` 50, `clip_range_ratio` 0.2, `clip_range_value` 5, `gamma` 1,
///   `gae_lambda` 0.95. The score is read with `rewardEndScoresAttn` (mask
///   ids != pad) and lands on the last attended action, the clamp acting on that
///   position's total; both losses are means per sequence, then over the batch.
/// - ``trl``: `ppoLossesJointWhitened` with TRL `PPOConfig`'s defaults, except
///   `kl_coef` = `klCtl`: `cliprange` 0.2, `cliprange_value` 0.2, `vf_coef` 0.1,
///   `gamma` 1, `lam` 0.95, `kl_estimator` k1, `whiten_rewards` false, no
///   `missing_eos_penalty`, no `stop_token_id`; `temperature` is the run's
///   sampling temperature. Advantages are whitened over the batch; the one joint
///   loss `pg_loss + vf_coef · vf_loss` sends its logits part to the actor and its
///   values part (scaled by `vf_coef`) to the critic.
public enum PPORecipe: String, Sendable, CaseIterable {
    case deepSpeedChat = "deepspeed-chat"
    case alignAnything = "align-anything"
    case trl

    /// align-anything's `clip_range_score`, `clip_range_ratio`, `clip_range_value`,
    /// `gamma` and `gae_lambda` (`configs/train/text_to_text/ppo.yaml`).
    public static let alignAnythingClipRangeScore = 50.0
    public static let alignAnythingClipRangeRatio = 0.2
    public static let alignAnythingClipRangeValue = 5.0
    public static let alignAnythingGamma = 1.0
    public static let alignAnythingGAELambda = 0.95
    /// TRL `PPOConfig`'s `cliprange`, `cliprange_value`, `vf_coef`, `gamma`, `lam`.
    public static let trlCliprange = 0.2
    public static let trlCliprangeValue = 0.2
    public static let trlVFCoef = 0.1
    public static let trlGamma = 1.0
    public static let trlLam = 0.95
}

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
    /// Whose PPO step computes the losses and gradients (see ``PPORecipe``). The
    /// settings above that a recipe replaces by its peer's defaults are read only
    /// by DeepSpeed-Chat's; `klCtl`, `epochs`, `temperature` and the learning
    /// rates are every recipe's.
    public var recipe = PPORecipe.deepSpeedChat

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
/// That is the default recipe; `settings.recipe` swaps the losses and gradients of
/// each epoch for align-anything's `ppoLossesSeqMean` (its score read by
/// `rewardEndScoresAttn`, its two [B, N] gradients through the same backward) or
/// TRL's `ppoLossesJointWhitened` (response coordinates from `start`, the policy's
/// logits at the positions scoring each response token, its [B, T, V] and [B, T]
/// gradients placed back at those positions), see ``PPORecipe``. The experience,
/// the records and the optimisers are the same for all three.
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
        // The recipe's own experience: align-anything's score and TRL's rollout tensors.
        let recipeExperience = try RecipeExperience(settings: settings, models: models, sequences: sequences,
                                                    attentionMask: attentionMask, logProbs: logProbs,
                                                    refLogProbs: refLogProbs, values: values, start: start)
        for epoch in 0..<settings.epochs {
            let actorPass = try models.actor.forward(sequences)
            let criticPass = try models.critic.forward(sequences)
            let newLogProbs = try nextTokenLogProbs(logits: actorPass.logits, inputIds: sequences)
            let newValues = criticPass.values.columns(..<(L - 1))
            let gradLogits: Tensor<Double>, gradValues: Tensor<Double>
            let actorLossValue: Double, criticLossValue: Double
            switch recipeExperience {
            case .deepSpeedChat:
                let losses = try ppoLosses(attentionMask: attentionMask, logProbs: logProbs, refLogProbs: refLogProbs,
                                           values: values, newLogProbs: newLogProbs, newValues: newValues,
                                           rewardScore: rewardScore, promptLength: P, klCtl: settings.klCtl,
                                           clipRewardValue: settings.clipRewardValue, cliprange: settings.cliprange,
                                           cliprangeValue: settings.cliprangeValue, gamma: settings.gamma,
                                           lambda: settings.lambda)
                (actorLossValue, criticLossValue) = (losses.actor.loss, losses.critic.loss)
                let answerPartMask = losses.actionMask.columns(start...)

                // Actor: ∂ actor_loss / ∂ new_log_probs[:, start:], then through the gather and the model.
                let gradAnswerLogProbs = try actorLossGradLogProbs(
                    logProbs: newLogProbs.columns(start...), oldLogProbs: logProbs.columns(start...),
                    advantages: losses.advantages, mask: answerPartMask, cliprange: settings.cliprange)
                gradLogits = try nextTokenLogProbsGradLogits(logits: actorPass.logits, inputIds: sequences,
                                                             gradOutput: widen(gradAnswerLogProbs, start: start))

                // Critic: ∂ critic_loss / ∂ new_values[:, start:], into the value head at [B, L].
                let gradAnswerValues = try criticLossGradValues(
                    values: newValues.columns(start...), oldValues: losses.oldValues.columns(start...),
                    returns: losses.returns, mask: answerPartMask, cliprangeValue: settings.cliprangeValue)
                gradValues = widenToSequence(widen(gradAnswerValues, start: start))
            case .alignAnything(let reward, let kept):
                // Only the rows with an answer token (see RecipeExperience.alignAnything).
                let losses = try ppoLossesSeqMean(
                    attentionMask: rows(attentionMask, kept), logProbs: rows(logProbs, kept),
                    refLogProbs: rows(refLogProbs, kept), rewardValues: rows(values, kept),
                    newLogProbs: rows(newLogProbs, kept), newValues: rows(newValues, kept),
                    reward: Tensor.make([kept.count], kept.map { reward.scalars[$0] }), promptLength: P,
                    klCoeff: settings.klCtl, clipRangeScore: PPORecipe.alignAnythingClipRangeScore,
                    clipRangeRatio: PPORecipe.alignAnythingClipRangeRatio,
                    clipRangeValue: PPORecipe.alignAnythingClipRangeValue, gamma: PPORecipe.alignAnythingGamma,
                    gaeLambda: PPORecipe.alignAnythingGAELambda)
                (actorLossValue, criticLossValue) = (losses.actor.loss, losses.critic.loss)
                // Both gradients are [B, N], zero before start: the same backward as DeepSpeed-Chat's.
                gradLogits = try nextTokenLogProbsGradLogits(logits: actorPass.logits, inputIds: sequences,
                                                             gradOutput: scatterRows(losses.gradNewLogProbs, kept, B))
                gradValues = widenToSequence(scatterRows(losses.gradNewValues, kept, B))
            case .trl(let rollout):
                // Response coordinates: column j is sequence position start + j (the logits and
                // value that score response token j).
                let T = rollout.responses.shape[1]
                let forward = try ppoLossesJointWhitened(
                    responses: rollout.responses, logprobs: rollout.logprobs, refLogprobs: rollout.refLogprobs,
                    values: values.columns(start...), scores: rewardScore,
                    newLogits: positions(actorPass.logits, from: start, count: T),
                    newValues: newValues.columns(start...), padTokenId: Int(ToyLanguage.padId),
                    eosTokenId: Int(ToyLanguage.endOfSequence), stopTokenId: nil, missingEOSPenalty: nil,
                    klCoef: settings.klCtl, klEstimator: .k1, whitenRewards: false, gamma: PPORecipe.trlGamma,
                    lam: PPORecipe.trlLam, cliprange: PPORecipe.trlCliprange,
                    cliprangeValue: PPORecipe.trlCliprangeValue, vfCoef: PPORecipe.trlVFCoef,
                    temperature: settings.temperature)
                (actorLossValue, criticLossValue) = (forward.pgLoss, forward.vfLoss)
                // One joint loss: its logits part to the actor, its values part to the critic.
                let gradients = try ppoLossesJointWhitenedGradients(forward)
                gradLogits = placePositions(gradients.gradNewLogits, from: start, length: L)
                gradValues = widen(gradients.gradNewValues, start: start, width: L)
            }
            if epoch == 0 {
                record.actorLoss = actorLossValue
                record.criticLoss = criticLossValue
            }
            let actorGradient = try models.actor.backward(actorPass, gradLogits: gradLogits, gradValues: nil)
            try actorOptimizer.step(&models.actor.parameters, gradient: actorGradient)
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
/// `cliprangeValue` and `clipRewardValue` finite and >= 0, a finite `klCtl`,
/// `gamma` and `lambda`, and for the TRL recipe a `batchSize` >= 2 (TRL whitens
/// the advantages over the batch's response tokens, and a batch of one answer that
/// is only `<eos>` would give it one token: TRL's whitening of it is NaN).
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
    if settings.recipe == .trl && settings.batchSize < 2 {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "batch_size",
                         "batch_size = \(settings.batchSize) with recipe trl: TRL whitens the advantages over the "
                         + "batch's response tokens and needs at least 2 answers per batch")
    }
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

/// What a recipe reads from the experience besides the shared tensors.
private enum RecipeExperience {
    case deepSpeedChat
    /// align-anything's score: `reward_end_scores_attn` on the reward model's
    /// values with the mask ids != pad. Shape [B]. And the rows its step sees:
    /// those with at least one answer token under that mask. A sampled `<pad>`
    /// ends the answer (`generate`), so an answer can be empty, and align-anything's
    /// per-sequence mean of an empty row is 0/0 (NaN in the peer, an error in
    /// `ppoLossesSeqMean`): such rows are left out of the step (their gradient is 0,
    /// and the means are over the other rows). The run throws if no row is left.
    case alignAnything(reward: Tensor<Double>, kept: [Int])
    /// TRL's rollout in response coordinates (T = L - P): the generated tokens and
    /// the log-probs of the logits divided by `temperature + 1e-7`. Shapes [B, T].
    case trl(TRLRollout)

    struct TRLRollout {
        var responses: Tensor<Int64>
        var logprobs: Tensor<Double>
        var refLogprobs: Tensor<Double>
    }

    init(settings: PPOSettings, models: PPOModels, sequences: Tensor<Int64>, attentionMask: Tensor<Int64>,
         logProbs: Tensor<Double>, refLogProbs: Tensor<Double>, values: Tensor<Double>,
         start: Int) throws(StageError) {
        switch settings.recipe {
        case .deepSpeedChat:
            self = .deepSpeedChat
        case .alignAnything:
            let scores = try models.rewardModel.forward(sequences).values
            let reward = try rewardEndScoresAttn(scores: scores, attentionMask: attentionMask).endScores
            let kept = (0..<sequences.shape[0]).filter { b in
                (start + 1..<sequences.shape[1]).contains { attentionMask[b, $0] == 1 }
            }
            guard !kept.isEmpty else {
                throw StageError(.emptyMask, stage: "ppo", argument: "sequences",
                                 "recipe align-anything: no answer of the batch has a token under ids != pad "
                                 + "(each was ended by a sampled <pad>), and its per-sequence means would all be 0/0")
            }
            self = .alignAnything(reward: reward, kept: kept)
        case .trl:
            let B = sequences.shape[0], L = sequences.shape[1], T = L - 1 - start
            let responses = sequences.columns((start + 1)...)
            let policyLogits = try positions(models.actor.forward(sequences).logits, from: start, count: T)
            let referenceLogits = try positions(models.reference.forward(sequences).logits, from: start, count: T)
            let logprobs = try gatherLogProbs(logits: temperedLogits(policyLogits, temperature: settings.temperature),
                                              labels: responses)
            let refLogprobs = try gatherLogProbs(logits: temperedLogits(referenceLogits,
                                                                        temperature: settings.temperature),
                                                 labels: responses)
            precondition(responses.shape == [B, T], "internal: responses \(responses.shape) are not [B, T]")
            self = .trl(TRLRollout(responses: responses, logprobs: logprobs, refLogprobs: refLogprobs))
        }
    }
}

/// The rows `kept` of a [B, W] tensor, in order: [kept.count, W].
func rows<Scalar>(_ x: Tensor<Scalar>, _ kept: [Int]) -> Tensor<Scalar> {
    Tensor.make([kept.count, x.shape[1]], kept.flatMap { Array(x.row($0)) })
}

/// The inverse of `rows(_:_:)` for a gradient: row i of `x` back at row kept[i]
/// of a [batchSize, W] tensor of zeros.
func scatterRows(_ x: Tensor<Double>, _ kept: [Int], _ batchSize: Int) -> Tensor<Double> {
    let W = x.shape[1]
    var full = Tensor<Double>(shape: [batchSize, W], repeating: 0)
    for (i, b) in kept.enumerated() {
        full.scalars.replaceSubrange((b * W)..<((b + 1) * W), with: x.row(i))
    }
    return full
}

/// logits[:, from ..< from + count, :]: [B, L, V] -> [B, count, V].
func positions(_ logits: Tensor<Double>, from start: Int, count: Int) -> Tensor<Double> {
    let B = logits.shape[0], L = logits.shape[1], V = logits.shape[2]
    var cut = [Double]()
    cut.reserveCapacity(B * count * V)
    for b in 0..<B {
        cut.append(contentsOf: logits.scalars[((b * L + start) * V)..<((b * L + start + count) * V)])
    }
    return Tensor.make([B, count, V], cut)
}

/// The inverse of `positions(_:from:count:)` for a gradient: [B, T, V] placed at
/// positions from ..< from + T of a [B, length, V] tensor of zeros.
func placePositions(_ x: Tensor<Double>, from start: Int, length: Int) -> Tensor<Double> {
    let B = x.shape[0], T = x.shape[1], V = x.shape[2]
    var full = Tensor<Double>(shape: [B, length, V], repeating: 0)
    for b in 0..<B {
        full.scalars.replaceSubrange(((b * length + start) * V)..<((b * length + start + T) * V),
                                     with: x.scalars[(b * T * V)..<((b + 1) * T * V)])
    }
    return full
}

/// [B, T] placed at columns from ..< from + T of a [B, width] tensor of zeros.
func widen(_ x: Tensor<Double>, start: Int, width: Int) -> Tensor<Double> {
    let B = x.shape[0], T = x.shape[1]
    return Tensor.make([B, width], (0..<B).flatMap {
        [Double](repeating: 0, count: start) + x.row($0) + [Double](repeating: 0, count: width - start - T)
    })
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
