import TensorCore
import CriticFreeAdvantages
import PolicyLosses
import TinyLM

/// The knobs of GRPO on the toy language, with TRL `GRPOConfig`'s defaults where
/// the toy can take them, and the PPO run's (``PPOSettings``) where the two must be
/// comparable.
public struct GRPOSettings: Sendable {
    public var steps = 100
    /// Distinct prompts per step.
    public var promptsPerStep = 4
    /// G, answers sampled per prompt: TRL's `num_generations` (8). 4 prompts x 8
    /// answers = 32 answers per step, PPO's `batchSize`: both runs sample and score
    /// the same number of answers per step.
    public var groupSize = 8
    public var temperature = 1.0
    /// Passes over each batch of answers: TRL's `num_iterations` (1), the GRPO
    /// paper's μ. With 1 the run is on-policy: `old_log_probs` equal the new ones,
    /// every ratio is 1 and the clip never acts.
    public var epochs = 1
    /// Adam's learning rate: the PPO actor's (``PPOSettings/actorLearningRate``).
    public var learningRate = 1e-3
    /// β of the k3 KL term in the loss. TRL's default is 0 (no reference model at
    /// all); the PPO run holds its actor with `klCtl` 0.8 on the raw reward, and
    /// GRPO's advantage is the reward divided by its group's std, so the same leash
    /// in reward units is about klCtl / std: 0.8 / 1.96 (the SFT answers' reward SD
    /// on the default seed) ≈ 0.4.
    public var beta = 0.4
    /// ε of the clip (TRL's `epsilon`, 0.2, as PPO's `cliprange`).
    public var epsilon = 0.2
    /// TRL's `loss_type`: `dapo` (TRL's default) sums the per-token losses of the
    /// batch and divides by its token count, the same token mean as DeepSpeed-Chat's
    /// `actor_loss`; `grpo` (the paper's) averages each answer over its own tokens
    /// first, which weighs the tokens of a short answer more (the length bias Dr.
    /// GRPO and DAPO removed).
    public var lossType = GRPOLossType.dapo
    /// TRL's `scale_rewards` (`group`): the group mean is subtracted, then the
    /// group std divides.
    public var scaleRewards = RewardScaling.group

    public init() {}

    /// Answers per step: `promptsPerStep · groupSize`.
    public var answersPerStep: Int { promptsPerStep * groupSize }

    /// The `grpo_loss` params of this run: the fields above, TRL's defaults for the
    /// rest (token-level ratios, no `delta`, `epsilon_high` = `epsilon`), and
    /// `max_completion_length` = the toy's answer budget (read by `dr_grpo` only).
    public var lossConfig: GRPOLossConfig {
        GRPOLossConfig(lossType: lossType, epsilon: epsilon, beta: beta,
                       maxCompletionLength: ToyLanguage.maxAnswerTokens)
    }
}

/// What one GRPO step saw and did.
public struct GRPOStepRecord: Sendable {
    public var step: Int
    /// Mean reward-model score of the step's sampled answers.
    public var meanReward: Double
    /// Mean over the batch of Σ_answer (log π - log π_ref) at sampling: the sequence
    /// KL to the reference, measured as ``PPOStepRecord/meanKL`` is.
    public var meanKL: Double
    /// `grpo_loss` of the first epoch (before any update on this batch).
    public var loss: Double
    /// Mean answer tokens per sample, `<eos>` included.
    public var meanAnswerLength: Double
    /// The mean over the step's groups of the std each group's advantages were
    /// divided by (`group_advantages`' `scales`; 0 with `scale_rewards` none).
    public var meanGroupStd: Double
    /// Groups whose G rewards were all equal (every answer the same): their
    /// advantages are 0 and they teach nothing.
    public var flatGroups: Int
}

/// The three models of GRPO: no critic.
public struct GRPOModels: Sendable {
    /// The policy being trained, from the SFT model.
    public var policy: TinyLM
    /// A frozen copy of the SFT model: the KL term's anchor.
    public let reference: TinyLM
    /// Frozen: scores each finished answer.
    public let rewardModel: TinyLM

    public init(policy: TinyLM, reference: TinyLM, rewardModel: TinyLM) {
        self.policy = policy
        self.reference = reference
        self.rewardModel = rewardModel
    }
}

