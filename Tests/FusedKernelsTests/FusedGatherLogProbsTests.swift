import Testing
import TensorCore
import TestSupport
import Golden
import GatherLogProbs
@testable import FusedKernels

/// fused vs plain, both float32: the fused kernel's exp is within ~1-2 ulp of
/// libm's expf and its sum differs from the plain Double sum by < 1e-6 relative,
/// so log Σ moves by at most about an ulp of itself. Since |log_prob| >= log Σ,
/// that is < 1e-6 relative; the abs part covers results near 0 (and gradients,
/// which are softmax values times grad_output, |.| <= 1).
private let fusedVsPlain = (abs: 1e-6, rel: 1e-6)

@Suite("gather_log_probs fused")
struct FusedGatherLogProbsTests {
    // MARK: Golden (float32 fixtures; the float64 ones are for the plain, generic path)

    @Test("every float32 golden fixture passes through the fused forward and backward, with its tolerance")
    func golden() throws {
        let files = fixtureFiles(stage: "gather_log_probs").filter { $0.hasSuffix("-f32.json") }
        #expect(files.count >= 8)
        for file in files {
            let fixture = try Fixture.load(path: file)
            let a = try FixtureArguments<Float>(fixture)
            let logits = try a.float("logits"), labels = try a.ids("labels"), upstream = try a.optionalFloat("grad_output")
            switch fixture.expectation {
            case .error:
                // The fused kernel must reject it, with the plain stage's very error.
                let plain = Result { () throws(StageError) in try gatherLogProbs(logits: logits, labels: labels) }
                let fused = Result { () throws(StageError) in try gatherLogProbsFused(logits: logits, labels: labels) }
                guard case .failure(let plainError) = plain, case .failure(let fusedError) = fused else {
                    Issue.record("\(fixture.name): expected both to throw, got plain \(plain), fused \(fused)")
                    continue
                }
                #expect(fusedError == plainError, "\(fixture.name)")
            case .outputs(let outputs, let tolerance):
                let logProbs = try gatherLogProbsFused(logits: logits, labels: labels)
                let expected = try #require(outputs["log_probs"], "\(fixture.name) expects no log_probs")
                expectClose(logProbs.scalars.map(Double.init), expected.doubles, abs: tolerance.abs, rel: tolerance.rel,
                            "\(fixture.name) log_probs", shape: logProbs.shape)
                if let upstream {
                    let expectedGrad = try #require(outputs["grad_logits"], "\(fixture.name) has grad_output but expects no grad_logits")
                    let grad = try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream)
                    expectClose(grad.scalars.map(Double.init), expectedGrad.doubles, abs: tolerance.abs, rel: tolerance.rel,
                                "\(fixture.name) grad_logits", shape: grad.shape)
                }
            }
        }
    }

    // MARK: fused == plain

    @Test("fused = plain on random inputs of awkward sizes", arguments: [
        (1, 1, 1), (1, 1, 7), (2, 3, 17), (1, 5, 33), (2, 1, 8), (2, 2, 32), (3, 2, 100), (1, 1, 1_001), (2, 4, 4_099),
    ])
    func matchesPlain(shape: (Int, Int, Int)) throws {
        try expectFusedMatchesPlain(shape.0, shape.1, shape.2, seed: UInt64(shape.2))
    }

    @Test("a batch big enough to split across threads gives the plain answer")
    func splitAcrossThreads() throws {
        #expect(fusedRowChunkCount(rows: 3 * 37, vocabularySize: 257) > 1)
        try expectFusedMatchesPlain(3, 37, 257, seed: 99)
    }

    @Test("-inf logits, a row's max at the tail, logits of 1e4 and 1e6")
    func hardRows() throws {
        // V = 19: one full vector of 16 and a tail of 3, the max in the tail.
        var rng = SplitMix64(seed: 5)
        var x = rng.uniform(count: 4 * 19, -3, 3).map(Float.init)
        x[2] = -.infinity
        x[18] = 9
        for v in 19..<38 { x[v] += 1e4 }
        for v in 38..<57 { x[v] = 1e6 + Float(v % 3) }
        let logits = Tensor.make([2, 2, 19], x)
        let labels = Tensor.make([2, 2], [2, 5, 18, 0] as [Int64])
        let fused = try gatherLogProbsFused(logits: logits, labels: labels)
        let plain = try gatherLogProbs(logits: logits, labels: labels)
        #expect(fused.scalars[0] == -.infinity)
        expectClose(Array(fused.scalars.dropFirst()).map(Double.init), plain.scalars.dropFirst().map(Double.init),
                    abs: fusedVsPlain.abs, rel: fusedVsPlain.rel, "log_probs")
        // A masked (-inf) entry that is not the label: the vector path, as the plain one.
        let unmaskedLabels = Tensor.make([2, 2], [3, 5, 18, 0] as [Int64])
        expectClose(try gatherLogProbsFused(logits: logits, labels: unmaskedLabels),
                    try gatherLogProbs(logits: logits, labels: unmaskedLabels).scalars.map(Double.init),
                    abs: fusedVsPlain.abs, rel: fusedVsPlain.rel, "log_probs, -inf entry unlabelled")
        let upstream = Tensor.make([2, 2], [0.5, -1, 2, 1] as [Float])
        let grad = try gatherLogProbsFusedGradLogits(logits: logits, labels: unmaskedLabels, gradOutput: upstream)
        #expect(grad.scalars[2] == 0, "a -inf logit gets exactly zero gradient")
        expectClose(grad, try gatherLogProbsGradLogits(logits: logits, labels: unmaskedLabels, gradOutput: upstream).scalars.map(Double.init),
                    abs: fusedVsPlain.abs, rel: fusedVsPlain.rel, "grad_logits")
    }

    @Test("logits of ±3e38 in one row: x - m passes the float range, and both passes give the plain answer")
    func overflowingShift() throws {
        // V = 40 (two vectors and a tail). Row 0 holds 3e38 and -3e38: x - m is
        // -inf for the latter (its softmax and gradient exactly 0), and Σ x is 0, finite.
        var rng = SplitMix64(seed: 8)
        var x = rng.uniform(count: 2 * 40, -2, 2).map(Float.init)
        x[3] = 3e38
        x[20] = -3e38
        let logits = Tensor.make([2, 1, 40], x)
        let labels = Tensor.make([2, 1], [3, 11] as [Int64])
        let upstream = Tensor.make([2, 1], [0.5, -1] as [Float])
        let fused = try gatherLogProbsFused(logits: logits, labels: labels)
        expectClose(fused, try gatherLogProbs(logits: logits, labels: labels).scalars.map(Double.init),
                    abs: fusedVsPlain.abs, rel: fusedVsPlain.rel, "log_probs")
        let grad = try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream)
        #expect(grad.scalars[20] == 0)
        expectClose(grad, try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: upstream).scalars.map(Double.init),
                    abs: fusedVsPlain.abs, rel: fusedVsPlain.rel, "grad_logits")
    }

    // MARK: Errors

    @Test("bad input throws the plain version's error kinds and arguments")
    func errors() throws {
        let logits = Tensor<Float>(shape: [2, 3, 4], repeating: 0)
        let labels = Tensor<Int64>(shape: [2, 3], repeating: 0)
        let upstream = Tensor<Float>(shape: [2, 3], repeating: 1)
        var withNaN = logits
        withNaN[1, 2, 3] = .nan
        var nanInMiddleRow = logits  // a row whose max and probe come from the row before's exp pass
        nanInMiddleRow[0, 1, 2] = .nan
        var infInMiddleRow = logits
        infInMiddleRow[0, 2, 0] = .infinity
        let cases: [(StageError.Kind, String, Tensor<Float>, Tensor<Int64>)] = [
            (.labelOutOfRange, "labels", logits, Tensor.make([2, 3], [0, 1, 2, 3, 4, 0])),
            (.labelOutOfRange, "labels", logits, Tensor.make([2, 3], [0, 1, 2, 3, -1, 0])),
            (.shapeMismatch, "labels", logits, Tensor<Int64>(shape: [2, 4], repeating: 0)),
            (.shapeMismatch, "logits", Tensor<Float>(shape: [2, 3], repeating: 0), labels),
            (.parameterOutOfRange, "V", Tensor<Float>(shape: [2, 3, 0], repeating: 0), labels),
            (.notANumber, "logits", withNaN, labels),
            (.notANumber, "logits", nanInMiddleRow, labels),
            (.nonFiniteResult, "log_probs", infInMiddleRow, labels),
            (.nonFiniteResult, "log_probs", Tensor<Float>(shape: [1, 1, 2], repeating: -.infinity), Tensor.make([1, 1], [0])),
            (.nonFiniteResult, "log_probs", Tensor.make([1, 1, 2], [.infinity, 0]), Tensor.make([1, 1], [1])),
        ]
        for (kind, argument, x, y) in cases {
            expectStageError(kind, argument: argument) { try gatherLogProbsFused(logits: x, labels: y) }
            let plain = Result { () throws(StageError) in try gatherLogProbs(logits: x, labels: y) }
            let fused = Result { () throws(StageError) in try gatherLogProbsFused(logits: x, labels: y) }
            if case .failure(let p) = plain, case .failure(let f) = fused {
                #expect(p == f, "the same error, detail included")
            }
            let grad = Tensor<Float>(shape: y.shape, repeating: 1)
            expectStageError(kind, argument: argument) {
                try gatherLogProbsFusedGradLogits(logits: x, labels: y, gradOutput: grad)
            }
        }
        // grad_output is checked after the logits, as in the plain version.
        expectStageError(.shapeMismatch, argument: "grad_output") {
            try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: Tensor<Float>(shape: [3, 2], repeating: 0))
        }
        var upstreamNaN = upstream
        upstreamNaN[0, 1] = .nan
        expectStageError(.notANumber, argument: "grad_output") {
            try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstreamNaN)
        }
        expectStageError(.notANumber, argument: "logits") {
            try gatherLogProbsFusedGradLogits(logits: withNaN, labels: labels, gradOutput: upstreamNaN)
        }
    }

    @Test("empty batches give empty results")
    func empty() throws {
        let logits = Tensor<Float>(shape: [0, 3, 5], repeating: 0)
        let labels = Tensor<Int64>(shape: [0, 3], repeating: 0)
        #expect(try gatherLogProbsFused(logits: logits, labels: labels).shape == [0, 3])
        #expect(try gatherLogProbsFusedGradLogits(logits: logits, labels: labels,
                                                 gradOutput: Tensor<Float>(shape: [0, 3], repeating: 0)).shape == [0, 3, 5])
    }
}

