import Testing
import TensorCore
import TestSupport
import GatherLogProbs
@testable import FusedKernels

/// fused vs plain log-probs, both float32: as for `gatherLogProbsFused` (the
/// label's z bit for bit; inside the sum, z - m as (x - m_x) · (1/d), within an
/// ulp or two of it, so S within < 1e-6 relative and log S within about an ulp).
private let logProbTolerance = (abs: 1e-6, rel: 1e-6)

/// fused vs plain entropy: the plain form m + log S - Σ p·z rounds two numbers
/// near m and a sum of terms up to max|z| (each about 2^-24 relative), so it
/// carries an error of a few ulp of max|z|; the fused log S - W / S carries less.
/// Four float32 ulp of max|z|, plus the log-probs' 1e-6.
private func entropyTolerance(_ z: Tensor<Float>) -> Double {
    1e-6 + 4 * Double(Float.ulpOfOne) * z.scalars.reduce(0) { max($0, Double(Swift.abs($1))) }
}

@Suite("log-probs with entropy: fused = plain")
struct FusedLogProbsWithEntropyTests {
    @Test("fused = plain on random inputs of awkward sizes and temperatures", arguments: [
        (1, 1, 1, 1.0), (1, 1, 7, 0.7), (2, 3, 17, 1.0), (1, 5, 33, 2.0), (2, 2, 32, 0.7), (3, 2, 100, 1.0),
        (1, 1, 255, 0.5), (1, 2, 257, 0.7), (1, 1, 1_001, 1.0), (1, 2, 1_024, 1.0), (1, 1, 1_025, 2.0),
        (2, 4, 4_099, 0.7),
    ])
    func matchesPlain(shape: (Int, Int, Int, Double)) throws {
        try expectFusedEntropyMatchesPlain(shape.0, shape.1, shape.2, temperature: shape.3, seed: UInt64(shape.2))
    }

    @Test("a batch big enough to split across threads gives the plain answer")
    func splitAcrossThreads() throws {
        #expect(fusedRowChunkCount(rows: 3 * 37, vocabularySize: 1_100) > 1)
        try expectFusedEntropyMatchesPlain(3, 37, 1_100, temperature: 0.7, seed: 99)
    }

