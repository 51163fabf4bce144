import Foundation
import Testing
import TensorCore
import GatherLogProbs
import SFTLoss
import TestSupport
import TinyLM
@testable import EndToEnd

/// A short run of every phase: small enough for a debug build, long enough for
/// each loss to move. The full run is chapter 10.
private func shortSettings(seed: UInt64 = 7) -> PipelineSettings {
    var settings = PipelineSettings()
    settings.seed = seed
    settings.model = TinyLMConfig(vocabularySize: ToyLanguage.vocabularySize, contextLength: ToyLanguage.sequenceLength,
                                  width: 12, hidden: 16)
    settings.sftSteps = 60
    settings.rewardSteps = 40
    settings.evaluationSamples = 32
    settings.ppo.steps = 3
    settings.ppo.batchSize = 8
    settings.ppo.epochs = 2
    settings.dpoSteps = 10
    settings.dpoBatchSize = 8
    return settings
}

@Suite("end to end")
struct EndToEndTests {
    // MARK: The short pipeline

    @Test("a short run of all four phases: each loss falls, and the same seed gives the same numbers twice")
    func shortPipeline() throws {
        let settings = shortSettings()
        let prepared = try prepareModels(settings)
        #expect(mean(prepared.sftLosses.suffix(10)) < prepared.sftLosses[0] - 0.5, "SFT loss did not fall")
        expectClose(prepared.rewardLosses[0], log(2), abs: 1e-12, rel: 0,
                    "the reward model starts with a zero value head: loss ln 2")
        #expect(mean(prepared.rewardLosses.suffix(10)) < log(2), "reward loss did not fall below ln 2")
        let ppo = try runPPO(prepared, settings: settings.ppo, seed: 1)
        #expect(ppo.records.count == 3)
        #expect(ppo.records[0].meanKL == 0, "the first batch is sampled before any update: actor = reference")
        let dpo = try runDPO(prepared, settings, seed: 2)
        expectClose(dpo.losses[0], log(2), abs: 1e-12, rel: 0, "DPO starts at policy = reference: ln 2")
        #expect(mean(dpo.losses.suffix(3)) < log(2), "DPO loss did not fall")

        // Determinism: everything again from the same seed.
        let again = try prepareModels(settings)
        #expect(again.sft.parameters.fingerprint == prepared.sft.parameters.fingerprint)
        #expect(again.rewardModel.parameters.fingerprint == prepared.rewardModel.parameters.fingerprint)
        #expect(again.sftLosses == prepared.sftLosses)
        let ppoAgain = try runPPO(again, settings: settings.ppo, seed: 1)
        #expect(ppoAgain.actor.parameters.fingerprint == ppo.actor.parameters.fingerprint)
        #expect(ppoAgain.records.map(\.meanReward) == ppo.records.map(\.meanReward))
        // And a different seed gives a different model.
        let other = try prepareModels(shortSettings(seed: 8))
        #expect(other.sft.parameters.fingerprint != prepared.sft.parameters.fingerprint)
    }

