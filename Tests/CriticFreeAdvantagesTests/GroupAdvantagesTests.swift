import Testing
import TensorCore
import TestSupport
@testable import CriticFreeAdvantages

@Suite("group_advantages")
struct GroupAdvantagesTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "group_advantages", minimum: 10)
    }

    @Test("one group [1, 0, 0, 1] through GRPO, worked by hand")
    func grpoByHand() throws {
        // μ = (1 + 0 + 0 + 1)/4 = 1/2; the deviations are +1/2, −1/2, −1/2, +1/2.
        // nanstd: mean of the squares = (4 · 1/4)/4 = 1/4, times n/(n − 1) = 4/3 -> 1/3, s = sqrt(1/3).
        // A = ±(1/2)/(sqrt(1/3) + 1e-4) = ±0.8658...; with scale none A = ±1/2.
        let rewards = vector([1, 0, 0, 1])
        let a = 0.5 / ((1.0 / 3).squareRoot() + 1e-4)
        let grouped = try grpoAdvantages(rewards: rewards, groupSize: 4)
        expectClose(grouped.advantages, [a, -a, -a, a], "scale group")
        expectClose(grouped.baselines, [0.5, 0.5, 0.5, 0.5], "group mean")
        expectClose(grouped.scales!, [Double](repeating: (1.0 / 3).squareRoot(), count: 4), "group std")
        let centred = try grpoAdvantages(rewards: rewards, groupSize: 4, scaleRewards: .none)
        expectClose(centred.advantages, [0.5, -0.5, -0.5, 0.5], abs: 0, rel: 0, "scale none (Dr. GRPO)")
        #expect(centred.scales == nil)
    }

    @Test("group versus batch std, worked by hand")
    func groupVersusBatch() throws {
        // Two groups of 2: [1, 3] (μ = 2) and [0, 2] (μ = 1); r − μ = −1, +1, −1, +1.
        // group: each group's std = sqrt((1 + 1)/2 · 2/1) = sqrt(2).
        // batch: the mean of all four is 6/4 = 1.5, deviations −0.5, 1.5, −1.5, 0.5,
        //        squares sum to 0.25 + 2.25 + 2.25 + 0.25 = 5, std = sqrt(5/4 · 4/3) = sqrt(5/3).
        // The batch std scales, but the mean subtracted stays the group's.
        let rewards = vector([1, 3, 0, 2])
        let g = 1 / (2.0.squareRoot() + 1e-4), b = 1 / ((5.0 / 3).squareRoot() + 1e-4)
        expectClose(try grpoAdvantages(rewards: rewards, groupSize: 2, scaleRewards: .group).advantages,
                    [-g, g, -g, g], "scale group")
        let batch = try grpoAdvantages(rewards: rewards, groupSize: 2, scaleRewards: .batch)
        expectClose(batch.advantages, [-b, b, -b, b], "scale batch")
        expectClose(batch.baselines, [2, 2, 1, 1], "the group means, also with scale batch")
    }

    @Test("K = 2 reward functions: weights, and GDPO's normalize-then-sum, by hand")
    func twoRewardFunctions() throws {
        // sum_then_normalize with w = [1, 0.5]: r = [1 + 0.5·2, 0 + 0.5·4] = [2, 2]: a group of
        // equal rewards, μ = 2 exactly, A = 0/(0 + 1e-4) = 0.
        let rewards = matrix([[1, 2], [0, 4]])
        let summed = try grpoAdvantages(rewards: rewards, groupSize: 2, rewardWeights: [1, 0.5])
        expectClose(summed.rewards, [2, 2], abs: 0, rel: 0, "weighted sum")
        expectClose(summed.advantages, [0, 0], abs: 0, rel: 0, "equal weighted rewards")
        // normalize_then_sum, one function (K = 1, rewards [1, 0, 0, 1], G = 4): Z = ±a with
        // a = (1/2)/(sqrt(1/3) + 1e-4); mean(Z) = 0; std(Z) over N = 4 = sqrt(4a²/4 · 4/3) = 2a/sqrt(3);
        // A = ±a/(2a/sqrt(3) + 1e-4).
        let a = 0.5 / ((1.0 / 3).squareRoot() + 1e-4)
        let gdpoA = a / (2 * a / 3.0.squareRoot() + 1e-4)
        let gdpo = try grpoAdvantages(rewards: vector([1, 0, 0, 1]), groupSize: 4,
                                      multiObjectiveAggregation: .normalizeThenSum)
        expectClose(gdpo.advantages, [gdpoA, -gdpoA, -gdpoA, gdpoA], "normalize_then_sum")
        // scale_rewards is not read by normalize_then_sum.
        var rng = SplitMix64(seed: 7)
        let random = Tensor.make([6, 2], rng.uniform(count: 12, -2, 2))
        for scaling in RewardScaling.allCases {
            let result = try grpoAdvantages(rewards: random, groupSize: 3, rewardWeights: [1, -0.5], scaleRewards: scaling,
                                            multiObjectiveAggregation: .normalizeThenSum)
            let reference = try grpoAdvantages(rewards: random, groupSize: 3, rewardWeights: [1, -0.5],
                                               multiObjectiveAggregation: .normalizeThenSum)
            expectClose(result.advantages, reference.advantages.scalars, abs: 0, rel: 0, "\(scaling) ignored")
        }
    }

    @Test("one group [1, 0, 0, 1] through RLOO, and the KL penalty, worked by hand")
    func rlooByHand() throws {
        // Leave one out: completion 0 sees the others' mean (0 + 0 + 1)/3 = 1/3, so A = 1 − 1/3 = 2/3;
        // completion 1 sees (1 + 0 + 1)/3 = 2/3, so A = 0 − 2/3.
        let plain = try rlooAdvantages(rewards: vector([1, 0, 0, 1]), groupSize: 4, beta: 0)
        expectClose(plain.advantages, [2.0 / 3, -2.0 / 3, -2.0 / 3, 2.0 / 3], "beta 0")
        expectClose(plain.baselines, [1.0 / 3, 2.0 / 3, 2.0 / 3, 1.0 / 3], "leave-one-out means")
        // β = 0.5; only row 0 has a log-ratio: old − ref = [0.5, 0, (9 masked)] sums to 0.5 over the mask,
        // so r = [1 − 0.25, 0, 0, 1] = [0.75, 0, 0, 1], Σ = 1.75:
        // A = [0.75 − 1/3, 0 − 1.75/3, 0 − 1.75/3, 1 − 0.75/3] = [5/12, −7/12, −7/12, 9/12].
        let old = matrix([[-1, -2, -9], [-1, -1, -1], [-2, -2, -2], [-3, -3, -3]])
        let ref = matrix([[-1.5, -2, 0], [-1, -1, -1], [-2, -2, -2], [-3, -3, -3]])
        let mask = intMatrix([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]])
        let penalised = try rlooAdvantages(rewards: vector([1, 0, 0, 1]), groupSize: 4, beta: 0.5,
                                           oldLogProbs: old, refLogProbs: ref, completionMask: mask)
        expectClose(penalised.rewards, [0.75, 0, 0, 1], "rewards with the KL penalty")
        expectClose(penalised.advantages, [5.0 / 12, -7.0 / 12, -7.0 / 12, 9.0 / 12], "beta 0.5")
    }

    @Test("invariants: advantages sum to 0 per group (grpo scale none, rloo), scale group has group mean 0")
    func invariants() throws {
        var rng = SplitMix64(seed: 2026)
        let n = 12, g = 4
        let rewards = Tensor.make([n, 2], rng.uniform(count: n * 2, -3, 3))
        let weights = [0.8, 1.7]
        let old = Tensor.make([n, 5], rng.uniform(count: n * 5, -4, 0))
        let ref = Tensor.make([n, 5], rng.uniform(count: n * 5, -4, 0))
        let mask = Tensor.make([n, 5], (0..<n * 5).map { Int64($0 % 5 < 1 + $0 / 5 % 5 ? 1 : 0) })
        let none = try grpoAdvantages(rewards: rewards, groupSize: g, rewardWeights: weights, scaleRewards: .none)
        let loo = try rlooAdvantages(rewards: rewards, groupSize: g, rewardWeights: weights, beta: 0.05,
                                     oldLogProbs: old, refLogProbs: ref, completionMask: mask)
        let grouped = try grpoAdvantages(rewards: rewards, groupSize: g, rewardWeights: weights)
        for start in stride(from: 0, to: n, by: g) {
            let sumNone = none.advantages.scalars[start..<start + g].reduce(0, +)
            let sumLoo = loo.advantages.scalars[start..<start + g].reduce(0, +)
            let sumGrouped = grouped.advantages.scalars[start..<start + g].reduce(0, +)
            expectClose(sumNone, 0, abs: 1e-13, rel: 0, "grpo scale none, group at \(start)")
            expectClose(sumLoo, 0, abs: 1e-13, rel: 0, "rloo, group at \(start)")
            expectClose(sumGrouped, 0, abs: 1e-12, rel: 0, "grpo scale group, group at \(start)")
            // RLOO's advantage is G/(G − 1) times the centred reward: r − (S − r)/(G − 1) = (G·r − S)/(G − 1).
            let mean = loo.rewards.scalars[start..<start + g].reduce(0, +) / Double(g)
            for i in start..<start + g {
                expectClose(loo.advantages.scalars[i], (loo.rewards.scalars[i] - mean) * Double(g) / Double(g - 1),
                            "rloo = G/(G−1)·(r − μ) at \(i)")
            }
        }
        // A group of one: every estimator gives 0.
        for result in [try grpoAdvantages(rewards: rewards, groupSize: 1, rewardWeights: weights),
                       try rlooAdvantages(rewards: rewards, groupSize: 1, rewardWeights: weights, beta: 0)] {
            #expect(result.advantages.scalars.allSatisfy { $0 == 0 })
        }
        // normalize_advantages: batch mean 0.
        let normalized = try rlooAdvantages(rewards: rewards, groupSize: g, rewardWeights: weights, beta: 0,
                                            normalizeAdvantages: true)
        expectClose(normalized.advantages.scalars.reduce(0, +), 0, abs: 1e-12, rel: 0, "normalized batch sum")
    }

    @Test("float32 follows the same formulas")
    func float32() throws {
        let a = try grpoAdvantages(rewards: Tensor<Float>.make([4], [1, 0, 0, 1]), groupSize: 4)
        let exact = 0.5 / ((1.0 / 3).squareRoot() + 1e-4)
        expectClose(a.advantages, [exact, -exact, -exact, exact], abs: 1e-6, rel: 1e-6, "float32 grpo")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let rewards = vector([1, 2, 3, 4])
        expectStageError(.parameterOutOfRange, argument: "group_size") {
            try grpoAdvantages(rewards: rewards, groupSize: 0)
        }
        expectStageError(.parameterOutOfRange, argument: "group_size") {
            try rlooAdvantages(rewards: rewards, groupSize: 3, beta: 0)
        }
        expectStageError(.shapeMismatch, argument: "reward_weights") {
            try grpoAdvantages(rewards: rewards, groupSize: 2, rewardWeights: [1, 2])
        }
        expectStageError(.shapeMismatch, argument: "old_log_probs") {
            try rlooAdvantages(rewards: rewards, groupSize: 2)  // beta 0.05 by default
        }
        expectStageError(.shapeMismatch, argument: "completion_mask") {
            try rlooAdvantages(rewards: rewards, groupSize: 2, oldLogProbs: matrix([[0], [0], [0], [0]]),
                               refLogProbs: matrix([[0], [0], [0], [0]]))
        }
        expectStageError(.shapeMismatch, argument: "ref_log_probs") {
            try rlooAdvantages(rewards: rewards, groupSize: 2, oldLogProbs: matrix([[0], [0], [0], [0]]),
                               refLogProbs: matrix([[0, 0], [0, 0], [0, 0], [0, 0]]),
                               completionMask: intMatrix([[1], [1], [1], [1]]))
        }
        expectStageError(.invalidMask, argument: "completion_mask") {
            try rlooAdvantages(rewards: rewards, groupSize: 2, oldLogProbs: matrix([[0], [0], [0], [0]]),
                               refLogProbs: matrix([[0], [0], [0], [0]]), completionMask: intMatrix([[1], [2], [1], [1]]))
        }
        expectStageError(.shapeMismatch, argument: "rewards") {
            try grpoAdvantages(rewards: Tensor<Double>(shape: [0], repeating: 0), groupSize: 1)
        }
        expectStageError(.notANumber, argument: "rewards") {
            try grpoAdvantages(rewards: vector([1, .nan]), groupSize: 2)
        }
        expectStageError(.parameterOutOfRange, argument: "reward_clip_range") {
            try rlooAdvantages(rewards: rewards, groupSize: 2, beta: 0, rewardClipRange: (lo: 1, hi: -1))
        }
        expectStageError(.parameterOutOfRange, argument: "estimator") {
            try GroupAdvantageEstimator(named: "ppo", stage: "group_advantages")
        }
        expectStageError(.parameterOutOfRange, argument: "scale_rewards") {
            try RewardScaling(named: "prompt", stage: "group_advantages")
        }
        // An infinite reward: inf − inf in the centring; refused instead of NaN.
        expectStageError(.nonFiniteResult, argument: "advantages") {
            try grpoAdvantages(rewards: vector([.infinity, 0]), groupSize: 2)
        }
    }
}