    @Test("V = 1: log-prob 0 and entropy 0, exactly")
    func singleEntry() throws {
        let logits = Tensor.make([2, 1, 1], [3.5, -1e6] as [Float])
        let labels = Tensor<Int64>(shape: [2, 1], repeating: 0)
        let fused = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 0.7)
        // One entry: softmax = 1, so log 1 = 0 and entropy = log 1 - 1·0 = 0.
        #expect(fused.logProbs.scalars == [0, 0])
        #expect(fused.entropy.scalars == [0, 0])
        let plain = try logProbsWithEntropy(logits: logits, labels: labels, temperature: 0.7)
        #expect(plain.logProbs.scalars == [0, 0])
        #expect(plain.entropy.scalars == [0, 0])
    }

    @Test("known answer: z = (0, ln 3) gives p = (1/4, 3/4)")
    func knownAnswer() throws {
        // temperature + 1e-7 = 0.5, so z = 2x: x = (0, ln(3)/2) -> z = (0, ln 3).
        // p = (1, 3) / 4. log p_1 = ln(3/4) = -0.28768207245178.
        // entropy = -(1/4)·ln(1/4) - (3/4)·ln(3/4) = ln 4 - (3/4)·ln 3
        //         = 1.38629436111989 - 0.82395921650160 = 0.56233514461829.
        let logits = Tensor.make([1, 1, 2], [0, Float(0.5 * 1.0986122886681098)])
        let labels = Tensor.make([1, 1], [1] as [Int64])
        let fused = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 0.5 - 1e-7)
        expectClose(fused.logProbs, [-0.28768207245178], abs: 1e-6, rel: 1e-6, "log_probs")
        expectClose(fused.entropy, [0.56233514461829], abs: 1e-6, rel: 1e-6, "entropy")
    }

    @Test("the max in a late block: the running max rescales the sums")
    func risingMaximum() throws {
        // V = 3000 rising from -20 to 20 (the max rises by 13.7 in every 1024-float
        // block of the online pass: each block is exponentiated again against its
        // own max), the reverse (the first block holds the max), and a gentle rise
        // from -2 to 2 (1.4 per block: the block's terms, up to e^1.4, are kept and
        // the sums rescaled after).
        let rising = (0..<3_000).map { Float(-20 + 40 * Double($0) / 2_999) }
        let gentle = (0..<3_000).map { Float(-2 + 4 * Double($0) / 2_999) }
        let logits = Tensor.make([3, 1, 3_000], rising + rising.reversed() + gentle)
        let labels = Tensor.make([3, 1], [2_999, 3, 1_500] as [Int64])
        let fused = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 1)
        let plain = try logProbsWithEntropy(logits: logits, labels: labels, temperature: 1)
        expectClose(fused.logProbs, plain.logProbs.scalars.map(Double.init), abs: logProbTolerance.abs,
                    rel: logProbTolerance.rel, "log_probs")
        expectClose(fused.entropy, plain.entropy.scalars.map(Double.init), abs: entropyTolerance(logits), rel: 0, "entropy")
    }

    @Test("logits of 1e4 and -1e4: the shift keeps every exponent <= 0")
    func largeLogits() throws {
        var rng = SplitMix64(seed: 3)
        let x = rng.uniform(count: 2 * 300, -2, 2).enumerated().map { Float($0.element + ($0.offset < 300 ? 1e4 : -1e4)) }
        let logits = Tensor.make([2, 1, 300], x)
        let labels = Tensor.make([2, 1], [7, 299] as [Int64])
        let fused = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 0.7)
        let plain = try logProbsWithEntropy(logits: logits, labels: labels, temperature: 0.7)
        expectClose(fused.logProbs, plain.logProbs.scalars.map(Double.init), abs: 1e-6 + 4 * Double(Float.ulpOfOne) * 1.5e4,
                    rel: 0, "log_probs")
        expectClose(fused.entropy, plain.entropy.scalars.map(Double.init),
                    abs: entropyTolerance(temperedLogits(logits, temperature: 0.7)), rel: 0, "entropy")
    }

    @Test("logits of ±3e38 in one row: z - m overflows to -inf, and the plain stage answers")
    func overflowingShift() throws {
        // Σ x is finite here (3e38 - 3e38 = 0), but z - m for the -3e38 logit is
        // -inf: its e·(z - m) is NaN or -inf in W, so the row must go to the plain
        // stage, which gives softmax 0 there and a finite entropy.
        var rng = SplitMix64(seed: 5)
        var x = rng.uniform(count: 2 * 40, -2, 2).map(Float.init)
        x[3] = 3e38
        x[4] = -3e38
        let logits = Tensor.make([2, 1, 40], x)
        let labels = Tensor.make([2, 1], [3, 7] as [Int64])
        let plain = try logProbsWithEntropy(logits: logits, labels: labels, temperature: 1)
        let fused = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 1)
        #expect(plain.entropy.scalars.allSatisfy { $0.isFinite }, "the plain stage's entropy: \(plain.entropy.scalars)")
        #expect(fused.logProbs.scalars == plain.logProbs.scalars)
        #expect(fused.entropy.scalars == plain.entropy.scalars)
    }

    @Test("-inf, +inf and NaN logits: the plain stage's error, detail included")
    func nonFiniteLogits() throws {
        var rng = SplitMix64(seed: 11)
        let base = Tensor.make([2, 3, 300], rng.uniform(count: 1_800, -4, 4).map(Float.init))
        let labels = Tensor.make([2, 3], [0, 1, 2, 3, 4, 5] as [Int64])
        var masked = base
        masked[1, 1, 17] = -.infinity  // a masked vocabulary entry: TRL's entropy is NaN there
        var allMasked = base
        for v in 0..<300 { allMasked[0, 2, v] = -.infinity }
        var positive = base
        positive[0, 0, 299] = .infinity
        var maskedInTail = base
        maskedInTail[0, 1, 295] = -.infinity  // 300 = 18 vectors of 16 + a tail of 12: the tail's own code
        var withNaN = base
        withNaN[1, 2, 150] = .nan
        let cases: [(StageError.Kind, String, Tensor<Float>)] = [
            (.nonFiniteResult, "entropy", masked),
            (.nonFiniteResult, "entropy", maskedInTail),
            (.nonFiniteResult, "log_probs", allMasked),
            (.nonFiniteResult, "log_probs", positive),
            (.notANumber, "logits", withNaN),
        ]
        for (kind, argument, logits) in cases {
            let plain = Result { () throws(StageError) in try logProbsWithEntropy(logits: logits, labels: labels, temperature: 0.7) }
            let fused = Result { () throws(StageError) in
                try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 0.7)
            }
            guard case .failure(let p) = plain, case .failure(let f) = fused else {
                Issue.record("expected both to throw \(kind) on \(argument), got \(plain) and \(fused)")
                continue
            }
            #expect(p.kind == kind && p.argument == argument, "\(p)")
            #expect(p == f, "the same error, detail included")
        }
    }

    @Test("a NaN among leading blocks of -inf: the plain stage's NaN error, from all three kernels")
    func notANumberInMaskedBlock() throws {
        // The first 1,100 entries -inf but one NaN, then finite logits: the pass
        // finds no finite max in block 0 and must still see the NaN there.
        var rng = SplitMix64(seed: 13)
        var x = rng.uniform(count: 2 * 2_100, -4, 4).map(Float.init)
        for v in 0..<1_100 { x[2_100 + v] = -.infinity }
        x[2_100 + 600] = .nan
        let logits = Tensor.make([2, 1, 2_100], x)
        let labels = Tensor.make([2, 1], [5, 2_000] as [Int64])
        let upstream = Tensor.make([2, 1], [1, 1] as [Float])
        let plain = Result { () throws(StageError) in try logProbsWithEntropy(logits: logits, labels: labels, temperature: 1) }
        let outcomes: [(String, Result<Void, StageError>)] = [
            ("log-probs with entropy", Result { () throws(StageError) in
                _ = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 1) }),
            ("gather forward", Result { () throws(StageError) in _ = try gatherLogProbsFused(logits: logits, labels: labels) }),
            ("gather backward", Result { () throws(StageError) in
                _ = try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream) }),
        ]
        guard case .failure(let expected) = plain else {
            Issue.record("the plain stage did not throw")
            return
        }
        #expect(expected.kind == .notANumber && expected.argument == "logits", "\(expected)")
        for (kernel, outcome) in outcomes {
            guard case .failure(let error) = outcome else {
                Issue.record("\(kernel): no error for a NaN logit")
                continue
            }
            #expect(error.kind == .notANumber && error.argument == "logits", "\(kernel): \(error)")
        }
    }

    @Test("bad shapes, labels and temperatures throw the plain version's errors")
    func errors() throws {
        let logits = Tensor<Float>(shape: [2, 3, 4], repeating: 0)
        let labels = Tensor<Int64>(shape: [2, 3], repeating: 0)
        let cases: [(StageError.Kind, String, Tensor<Float>, Tensor<Int64>, Double)] = [
            (.labelOutOfRange, "labels", logits, Tensor.make([2, 3], [0, 1, 2, 3, 4, 0]), 1),
            (.shapeMismatch, "labels", logits, Tensor<Int64>(shape: [2, 4], repeating: 0), 1),
            (.shapeMismatch, "logits", Tensor<Float>(shape: [2, 3], repeating: 0), labels, 1),
            (.parameterOutOfRange, "V", Tensor<Float>(shape: [2, 3, 0], repeating: 0), labels, 1),
            (.parameterOutOfRange, "temperature", logits, labels, -1),
            (.parameterOutOfRange, "temperature", logits, labels, .infinity),
            (.parameterOutOfRange, "temperature", logits, labels, .nan),
        ]
        for (kind, argument, x, y, temperature) in cases {
            expectStageError(kind, argument: argument) {
                try logProbsWithEntropyFused(logits: x, labels: y, temperature: temperature)
            }
            let plain = Result { () throws(StageError) in try logProbsWithEntropy(logits: x, labels: y, temperature: temperature) }
            let fused = Result { () throws(StageError) in
                try logProbsWithEntropyFused(logits: x, labels: y, temperature: temperature)
            }
            guard case .failure(let p) = plain, case .failure(let f) = fused else {
                Issue.record("expected both to throw, got \(plain) and \(fused)")
                continue
            }
            #expect(p == f, "the same error, detail included")
        }
        let empty = try logProbsWithEntropyFused(logits: Tensor<Float>(shape: [0, 3, 5], repeating: 0),
                                                 labels: Tensor<Int64>(shape: [0, 3], repeating: 0), temperature: 1)
        #expect(empty.logProbs.shape == [0, 3] && empty.entropy.shape == [0, 3])
    }
}

