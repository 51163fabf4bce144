import Foundation
import Testing
import TensorCore
import TestSupport
@testable import GatherLogProbs

@Suite("gather_log_probs")
struct GatherLogProbsTests {
    // MARK: Golden

    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "gather_log_probs")
    }

    // MARK: Known answers

    @Test("log_softmax([0, 1, 2]) by hand: log(1 + e^-1 + e^-2) = 0.4076059644443806")
    func smallRow() throws {
        let logits = try Tensor(shape: [1, 3, 3], scalars: [0, 1, 2, 0, 1, 2, 0, 1, 2] as [Double])
        let labels = try Tensor(shape: [1, 3], scalars: [2, 1, 0] as [Int64])
        let logProbs = try gatherLogProbs(logits: logits, labels: labels)
        let logSum = log(1 + exp(-1.0) + exp(-2.0))
        expectClose(logProbs, [-logSum, -1 - logSum, -2 - logSum], "log_probs")
    }

    @Test("the one-token shift: logits at t score token t + 1 (pitfalls test 1)")
    func shiftAlignment() throws {
        // ids [0, 1, 2, 3], vocabulary 5; logits[t] is 20 at ids[t + 1], 0 elsewhere.
        let ids: [Int64] = [0, 1, 2, 3]
        var logits = Tensor<Double>(shape: [1, 4, 5], repeating: 0)
        for t in 0..<3 { logits[0, t, Int(ids[t + 1])] = 20 }
        // logits[:, :-1] against ids[:, 1:]
        var shifted = Tensor<Double>(shape: [1, 3, 5], repeating: 0)
        for t in 0..<3 { for v in 0..<5 { shifted[0, t, v] = logits[0, t, v] } }
        let labels = Tensor.make([1, 3], Array(ids[1...]))
        let logProbs = try gatherLogProbs(logits: shifted, labels: labels)
        let expected = -log(1 + 4 * exp(-20.0))  // about -8.2e-9
        // log(1 + 8e-9) is taken of a rounded sum (as PyTorch does), so only ~1e-16
        // absolute accuracy is there to be had.
        expectClose(logProbs, [expected, expected, expected], abs: 1e-15, rel: 0, "shifted log_probs")
        // Without the shift the labels sit under the wrong logits: about -20.
        let unshifted = try gatherLogProbs(logits: shifted, labels: Tensor.make([1, 3], Array(ids[..<3])))
        #expect(unshifted.scalars.allSatisfy { $0 < -19 })
    }

    @Test("logits of 1e4: log_softmax stays exact where log(softmax) gives -inf")
    func largeLogits() throws {
        let logits = try Tensor(shape: [1, 2, 2], scalars: [1e4, 0, 1e4, 0] as [Double])
        let labels = try Tensor(shape: [1, 2], scalars: [0, 1] as [Int64])
        expectClose(try gatherLogProbs(logits: logits, labels: labels), [0, -1e4], "float64")
        let logits32 = logits.converted(to: Float.self)
        expectClose(try gatherLogProbs(logits: logits32, labels: labels), [0, -1e4], abs: 0, rel: 0, "float32")
        // The naive form: exp(1e4) overflows, so softmax is inf/inf = NaN.
        let naive = exp(1e4) / (exp(1e4) + exp(0.0))
        #expect(naive.isNaN)
    }

    @Test("float32 logits near 1e4 keep their differences (pitfalls test 12)")
    func float32NearTenThousand() throws {
        let logits = try Tensor(shape: [1, 1, 3], scalars: [1e4, 1e4 - 1, 1e4 - 2] as [Float])
        var results = [Float]()
        for label in Int64(0)..<3 {
            results.append(try gatherLogProbs(logits: logits, labels: Tensor.make([1, 1], [label])).scalars[0])
        }
        expectClose(results.map(Double.init), [-0.407606, -1.407606, -2.407606], abs: 1e-5, rel: 0, "float32 log_probs")
    }

    @Test("a -inf logit (a masked vocabulary entry) takes no probability")
    func maskedVocabularyEntry() throws {
        let logits = try Tensor(shape: [1, 1, 3], scalars: [0, -.infinity, 0] as [Double])
        let logProbs = try gatherLogProbs(logits: logits, labels: Tensor.make([1, 1], [2]))
        expectClose(logProbs, [-log(2.0)], "log_probs")
        let onMasked = try gatherLogProbs(logits: logits, labels: Tensor.make([1, 1], [1]))
        #expect(onMasked.scalars[0] == -.infinity)
    }

    // MARK: Invariants

    @Test("probabilities over the vocabulary sum to 1, and adding a constant changes nothing")
    func invariants() throws {
        var rng = SplitMix64(seed: 7)
        let vocabularySize = 11
        let row = rng.uniform(count: vocabularySize, -5, 5)
        let logits = Tensor.make([1, vocabularySize, vocabularySize], Array((0..<vocabularySize).map { _ in row }.joined()))
        let labels = Tensor.make([1, vocabularySize], (0..<vocabularySize).map { Int64($0) })
        let logProbs = try gatherLogProbs(logits: logits, labels: labels)
        let total = logProbs.scalars.reduce(0) { $0 + exp($1) }
        expectClose([total], [1], abs: 1e-14, rel: 0, "Σ_v p(v)")
        #expect(logProbs.scalars.allSatisfy { $0 <= 0 })

        let shifted = Tensor.make(logits.shape, logits.scalars.map { $0 + 123.5 })
        expectClose(try gatherLogProbs(logits: shifted, labels: labels), logProbs.scalars, abs: 1e-12, rel: 0,
                    "log_probs after adding 123.5 to every logit")
    }

    // MARK: Errors

    @Test("bad input throws a typed error naming the argument")
    func errors() throws {
        let logits = Tensor<Double>(shape: [2, 3, 4], repeating: 0)
        expectStageError(.labelOutOfRange, argument: "labels") {
            try gatherLogProbs(logits: logits, labels: Tensor(shape: [2, 3], scalars: [0, 1, 2, 3, 4, 0]))
        }
        expectStageError(.labelOutOfRange, argument: "labels") {
            try gatherLogProbs(logits: logits, labels: Tensor(shape: [2, 3], scalars: [0, 1, 2, 3, -1, 0]))
        }
        expectStageError(.shapeMismatch, argument: "labels") {
            try gatherLogProbs(logits: logits, labels: Tensor<Int64>(shape: [2, 4], repeating: 0))
        }
        expectStageError(.shapeMismatch, argument: "logits") {
            try gatherLogProbs(logits: Tensor<Double>(shape: [2, 3], repeating: 0), labels: Tensor<Int64>(shape: [2, 3], repeating: 0))
        }
        var withNaN = logits
        withNaN[1, 2, 3] = .nan
        expectStageError(.notANumber, argument: "logits") {
            try gatherLogProbs(logits: withNaN, labels: Tensor<Int64>(shape: [2, 3], repeating: 0))
        }
        let allMasked = Tensor<Double>(shape: [1, 1, 2], repeating: -.infinity)
        expectStageError(.nonFiniteResult, argument: "log_probs") {
            try gatherLogProbs(logits: allMasked, labels: Tensor<Int64>(shape: [1, 1], repeating: 0))
        }
    }
}

