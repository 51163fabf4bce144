import Testing
import TensorCore
import TestSupport
import RewardsKLEndClamped
import GAEMasked
import ActorLossSeqMean
import CriticLossSeqMean
@testable import PPOLossesSeqMean

@Suite("ppo_losses_seq_mean")
struct PPOLossesSeqMeanTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "ppo_losses_seq_mean", minimum: 10)
    }

    /// peer-conventions §11 (`ConventionsToy` in TestSupport).
    static let toyMask = ConventionsToy.attentionMask
    static let toyLogProbs = ConventionsToy.logProbs
    static let toyValues = ConventionsToy.values

    @Test("align-anything's toy by hand: score on t = 3, masked GAE from s = 1, per-row means, rl_step's statistics")
    func toyByHand() throws {
        let zeros = Tensor<Double>(shape: [1, 6], repeating: 0)
        let result = try ppoLossesSeqMean(
            attentionMask: Self.toyMask, logProbs: Self.toyLogProbs, refLogProbs: zeros, rewardValues: Self.toyValues,
            newLogProbs: Self.toyLogProbs, newValues: Self.toyValues, reward: vector([1.0]), promptLength: 2,
            klCoeff: 0.1)
        #expect(result.start == 1 && result.endIndices == [3])
        // m = [1, 1, 1, 1, 0, 0]: the score lands on t = 3 (-0.03 + 1); the pads keep their KL terms.
        expectClose(result.rewards, [0, -0.01, 0.02, 0.97, -0.05, 0.04], "rewards")
        let advantages = [0.418675, 0.5565, 0.67, 0, 0]
        expectClose(result.advantages, advantages, "advantages (see the gae_masked toy)")
        expectClose(result.returns, [0.918675, 0.9565, 0.97, 0, 0], "returns")
        // m_s = [1, 1, 1, 0, 0]; ratio 1, so actor_loss = -mean(A) over the three answer tokens.
        let sumA = 0.418675 + 0.5565 + 0.67
        expectClose(result.actor.loss, -sumA / 3, "actor_loss")
        // new values = old values, so R - V = A: ½·mean(A²) (c = 5 clips nothing).
        expectClose(result.critic.loss, 0.5 * (0.418675 * 0.418675 + 0.5565 * 0.5565 + 0.67 * 0.67) / 3, "critic_loss")
        let s = result.statistics
        expectClose(s.rewardMean, 1, "reward_mean")
        expectClose(s.klDivergence, 0.1 - 0.2 + 0.3, "kl_divergence: Σ_{t>=1} d·m")
        expectClose(s.rewardWithKLPenalty, -0.01 + 0.02 + 0.97, "reward_with_kl_penalty: Σ_{t>=1} rewards·m")
        expectClose(s.rewardAdvantage, sumA / 3, "reward_advantage")
        expectClose(s.rewardReturn, (0.918675 + 0.9565 + 0.97) / 3, "reward_return")
        expectClose(s.rewardValue, (0.5 + 0.4 + 0.3) / 3, "reward_value: mean of new_values over m_s")
        #expect(s.meanGeneratedLength == 3 && s.maxGeneratedLength == 3)
        // The gradients: -A_t/3 on the answer tokens, zero on the prompt column and the pads;
        // new values = old: ½·(2/3)·(V - R) = -A_t/3 too.
        expectClose(result.gradNewLogProbs, [0] + advantages.prefix(3).map { -$0 / 3 } + [0, 0], "grad_new_log_probs")
        expectClose(result.gradNewValues, [0] + advantages.prefix(3).map { -$0 / 3 } + [0, 0], "grad_new_values")
    }

    @Test("drift check: the step equals its four stages called on the documented slices, bit for bit")
    func equalsItsStages() throws {
        // prompt_length 3, s = 2. Row 0: 5 answer tokens with a hole; row 1: a one-token answer;
        // row 2: a left-padded prompt and 4 answer tokens.
        let attention = intMatrix([[1, 1, 1, 1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1, 0, 0]])
        let (rows, n, s) = (3, 8, 2)
        var rng = SplitMix64(seed: 41)
        let draws = rng.uniform(count: 5 * rows * n, -2, 0)
        let inputs = (0..<5).map { k in Tensor.make([rows, n], Array(draws[(k * rows * n)..<((k + 1) * rows * n)])) }
        let (logProbs, refLogProbs, values, newLogProbs, newValues) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4])
        let reward = vector([3, -7, 0.5])
        let result = try ppoLossesSeqMean(
            attentionMask: attention, logProbs: logProbs, refLogProbs: refLogProbs, rewardValues: values,
            newLogProbs: newLogProbs, newValues: newValues, reward: reward, promptLength: s + 1,
            klCoeff: 0.1, clipRangeScore: 5, clipRangeRatio: 0.2, clipRangeValue: 0.5, gamma: 0.99, gaeLambda: 0.9)

        // m = attention_mask[:, 1:], m_s = m[:, s:]
        let m = attention.columns(1...), answerMask = m.columns(s...)
        let shaped = try rewardsKLEndClamped(reward: reward, logProbs: logProbs, refLogProbs: refLogProbs,
                                             sequenceMask: m, klCoeff: 0.1, clipRangeScore: 5)
        #expect(result.rewards == shaped.rewards && result.endIndices == [7, 2, 5])
        let estimate = try gaeMasked(values: values, rewards: shaped.rewards, sequenceMask: m, start: s,
                                     gamma: 0.99, gaeLambda: 0.9)
        #expect(result.advantages == estimate.advantages && result.returns == estimate.returns)
        let actor = try actorLossSeqMean(logProbs: newLogProbs.columns(s...), oldLogProbs: logProbs.columns(s...),
                                         advantages: estimate.advantages, mask: answerMask, clipRangeRatio: 0.2)
        // The critic clips against the raw values (not values · m).
        let critic = try criticLossSeqMean(values: newValues.columns(s...), oldValues: values.columns(s...),
                                           returns: estimate.returns, mask: answerMask, clipRangeValue: 0.5)
        #expect(result.actor.loss == actor.loss && result.critic.loss == critic.loss)
        let actorGrad = try actorLossSeqMeanGradLogProbs(
            logProbs: newLogProbs.columns(s...), oldLogProbs: logProbs.columns(s...), advantages: estimate.advantages,
            mask: answerMask, clipRangeRatio: 0.2)
        #expect(result.gradNewLogProbs.columns(s...) == actorGrad)
        #expect(result.gradNewLogProbs.columns(..<s).scalars.allSatisfy { $0 == 0 })
        #expect(result.gradNewValues.columns(..<s).scalars.allSatisfy { $0 == 0 })
        // m_s keeps 5, 1 and 4 tokens.
        #expect(result.statistics.meanGeneratedLength == 10.0 / 3 && result.statistics.maxGeneratedLength == 5)
    }

    @Test("the old values past the end do not matter (finite): GAE masks them, the critic's mask drops them")
    func rawOldValuesPastEnd() throws {
        var rng = SplitMix64(seed: 43)
        let attention = intMatrix([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
        let logProbs = Tensor.make([2, 5], rng.uniform(count: 10, -2, 0))
        let newValues = Tensor.make([2, 5], rng.uniform(count: 10, -1, 1))
        var values = Tensor.make([2, 5], rng.uniform(count: 10, -1, 1))
        func run(_ v: Tensor<Double>) throws -> PPOLossesSeqMeanResult<Double> {
            try ppoLossesSeqMean(attentionMask: attention, logProbs: logProbs, refLogProbs: logProbs, rewardValues: v,
                                 newLogProbs: logProbs, newValues: newValues, reward: vector([1, -1]), promptLength: 2)
        }
        let base = try run(values)
        values[0, 3] = 1000
        values[0, 4] = -1000
        let garbage = try run(values)
        #expect(base.advantages == garbage.advantages && base.critic.loss == garbage.critic.loss)
        #expect(base.gradNewValues == garbage.gradNewValues)
    }

    @Test("grad_new_log_probs and grad_new_values equal central differences of the two losses")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 47)
        let attention = intMatrix([[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]])
        let logProbs = Tensor.make([2, 5], rng.uniform(count: 10, -2, -0.5))
        let refLogProbs = Tensor.make([2, 5], rng.uniform(count: 10, -2, -0.5))
        let values = Tensor.make([2, 5], rng.uniform(count: 10, -1, 1))
        // Log-ratios within ±0.15 (inside the clip) and values within 0.3 of the old ones (c = 5).
        let newLogProbs = (0..<10).map { logProbs.scalars[$0] + rng.uniform(-0.15, 0.15) }
        let newValues = (0..<10).map { values.scalars[$0] + rng.uniform(-0.3, 0.3) }
        func run(_ lp: [Double], _ v: [Double]) throws -> PPOLossesSeqMeanResult<Double> {
            try ppoLossesSeqMean(attentionMask: attention, logProbs: logProbs, refLogProbs: refLogProbs,
                                 rewardValues: values, newLogProbs: Tensor.make([2, 5], lp),
                                 newValues: Tensor.make([2, 5], v), reward: vector([2, -1]), promptLength: 3)
        }
        let result = try run(newLogProbs, newValues)
        let numericActor = try centralDifferenceGradient(at: newLogProbs) { Double(try run($0, newValues).actor.loss) }
        let numericCritic = try centralDifferenceGradient(at: newValues) { Double(try run(newLogProbs, $0).critic.loss) }
        expectClose(result.gradNewLogProbs, numericActor, abs: 1e-9, rel: 1e-6, "grad_new_log_probs")
        expectClose(result.gradNewValues, numericCritic, abs: 1e-9, rel: 1e-6, "grad_new_values")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 6], repeating: -1)
        let attention = intMatrix([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
        let reward = vector([1, 2])
        func run(attention: Tensor<Int64> = attention, newValues: Tensor<Double> = x, reward: Tensor<Double> = reward,
                 promptLength: Int = 3) throws -> PPOLossesSeqMeanResult<Double> {
            try ppoLossesSeqMean(attentionMask: attention, logProbs: x, refLogProbs: x, rewardValues: x, newLogProbs: x,
                                 newValues: newValues, reward: reward, promptLength: promptLength)
        }
        expectStageError(.parameterOutOfRange, argument: "prompt_length") { try run(promptLength: 0) }
        expectStageError(.parameterOutOfRange, argument: "prompt_length") { try run(promptLength: 7) }
        expectStageError(.emptyMask, argument: "attention_mask") {
            try run(attention: intMatrix([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]]))
        }
        expectStageError(.shapeMismatch, argument: "attention_mask") {
            try run(attention: intMatrix([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]))
        }
        expectStageError(.shapeMismatch, argument: "reward") { try run(reward: vector([1])) }
        expectStageError(.invalidMask, argument: "attention_mask") {
            try run(attention: intMatrix([[1, 1, 2, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]]))
        }
        var withNaN = x
        withNaN[0, 5] = .nan
        expectStageError(.notANumber, argument: "new_values") { try run(newValues: withNaN) }
    }
}