/// Checks the fused log-probs and entropy against the plain stage on seeded
/// uniform logits in [-6, 6).
private func expectFusedEntropyMatchesPlain(_ b: Int, _ t: Int, _ v: Int, temperature: Double, seed: UInt64,
                                            sourceLocation: SourceLocation = #_sourceLocation) throws {
    var rng = SplitMix64(seed: seed)
    let logits = Tensor.make([b, t, v], rng.uniform(count: b * t * v, -6, 6).map(Float.init))
    let labels = Tensor.make([b, t], (0..<(b * t)).map { _ in Int64.random(in: 0..<Int64(v), using: &rng) })
    let label = "\(b)x\(t)x\(v) at temperature \(temperature)"
    let fused = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: temperature)
    let plain = try logProbsWithEntropy(logits: logits, labels: labels, temperature: temperature)
    expectClose(fused.logProbs, plain.logProbs.scalars.map(Double.init), abs: logProbTolerance.abs,
                rel: logProbTolerance.rel, "\(label) log_probs", sourceLocation: sourceLocation)
    expectClose(fused.entropy, plain.entropy.scalars.map(Double.init),
                abs: entropyTolerance(temperedLogits(logits, temperature: temperature)), rel: 0, "\(label) entropy",
                sourceLocation: sourceLocation)
}

