import Testing
import TensorCore
import TestSupport
@testable import CriticFreeAdvantages

@Suite("token_advantages")
struct TokenAdvantagesTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "token_advantages", minimum: 10)
    }

    // Two samples of one prompt: rewards [3, 1]; row 0 acts on columns 0, 1; row 1 on column 0.
    static let rewards = vector([3, 1])
    static let kl = matrix([[0.2, 0.4, 1.0], [0.6, 0.8, 0.0]])
    static let mask = intMatrix([[1, 1, 0], [1, 0, 0]])

    @Test("rloo with n = 2, worked by hand (γ forced to 1, no whitening)")
    func rlooByHand() throws {
        // shaped: 3 − 1/1 = 2 and 1 − 3/1 = −2 (the other sample is the whole baseline).
        // c = 0.5; the score goes to the last action column (row 0: column 1, row 1: column 0):
        //   token_rewards row 0 = [−0.1, 2 − 0.2, −0.5] = [−0.1, 1.8, −0.5]
        //   token_rewards row 1 = [−2 − 0.3, −0.4, −0] = [−2.3, −0.4, 0]
        // masked: row 0 [−0.1, 1.8, 0], row 1 [−2.3, 0, 0]; reward-to-go with γ = 1 (0.5 is ignored):
        //   row 0 [1.7, 1.8, 0], row 1 [−2.3, 0, 0].
        let result = try tokenAdvantages(rewards: Self.rewards, kl: Self.kl, actionMask: Self.mask, estimator: .rloo,
                                         nSamplesPerPrompt: 2, klCoef: 0.5, gamma: 0.5)
        expectClose(result.shapedRewards, [2, -2], "shaped_rewards")
        expectClose(result.tokenRewards, [-0.1, 1.8, -0.5, -2.3, -0.4, 0], "token_rewards")
        expectClose(result.returns, [1.7, 1.8, 0, -2.3, 0, 0], "returns")
        expectClose(result.advantages, [1.7, 1.8, 0, -2.3, 0, 0], "advantages = returns, not whitened")
        #expect(result.whitening == nil)
        #expect(result.gammaUsed == 1)
    }

    @Test("reinforce_baseline: the same returns, whitened over the action tokens, by hand")
    func whitenedByHand() throws {
        // With n = 2 the mean baseline gives 3 − 2 = 1 and 1 − 2 = −1 (half of rloo's ±2):
        //   token rewards row 0 [−0.1, 0.8, −0.5], row 1 [−1.3, −0.4, 0]; returns row 0 [0.7, 0.8, 0], row 1 [−1.3, 0, 0].
        // Whitening over the 3 action tokens 0.7, 0.8, −1.3: μ = 0.2/3 = 1/15;
        //   deviations 0.7 − 1/15 = 19/30, 0.8 − 1/15 = 22/30, −1.3 − 1/15 = −41/30;
        //   v = (19² + 22² + 41²)/900/3 = (361 + 484 + 1681)/2700 = 2526/2700.
        // Every position becomes (A − μ)/sqrt(v): masked zeros go to −(1/15)/sqrt(v), not 0.
        let result = try tokenAdvantages(rewards: Self.rewards, kl: Self.kl, actionMask: Self.mask,
                                         estimator: .reinforceBaseline, nSamplesPerPrompt: 2, klCoef: 0.5)
        expectClose(result.returns, [0.7, 0.8, 0, -1.3, 0, 0], "returns (not whitened)")
        let mu = 1.0 / 15, r = 1 / (2526.0 / 2700).squareRoot()
        expectClose(result.advantages, [0.7, 0.8, 0, -1.3, 0, 0].map { ($0 - mu) * r }, "whitened advantages")
        expectClose(result.whitening!.mean, mu, "μ")
        // no_std_norm: only the mean comes off.
        let centred = try tokenAdvantages(rewards: Self.rewards, kl: Self.kl, actionMask: Self.mask,
                                          estimator: .reinforceBaseline, nSamplesPerPrompt: 2, klCoef: 0.5,
                                          noStdNorm: true)
        expectClose(centred.advantages, [0.7, 0.8, 0, -1.3, 0, 0].map { $0 - mu }, "no_std_norm")
    }

    @Test("gae with γ = λ = 1, worked by hand")
    func gaeByHand() throws {
        // One row, three action tokens, reward 1 at the end, no KL, values [0.5, 0.25, 0.125]:
        //   δ_2 = 1 + 0 − 0.125 = 0.875, δ_1 = 0 + 0.125 − 0.25 = −0.125, δ_0 = 0 + 0.25 − 0.5 = −0.25
        //   A = [−0.25 − 0.125 + 0.875, −0.125 + 0.875, 0.875] = [0.5, 0.75, 0.875]
        //   returns = A + V = [1, 1, 1]: with γ = λ = 1 the return is the reward-to-go.
        // no_std_norm: μ = (0.5 + 0.75 + 0.875)/3 = 2.125/3.
        let result = try tokenAdvantages(rewards: vector([1]), kl: matrix([[0, 0, 0]]), actionMask: intMatrix([[1, 1, 1]]),
                                         values: matrix([[0.5, 0.25, 0.125]]), estimator: .gae, noStdNorm: true)
        expectClose(result.returns, [1, 1, 1], "returns")
        let mu = 2.125 / 3
        expectClose(result.advantages, [0.5 - mu, 0.75 - mu, 0.875 - mu], "advantages − μ")
    }

    @Test("the quirks: empty row, γ forced to 1, clamp after the baseline, masked positions keep −c·kl")
    func quirks() throws {
        // A row with no action token: the score lands on column T − 1 and is masked away.
        let empty = try tokenAdvantages(rewards: vector([5, 1]), kl: matrix([[0.1, 0.2], [0.3, 0.4]]),
                                        actionMask: intMatrix([[0, 0], [1, 1]]), estimator: .drGrpo,
                                        nSamplesPerPrompt: 2, klCoef: 1)
        // shaped: 5 − 3 = 2, 1 − 3 = −2; row 0's token rewards: [−0.1, 2 − 0.2] = [−0.1, 1.8].
        expectClose(empty.tokenRewards, [-0.1, 1.8, -0.3, -2.4], "token_rewards, masked positions included")
        expectClose(empty.returns, [0, 0, -2.7, -2.4], "the empty row's returns are 0")
        // γ is ignored by the baseline estimators, but not by reinforce.
        for estimator in [TokenAdvantageEstimator.rloo, .reinforceBaseline, .groupNorm, .drGrpo] {
            let half = try tokenAdvantages(rewards: Self.rewards, kl: Self.kl, actionMask: Self.mask, estimator: estimator,
                                           nSamplesPerPrompt: 2, gamma: 0.5)
            let one = try tokenAdvantages(rewards: Self.rewards, kl: Self.kl, actionMask: Self.mask, estimator: estimator,
                                          nSamplesPerPrompt: 2, gamma: 1)
            expectClose(half.advantages, one.advantages.scalars, abs: 0, rel: 0, "\(estimator) ignores gamma")
        }
        let discounted = try tokenAdvantages(rewards: Self.rewards, kl: Self.kl, actionMask: Self.mask,
                                             estimator: .reinforce, klCoef: 0, gamma: 0.5, noStdNorm: true)
        // reinforce, c = 0: row 0 returns [0.5·3, 3, 0], row 1 [1, 0, 0]; μ = (1.5 + 3 + 1)/3.
        let mu = 5.5 / 3
        expectClose(discounted.advantages, [1.5 - mu, 3 - mu, -mu, 1 - mu, -mu, -mu], "reinforce keeps gamma")
        // The clamp applies to the shaped reward: rloo's ±20 becomes ±10 in the token rewards only.
        let clamped = try tokenAdvantages(rewards: vector([20, 0]), kl: matrix([[0], [0]]), actionMask: intMatrix([[1], [1]]),
                                          estimator: .rloo, nSamplesPerPrompt: 2)
        expectClose(clamped.shapedRewards, [20, -20], "shaped, before the clamp")
        expectClose(clamped.tokenRewards, [10, -10], "clamped to the default [-10, 10]")
    }

    @Test("invariants: whitened advantages have masked mean 0 and biased variance 1; group_norm = dr_grpo / std")
    func invariants() throws {
        var rng = SplitMix64(seed: 99)
        let n = 6, t = 7
        let rewards = Tensor.make([n], rng.uniform(count: n, -2, 2))
        let kl = Tensor.make([n, t], rng.uniform(count: n * t, -0.3, 0.3))
        let values = Tensor.make([n, t], rng.uniform(count: n * t, -1, 1))
        let mask = Tensor.make([n, t], (0..<n * t).map { Int64($0 % t < 2 + ($0 / t) % (t - 1) ? 1 : 0) })
        for estimator in [TokenAdvantageEstimator.gae, .reinforce, .reinforceBaseline] {
            let result = try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, values: values,
                                             estimator: estimator, nSamplesPerPrompt: 3, gamma: 0.9, lambd: 0.8)
            let selected = (0..<n * t).filter { mask.scalars[$0] == 1 }
            let mean = selected.reduce(0.0) { $0 + result.advantages.scalars[$1] } / Double(selected.count)
            let variance = selected.reduce(0.0) { $0 + result.advantages.scalars[$1] * result.advantages.scalars[$1] }
                / Double(selected.count)
            expectClose(mean, 0, abs: 1e-13, rel: 0, "\(estimator): masked mean")
            expectClose(variance, 1, abs: 1e-12, rel: 0, "\(estimator): masked biased variance")
        }
        let norm = try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, estimator: .groupNorm,
                                       nSamplesPerPrompt: 3, rewardClipRange: nil)
        let centred = try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, estimator: .drGrpo,
                                          nSamplesPerPrompt: 3, rewardClipRange: nil)
        for start in stride(from: 0, to: n, by: 3) {
            let group = centred.shapedRewards.scalars[start..<start + 3]
            let std = (group.reduce(0.0) { $0 + $1 * $1 } / 2).squareRoot()  // the centred values have mean 0
            for i in start..<start + 3 {
                expectClose(norm.shapedRewards.scalars[i], centred.shapedRewards.scalars[i] / (std + 1e-9),
                            "group_norm = dr_grpo / (std + 1e-9) at \(i)")
            }
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let kl = matrix([[0, 0], [0, 0]]), mask = intMatrix([[1, 1], [1, 0]]), rewards = vector([1, 2])
        expectStageError(.parameterOutOfRange, argument: "n_samples_per_prompt") {
            try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, estimator: .reinforce, nSamplesPerPrompt: 0)
        }
        expectStageError(.parameterOutOfRange, argument: "n_samples_per_prompt") {
            try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, estimator: .reinforce, nSamplesPerPrompt: 3)
        }
        for estimator in [TokenAdvantageEstimator.rloo, .reinforceBaseline, .groupNorm, .drGrpo] {
            expectStageError(.parameterOutOfRange, argument: "n_samples_per_prompt") {
                try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, estimator: estimator)
            }
        }
        expectStageError(.shapeMismatch, argument: "values") {
            try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, estimator: .gae)
        }
        expectStageError(.emptyMask, argument: "action_mask") {
            try tokenAdvantages(rewards: rewards, kl: kl, actionMask: intMatrix([[0, 0], [0, 0]]), estimator: .reinforce)
        }
        // Not whitened: an all-empty batch is fine (every return is 0).
        let unwhitened = try tokenAdvantages(rewards: rewards, kl: kl, actionMask: intMatrix([[0, 0], [0, 0]]),
                                             estimator: .drGrpo, nSamplesPerPrompt: 2)
        #expect(unwhitened.advantages.scalars.allSatisfy { $0 == 0 })
        expectStageError(.parameterOutOfRange, argument: "reward_clip_range") {
            try tokenAdvantages(rewards: rewards, kl: kl, actionMask: mask, estimator: .reinforce,
                                rewardClipRange: (lo: 5, hi: -5))
        }
        expectStageError(.shapeMismatch, argument: "action_mask") {
            try tokenAdvantages(rewards: rewards, kl: kl, actionMask: intMatrix([[1], [1]]), estimator: .reinforce)
        }
        expectStageError(.invalidMask, argument: "action_mask") {
            try tokenAdvantages(rewards: rewards, kl: kl, actionMask: intMatrix([[1, 2], [1, 0]]), estimator: .reinforce)
        }
        expectStageError(.notANumber, argument: "kl") {
            try tokenAdvantages(rewards: rewards, kl: matrix([[0, .nan], [0, 0]]), actionMask: mask, estimator: .reinforce)
        }
        expectStageError(.parameterOutOfRange, argument: "estimator") {
            try TokenAdvantageEstimator(named: "remax", stage: "token_advantages")
        }
        expectStageError(.nonFiniteResult, argument: "shaped_rewards") {
            try tokenAdvantages(rewards: vector([.infinity, 1]), kl: kl, actionMask: mask, estimator: .drGrpo,
                                nSamplesPerPrompt: 2)
        }
    }
}
