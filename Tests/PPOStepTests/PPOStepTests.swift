import Testing
import TensorCore
import TestSupport
import ComputeRewards
import GAE
import ActorLoss
import CriticLoss
@testable import PPOStep

@Suite("ppo_losses")
struct PPOStepTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "ppo_losses")
    }

    /// peer-conventions §11 (`ConventionsToy` in TestSupport).
    static let toyMask = ConventionsToy.attentionMask
    static let toyLogProbs = ConventionsToy.logProbs
    static let toyValues = ConventionsToy.values

    @Test("DeepSpeed-Chat's toy by hand: zeroing from end = 5, GAE from start = 1")
    func toyByHand() throws {
        let zeros = Tensor<Double>(shape: [1, 6], repeating: 0)
        let result = try ppoLosses(
            attentionMask: Self.toyMask, logProbs: Self.toyLogProbs, refLogProbs: zeros, values: Self.toyValues,
            newLogProbs: Self.toyLogProbs, newValues: Self.toyValues, rewardScore: vector([1.0]), promptLength: 2,
            klCtl: 0.1, clipRewardValue: 5, cliprange: 0.2, cliprangeValue: 0.2, gamma: 1, lambda: 0.95)
        #expect(result.start == 1 && result.ends == [5])
        // compute_rewards gives 0.04 at t = 5; train_rlhf zeroes it (t >= end = 5).
        expectClose(result.rewards, [0, -0.01, 0.02, -0.03, 0.95, 0], "rewards")
        expectClose(result.oldValues, [0.0, 0.5, 0.4, 0.3, 0.2, 0.0], "old_values")
        let advantages = [0.33970625, 0.473375, 0.5825, 0.75, 0]
        expectClose(result.advantages, advantages, "advantages")
        expectClose(result.returns, [0.83970625, 0.873375, 0.8825, 0.95, 0], "returns")
        // The loss mask action_mask[:, 1:] = [1, 1, 1, 0, 0] leaves out t = 4, where
        // the score landed. Ratio 1 everywhere, so actor loss = -mean(A) over 3 tokens.
        expectClose(result.actor.loss, -(0.33970625 + 0.473375 + 0.5825) / 3, "actor_loss")
        // new values = old values, so R - V = A and the critic loss is ½·mean(A²).
        let meanSquare = (0.33970625 * 0.33970625 + 0.473375 * 0.473375 + 0.5825 * 0.5825) / 3
        expectClose(result.critic.loss, 0.5 * meanSquare, "critic_loss")
    }

    @Test("drift check: the step equals its four stages called on the documented slices, bit for bit")
    func equalsItsStages() throws {
        var rng = SplitMix64(seed: 21)
        let (batch, length, promptLength) = (3, 9, 3)
        let n = length - 1, start = promptLength - 1
        // Left-padded prompt in row 2, answers of lengths 6, 3 and 4.
        let attention = intMatrix([[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1, 0, 0]])
        func random() -> Tensor<Double> { Tensor.make([batch, n], rng.uniform(count: batch * n, -2, 0)) }
        let logProbs = random(), refLogProbs = random(), values = random(), newLogProbs = random(), newValues = random()
        let score = vector([3, -7, 0.5])
        let result = try ppoLosses(
            attentionMask: attention, logProbs: logProbs, refLogProbs: refLogProbs, values: values,
            newLogProbs: newLogProbs, newValues: newValues, rewardScore: score, promptLength: promptLength,
            klCtl: 0.1, clipRewardValue: 5, cliprange: 0.2, cliprangeValue: 0.2, gamma: 1, lambda: 0.95)

        var actionMask = Tensor<Int64>(shape: [batch, n], repeating: 0)
        for b in 0..<batch { for t in 0..<n { actionMask[b, t] = attention[b, t + 1] } }
        var rewards = try computeRewards(logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: score,
                                         actionMask: actionMask, promptLength: promptLength, klCtl: 0.1, clipRewardValue: 5)
        var oldValues = values
        // action_mask[:, start:] holds 6, 3 and 4 ones: ends = start + n + 1.
        let ends = [start + 6 + 1, start + 3 + 1, start + 4 + 1]
        #expect(result.ends == ends)
        for b in 0..<batch { for t in min(ends[b], n)..<n { rewards[b, t] = 0; oldValues[b, t] = 0 } }
        expectClose(result.rewards, rewards.scalars, abs: 0, rel: 0, "rewards")
        expectClose(result.oldValues, oldValues.scalars, abs: 0, rel: 0, "old_values")

        let estimate = try gae(values: oldValues, rewards: rewards, start: start, gamma: 1, lambda: 0.95)
        expectClose(result.advantages, estimate.advantages.scalars, abs: 0, rel: 0, "advantages")
        func tail<S>(_ x: Tensor<S>) -> Tensor<S> {
            Tensor.make([batch, n - start], (0..<batch).flatMap { b in (start..<n).map { x[b, $0] } })
        }
        let actor = try actorLoss(logProbs: tail(newLogProbs), oldLogProbs: tail(logProbs), advantages: estimate.advantages,
                                  mask: tail(actionMask), cliprange: 0.2)
        let critic = try criticLoss(values: tail(newValues), oldValues: tail(oldValues), returns: estimate.returns,
                                    mask: tail(actionMask), cliprangeValue: 0.2)
        #expect(result.actor.loss == actor.loss)
        #expect(result.critic.loss == critic.loss)
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [1, 6], repeating: 0)
        func run(mask: Tensor<Int64> = Self.toyMask, logProbs: Tensor<Double> = x, promptLength: Int = 2) throws -> Double {
            try ppoLosses(attentionMask: mask, logProbs: logProbs, refLogProbs: x, values: x, newLogProbs: x, newValues: x,
                          rewardScore: vector([1]), promptLength: promptLength, klCtl: 0.1, clipRewardValue: 5,
                          cliprange: 0.2, cliprangeValue: 0.2, gamma: 1, lambda: 0.95).actor.loss
        }
        expectStageError(.emptyMask, argument: "attention_mask") { try run(mask: intMatrix([[1, 1, 1, 0, 0, 0, 0]]), promptLength: 3) }
        expectStageError(.parameterOutOfRange, argument: "prompt_length") { try run(promptLength: 7) }
        expectStageError(.shapeMismatch, argument: "log_probs") { try run(logProbs: Tensor(shape: [1, 7], repeating: 0)) }
        expectStageError(.notANumber, argument: "log_probs") { try run(logProbs: matrix([[0, 0, 0, 0, 0, .nan]])) }
    }
}

