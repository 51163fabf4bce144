import Testing
import TensorCore
import TestSupport
import Golden
@testable import PPOStep

@Suite("ppo_losses fast")
struct FastPPOLossesTests {
    @Test("every golden fixture: ppoLossesFast equals the plain ppoLosses bit for bit (float64 ones rounded to float32)")
    func golden() throws {
        for file in fixtureFiles(stage: "ppo_losses") {
            let inputs = Float32FixtureInputs(try Fixture.load(path: file))
            let floats = ["log_probs", "ref_log_probs", "values", "new_log_probs", "new_values", "reward_score"].map(inputs.float)
            expectSameAsPlain(inputs.ints("attention_mask"), floats, promptLength: inputs.int("prompt_length"),
                              klCtl: inputs.param("kl_ctl"), clipReward: inputs.param("clip_reward_value"),
                              cliprange: inputs.param("cliprange"), cliprangeValue: inputs.param("cliprange_value"),
                              gamma: inputs.param("gamma"), lambda: inputs.param("lambda"), inputs.fixture.name)
        }
    }

    @Test("ppoLossesFast == ppoLosses bit for bit on random batches with answers of every length")
    func random() {
        var rng = SplitMix64(seed: 47)
        for (b, l) in [(1, 2), (3, 9), (8, 65)] {
            let n = l - 1, promptLength = max(1, l / 4)
            var attention = [Int64](repeating: 0, count: b * l)
            for row in 0..<b {
                for t in 0..<(promptLength + (row + 1) * (l - promptLength) / b) { attention[row * l + t] = 1 }
            }
            let floats = (0..<5).map { _ in Tensor.make([b, n], rng.uniform(count: b * n, -2, 0).map(Float.init)) }
                + [Tensor.make([b], rng.uniform(count: b, -8, 8).map(Float.init))]
            for promptLength in [promptLength, l] {  // l: out of range, the same error
                expectSameAsPlain(Tensor.make([b, l], attention), floats, promptLength: promptLength, klCtl: 0.1,
                                  clipReward: 5, cliprange: 0.2, cliprangeValue: 0.2, gamma: 1, lambda: 0.95, "\(b)x\(l)")
            }
        }
    }
}

private func expectSameAsPlain(_ attention: Tensor<Int64>, _ f: [Tensor<Float>], promptLength: Int, klCtl: Double,
                               clipReward: Double, cliprange: Double, cliprangeValue: Double, gamma: Double,
                               lambda: Double, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectSameOutcome(label, plain: { () throws(StageError) in
        try ppoLosses(attentionMask: attention, logProbs: f[0], refLogProbs: f[1], values: f[2], newLogProbs: f[3],
                      newValues: f[4], rewardScore: f[5], promptLength: promptLength, klCtl: klCtl,
                      clipRewardValue: clipReward, cliprange: cliprange, cliprangeValue: cliprangeValue,
                      gamma: gamma, lambda: lambda)
    }, fast: { () throws(StageError) in
        try ppoLossesFast(attentionMask: attention, logProbs: f[0], refLogProbs: f[1], values: f[2], newLogProbs: f[3],
                          newValues: f[4], rewardScore: f[5], promptLength: promptLength, klCtl: klCtl,
                          clipRewardValue: clipReward, cliprange: cliprange, cliprangeValue: cliprangeValue,
                          gamma: gamma, lambda: lambda)
    }, same: samePPO, sourceLocation: sourceLocation)
}

private func samePPO(_ p: PPOLossesResult<Float>, _ f: PPOLossesResult<Float>) -> Bool {
    guard p.start == f.start, p.actionMask == f.actionMask, p.ends == f.ends, p.rewards == f.rewards else { return false }
    guard p.oldValues == f.oldValues, p.advantages == f.advantages, p.returns == f.returns else { return false }
    return p.actor.loss == f.actor.loss && p.actor.ratios == f.actor.ratios && p.critic.loss == f.critic.loss
        && p.critic.clippedValues == f.critic.clippedValues
}
