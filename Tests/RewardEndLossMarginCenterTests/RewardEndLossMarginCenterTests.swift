import Foundation
import Testing
import TensorCore
import TestSupport
@testable import RewardEndLossMarginCenter

@Suite("reward_end_loss_margin_center")
struct RewardEndLossMarginCenterTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "reward_end_loss_margin_center", minimum: 10)
    }

    @Test("two pairs by hand: no margin, a margin, κ = 0.01")
    func byHand() throws {
        // c = [2, 0], r = [0, 0]
        // x = [2, 0]: softplus(-2) = 0.1269280110429725, softplus(0) = ln 2 = 0.6931471805599453
        // loss = 0.8200751916029178 / 2 = 0.4100375958014589
        let rewards = vector([2, 0, 0, 0])
        let plain = try rewardEndLossMarginCenter(rewards: rewards, margin: nil, centerRewardsCoefficient: nil)
        expectClose(plain.loss, 0.4100375958014589, "loss")
        #expect(plain.accuracy == 0.5)      // the tie in pair 2 counts as wrong
        #expect(plain.meanMargin == 1)      // (2 + 0) / 2
        #expect(plain.minReward == 0)
        #expect(plain.meanReward == 0.5)    // 2 / 4
        #expect(plain.maxReward == 2)
        // margin [1, -1]: x = [2 - 1, 0 + 1] = [1, 1], loss = softplus(-1) = log(1 + e^-1) = 0.31326168751822286
        let withMargin = try rewardEndLossMarginCenter(rewards: rewards, margin: vector([1, -1]), centerRewardsCoefficient: nil)
        expectClose(withMargin.loss, 0.31326168751822286, "loss with a margin")
        #expect(withMargin.meanMargin == 1)  // the margin input does not enter mean_margin
        // κ = 0.01: + 0.01 · ((2 + 0)² + (0 + 0)²) / 2 = 0.02  -> 0.4300375958014589
        let centered = try rewardEndLossMarginCenter(rewards: rewards, margin: nil, centerRewardsCoefficient: 0.01)
        expectClose(centered.loss, 0.4300375958014589, "loss, κ = 0.01")
    }

    @Test("the gradient by hand, κ = 0.01")
    func gradientByHand() throws {
        // σ(-2) = 0.11920292202211755, σ(0) = 0.5, B = 2, s = c + r = [2, 0]
        // ∂/∂c_1 = -σ(-2)/2 + 2·0.01/2·2 = -0.059601461011058775 + 0.02 = -0.03960146101105877
        // ∂/∂c_2 = -0.25 + 0;   ∂/∂r_1 = 0.059601461011058775 + 0.02 = 0.07960146101105878;   ∂/∂r_2 = 0.25
        expectClose(try rewardEndLossMarginCenterGradRewards(rewards: vector([2, 0, 0, 0]), margin: nil, centerRewardsCoefficient: 0.01),
                    [-0.03960146101105877, -0.25, 0.07960146101105878, 0.25], "grad_rewards, κ = 0.01")
    }

    @Test("κ squares each pair's sum, counts when 0 or negative, and is absent only when null")
    func centering() throws {
        // c = -r in every pair: each pair sum is 0, so κ = 1 adds nothing however large the scores.
        let opposite = vector([3, -5, -3, 5])
        expectClose(try rewardEndLossMarginCenter(rewards: opposite, margin: nil, centerRewardsCoefficient: 1).loss,
                    Double(try rewardEndLossMarginCenter(rewards: opposite, margin: nil, centerRewardsCoefficient: nil).loss),
                    abs: 0, rel: 0, "κ = 1 on zero pair sums")
        // κ = -0.5 on c = [1], r = [1]: softplus(0) - 0.5 · 2² = ln 2 - 2
        expectClose(try rewardEndLossMarginCenter(rewards: vector([1, 1]), margin: nil, centerRewardsCoefficient: -0.5).loss,
                    log(2.0) - 2, "κ = -0.5")
        // κ = 0 is not null: 0 · ∞ is NaN, as the peer would compute it, and is thrown.
        let huge = vector([1e300, 1e300])
        expectStageError(.nonFiniteResult, argument: "loss") {
            try rewardEndLossMarginCenter(rewards: huge, margin: nil, centerRewardsCoefficient: 0)
        }
        // Null: no term at all, so the same scores give a finite loss, softplus(0) = ln 2.
        expectClose(try rewardEndLossMarginCenter(rewards: huge, margin: nil, centerRewardsCoefficient: nil).loss, log(2.0), "κ null")
    }

    @Test("invariants: mean_margin ignores the margin; shifting all rewards moves min/mean/max and nothing else")
    func invariants() throws {
        var rng = SplitMix64(seed: 91)
        let rewards = rng.uniform(count: 8, -2, 2)
        let margin = vector(rng.uniform(count: 4, 0, 1))
        let base = try rewardEndLossMarginCenter(rewards: vector(rewards), margin: margin, centerRewardsCoefficient: nil)
        let noMargin = try rewardEndLossMarginCenter(rewards: vector(rewards), margin: nil, centerRewardsCoefficient: nil)
        #expect(base.meanMargin == noMargin.meanMargin)
        #expect(base.accuracy == noMargin.accuracy)
        // A positive margin asks for a wider gap: the loss can only grow.
        #expect(base.loss > noMargin.loss)
        let shifted = try rewardEndLossMarginCenter(rewards: vector(rewards.map { $0 + 4 }), margin: margin, centerRewardsCoefficient: nil)
        expectClose(shifted.loss, Double(base.loss), abs: 1e-12, rel: 1e-12, "loss after a shift")
        expectClose(shifted.minReward, Double(base.minReward) + 4, "min_reward after a shift")
        expectClose(shifted.maxReward, Double(base.maxReward) + 4, "max_reward after a shift")
        expectClose(shifted.meanReward, Double(base.meanReward) + 4, "mean_reward after a shift")
        #expect(base.minReward == rewards.min()!)
        #expect(base.maxReward == rewards.max()!)
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        expectStageError(.invalidPair, argument: "rewards") {
            try rewardEndLossMarginCenter(rewards: vector([1, 2, 3]), margin: nil, centerRewardsCoefficient: nil)
        }
        expectStageError(.invalidPair, argument: "rewards") {
            try rewardEndLossMarginCenter(rewards: vector([1]), margin: nil, centerRewardsCoefficient: nil)
        }
        expectStageError(.shapeMismatch, argument: "rewards") {
            try rewardEndLossMarginCenter(rewards: vector([]), margin: nil, centerRewardsCoefficient: nil)
        }
        // A [1] margin for B = 2: the peer broadcasts it silently.
        expectStageError(.shapeMismatch, argument: "margin") {
            try rewardEndLossMarginCenter(rewards: vector([1, 2, 3, 4]), margin: vector([0.5]), centerRewardsCoefficient: nil)
        }
        expectStageError(.shapeMismatch, argument: "margin") {
            try rewardEndLossMarginCenter(rewards: vector([1, 2, 3, 4]), margin: matrix([[0.5, 0.5]]), centerRewardsCoefficient: nil)
        }
        expectStageError(.notANumber, argument: "rewards") {
            try rewardEndLossMarginCenter(rewards: vector([1, .nan]), margin: nil, centerRewardsCoefficient: nil)
        }
        expectStageError(.notANumber, argument: "margin") {
            try rewardEndLossMarginCenter(rewards: vector([1, 2]), margin: vector([.nan]), centerRewardsCoefficient: nil)
        }
        expectStageError(.parameterOutOfRange, argument: "center_rewards_coefficient") {
            try rewardEndLossMarginCenter(rewards: vector([1, 2]), margin: nil, centerRewardsCoefficient: .nan)
        }
        // +inf and -inf rewards: their mean is NaN.
        expectStageError(.nonFiniteResult, argument: "mean_reward") {
            try rewardEndLossMarginCenter(rewards: vector([.infinity, -.infinity]), margin: nil, centerRewardsCoefficient: nil)
        }
    }
}

@Suite("reward_end_loss_margin_center backward")
struct RewardEndLossMarginCenterBackwardTests {
    @Test("grad_rewards equals central differences, with and without margin and κ")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 92)
        let rewards = rng.uniform(count: 8, -2, 2)
        let margin = vector(rng.uniform(count: 4, -1, 1))
        for (margin, kappa) in [(nil, nil), (margin, nil), (nil, 0.01), (margin, -0.3), (margin, 0)] as [(Tensor<Double>?, Double?)] {
            let grad = try rewardEndLossMarginCenterGradRewards(rewards: vector(rewards), margin: margin, centerRewardsCoefficient: kappa)
            let numeric = try centralDifferenceGradient(at: rewards) { probe in
                Double(try rewardEndLossMarginCenter(rewards: vector(probe), margin: margin, centerRewardsCoefficient: kappa).loss)
            }
            expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_rewards vs finite differences, κ = \(String(describing: kappa))")
        }
    }
}
