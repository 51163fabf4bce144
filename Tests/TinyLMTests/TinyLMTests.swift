import Foundation
import Testing
import TensorCore
import Golden
import TestSupport
@testable import TinyLM

/// A small random model and batch: V = 5, C = 3, H = 4, context 4 (123 weights).
private func smallModel(seed: UInt64 = 1) -> (TinyLM, Tensor<Int64>) {
    var rng = SplitMix64(seed: seed)
    let config = TinyLMConfig(vocabularySize: 5, contextLength: 4, width: 3, hidden: 4)
    var model = TinyLM(config: config, rng: &rng)
    // A non-zero value head and biases, so every path carries gradient.
    for i in model.parameters.storage.indices where model.parameters.storage[i] == 0 {
        model.parameters.storage[i] = rng.uniform(-0.5, 0.5)
    }
    let ids = Tensor.make([2, 4], (0..<8).map { _ in Int64(rng.next() % 5) })
    return (model, ids)
}

@Suite("tiny_lm")
struct TinyLMTests {
    // MARK: Golden

    @Test("every golden fixture passes (forward and autograd gradients of every weight)")
    func golden() {
        expectGoldenFixturesPass(stage: "tiny_lm", minimum: 8)
    }

    @Test("a float32 tiny_lm fixture is rejected with a typed error, not computed in another precision")
    func float32Rejected() throws {
        let fixture = try Fixture.load(path: goldenDataDirectory + "/tiny_lm/random-1-f64.json")
        var inputs = fixture.inputs
        guard case .float64(let head) = inputs["lm_head"] else {
            Issue.record("lm_head is not float64 in the fixture")
            return
        }
        inputs["lm_head"] = FixtureTensor(head.converted(to: Float.self))
        let changed = Fixture(stage: fixture.stage, name: fixture.name, source: fixture.source, params: fixture.params,
                              inputs: inputs, expectation: fixture.expectation)
        expectStageError(.wrongDType, argument: "lm_head") { try runStage(changed) }
    }

    // MARK: Known answers

    @Test("a fresh model has a zero value head: every value is exactly 0")
    func freshValueHead() throws {
        var rng = SplitMix64(seed: 3)
        let model = TinyLM(config: TinyLMConfig(vocabularySize: 6, contextLength: 5, width: 4, hidden: 3), rng: &rng)
        let values = try model.forward(Tensor.make([1, 5], [0, 1, 2, 3, 4])).values
        #expect(values.scalars == [0, 0, 0, 0, 0])
    }

    @Test("position 0 attends only to itself: its attention weight is exactly 1")
    func firstPositionAttention() throws {
        let (model, ids) = smallModel()
        let activations = try model.forward(ids)
        let L = ids.shape[1]
        for b in 0..<ids.shape[0] {
            #expect(activations.attention[b * L * L] == 1)
        }
    }

    @Test("Adam's first step moves each weight by lr * g / (|g| + eps): the bias corrections undo the zero start")
    func adamFirstStep() throws {
        let config = TinyLMConfig(vocabularySize: 2, contextLength: 1, width: 1, hidden: 1)
        var parameters = TinyLMParameters(zerosFor: config)
        var gradient = TinyLMParameters(zerosFor: config)
        for i in gradient.storage.indices { gradient.storage[i] = Double(i + 1) * (i % 2 == 0 ? 1 : -0.001) }
        var adam = Adam(for: parameters, learningRate: 0.01)
        try adam.step(&parameters, gradient: gradient)
        let expected = gradient.storage.map { -0.01 * $0 / (abs($0) + 1e-8) }
        expectClose(parameters.storage, expected, abs: 1e-15, rel: 1e-12, "theta after one step")
    }

    @Test("sampling at a tiny temperature picks the largest logit; a zero-weight token is never drawn")
    func sampling() throws {
        var rng = SplitMix64(seed: 9)
        let logits: [Double] = [0.1, 2.0, 1.9, -3]
        for _ in 0..<50 {
            #expect(try sampleToken(logits: logits[...], temperature: 1e-3, rng: &rng) == 1)
        }
        for _ in 0..<200 {
            #expect(rng.categorical([0.5, 0, 0.5]) != 1)
        }
    }

    @Test("generate stops a row at <eos> and pads the rest")
    func generateStopsAtEnd() throws {
        // A model whose LM head always prefers token 1 (the end token here).
        var rng = SplitMix64(seed: 4)
        var model = TinyLM(config: TinyLMConfig(vocabularySize: 4, contextLength: 6, width: 2, hidden: 2), rng: &rng)
        let biasStart = TinyLMParameters.offsets(model.config)[.lmHeadBias]!
        model.parameters.storage[biasStart + 1] = 50
        let sequences = try model.generate(prompts: Tensor.make([2, 2], [2, 3, 3, 2]), maxNewTokens: 4,
                                           temperature: 1, endOfSequence: 1, padId: 0, rng: &rng)
        #expect(sequences.shape == [2, 6])
        #expect(sequences.scalars == [2, 3, 1, 0, 0, 0, 3, 2, 1, 0, 0, 0])
    }

    // MARK: Invariants

