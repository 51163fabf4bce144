import Foundation
import Testing
import TensorCore
import GatherLogProbs
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
    func toyData() {
        let data = ToyData(seed: 5, demonstrations: 30, trainingPairs: 20, heldOutPairs: 10)
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
    func answerMask() {
        // prompt length 3: start = 2. Row 0: answer of 2 tokens + pads; row 1 runs to the end.
        let ids = Tensor.make([2, 6], [2, 3, 8, 10, 1, 0,
                                       2, 4, 9, 16, 26, 1] as [Int64])
        let mask = answerTokenMask(inputIds: ids, promptLength: 3, padId: 0)
        #expect(mask.scalars == [0, 0, 1, 1, 0,
                                 0, 0, 1, 1, 1])
    }
}

private func mean(_ values: some Collection<Double>) -> Double {
    values.reduce(0, +) / Double(values.count)
}