    @Test("PPO with each recipe: finite losses, the actor moves, and DeepSpeed-Chat's gives the records it always gave")
    func ppoRecipes() throws {
        let settings = shortSettings()
        let prepared = try prepareModels(settings)
        for recipe in PPORecipe.allCases {
            var ppoSettings = settings.ppo
            ppoSettings.recipe = recipe
            let run = try runPPO(prepared, settings: ppoSettings, seed: 1)
            #expect(run.records.count == 3, "\(recipe)")
            for record in run.records {
                #expect(record.actorLoss.isFinite && record.criticLoss.isFinite, "\(recipe): step \(record.step)")
                #expect(record.meanReward.isFinite && record.meanKL.isFinite, "\(recipe): step \(record.step)")
            }
            #expect(run.records[0].meanKL == 0, "\(recipe): the first batch is sampled before any update")
            #expect(run.actor.parameters != prepared.sft.parameters, "\(recipe): the actor did not move")
            #expect(run.records[1].meanKL != 0, "\(recipe): the actor's second batch is still the reference's")
        }
        // The default recipe, bit for bit what the loop gave before recipes existed
        // (the same short run, seed 1, recorded from commit a2f2e63). The weights'
        // fingerprint since actorLoss's exp became TensorCore's `exponential`
        // (within an ulp of libm's, so some ratios moved in their last bit; the
        // records below kept every bit): it was 50cd87b18888084d with libm's exp.
        let deepSpeedChat = try runPPO(prepared, settings: settings.ppo, seed: 1)
        #expect(settings.ppo.recipe == .deepSpeedChat)
        #expect(deepSpeedChat.actor.parameters.fingerprint == "b560f44e76d92a02")
        let bits: [[UInt64]] = [
            [0xbfb641c49a00ca28, 0, 0x3f82f74cb4fb735c, 0x3f52172469ffb61a, 0x4010800000000000],
            [0xbfb7f8e28f31f8b0, 0xbfa1c4089ed2a0b6, 0x3fb2ea80b3c56a15, 0x3f73f87d70022265, 0x4005000000000000],
            [0xbfb74c914f6aaaf8, 0xbf9def7886e5b92d, 0x3faa81386daf4cb5, 0x3f776569b1a06a78, 0x400d000000000000],
        ]
        #expect(deepSpeedChat.records.map {
            [$0.meanReward, $0.meanKL, $0.actorLoss, $0.criticLoss, $0.meanAnswerLength].map(\.bitPattern)
        } == bits)
    }

    @Test("PPO with both learning rates 0 leaves actor and critic exactly as they were")
    func ppoWithoutUpdates() throws {
        var rng = SplitMix64(seed: 3)
        let config = TinyLMConfig(vocabularySize: ToyLanguage.vocabularySize, contextLength: ToyLanguage.sequenceLength,
                                  width: 8, hidden: 8)
        let model = try TinyLM(config: config, rng: &rng)
        var models = PPOModels(actor: model, reference: model, rewardModel: model, critic: model)
        var settings = PPOSettings()
        settings.steps = 2
        settings.batchSize = 4
        settings.actorLearningRate = 0
        settings.criticLearningRate = 0
        let records = try proximalPolicyOptimization(models: &models, settings: settings, rng: &rng)
        #expect(models.actor == model)
        #expect(models.critic == model)
        #expect(records.allSatisfy { $0.meanKL == 0 }, "actor = reference on every step")
    }

    @Test("settings no phase can run with throw a typed error naming the knob")
    func badSettings() throws {
        var settings = shortSettings()
        settings.model.contextLength = 4
        expectStageError(.parameterOutOfRange, argument: "model.contextLength") { try prepareModels(settings) }
        settings = shortSettings()
        settings.sftBatchSize = 0
        expectStageError(.parameterOutOfRange, argument: "batch_size") { try prepareModels(settings) }
        settings = shortSettings()
        settings.rewardLearningRate = -1
        expectStageError(.parameterOutOfRange, argument: "learning_rate") { try prepareModels(settings) }
        var rng = SplitMix64(seed: 1)
        var model = try TinyLM(config: settings.model, rng: &rng)
        expectStageError(.shapeMismatch, argument: "demonstrations") {
            try supervisedFineTuning(model: &model, demonstrations: [], steps: 1, batchSize: 1, learningRate: 0.1,
                                     rng: &rng)
        }
        var models = PPOModels(actor: model, reference: model, rewardModel: model, critic: model)
        var ppo = PPOSettings()
        ppo.batchSize = 0
        expectStageError(.parameterOutOfRange, argument: "batch_size") {
            try proximalPolicyOptimization(models: &models, settings: ppo, rng: &rng)
        }
        ppo = PPOSettings()
        ppo.temperature = 0
        ppo.steps = 1
        expectStageError(.parameterOutOfRange, argument: "temperature") {
            try proximalPolicyOptimization(models: &models, settings: ppo, rng: &rng)
        }
    }

    // MARK: The data

    @Test("every sequence is prompt + answer + <eos>, right-padded to L = 8, and pairs share their prompt")
    func toyData() throws {
        let data = try ToyData(seed: 5, demonstrations: 30, trainingPairs: 20, heldOutPairs: 10)
        let P = ToyLanguage.promptLength
        for sequence in data.demonstrations + data.trainingPairs.flatMap({ [$0.chosen, $0.rejected] }) {
            #expect(sequence.inputIds.count == ToyLanguage.sequenceLength)
            let length = sequence.attentionMask.reduce(0, +)
            #expect(sequence.inputIds[Int(length) - 1] == ToyLanguage.endOfSequence)
            #expect(sequence.inputIds[Int(length)...].allSatisfy { $0 == ToyLanguage.padId })
            #expect(ToyLanguage.prompts.contains(Array(sequence.inputIds[..<P])))
        }
        for pair in data.trainingPairs + data.heldOutPairs {
            #expect(pair.chosen.inputIds[..<P] == pair.rejected.inputIds[..<P])
            #expect(pair.chosen.inputIds != pair.rejected.inputIds)
        }
    }

    @Test("positive answers hold only positive words, negative only negative, mixed one of each around 'but'")
    func answerSentiments() {
        var rng = SplitMix64(seed: 6)
        for _ in 0..<50 {
            let positive = ToyLanguage.answer(.positive, rng: &rng)
            #expect(!positive.contains { ToyLanguage.negativeWords.contains($0) })
            #expect(positive.contains { ToyLanguage.positiveWords.contains($0) })
            let negative = ToyLanguage.answer(.negative, rng: &rng)
            #expect(!negative.contains { ToyLanguage.positiveWords.contains($0) })
            let mixed = ToyLanguage.answer(.mixed, rng: &rng)
            #expect(mixed.filter { ToyLanguage.positiveWords.contains($0) }.count == 1)
            #expect(mixed.filter { ToyLanguage.negativeWords.contains($0) }.count == 1)
            #expect(ToyLanguage.text(mixed).contains("but"))
        }
    }

    // MARK: The shift and the masks

    @Test("nextTokenLogProbs is gather_log_probs(logits[:, :-1], ids[:, 1:]); its backward leaves the last position 0")
    func shiftedLogProbs() throws {
        var rng = SplitMix64(seed: 8)
        let ids = Tensor.make([2, 3], [0, 2, 1, 1, 1, 2] as [Int64])
        let logits = Tensor.make([2, 3, 3], rng.uniform(count: 18, -2, 2))
        let logProbs = try nextTokenLogProbs(logits: logits, inputIds: ids)
        for b in 0..<2 {
            for t in 0..<2 {
                let row = Tensor.make([1, 1, 3], Array(logits.scalars[((b * 3 + t) * 3)..<((b * 3 + t + 1) * 3)]))
                let expected = try gatherLogProbs(logits: row, labels: Tensor.make([1, 1], [ids[b, t + 1]]))
                #expect(logProbs[b, t] == expected.scalars[0])
            }
        }
        let grad = try nextTokenLogProbsGradLogits(logits: logits, inputIds: ids,
                                                   gradOutput: Tensor.make([2, 2], [1, 1, 1, 1]))
        for b in 0..<2 {
            for v in 0..<3 { #expect(grad[b, 2, v] == 0) }
        }
    }

    @Test("the answer mask is action_mask[:, start:] widened to [B, N]: answer tokens and <eos>, not pads")
    func answerMask() throws {
        // prompt length 3: start = 2. Row 0: answer of 2 tokens + pads; row 1 runs to the end.
        let ids = Tensor.make([2, 6], [2, 3, 8, 10, 1, 0,
                                       2, 4, 9, 16, 26, 1] as [Int64])
        let mask = try answerTokenMask(inputIds: ids, promptLength: 3, padId: 0)
        #expect(mask.scalars == [0, 0, 1, 1, 0,
                                 0, 0, 1, 1, 1])
    }
}