@Suite("gather_log_probs fused backward: the one-pass rows")
struct FusedGradOnePassTests {
    @Test("the max in a late block, and leading blocks of nothing but -inf")
    func risingMaximumAndMaskedBlocks() throws {
        // Row 0 rises steeply (the max moves by 13.7 in every 1024-float block of
        // the online pass: each block is exponentiated again), row 1 falls, row 2
        // has its first 2100 entries at -inf (two whole blocks with no finite term),
        // row 3 rises gently (1.4 per block: the stored terms, up to e^1.4, are
        // kept, against the max before the block).
        let v = 3_001
        let rising = (0..<v).map { Float(-20 + 40 * Double($0) / Double(v - 1)) }
        let masked = (0..<v).map { $0 < 2_100 ? -Float.infinity : Float($0 % 13) * 0.5 }
        let gentle = (0..<v).map { Float(-2 + 4 * Double($0) / Double(v - 1)) }
        let logits = Tensor.make([4, 1, v], rising + rising.reversed() + masked + gentle)
        let labels = Tensor.make([4, 1], [3_000, 3, 2_640, 1_500] as [Int64])
        let upstream = Tensor.make([4, 1], [1, -0.5, 2, 1] as [Float])
        let fused = try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream)
        let plain = try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: upstream)
        expectClose(fused, plain.scalars.map(Double.init), abs: 1e-6, rel: 1e-6, "grad_logits")
        #expect(fused.scalars[(2 * v)..<(2 * v + 2_100)].allSatisfy { $0 == 0 }, "-inf logits get exactly zero gradient")
        // Each row sums to 0 up to rounding (the softmax sums to 1, the one-hot to g).
        for row in 0..<4 {
            let sum = fused.scalars[(row * v)..<((row + 1) * v)].reduce(0.0) { $0 + Double($1) }
            #expect(Swift.abs(sum) < 1e-5, "row \(row) sums to \(sum)")
        }
    }

    @Test("each row's gradient is written during the next row's pass: the hard rows in every order")
    func writtenBehindInEveryOrder() throws {
        // The rows of the test above, in all 24 orders, one thread: each kind of row
        // (one exponentiated again per block, one with leading -inf blocks, ...) is
        // the one whose pass writes each other kind's gradient, and each is last
        // once (written by a pass of its own).
        let v = 3_001
        let rows: [[Float]] = [
            (0..<v).map { Float(-20 + 40 * Double($0) / Double(v - 1)) },
            (0..<v).map { Float(20 - 40 * Double($0) / Double(v - 1)) },
            (0..<v).map { $0 < 2_100 ? -Float.infinity : Float($0 % 13) * 0.5 },
            (0..<v).map { Float(-2 + 4 * Double($0) / Double(v - 1)) },
        ]
        let rowLabels: [Int64] = [3_000, 3, 2_640, 1_500]
        let rowUpstream: [Float] = [1, -0.5, 2, 1]
        #expect(fusedRowChunkCount(rows: 4, vocabularySize: v) == 1)
        func orders(_ items: [Int]) -> [[Int]] {
            items.isEmpty ? [[]] : items.flatMap { first in orders(items.filter { $0 != first }).map { [first] + $0 } }
        }
        for order in orders([0, 1, 2, 3]) {
            let logits = Tensor.make([4, 1, v], order.flatMap { rows[$0] })
            let labels = Tensor.make([4, 1], order.map { rowLabels[$0] })
            let upstream = Tensor.make([4, 1], order.map { rowUpstream[$0] })
            let fused = try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream)
            let plain = try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: upstream)
            expectClose(fused, plain.scalars.map(Double.init), abs: 1e-6, rel: 1e-6, "grad_logits, rows in order \(order)")
        }
    }

    @Test("into: the same gradient written into a reused buffer, a fresh one, or one of another shape")
    func intoReusedBuffer() throws {
        var rng = SplitMix64(seed: 21)
        let logits = Tensor.make([2, 3, 1_300], rng.uniform(count: 7_800, -5, 5).map(Float.init))
        let labels = Tensor.make([2, 3], [0, 1_299, 7, 150, 1_024, 3] as [Int64])
        let upstream = Tensor.make([2, 3], [1, -2, 0.5, 0, 3, -1] as [Float])
        let fresh = try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream)
        var result = Tensor<Float>(shape: [7], repeating: .nan)  // another shape: replaced
        try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream, into: &result)
        #expect(result.shape == [2, 3, 1_300])
        #expect(result.scalars == fresh.scalars)
        // Reused: every element is overwritten, none left from the call before.
        let other = Tensor.make([2, 3], [-1, 1, 1, 1, 1, 1] as [Float])
        try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: other, into: &result)
        #expect(result.scalars == (try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: other).scalars))
        // The same errors.
        var withNaN = logits
        withNaN[1, 2, 5] = .nan
        expectStageError(.notANumber, argument: "logits") {
            try gatherLogProbsFusedGradLogits(logits: withNaN, labels: labels, gradOutput: upstream, into: &result)
        }
    }
}