/// GRPO: sample a group of answers per prompt, score them, and move the policy
/// toward the answers that beat their group's mean. No critic, no GAE: the group
/// is the baseline.
///
/// ```
/// per step:
///   prompts      = promptsPerStep prompts, each repeated G times            [B, P], B = prompts · G
///   seq          = policy.generate(prompts)                                  [B, L]
///   log_probs    = gather_log_probs(policy(seq)[:, :-1], seq[:, 1:])         [B, N]  (the sampling log-probs)
///   ref_log_probs = the same with the frozen reference                       [B, N]
///   mask         = answer_token_mask(seq)                                    [B, N]  (answer tokens and <eos>)
///   rewards      = reward_end_scores(seq, reward_model(seq).values)          [B]
///   advantages   = group_advantages(rewards, G, scale_rewards)               [B]     (r − group mean) / (group std + 1e-4)
///   repeat epochs times:
///     new_log_probs from the current policy                                  [B, N]
///     loss = grpo_loss(new_log_probs, old = log_probs, advantages, mask, ref_log_probs, beta, ε, loss_type)
///     policy ← Adam(∂ loss / ∂θ)   (grpoLossGradLogProbs -> nextTokenLogProbsGradLogits -> policy.backward)
/// ```
///
/// Masked: the prompt positions and the pads after each answer (`mask` is 1 on
/// answer tokens and `<eos>` only). The loss is over the full [B, N] log-probs
/// under that mask; with `loss_type` dapo it is the token mean over all answer
/// tokens of the batch (Σ q·mask / Σ mask), as DeepSpeed-Chat's `actor_loss`.
/// Rows iG ..< iG + G answer the same prompt: the layout `grpoAdvantages` reads.
///
/// The data flow of TRL `GRPOTrainer` (`_generate_and_score_completions`, then
/// `_compute_loss`) on the toy language; every formula is the library's
/// (`grpoAdvantages`, `grpoLoss`, `grpoLossGradLogProbs`). Differences from TRL,
/// all shared with ``proximalPolicyOptimization(models:settings:rng:progress:)``
/// so the two runs are comparable: the reward is the reward model's end score
/// (`rewardScores`), the log-probs are taken at temperature 1 whatever the
/// sampling temperature (TRL divides the logits by it; the defaults agree), and
/// one Adam step is taken per epoch on the whole batch. The per-token KL term is
/// TRL's k3, `exp(ref − lp) − (ref − lp) − 1`, inside the loss; PPO's is k1 inside
/// the reward.
///
/// - Throws: ``StageError`` (stage `grpo`), before the first step, for a setting
///   the stages would refuse (see ``checkGRPOSettings(_:)``), or a model that
///   cannot read the toy language (see ``checkToyModel(_:_:batchSize:_:)``);
///   then what the stages throw on the way (a NaN result, a softmax with no mass).
public func groupRelativePolicyOptimization(models: inout GRPOModels, settings: GRPOSettings,
                                            rng: inout SplitMix64,
                                            progress: (GRPOStepRecord) -> Void = { _ in }) throws(StageError) -> [GRPOStepRecord] {
    let check = InputCheck(stage: "grpo")
    try checkGRPOSettings(settings)
    let G = settings.groupSize, B = settings.answersPerStep
    for (model, name) in [(models.policy, "policy"), (models.reference, "reference"),
                          (models.rewardModel, "reward_model")] {
        try checkToyModel(model, name, batchSize: B, check)
    }
    var optimizer = try Adam(for: models.policy.parameters, learningRate: settings.learningRate)
    let P = ToyLanguage.promptLength
    let config = settings.lossConfig
    var records = [GRPOStepRecord]()

    for step in stride(from: 1, through: settings.steps, by: 1) {
        // Experience: G answers to each prompt, rows iG ..< iG + G answering prompt i.
        let prompts = (0..<settings.promptsPerStep).map { _ in ToyLanguage.prompt(rng: &rng) }
        let repeated = Tensor.make([B, P], prompts.flatMap { prompt in (0..<G).flatMap { _ in prompt } })
        let sequences = try models.policy.generate(prompts: repeated, maxNewTokens: ToyLanguage.maxAnswerTokens,
                                                   temperature: settings.temperature,
                                                   endOfSequence: ToyLanguage.endOfSequence,
                                                   padId: ToyLanguage.padId, rng: &rng)
        let samplingPass = try models.policy.forward(sequences)
        let logProbs = try nextTokenLogProbs(logits: samplingPass.logits, inputIds: sequences)
        let refLogProbs = try nextTokenLogProbs(logits: models.reference.forward(sequences).logits, inputIds: sequences)
        let mask = try answerTokenMask(inputIds: sequences, promptLength: P, padId: ToyLanguage.padId)
        let rewards = try rewardScores(models.rewardModel, sequences: sequences)

        // The group baseline: no critic, no GAE.
        let grouped = try grpoAdvantages(rewards: rewards, groupSize: G, scaleRewards: settings.scaleRewards)

        var klSum = 0.0
        for i in 0..<mask.count where mask.scalars[i] == 1 {
            klSum += logProbs.scalars[i] - refLogProbs.scalars[i]
        }
        let groups = settings.promptsPerStep
        let flatGroups = (0..<groups).filter { g in
            (g * G..<(g + 1) * G).allSatisfy { rewards.scalars[$0] == rewards.scalars[g * G] }
        }.count
        let meanGroupStd = grouped.scales.map { s in (0..<groups).reduce(0.0) { $0 + s.scalars[$1 * G] } / Double(groups) }
            ?? 0
        var record = GRPOStepRecord(step: step, meanReward: rewards.scalars.reduce(0, +) / Double(B),
                                    meanKL: klSum / Double(B), loss: 0,
                                    meanAnswerLength: Double(mask.scalars.reduce(0, +)) / Double(B),
                                    meanGroupStd: meanGroupStd, flatGroups: flatGroups)

        for epoch in 0..<settings.epochs {
            // The first epoch's weights are the sampling weights: reuse that pass.
            let pass = epoch == 0 ? samplingPass : try models.policy.forward(sequences)
            let newLogProbs = epoch == 0 ? logProbs : try nextTokenLogProbs(logits: pass.logits, inputIds: sequences)
            let (loss, gradient) = try grpoLossAndGradient(
                policy: models.policy, pass: pass, sequences: sequences, logProbs: newLogProbs,
                oldLogProbs: logProbs, refLogProbs: refLogProbs, advantages: grouped.advantages, mask: mask,
                config: config)
            if epoch == 0 { record.loss = loss }
            try optimizer.step(&models.policy.parameters, gradient: gradient)
        }
        records.append(record)
        progress(record)
    }
    return records
}