private func mean(_ values: some Collection<Double>) -> Double {
    values.reduce(0, +) / Double(values.count)
}

/// A toy-language model small enough for many calls: C = 4, H = 4, context 8.
private func toyModel(seed: UInt64 = 1, contextLength: Int = ToyLanguage.sequenceLength) throws -> TinyLM {
    var rng = SplitMix64(seed: seed)
    return try TinyLM(config: TinyLMConfig(vocabularySize: ToyLanguage.vocabularySize, contextLength: contextLength,
                                           width: 4, hidden: 4), rng: &rng)
}

/// `pairs` with every row cut to its first `length` tokens.
private func cut(_ pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)],
                 to length: Int) -> [(chosen: TokenizedSequence, rejected: TokenizedSequence)] {
    func row(_ s: TokenizedSequence) -> TokenizedSequence {
        TokenizedSequence(inputIds: Array(s.inputIds.prefix(length)), attentionMask: Array(s.attentionMask.prefix(length)))
    }
    return pairs.map { (row($0.chosen), row($0.rejected)) }
}

@Suite("end to end: hostile input")
struct EndToEndHostileInputTests {
    // MARK: The shift and the mask

    @Test("nextTokenLogProbs and its backward check shapes and scored ids before they copy anything")
    func shiftArguments() throws {
        let logits = Tensor<Double>(shape: [2, 3, 4], repeating: 0)
        let ids = Tensor.make([2, 3], [0, 1, 2, 3, 0, 1] as [Int64])
        expectStageError(.shapeMismatch, argument: "logits") {
            try nextTokenLogProbs(logits: Tensor<Double>(shape: [2, 3], repeating: 0), inputIds: ids)
        }
        expectStageError(.shapeMismatch, argument: "input_ids") {
            try nextTokenLogProbs(logits: logits, inputIds: Tensor.make([2, 2], [0, 1, 2, 3]))
        }
        expectStageError(.labelOutOfRange, argument: "input_ids") {
            try nextTokenLogProbs(logits: logits, inputIds: Tensor.make([2, 3], [0, 1, 2, 3, 4, 1]))
        }
        expectStageError(.shapeMismatch, argument: "grad_output") {
            try nextTokenLogProbsGradLogits(logits: logits, inputIds: ids, gradOutput: Tensor(shape: [2, 3], repeating: 1))
        }
        expectStageError(.labelOutOfRange, argument: "input_ids") {
            try nextTokenLogProbsGradLogits(logits: logits, inputIds: Tensor.make([2, 3], [0, -1, 2, 3, 0, 1]),
                                            gradOutput: Tensor(shape: [2, 2], repeating: 1))
        }
        // As in PyTorch: the first token is never scored, so it may be anything;
        // L = 1 or 0 gives no position at all.
        #expect(try nextTokenLogProbs(logits: logits, inputIds: Tensor.make([2, 3], [99, 1, 2, -5, 0, 1])).shape == [2, 2])
        #expect(try nextTokenLogProbs(logits: Tensor(shape: [2, 1, 4], repeating: 0),
                                      inputIds: Tensor.make([2, 1], [0, 1])).shape == [2, 0])
        #expect(try nextTokenLogProbs(logits: Tensor(shape: [2, 0, 4], repeating: 0),
                                      inputIds: Tensor(shape: [2, 0], repeating: 0)).shape == [2, 0])
        let grad = try nextTokenLogProbsGradLogits(logits: Tensor(shape: [2, 1, 4], repeating: 0),
                                                   inputIds: Tensor.make([2, 1], [0, 1]),
                                                   gradOutput: Tensor(shape: [2, 0], repeating: 0))
        #expect(grad.shape == [2, 1, 4] && grad.scalars.allSatisfy { $0 == 0 })
    }

    @Test("answerTokenMask refuses a prompt_length outside [1, L] (it used to trap on the range)")
    func answerMaskArguments() throws {
        let ids = Tensor.make([1, 4], [2, 3, 8, 1] as [Int64])
        for promptLength in [0, -3, 5, Int.max] {
            expectStageError(.parameterOutOfRange, argument: "prompt_length") {
                try answerTokenMask(inputIds: ids, promptLength: promptLength, padId: 0)
            }
        }
        expectStageError(.shapeMismatch, argument: "input_ids") {
            try answerTokenMask(inputIds: Tensor.make([4], [2, 3, 8, 1]), promptLength: 1, padId: 0)
        }
        expectStageError(.parameterOutOfRange, argument: "L") {
            try answerTokenMask(inputIds: Tensor(shape: [1, 0], repeating: 0), promptLength: 1, padId: 0)
        }
        #expect(try answerTokenMask(inputIds: ids, promptLength: 4, padId: 0).scalars == [0, 0, 0])
    }

    // MARK: The training loops

    @Test("SFT, the reward model and DPO train on sequences of any length the model takes (5 used to trap)")
    func otherLengths() throws {
        let data = try ToyData(seed: 3, demonstrations: 12, trainingPairs: 8, heldOutPairs: 4)
        var rng = SplitMix64(seed: 4)
        var model = try toyModel()
        let five = data.demonstrations.map {
            TokenizedSequence(inputIds: Array($0.inputIds.prefix(5)), attentionMask: Array($0.attentionMask.prefix(5)))
        }
        let sftLosses = try supervisedFineTuning(model: &model, demonstrations: five, steps: 2, batchSize: 3,
                                                 learningRate: 1e-3, rng: &rng)
        #expect(sftLosses.count == 2 && sftLosses.allSatisfy(\.isFinite))
        let pairs = cut(data.trainingPairs, to: 5)
        var rewardModel = model
        let rewardLosses = try trainRewardModel(model: &rewardModel, pairs: pairs, steps: 2, batchSize: 2,
                                                learningRate: 1e-3, rng: &rng)
        #expect(rewardLosses.count == 2)
        #expect(try rewardModelAccuracy(rewardModel, pairs: pairs) >= 0)
        var policy = model
        let dpoLosses = try directPreferenceOptimization(policy: &policy, reference: model, pairs: pairs, steps: 2,
                                                         batchSize: 2, beta: 0.1, learningRate: 1e-3, rng: &rng)
        #expect(dpoLosses.count == 2 && dpoLosses.allSatisfy(\.isFinite))
        #expect(try preferenceAccuracy(policy, pairs: pairs) >= 0)
    }

    @Test("the training loops check their data and knobs before the first step")
    func loopArguments() throws {
        let data = try ToyData(seed: 3, demonstrations: 6, trainingPairs: 4, heldOutPairs: 2)
        var rng = SplitMix64(seed: 4)
        var model = try toyModel()
        let before = model
        func sft(_ demonstrations: [TokenizedSequence], steps: Int = 1, batchSize: Int = 2,
                 learningRate: Double = 1e-3) throws -> [Double] {
            try supervisedFineTuning(model: &model, demonstrations: demonstrations, steps: steps, batchSize: batchSize,
                                     learningRate: learningRate, rng: &rng)
        }
        let demos = data.demonstrations
        // Longer than the context (8).
        let nine = demos.map { TokenizedSequence(inputIds: $0.inputIds + [0], attentionMask: $0.attentionMask + [0]) }
        expectStageError(.parameterOutOfRange, argument: "demonstrations") { try sft(nine) }
        expectStageError(.shapeMismatch, argument: "demonstrations") { try sft([demos[0], nine[1]]) }
        expectStageError(.shapeMismatch, argument: "demonstrations") {
            try sft([TokenizedSequence(inputIds: [2, 3, 8], attentionMask: [1, 1])])
        }
        expectStageError(.labelOutOfRange, argument: "demonstrations") {
            try sft([TokenizedSequence(inputIds: [2, 3, 28], attentionMask: [1, 1, 1])])
        }
        expectStageError(.invalidMask, argument: "demonstrations") {
            try sft([TokenizedSequence(inputIds: [2, 3, 8], attentionMask: [1, 1, 5])])
        }
        expectStageError(.parameterOutOfRange, argument: "demonstrations") {
            try sft([TokenizedSequence(inputIds: [2], attentionMask: [1])])
        }
        expectStageError(.shapeMismatch, argument: "demonstrations") { try sft([], steps: 0) }
        expectStageError(.tooLarge, argument: "steps") { try sft(demos, steps: 99_999_999_999) }
        expectStageError(.parameterOutOfRange, argument: "steps") { try sft(demos, steps: -1) }
        expectStageError(.tooLarge, argument: "batch_size") { try sft(demos, batchSize: Int.max) }
        // Each row fits, but [2^28, 8] ids make activations of 2^28 · 8 · 28 elements.
        expectStageError(.tooLarge, argument: "demonstrations") { try sft(demos, batchSize: 1 << 28) }
        expectStageError(.parameterOutOfRange, argument: "learning_rate") { try sft(demos, learningRate: .nan) }
        #expect(model == before, "a refused run changes nothing")

        let pairs = data.trainingPairs
        expectStageError(.shapeMismatch, argument: "pairs") {
            try trainRewardModel(model: &model, pairs: [], steps: 0, batchSize: 1, learningRate: 0, rng: &rng)
        }
        expectStageError(.parameterOutOfRange, argument: "pairs") {
            try trainRewardModel(model: &model, pairs: cut(pairs, to: 1), steps: 1, batchSize: 1, learningRate: 0, rng: &rng)
        }
        expectStageError(.shapeMismatch, argument: "pairs") {
            try rewardModelAccuracy(model, pairs: [])
        }
        expectStageError(.shapeMismatch, argument: "pairs") {
            try trainRewardModel(model: &model, pairs: cut(pairs, to: 6) + cut(pairs, to: 5), steps: 1, batchSize: 1,
                                 learningRate: 0, rng: &rng)
        }
        let reference = model
        func dpo(_ pairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)], reference: TinyLM = reference,
                 steps: Int = 1, beta: Double = 0.1) throws -> [Double] {
            try directPreferenceOptimization(policy: &model, reference: reference, pairs: pairs, steps: steps,
                                             batchSize: 2, beta: beta, learningRate: 1e-3, rng: &rng)
        }
        // Shorter than the toy prompt: no answer position to score.
        expectStageError(.parameterOutOfRange, argument: "pairs") { try dpo(cut(pairs, to: 2)) }
        expectStageError(.parameterOutOfRange, argument: "pairs") { try dpo(pairs, reference: try toyModel(contextLength: 6)) }
        expectStageError(.parameterOutOfRange, argument: "beta") { try dpo(pairs, beta: .infinity) }
        expectStageError(.tooLarge, argument: "steps") { try dpo(pairs, steps: Int.max) }
        expectStageError(.shapeMismatch, argument: "pairs") { try preferenceAccuracy(model, pairs: []) }
        #expect(model == before, "a refused run changes nothing")
    }

    @Test("PPO and the reward statistics check every setting and all four models before sampling anything")
    func ppoArguments() throws {
        let model = try toyModel()
        var models = PPOModels(actor: model, reference: model, rewardModel: model, critic: model)
        var rng = SplitMix64(seed: 1)
        func ppo(_ change: (inout PPOSettings) -> Void) throws -> [PPOStepRecord] {
            var settings = PPOSettings()
            settings.steps = 1
            settings.batchSize = 2
            change(&settings)
            return try proximalPolicyOptimization(models: &models, settings: settings, rng: &rng)
        }
        expectStageError(.tooLarge, argument: "steps") { try ppo { $0.steps = 99_999_999_999 } }
        expectStageError(.tooLarge, argument: "epochs") { try ppo { $0.epochs = Int.max } }
        expectStageError(.parameterOutOfRange, argument: "epochs") { try ppo { $0.epochs = -1 } }
        expectStageError(.tooLarge, argument: "batch_size") { try ppo { $0.batchSize = 1 << 40 } }
        expectStageError(.parameterOutOfRange, argument: "kl_ctl") { try ppo { $0.klCtl = .nan } }
        expectStageError(.parameterOutOfRange, argument: "gamma") { try ppo { $0.gamma = .infinity } }
        expectStageError(.parameterOutOfRange, argument: "lambda") { try ppo { $0.lambda = .nan } }
        expectStageError(.parameterOutOfRange, argument: "cliprange") { try ppo { $0.cliprange = -0.2 } }
        expectStageError(.parameterOutOfRange, argument: "cliprange_value") { try ppo { $0.cliprangeValue = .nan } }
        expectStageError(.parameterOutOfRange, argument: "clip_reward_value") { try ppo { $0.clipRewardValue = -1 } }
        expectStageError(.parameterOutOfRange, argument: "temperature") { try ppo { $0.temperature = .infinity } }
        expectStageError(.parameterOutOfRange, argument: "actor_learning_rate") { try ppo { $0.actorLearningRate = .nan } }
        expectStageError(.parameterOutOfRange, argument: "batch_size") {
            try ppo { $0.recipe = .trl; $0.batchSize = 1 }
        }
        // A critic whose context cannot hold prompt + answer.
        models.critic = try toyModel(contextLength: 5)
        expectStageError(.parameterOutOfRange, argument: "critic.contextLength") { try ppo { _ in } }
        models.critic = model
        var rng2 = SplitMix64(seed: 2)
        let smallVocabulary = try TinyLM(config: TinyLMConfig(vocabularySize: 10, contextLength: 8, width: 4, hidden: 4),
                                         rng: &rng2)
        models = PPOModels(actor: model, reference: model, rewardModel: smallVocabulary, critic: model)
        expectStageError(.parameterOutOfRange, argument: "reward_model.vocabularySize") { try ppo { _ in } }
        models = PPOModels(actor: model, reference: model, rewardModel: model, critic: model)
        models.actor.parameters.storage[0] = .nan
        expectStageError(.notANumber, argument: "token_embedding") { try ppo { _ in } }

        expectStageError(.parameterOutOfRange, argument: "count") {
            try rewardStatistics(of: model, rewardModel: model, count: 0, rng: &rng)
        }
        expectStageError(.tooLarge, argument: "count") {
            try rewardStatistics(of: model, rewardModel: model, count: Int.max, rng: &rng)
        }
        expectStageError(.parameterOutOfRange, argument: "temperature") {
            try rewardStatistics(of: model, rewardModel: model, count: 2, temperature: 0, rng: &rng)
        }
        expectStageError(.parameterOutOfRange, argument: "sequences") {
            try rewardScores(model, sequences: Tensor.make([1, 3], [2, 3, 8]))
        }
    }

    @Test("prepareModels checks every setting before it trains anything; the toy data checks its counts")
    func pipelineArguments() throws {
        var settings = shortSettings()
        settings.sftSteps = 99_999_999_999
        expectStageError(.tooLarge, argument: "steps") { try prepareModels(settings) }
        settings = shortSettings()
        settings.rewardBatchSize = -1
        expectStageError(.parameterOutOfRange, argument: "batch_size") { try prepareModels(settings) }
        settings = shortSettings()
        settings.evaluationSamples = 0
        expectStageError(.parameterOutOfRange, argument: "evaluation_samples") { try prepareModels(settings) }
        settings = shortSettings()
        settings.model.width = 1 << 40
        expectStageError(.tooLarge, argument: "token_embedding") { try prepareModels(settings) }
        settings = shortSettings()
        settings.sftBatchSize = 1 << 27  // [2^27, 8] ids: activations of 2^27 · 8 · 28 elements
        expectStageError(.tooLarge, argument: "batch_size") { try prepareModels(settings) }

        expectStageError(.parameterOutOfRange, argument: "demonstrations") {
            try ToyData(seed: 1, demonstrations: -1, trainingPairs: 1, heldOutPairs: 1)
        }
        expectStageError(.tooLarge, argument: "held_out_pairs") {
            try ToyData(seed: 1, demonstrations: 1, trainingPairs: 1, heldOutPairs: Int.max)
        }
        expectStageError(.labelOutOfRange, argument: "prompt_ids") { try ToyLanguage.sequence(prompt: [-1], answer: []) }
    }
}
