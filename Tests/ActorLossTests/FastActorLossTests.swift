import Testing
import TensorCore
import TestSupport
import Golden
@testable import ActorLoss

@Suite("actor_loss fast")
struct FastActorLossTests {
    @Test("every golden fixture: actorLossFast equals the plain actorLoss bit for bit (float64 ones rounded to float32)")
    func golden() throws {
        for file in fixtureFiles(stage: "actor_loss") {
            let inputs = Float32FixtureInputs(try Fixture.load(path: file))
            expectSameAsPlain(inputs.float("log_probs"), inputs.float("old_log_probs"), inputs.float("advantages"),
                              inputs.ints("mask"), inputs.param("cliprange"), inputs.fixture.name)
        }
    }

    @Test("actorLossFast == actorLoss bit for bit on random inputs, and on bad ones the same error")
    func randomAndErrors() {
        var rng = SplitMix64(seed: 41)
        for (b, m) in [(1, 1), (3, 17), (16, 129)] {
            let logProbs = Tensor.make([b, m], rng.uniform(count: b * m, -3, 0).map(Float.init))
            let old = Tensor.make([b, m], rng.uniform(count: b * m, -3, 0).map(Float.init))
            let advantages = Tensor.make([b, m], rng.uniform(count: b * m, -2, 2).map(Float.init))
            let mask = Tensor.make([b, m], (0..<(b * m)).map { Int64($0 % 5 == 4 ? 0 : 1) })
            expectSameAsPlain(logProbs, old, advantages, mask, 0.2, "\(b)x\(m)")
            var withNaN = advantages
            withNaN.scalars[b * m - 1] = .nan
            expectSameAsPlain(logProbs, old, withNaN, mask, 0.2, "\(b)x\(m) NaN")
            expectSameAsPlain(logProbs, old, advantages, Tensor(shape: [b, m], repeating: 0), 0.2, "\(b)x\(m) empty mask")
            expectSameAsPlain(logProbs, old, advantages, mask, -1, "\(b)x\(m) negative cliprange")
        }
    }
}

private func expectSameAsPlain(_ logProbs: Tensor<Float>, _ old: Tensor<Float>, _ advantages: Tensor<Float>,
                               _ mask: Tensor<Int64>, _ cliprange: Double, _ label: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
    expectSameOutcome(label, plain: { () throws(StageError) in
        try actorLoss(logProbs: logProbs, oldLogProbs: old, advantages: advantages, mask: mask, cliprange: cliprange)
    }, fast: { () throws(StageError) in
        try actorLossFast(logProbs: logProbs, oldLogProbs: old, advantages: advantages, mask: mask, cliprange: cliprange)
    }, same: sameResult, sourceLocation: sourceLocation)
}

private func sameResult(_ p: ActorLossResult<Float>, _ f: ActorLossResult<Float>) -> Bool {
    guard f.loss == p.loss, f.tokenCount == p.tokenCount, f.tokenLosses == p.tokenLosses else { return false }
    return f.ratios == p.ratios
}
