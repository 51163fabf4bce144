import Testing
import TensorCore
import TestSupport
import Golden
@testable import ComputeRewards

@Suite("compute_rewards fast")
struct FastComputeRewardsTests {
    @Test("every golden fixture: computeRewardsFast equals the plain computeRewards bit for bit (float64 ones rounded to float32)")
    func golden() throws {
        for file in fixtureFiles(stage: "compute_rewards") {
            let inputs = Float32FixtureInputs(try Fixture.load(path: file))
            let logProbs = inputs.float("log_probs"), ref = inputs.float("ref_log_probs"), score = inputs.float("reward_score")
            let mask = inputs.ints("action_mask"), promptLength = inputs.int("prompt_length")
            let klCtl = inputs.param("kl_ctl"), clip = inputs.param("clip_reward_value")
            expectSameOutcome(inputs.fixture.name, plain: { () throws(StageError) in
                try computeRewards(logProbs: logProbs, refLogProbs: ref, rewardScore: score, actionMask: mask,
                                   promptLength: promptLength, klCtl: klCtl, clipRewardValue: clip)
            }, fast: { () throws(StageError) in
                try computeRewardsFast(logProbs: logProbs, refLogProbs: ref, rewardScore: score, actionMask: mask,
                                       promptLength: promptLength, klCtl: klCtl, clipRewardValue: clip)
            }, same: ==)
        }
    }
}