/// `grpo_loss` of the policy on one batch, and its gradient with respect to every
/// weight: `grpoLossGradLogProbs` [B, N] -> `nextTokenLogProbsGradLogits`
/// [B, L, V] -> `policy.backward`. `pass` is `policy.forward(sequences)` and
/// `logProbs` its `nextTokenLogProbs`.
///
/// - Throws: ``StageError`` from the three stages (shapes, NaN, a non-finite loss).
func grpoLossAndGradient(policy: TinyLM, pass: TinyLMActivations, sequences: Tensor<Int64>, logProbs: Tensor<Double>,
                         oldLogProbs: Tensor<Double>, refLogProbs: Tensor<Double>, advantages: Tensor<Double>,
                         mask: Tensor<Int64>, config: GRPOLossConfig) throws(StageError) -> (loss: Double, gradient: TinyLMParameters) {
    let loss = try grpoLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                            refLogProbs: refLogProbs, config: config)
    let gradLogProbs = try grpoLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                                mask: mask, refLogProbs: refLogProbs, config: config)
    let gradLogits = try nextTokenLogProbsGradLogits(logits: pass.logits, inputIds: sequences, gradOutput: gradLogProbs)
    return (loss.loss, try policy.backward(pass, gradLogits: gradLogits, gradValues: nil))
}

/// Throws unless every GRPO setting is one the stages take, so a run fails before
/// it samples anything: `steps` and `epochs` in [0, 2^31], `promptsPerStep` >= 1,
/// `groupSize` >= 2 (TRL refuses `num_generations` < 2: a group of one has
/// advantage 0 and teaches nothing), their product in [1, 2^31], a finite
/// `temperature > 0`, and `learningRate`, `beta`, `epsilon` finite and >= 0.
///
/// - Throws: ``StageError`` (stage `grpo`) naming the setting.
public func checkGRPOSettings(_ settings: GRPOSettings) throws(StageError) {
    let check = InputCheck(stage: "grpo")
    try checkStepCount(settings.steps, "steps", check)
    try checkStepCount(settings.epochs, "epochs", check)
    try checkBatchSize(settings.promptsPerStep, "prompts_per_step", check)
    guard settings.groupSize >= 2 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "group_size",
                         "group_size = \(settings.groupSize) must be at least 2: a group of one answer is its own "
                         + "baseline, its advantage is 0 (TRL refuses num_generations < 2)")
    }
    let (answers, overflow) = settings.promptsPerStep.multipliedReportingOverflow(by: settings.groupSize)
    guard !overflow, answers <= TensorLimits.maximumElements else {
        throw StageError(.tooLarge, stage: check.stage, argument: "group_size",
                         "prompts_per_step x group_size = \(settings.promptsPerStep) x \(settings.groupSize) "
                         + "answers per step is beyond the limit of 2^31 rows")
    }
    guard settings.temperature.isFinite, settings.temperature > 0 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "temperature",
                         "temperature = \(settings.temperature) must be finite and > 0 (it divides the logits)")
    }
    try check.nonNegative("learning_rate", settings.learningRate)
    try check.nonNegative("beta", settings.beta)
    try check.nonNegative("epsilon", settings.epsilon)
}