/// Checks forward and backward of the fused kernel against the plain versions
/// on seeded uniform logits in [-6, 6).
private func expectFusedMatchesPlain(_ b: Int, _ t: Int, _ v: Int, seed: UInt64,
                                     sourceLocation: SourceLocation = #_sourceLocation) throws {
    var rng = SplitMix64(seed: seed)
    let logits = Tensor.make([b, t, v], rng.uniform(count: b * t * v, -6, 6).map(Float.init))
    let labels = Tensor.make([b, t], (0..<(b * t)).map { _ in Int64.random(in: 0..<Int64(v), using: &rng) })
    let upstream = Tensor.make([b, t], rng.uniform(count: b * t, -2, 2).map(Float.init))
    let label = "\(b)x\(t)x\(v)"
    expectClose(try gatherLogProbsFused(logits: logits, labels: labels), try gatherLogProbs(logits: logits, labels: labels).scalars.map(Double.init),
                abs: fusedVsPlain.abs, rel: fusedVsPlain.rel, "\(label) log_probs", sourceLocation: sourceLocation)
    let plainGrad = try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: upstream)
    expectClose(try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream),
                plainGrad.scalars.map(Double.init), abs: fusedVsPlain.abs, rel: fusedVsPlain.rel, "\(label) grad_logits",
                sourceLocation: sourceLocation)
}

