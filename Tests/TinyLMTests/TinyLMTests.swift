import Foundation
import Testing
import TensorCore
import Golden
import TestSupport
@testable import TinyLM

/// A small random model and batch: V = 5, C = 3, H = 4, context 4 (123 weights).
private func smallModel(seed: UInt64 = 1) throws -> (TinyLM, Tensor<Int64>) {
    var rng = SplitMix64(seed: seed)
    let config = TinyLMConfig(vocabularySize: 5, contextLength: 4, width: 3, hidden: 4)
    var model = try TinyLM(config: config, rng: &rng)
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
        let model = try TinyLM(config: TinyLMConfig(vocabularySize: 6, contextLength: 5, width: 4, hidden: 3), rng: &rng)
        let values = try model.forward(Tensor.make([1, 5], [0, 1, 2, 3, 4])).values
        #expect(values.scalars == [0, 0, 0, 0, 0])
    }

    @Test("position 0 attends only to itself: its attention weight is exactly 1")
    func firstPositionAttention() throws {
        let (model, ids) = try smallModel()
        let activations = try model.forward(ids)
        let L = ids.shape[1]
        for b in 0..<ids.shape[0] {
            #expect(activations.attention[b * L * L] == 1)
        }
    }

    @Test("Adam's first step moves each weight by lr * g / (|g| + eps): the bias corrections undo the zero start")
    func adamFirstStep() throws {
        let config = TinyLMConfig(vocabularySize: 2, contextLength: 1, width: 1, hidden: 1)
        var parameters = try TinyLMParameters(zerosFor: config)
        var gradient = try TinyLMParameters(zerosFor: config)
        for i in gradient.storage.indices { gradient.storage[i] = Double(i + 1) * (i % 2 == 0 ? 1 : -0.001) }
        var adam = try Adam(for: parameters, learningRate: 0.01)
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
        var model = try TinyLM(config: TinyLMConfig(vocabularySize: 4, contextLength: 6, width: 2, hidden: 2), rng: &rng)
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
        let (model, ids) = try smallModel()
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
        let (model, ids) = try smallModel()
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
        let (model, ids) = try smallModel(seed: 5)
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
    func seededInit() throws {
        let config = TinyLMConfig(vocabularySize: 7, contextLength: 3, width: 4, hidden: 5)
        var a = SplitMix64(seed: 11), b = SplitMix64(seed: 11), c = SplitMix64(seed: 12)
        let first = try TinyLMParameters(randomFor: config, rng: &a)
        #expect(try first == TinyLMParameters(randomFor: config, rng: &b))
        #expect(try first.fingerprint != TinyLMParameters(randomFor: config, rng: &c).fingerprint)
    }

    // MARK: Bad input

    @Test("bad input throws a typed error naming the argument")
    func badInput() throws {
        let (model, ids) = try smallModel()
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
        var other = try TinyLMParameters(zerosFor: TinyLMConfig(vocabularySize: 2, contextLength: 1, width: 1, hidden: 1))
        var adam = try Adam(for: other, learningRate: 0.1)
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

/// A model whose vocabulary is wide enough that a batch of a few million ids
/// passes the activation limit: V = 2^11, C = H = 1, context 4.
private func wideVocabularyModel() throws -> TinyLM {
    var rng = SplitMix64(seed: 1)
    return try TinyLM(config: TinyLMConfig(vocabularySize: 1 << 11, contextLength: 4, width: 1, hidden: 1), rng: &rng)
}

/// The fixture weights of `model` by name, as `TinyLMParameters(named:)` takes them.
private func namedWeights(_ model: TinyLM) -> [String: Tensor<Double>] {
    var named = [String: Tensor<Double>]()
    for weight in TinyLMWeight.allCases { named[weight.rawValue] = model.parameters.tensor(weight) }
    return named
}

@Suite("tiny_lm: hostile input")
struct TinyLMHostileInputTests {
    // MARK: Sizes, before any allocation

    @Test("a config with a size below 1 or beyond 2^31 weights is refused before anything is allocated")
    func absurdConfigs() {
        var rng = SplitMix64(seed: 1)
        let zeroWidth = TinyLMConfig(vocabularySize: 5, contextLength: 4, width: 0, hidden: 4)
        expectStageError(.parameterOutOfRange, argument: "width") { try TinyLMParameters(zerosFor: zeroWidth) }
        expectStageError(.parameterOutOfRange, argument: "width") { try TinyLMParameters(randomFor: zeroWidth, rng: &rng) }
        expectStageError(.parameterOutOfRange, argument: "width") { try TinyLM(config: zeroWidth, rng: &rng) }
        let noContext = TinyLMConfig(vocabularySize: 5, contextLength: 0, width: 3, hidden: 4)
        expectStageError(.parameterOutOfRange, argument: "contextLength") { try TinyLMParameters(zerosFor: noContext) }
        // V·C overflows Int: counted without overflow, and refused.
        let overflowing = TinyLMConfig(vocabularySize: 1 << 40, contextLength: 1, width: 1 << 40, hidden: 1)
        expectStageError(.tooLarge, argument: "token_embedding") { try TinyLMParameters(zerosFor: overflowing) }
        // Each tensor fits, all of them together do not: V·C = 2^31 already.
        let tooMany = TinyLMConfig(vocabularySize: 1 << 20, contextLength: 1, width: 1 << 11, hidden: 1)
        expectStageError(.tooLarge, argument: "position_embedding") { try TinyLMParameters(zerosFor: tooMany) }
        expectStageError(.tooLarge, argument: "mlp_in") {
            try TinyLMConfig(vocabularySize: 5, contextLength: 4, width: 3, hidden: Int.max).checkedWeightCount(stage: "tiny_lm")
        }
    }

    @Test("a fixture of zero-width weights (a few bytes asking for gigabytes) is refused before anything is allocated")
    func zeroWidthFixture() throws {
        // C = 0 made every weight but the biases empty, yet the storage
        // V + H + ... long: with V, H near 2^31, about 28 GB of zeros.
        var named = namedWeights(try smallModel().0)
        named["token_embedding"] = Tensor(shape: [1 << 20, 0], repeating: 0)
        named["position_embedding"] = Tensor(shape: [1 << 20, 0], repeating: 0)
        named["mlp_in"] = Tensor(shape: [0, 1 << 20], repeating: 0)
        expectStageError(.shapeMismatch, argument: "token_embedding") { try TinyLMParameters(named: named) }
        named["token_embedding"] = Tensor(shape: [1 << 31, 0], repeating: 0)  // past the limit for an empty tensor
        expectStageError(.tooLarge, argument: "token_embedding") { try TinyLMParameters(named: named) }
        named = namedWeights(try smallModel().0)
        named["mlp_in"] = Tensor(shape: [3, 0], repeating: 0)
        expectStageError(.shapeMismatch, argument: "mlp_in") { try TinyLMParameters(named: named) }
        named = namedWeights(try smallModel().0)
        named["lm_head_bias"] = nil
        expectStageError(.shapeMismatch, argument: "lm_head_bias") { try TinyLMParameters(named: named) }
        named = namedWeights(try smallModel().0)
        named["attention_key"] = Tensor(shape: [3, 4], repeating: 0)
        expectStageError(.shapeMismatch, argument: "attention_key") { try TinyLMParameters(named: named) }
    }

    @Test("a batch whose activations pass 2^31 elements is refused by forward and generate before they allocate")
    func batchBeyondLimit() throws {
        let model = try wideVocabularyModel()
        // [2^19, 4] ids: logits [2^19, 4, 2^11] would be 2^32 elements.
        expectStageError(.tooLarge, argument: "input_ids") {
            try model.forward(Tensor(shape: [1 << 19, 4], repeating: 0))
        }
        var rng = SplitMix64(seed: 1)
        expectStageError(.tooLarge, argument: "prompts") {
            try model.generate(prompts: Tensor(shape: [1 << 19, 1], repeating: 0), maxNewTokens: 3, temperature: 1,
                               endOfSequence: 1, padId: 0, rng: &rng)
        }
        expectStageError(.tooLarge, argument: "batch") {
            try model.config.checkBatch(batchSize: Int.max, length: 4, InputCheck(stage: "tiny_lm"), argument: "batch")
        }
    }

    // MARK: Weights

    @Test("a replaced storage of the wrong length, or a NaN weight, is refused by forward, backward and Adam")
    func damagedStorage() throws {
        let (model, ids) = try smallModel()
        let activations = try model.forward(ids)
        var short = model
        short.parameters.storage.removeLast()
        expectStageError(.shapeMismatch, argument: "parameters") { try short.forward(ids) }
        expectStageError(.shapeMismatch, argument: "parameters") {
            try short.backward(activations, gradLogits: nil, gradValues: nil)
        }
        var withNaN = model
        let mlpOut = TinyLMParameters.offsets(model.config)[.mlpOut]!
        withNaN.parameters.storage[mlpOut + 5] = .nan
        expectStageError(.notANumber, argument: "mlp_out") { try withNaN.forward(ids) }
        var adam = try Adam(for: model.parameters, learningRate: 0.1)
        let gradient = try model.backward(activations, gradLogits: nil, gradValues: Tensor(shape: [2, 4], repeating: 1))
        expectStageError(.notANumber, argument: "mlp_out") { try adam.step(&withNaN.parameters, gradient: gradient) }
    }

    @Test("backward refuses the activations of a model of another config")
    func foreignActivations() throws {
        let (model, _) = try smallModel()
        var rng = SplitMix64(seed: 2)
        let other = try TinyLM(config: TinyLMConfig(vocabularySize: 5, contextLength: 4, width: 2, hidden: 4), rng: &rng)
        let activations = try other.forward(Tensor.make([1, 2], [0, 1]))
        expectStageError(.shapeMismatch, argument: "activations") {
            try model.backward(activations, gradLogits: nil, gradValues: nil)
        }
    }

    @Test("an infinite weight: NaN logits or gradients throw nonFiniteResult naming the output; an inf logit is kept, as PyTorch keeps it")
    func infiniteWeights() throws {
        let (model, ids) = try smallModel()
        let offsets = TinyLMParameters.offsets(model.config)
        // inf in W_q: the attention scores are ±inf, and softmax of inf - inf is NaN.
        var query = model
        query.parameters.storage[offsets[.attentionQuery]!] = .infinity
        expectStageError(.nonFiniteResult, argument: "logits") { try query.forward(ids) }
        // inf in the LM head's bias: one logit column is +inf, the rest finite.
        var bias = model
        bias.parameters.storage[offsets[.lmHeadBias]! + 2] = .infinity
        let pass = try bias.forward(ids)
        #expect(pass.logits[0, 0, 2] == .infinity)
        #expect(pass.logits[0, 0, 1].isFinite)
        // inf in W_lm meets a zero upstream gradient in dlogits · W_lmᵀ: 0 · inf is NaN.
        var head = model
        head.parameters.storage[offsets[.lmHead]!] = .infinity
        let headPass = try head.forward(ids)
        expectStageError(.nonFiniteResult, argument: "grad_token_embedding") {
            try head.backward(headPass, gradLogits: Tensor(shape: [2, 4, 5], repeating: 0), gradValues: nil)
        }
        // A fixture's infinite weight is taken as it is, and fails the same way.
        var named = namedWeights(model)
        named["attention_query"]!.scalars[0] = .infinity
        let fromFixture = TinyLM(parameters: try TinyLMParameters(named: named))
        expectStageError(.nonFiniteResult, argument: "logits") { try fromFixture.forward(ids) }
    }

    // MARK: Adam

    @Test("Adam refuses what torch.optim.Adam refuses (lr < 0, eps < 0, beta outside [0, 1)), NaN and inf too")
    func adamSettings() throws {
        let (model, _) = try smallModel()
        let p = model.parameters
        for lr in [Double.nan, -1, .infinity] {
            expectStageError(.parameterOutOfRange, argument: "learning_rate") { try Adam(for: p, learningRate: lr) }
        }
        for beta in [1, -0.1, .nan, 1.5] {
            expectStageError(.parameterOutOfRange, argument: "beta1") { try Adam(for: p, learningRate: 0.1, beta1: beta) }
            expectStageError(.parameterOutOfRange, argument: "beta2") { try Adam(for: p, learningRate: 0.1, beta2: beta) }
        }
        for eps in [-1e-8, .nan, .infinity] {
            expectStageError(.parameterOutOfRange, argument: "epsilon") { try Adam(for: p, learningRate: 0.1, epsilon: eps) }
        }
        // Accepted, as PyTorch accepts them: lr 0, eps 0, beta 0.
        _ = try Adam(for: p, learningRate: 0, beta1: 0, beta2: 0, epsilon: 0)

        // A setting changed after init is checked at the step; nothing moves.
        var parameters = p
        var adam = try Adam(for: p, learningRate: 0.1)
        adam.learningRate = .nan
        let gradient = try TinyLMParameters(zerosFor: model.config)
        expectStageError(.parameterOutOfRange, argument: "learning_rate") { try adam.step(&parameters, gradient: gradient) }
        adam.learningRate = 0.1
        adam.beta1 = 1
        expectStageError(.parameterOutOfRange, argument: "beta1") { try adam.step(&parameters, gradient: gradient) }
        #expect(parameters == p)
        #expect(adam.stepCount == 0)
    }

    @Test("an Adam step that would write NaN throws nonFiniteResult and changes nothing (eps 0 with a zero gradient is 0/0 in PyTorch too)")
    func adamNaNUpdate() throws {
        let (model, _) = try smallModel()
        var parameters = model.parameters
        var adam = try Adam(for: parameters, learningRate: 0.1, epsilon: 0)
        let zero = try TinyLMParameters(zerosFor: model.config)
        expectStageError(.nonFiniteResult, argument: "parameters") { try adam.step(&parameters, gradient: zero) }
        #expect(parameters == model.parameters)
        #expect(adam.stepCount == 0)
        var infinite = zero
        infinite.storage[3] = .infinity
        var usual = try Adam(for: parameters, learningRate: 0.1)
        expectStageError(.nonFiniteResult, argument: "parameters") { try usual.step(&parameters, gradient: infinite) }
        #expect(parameters == model.parameters)
        var short = zero
        short.storage.removeLast()
        expectStageError(.shapeMismatch, argument: "gradient") { try usual.step(&parameters, gradient: short) }
    }

    // MARK: Sampling

    @Test("sampleToken throws where the softmax has no answer, and never draws a token of zero probability")
    func samplingWithoutMass() throws {
        var rng = SplitMix64(seed: 3)
        let inf = Double.infinity
        expectStageError(.nonFiniteResult, argument: "probabilities") {
            try sampleToken(logits: [-inf, -inf, -inf][...], temperature: 1, rng: &rng)
        }
        expectStageError(.nonFiniteResult, argument: "probabilities") {
            try sampleToken(logits: [0, inf, 1][...], temperature: 1, rng: &rng)
        }
        // Finite logits, but 1e300 / 1e-10 overflows to inf.
        expectStageError(.nonFiniteResult, argument: "probabilities") {
            try sampleToken(logits: [1e300, 0][...], temperature: 1e-10, rng: &rng)
        }
        expectStageError(.shapeMismatch, argument: "logits") { try sampleToken(logits: [][...], temperature: 1, rng: &rng) }
        for temperature in [0, -1, Double.nan, inf, -inf] {
            expectStageError(.parameterOutOfRange, argument: "temperature") {
                try sampleToken(logits: [0.0, 1.0][...], temperature: temperature, rng: &rng)
            }
        }
        for _ in 0..<200 {
            #expect(try sampleToken(logits: [-inf, 0, -inf, 0][...], temperature: 1, rng: &rng) % 2 == 1)
            #expect(try sampleToken(logits: [-1e300, 0][...], temperature: 1, rng: &rng) == 1)
        }
    }

    // MARK: generate

    @Test("generate checks every argument before its first forward pass")
    func generateArguments() throws {
        let (model, _) = try smallModel()  // V = 5, context 4
        var rng = SplitMix64(seed: 1)
        func generate(_ prompts: Tensor<Int64> = Tensor.make([1, 2], [0, 1]), maxNewTokens: Int = 1,
                      temperature: Double = 1, endOfSequence: Int64 = 1, padId: Int64 = 0) throws -> Tensor<Int64> {
            try model.generate(prompts: prompts, maxNewTokens: maxNewTokens, temperature: temperature,
                               endOfSequence: endOfSequence, padId: padId, rng: &rng)
        }
        // A prompt longer than the context used to trap building the range for max_new_tokens.
        expectStageError(.parameterOutOfRange, argument: "P") { try generate(Tensor.make([1, 5], [0, 1, 2, 3, 4])) }
        expectStageError(.parameterOutOfRange, argument: "P") { try generate(Tensor(shape: [1, 0], repeating: 0)) }
        expectStageError(.parameterOutOfRange, argument: "B") { try generate(Tensor(shape: [0, 2], repeating: 0)) }
        expectStageError(.shapeMismatch, argument: "prompts") { try generate(Tensor.make([2], [0, 1])) }
        for maxNewTokens in [-1, 3, Int.max, Int.min] {
            expectStageError(.parameterOutOfRange, argument: "max_new_tokens") { try generate(maxNewTokens: maxNewTokens) }
        }
        for temperature in [0, -1, Double.nan, .infinity] {
            // Checked even when no token is sampled.
            expectStageError(.parameterOutOfRange, argument: "temperature") {
                try generate(maxNewTokens: 0, temperature: temperature)
            }
        }
        expectStageError(.labelOutOfRange, argument: "prompts") { try generate(Tensor.make([1, 2], [0, 5])) }
        expectStageError(.labelOutOfRange, argument: "prompts") { try generate(Tensor.make([1, 2], [-1, 0])) }
        expectStageError(.labelOutOfRange, argument: "pad_id") { try generate(padId: 5) }
        expectStageError(.labelOutOfRange, argument: "pad_id") { try generate(padId: -1) }
        expectStageError(.labelOutOfRange, argument: "end_of_sequence") { try generate(endOfSequence: -1) }
        // The edges that are fine: no new token, and a prompt that fills the context.
        #expect(try generate(maxNewTokens: 0) == Tensor.make([1, 2], [0, 1]))
        #expect(try generate(Tensor.make([1, 4], [0, 1, 2, 3]), maxNewTokens: 0).shape == [1, 4])
    }
}
