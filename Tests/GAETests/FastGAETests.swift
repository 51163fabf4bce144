import Testing
import TensorCore
import TestSupport
import Golden
@testable import GAE

@Suite("gae fast")
struct FastGAETests {
    @Test("every golden fixture: gaeFast equals the plain gae bit for bit, and the float32 ones their expected values")
    func golden() throws {
        let files = fixtureFiles(stage: "gae")
        #expect(files.count >= 8)
        for file in files {
            let fixture = try Fixture.load(path: file)
            // float64 fixtures are run in float32 here: bit-equality with the plain
            // gae<Float> on the same numbers, and the same errors.
            let inputs = Float32FixtureInputs(fixture)
            let values = inputs.float("values"), rewards = inputs.float("rewards")
            let start = inputs.int("start"), gamma = inputs.param("gamma"), lambda = inputs.param("lambda")
            expectSameOutcome(fixture.name, plain: { () throws(StageError) in
                try gae(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda)
            }, fast: { () throws(StageError) in
                try gaeFast(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda)
            }, same: sameGAE)
            if case .outputs(let outputs, let tolerance) = fixture.expectation, inputs.isFloat32 {
                let f = try gaeFast(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda)
                expectClose(f.advantages, outputs["advantages"]?.doubles ?? [], abs: tolerance.abs, rel: tolerance.rel, "\(fixture.name) advantages")
                expectClose(f.returns, outputs["returns"]?.doubles ?? [], abs: tolerance.abs, rel: tolerance.rel, "\(fixture.name) returns")
            }
        }
    }

    @Test("gaeFast == gae bit for bit on random inputs", arguments: [(1, 1, 0), (1, 7, 3), (3, 17, 0), (64, 33, 32), (5, 100, 99), (4, 2048, 511)])
    func matchesPlain(shape: (Int, Int, Int)) throws {
        let (b, n, start) = shape
        var rng = SplitMix64(seed: UInt64(b * 1000 + n))
        let values = Tensor.make([b, n], rng.uniform(count: b * n, -2, 2).map(Float.init))
        let rewards = Tensor.make([b, n], rng.uniform(count: b * n, -1, 1).map(Float.init))
        for (gamma, lambda) in [(1.0, 0.95), (0.99, 0.0), (0.9, 1.0)] {
            expectSameOutcome("\(b)x\(n) from \(start)", plain: { () throws(StageError) in
                try gae(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda)
            }, fast: { () throws(StageError) in
                try gaeFast(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda)
            }, same: sameGAE)
        }
    }

    @Test("bad input throws the plain version's errors")
    func errors() {
        let values = Tensor<Float>(shape: [2, 5], repeating: 0)
        var withNaN = values
        withNaN[1, 0] = .nan
        let cases: [(Tensor<Float>, Tensor<Float>, Int, Double)] = [
            (Tensor<Float>(shape: [10], repeating: 0), Tensor<Float>(shape: [10], repeating: 0), 0, 1),
            (values, Tensor<Float>(shape: [2, 4], repeating: 0), 0, 1),
            (values, values, 5, 1), (values, values, -1, 1), (values, values, 0, .infinity),
            (withNaN, values, 2, 1), (values, withNaN, 2, 1),
            (Tensor.make([1, 2], [0, .infinity]), Tensor<Float>(shape: [1, 2], repeating: 0), 0, 1),  // inf - inf: a NaN advantage
        ]
        for (v, r, start, gamma) in cases {
            expectSameOutcome("errors", plain: { () throws(StageError) in
                try gae(values: v, rewards: r, start: start, gamma: gamma, lambda: 0.95)
            }, fast: { () throws(StageError) in
                try gaeFast(values: v, rewards: r, start: start, gamma: gamma, lambda: 0.95)
            }, same: { _, _ in false })  // every case must throw
        }
    }
}

private func sameGAE(_ p: GAEResult<Float>, _ f: GAEResult<Float>) -> Bool {
    f.advantages == p.advantages && f.returns == p.returns && f.deltas == p.deltas
}