@Suite("ppo_losses: infinite inputs")
struct PPOLossesInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `ppo_losses` (GoldenData/generator/stages/ppo_losses.py) on the same inputs.
    // The toy of peer-conventions §11 (GoldenData's ppo_losses/toy): L = 7, start =
    // 1, ends = 5; the loss mask keeps t = 1, 2, 3 of log-prob positions 0-5.
    static let mask = intMatrix([[1, 1, 1, 1, 1, 0, 0]])
    static let logProbs = matrix([[-2.0, -1.9, -2.2, -1.7, -1.5, -2.4]])
    static let refLogProbs = matrix([[-2.0, -2.0, -2.0, -2.0, -2.0, -2.0]])
    static let values = matrix([[0.0, 0.5, 0.4, 0.3, 0.2, 0.1]])
    static let newLogProbs = matrix([[-2.0, -1.7999999999999998, -2.5, -1.65, -1.5, -2.4]])
    static let newValues = matrix([[0.0, 0.8, 0.30000000000000004, 0.4, 0.2, 0.1]])

    static func run(
        klCtl: Double = 0.1, logProbs: Tensor<Double> = logProbs, refLogProbs: Tensor<Double> = refLogProbs,
        values: Tensor<Double> = values, newLogProbs: Tensor<Double> = newLogProbs,
        newValues: Tensor<Double> = newValues
    ) throws(StageError) -> PPOLossesResult<Double> {
        try ppoLosses(attentionMask: mask, logProbs: logProbs, refLogProbs: refLogProbs, values: values,
                      newLogProbs: newLogProbs, newValues: newValues, rewardScore: vector([1]), promptLength: 2,
                      klCtl: klCtl, clipRewardValue: 5, cliprange: 0.2, cliprangeValue: 0.2, gamma: 1, lambda: 0.95)
    }

    static func with(_ tensor: Tensor<Double>, _ t: Int, _ value: Double) -> Tensor<Double> {
        var changed = tensor
        changed[0, t] = value
        return changed
    }

    @Test("infinities that PyTorch zeroes or never reads leave every output a number")
    func ignoredInfinities() throws {
        // kl_ctl = 0 against ref_log_probs[0, 5] = -inf: compute_rewards alone gives
        // 0 · inf = NaN at t = 5, which train_rlhf zeroes (t >= end); values[0, 5] =
        // inf is zeroed too; the new log-prob and value at t = 0 < start are not read.
        let ref = Self.with(Self.refLogProbs, 5, -.infinity)
        expectStageError(.nonFiniteResult, argument: "rewards") {
            try computeRewards(logProbs: Self.logProbs, refLogProbs: ref, rewardScore: vector([1]),
                               actionMask: intMatrix([[1, 1, 1, 1, 0, 0]]), promptLength: 2, klCtl: 0,
                               clipRewardValue: 5)
        }
        let result = try Self.run(klCtl: 0, refLogProbs: ref, values: Self.with(Self.values, 5, .infinity),
                                  newLogProbs: Self.with(Self.newLogProbs, 0, -.infinity),
                                  newValues: Self.with(Self.newValues, 0, .infinity))
        expectClose(result.rewards, [0, 0, 0, 0, 1, 0], "rewards")
        expectClose(result.oldValues, [0, 0.5, 0.4, 0.3, 0.2, 0], "old_values")
        expectClose(result.advantages, [0.40064999999999995, 0.5269999999999999, 0.66, 0.8, 0], "advantages")
        expectClose(result.returns, [0.90065, 0.9269999999999999, 0.96, 1, 0], "returns")
        expectClose(result.actor.loss, -0.5090122847448165, "actor_loss")
        expectClose(result.critic.loss, 0.1244982370833333, "critic_loss")
    }

    @Test("an infinite reference log-prob in the answer: rewards, advantages, returns and both losses infinite")
    func infiniteKL() throws {
        let result = try Self.run(refLogProbs: Self.with(Self.refLogProbs, 2, -.infinity))
        expectClose(result.rewards, [0, -0.010000000000000009, -.infinity, -0.030000000000000006, 0.95, 0], "rewards")
        expectClose(result.advantages, [-.infinity, -.infinity, 0.5824999999999999, 0.75, 0], "advantages")
        expectClose(result.returns, [-.infinity, -.infinity, 0.8824999999999998, 0.95, 0], "returns")
        expectClose(result.actor.loss, .infinity, "actor_loss")
        expectClose(result.critic.loss, .infinity, "critic_loss")
    }

    @Test("where PyTorch gives NaN, a nonFiniteResult naming ppo_losses' own output, never a stage's input")
    func nanOutputs() throws {
        // Equal infinite log-probs in the answer: the KL term inf - inf.
        expectStageError(.nonFiniteResult, argument: "rewards") {
            try Self.run(logProbs: Self.with(Self.logProbs, 2, -.infinity),
                         refLogProbs: Self.with(Self.refLogProbs, 2, -.infinity))
        }
        // values[0, start] = inf: PyTorch's advantage there is -inf, its return
        // inf - inf (this used to surface as critic_loss's "NaN in input 'returns'").
        expectStageError(.nonFiniteResult, argument: "returns") {
            try Self.run(values: Self.with(Self.values, 1, .infinity))
        }
        // Past the end, where the answer mask is 0: inf · 0 in each loss's masked sum.
        expectStageError(.nonFiniteResult, argument: "actor_loss") {
            try Self.run(newLogProbs: Self.with(Self.newLogProbs, 5, -.infinity))
        }
        expectStageError(.nonFiniteResult, argument: "actor_loss") {
            try Self.run(logProbs: Self.with(Self.logProbs, 5, -.infinity))
        }
        expectStageError(.nonFiniteResult, argument: "critic_loss") {
            try Self.run(newValues: Self.with(Self.newValues, 5, .infinity))
        }
    }

    @Test("a stage's error is renamed to ppo_losses' argument; a NaN it finds in a computed input is a nonFiniteResult")
    func renamedErrors() throws {
        let fromCritic = StageError(.notANumber, stage: "critic_loss", argument: "returns", "NaN at index [0, 0]")
        let renamed = ppoLossesError(fromCritic, names: ["values": "new_values", "loss": "critic_loss"])
        #expect(renamed.kind == .nonFiniteResult && renamed.argument == "returns" && renamed.stage == "ppo_losses")
        let fromActor = StageError(.notANumber, stage: "actor_loss", argument: "log_probs", "NaN at index [0, 0]")
        let input = ppoLossesError(fromActor, names: ["log_probs": "new_log_probs"])
        #expect(input.kind == .notANumber && input.argument == "new_log_probs")
        #expect(input.detail == "in actor_loss (its 'log_probs'): NaN at index [0, 0]")
    }
}