@Suite("gather_log_probs fused: infinite inputs")
struct FusedGatherLogProbsInfiniteInputTests {
    @Test("an infinite grad_output throws the plain version's nonFiniteResult, detail included")
    func infiniteGradOutput() throws {
        // 2 x 3 rows of V = 40 (two SIMD16 blocks and a tail), one -inf logit.
        var logits = Tensor<Float>(shape: [2, 3, 40], repeating: 0)
        for i in 0..<logits.count { logits.scalars[i] = Float(i % 7) * 0.25 }
        logits[1, 1, 5] = -.infinity
        let labels = Tensor<Int64>.make([2, 3], [0, 5, 39, 2, 5, 7])
        for upstream in [Float.infinity, -.infinity] {
            var gradOutput = Tensor<Float>(shape: [2, 3], repeating: 1)
            gradOutput[1, 1] = upstream  // the label's logit is -inf there: p = 0, g - 0·g is still NaN
            let plain = Result { () throws(StageError) in
                try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: gradOutput)
            }
            let fused = Result { () throws(StageError) in
                try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: gradOutput)
            }
            guard case .failure(let p) = plain, case .failure(let f) = fused else {
                Issue.record("expected both to throw, got \(plain) and \(fused)")
                continue
            }
            #expect(p.kind == .nonFiniteResult && p.argument == "grad_logits", "\(p)")
            #expect(p == f, "the same error, detail included")
        }
    }
}