@Suite("gather_log_probs backward")
struct GatherLogProbsBackwardTests {
    @Test("grad_logits equals central differences of Σ log_probs · grad_output")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 31)
        let shape = [2, 3, 5]
        let x = rng.uniform(count: 30, -3, 3)
        let labels = Tensor.make([2, 3], (0..<6).map { _ in Int64.random(in: 0..<5, using: &rng) })
        let upstream = Tensor.make([2, 3], rng.uniform(count: 6, -1, 1))
        let grad = try gatherLogProbsGradLogits(logits: Tensor.make(shape, x), labels: labels, gradOutput: upstream)
        let numeric = try centralDifferenceGradient(at: x) { probe in
            let logProbs = try gatherLogProbs(logits: Tensor.make(shape, probe), labels: labels)
            return zip(logProbs.scalars, upstream.scalars).reduce(0) { $0 + $1.0 * $1.1 }
        }
        expectClose(grad, numeric, abs: 1e-8, rel: 1e-6, "grad_logits vs finite differences")
    }

    @Test("each row of grad_logits sums to zero; a -inf logit gets exactly zero")
    func rowsSumToZero() throws {
        var rng = SplitMix64(seed: 37)
        var x = rng.uniform(count: 2 * 4 * 7, -5, 5)
        x[3] = -.infinity
        let labels = Tensor.make([2, 4], (0..<8).map { Int64($0 % 3) })
        let upstream = Tensor.make([2, 4], rng.uniform(count: 8, -2, 2))
        let grad = try gatherLogProbsGradLogits(logits: Tensor.make([2, 4, 7], x), labels: labels, gradOutput: upstream)
        for row in 0..<8 {
            let sum = (0..<7).reduce(0.0) { $0 + grad.scalars[row * 7 + $1] }
            expectClose([sum], [0], abs: 1e-15, rel: 0, "Σ_v grad_logits[row \(row)]")
        }
        #expect(grad.scalars[3] == 0)
    }
}

@Suite("gather_log_probs: infinite inputs")
struct GatherLogProbsInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `gather_log_probs` (GoldenData/generator/stages/gather_log_probs.py) and autograd,
    // on the same inputs.
    static let logits = Tensor.make([1, 2, 3], [0, -.infinity, 0, 1, 1, -.infinity] as [Double])
    static let labels = intMatrix([[1, 0]])

    @Test("a -inf logit at the label: log-prob -inf, the label's gradient is grad_output itself")
    func infiniteLogit() throws {
        expectClose(try gatherLogProbs(logits: Self.logits, labels: Self.labels), [-.infinity, -0.6931471805599453],
                    "log_probs")
        let grad = try gatherLogProbsGradLogits(logits: Self.logits, labels: Self.labels, gradOutput: matrix([[2, -1]]))
        expectClose(grad, [-1, 2, -1, -0.5, 0.5, 0], "grad_logits")
    }

    @Test("an infinite grad_output: PyTorch's gradient at the label is g - p·g = NaN, a nonFiniteResult")
    func infiniteGradOutput() throws {
        // PyTorch: grad_logits[0, 1] = [nan, -inf, nan] for grad_output[0, 1] = inf.
        for upstream in [Double.infinity, -.infinity] {
            expectStageError(.nonFiniteResult, argument: "grad_logits") {
                try gatherLogProbsGradLogits(logits: Self.logits, labels: Self.labels, gradOutput: matrix([[2, upstream]]))
            }
        }
    }
}