    @Test("the backward pass equals central differences of the forward, for every weight")
    func backwardMatchesFiniteDifferences() throws {
        let (model, ids) = smallModel()
        var rng = SplitMix64(seed: 2)
        let V = model.config.vocabularySize, B = ids.shape[0], L = ids.shape[1]
        let gradLogits = Tensor.make([B, L, V], rng.uniform(count: B * L * V, -1, 1))
        let gradValues = Tensor.make([B, L], rng.uniform(count: B * L, -1, 1))
        let backward = try model.backward(try model.forward(ids), gradLogits: gradLogits, gradValues: gradValues)
        let numeric = try centralDifferenceGradient(at: model.parameters.storage) { weights in
            var probe = model
            probe.parameters.storage = weights
            let pass = try probe.forward(ids)
            var objective = 0.0
            for i in 0..<pass.logits.count { objective += pass.logits.scalars[i] * gradLogits.scalars[i] }
            for i in 0..<pass.values.count { objective += pass.values.scalars[i] * gradValues.scalars[i] }
            return objective
        }
        // h = 1e-5 central differences of an O(1) smooth function: error ~1e-10.
        expectClose(backward.storage, numeric, abs: 1e-8, rel: 1e-6, "d objective / d weights")
    }

    @Test("causal: changing a later token never changes an earlier position's logits or value")
    func causality() throws {
        let (model, ids) = smallModel()
        var changed = ids
        changed[0, 3] = (ids[0, 3] + 1) % 5
        let before = try model.forward(ids), after = try model.forward(changed)
        let V = model.config.vocabularySize
        for t in 0..<3 {
            #expect(before.values[0, t] == after.values[0, t])
            for v in 0..<V { #expect(before.logits[0, t, v] == after.logits[0, t, v]) }
        }
        #expect(before.values[0, 3] != after.values[0, 3])
    }

    @Test("each attention row is a distribution over s <= t: sums to 1, zero above the diagonal")
    func attentionRows() throws {
        let (model, ids) = smallModel(seed: 5)
        let activations = try model.forward(ids)
        let L = ids.shape[1]
        for b in 0..<ids.shape[0] {
            for t in 0..<L {
                let row = Array(activations.attention[((b * L + t) * L)..<((b * L + t + 1) * L)])
                expectClose(row.reduce(0, +), 1, abs: 1e-15, rel: 0, "attention row [\(b), \(t)] sum")
                #expect(row[(t + 1)...].allSatisfy { $0 == 0 })
            }
        }
    }

    @Test("the same seed gives the same weights; another seed does not")
    func seededInit() {
        let config = TinyLMConfig(vocabularySize: 7, contextLength: 3, width: 4, hidden: 5)
        var a = SplitMix64(seed: 11), b = SplitMix64(seed: 11), c = SplitMix64(seed: 12)
        let first = TinyLMParameters(randomFor: config, rng: &a)
        #expect(first == TinyLMParameters(randomFor: config, rng: &b))
        #expect(first.fingerprint != TinyLMParameters(randomFor: config, rng: &c).fingerprint)
    }

    // MARK: Bad input

    @Test("bad input throws a typed error naming the argument")
    func badInput() {
        let (model, ids) = smallModel()
        expectStageError(.labelOutOfRange, argument: "input_ids") { try model.forward(Tensor.make([1, 2], [0, 5])) }
        expectStageError(.parameterOutOfRange, argument: "L") { try model.forward(Tensor.make([1, 5], [0, 1, 2, 3, 4])) }
        expectStageError(.shapeMismatch, argument: "input_ids") { try model.forward(Tensor.make([4], [0, 1, 2, 3])) }
        expectStageError(.shapeMismatch, argument: "grad_values") {
            try model.backward(try model.forward(ids), gradLogits: nil, gradValues: Tensor.make([2, 3], [0, 0, 0, 0, 0, 0]))
        }
        expectStageError(.notANumber, argument: "grad_values") {
            try model.backward(try model.forward(ids), gradLogits: nil,
                               gradValues: Tensor.make([2, 4], [0, 0, .nan, 0, 0, 0, 0, 0]))
        }
        var rng = SplitMix64(seed: 1)
        expectStageError(.parameterOutOfRange, argument: "temperature") {
            try sampleToken(logits: [0.0, 1.0][...], temperature: 0, rng: &rng)
        }
        expectStageError(.notANumber, argument: "logits") {
            try sampleToken(logits: [0.0, .nan][...], temperature: 1, rng: &rng)
        }
        expectStageError(.parameterOutOfRange, argument: "max_new_tokens") {
            try model.generate(prompts: Tensor.make([1, 2], [0, 1]), maxNewTokens: 3, temperature: 1,
                               endOfSequence: 1, padId: 0, rng: &rng)
        }
        expectStageError(.parameterOutOfRange, argument: "B") {
            try model.generate(prompts: Tensor.make([0, 2], [Int64]()), maxNewTokens: 1, temperature: 1,
                               endOfSequence: 1, padId: 0, rng: &rng)
        }
        var other = TinyLMParameters(zerosFor: TinyLMConfig(vocabularySize: 2, contextLength: 1, width: 1, hidden: 1))
        var adam = Adam(for: other, learningRate: 0.1)
        expectStageError(.shapeMismatch, argument: "gradient") {
            try adam.step(&other, gradient: model.parameters)
        }
        #expect(other.storage.allSatisfy { $0 == 0 }, "a rejected step changes nothing")
        expectStageError(.shapeMismatch, argument: "mlp_in") {
            var named = [String: Tensor<Double>]()
            for weight in TinyLMWeight.allCases { named[weight.rawValue] = model.parameters.tensor(weight) }
            named["mlp_in"] = Tensor.make([3], [0, 0, 0])
            return try TinyLMParameters(named: named)
        }
    }
}
