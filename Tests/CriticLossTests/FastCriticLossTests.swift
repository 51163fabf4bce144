import Testing
import TensorCore
import TestSupport
import Golden
@testable import CriticLoss

@Suite("critic_loss fast")
struct FastCriticLossTests {
    @Test("every golden fixture: criticLossFast equals the plain criticLoss bit for bit (float64 ones rounded to float32)")
    func golden() throws {
        for file in fixtureFiles(stage: "critic_loss") {
            let inputs = Float32FixtureInputs(try Fixture.load(path: file))
            expectSameAsPlain(values: inputs.float("values"), old: inputs.float("old_values"), returns: inputs.float("returns"),
                              mask: inputs.ints("mask"), clip: inputs.param("cliprange_value"), inputs.fixture.name)
        }
    }

    @Test("criticLossFast == criticLoss bit for bit on random inputs, and on bad ones the same error")
    func randomAndErrors() {
        var rng = SplitMix64(seed: 43)
        for (b, m) in [(1, 1), (2, 33), (8, 257)] {
            let shape = [b, m]
            let values = Tensor.make(shape, rng.uniform(count: b * m, -1, 1).map(Float.init))
            let old = Tensor.make(shape, rng.uniform(count: b * m, -1, 1).map(Float.init))
            var returns = Tensor.make(shape, rng.uniform(count: b * m, -1, 1).map(Float.init))
            let mask = Tensor.make(shape, (0..<(b * m)).map { Int64($0 % 3 == 2 ? 0 : 1) })
            expectSameAsPlain(values: values, old: old, returns: returns, mask: mask, clip: 0.2, "\(b)x\(m)")
            expectSameAsPlain(values: values, old: old, returns: returns, mask: Tensor(shape: shape, repeating: 0),
                              clip: 0.2, "\(b)x\(m) empty mask")
            expectSameAsPlain(values: values, old: old, returns: returns, mask: mask, clip: .infinity, "\(b)x\(m) inf clip")
            returns.scalars[0] = .nan
            expectSameAsPlain(values: values, old: old, returns: returns, mask: mask, clip: 0.2, "\(b)x\(m) NaN")
        }
    }
}

private func expectSameAsPlain(values: Tensor<Float>, old: Tensor<Float>, returns: Tensor<Float>, mask: Tensor<Int64>,
                               clip: Double, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectSameOutcome(label, plain: { () throws(StageError) in
        try criticLoss(values: values, oldValues: old, returns: returns, mask: mask, cliprangeValue: clip)
    }, fast: { () throws(StageError) in
        try criticLossFast(values: values, oldValues: old, returns: returns, mask: mask, cliprangeValue: clip)
    }, same: sameResult, sourceLocation: sourceLocation)
}

private func sameResult(_ p: CriticLossResult<Float>, _ f: CriticLossResult<Float>) -> Bool {
    guard f.loss == p.loss, f.tokenCount == p.tokenCount, f.tokenLosses == p.tokenLosses else { return false }
    return f.clippedValues == p.clippedValues
}
