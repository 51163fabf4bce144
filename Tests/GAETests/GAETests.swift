import Testing
import TensorCore
import TestSupport
@testable import GAE

@Suite("gae")
struct GAETests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "gae")
    }

    @Test("the two ends of lambda by hand (pitfalls test 15)")
    func lambdaEnds() throws {
        // r = [0, 0, 1], V = [0.2, 0.5, 0.9], γ = 1.
        let rewards = matrix([[0, 0, 1]]), values = matrix([[0.2, 0.5, 0.9]])
        // λ = 1: A_t = Σ_{k>=t} r_k - V_t = [0.8, 0.5, 0.1]
        let monteCarlo = try gae(values: values, rewards: rewards, start: 0, gamma: 1, lambda: 1)
        expectClose(monteCarlo.advantages, [0.8, 0.5, 0.1], "λ = 1 advantages")
        expectClose(monteCarlo.returns, [1, 1, 1], "λ = 1 returns (reward-to-go)")
        // λ = 0: A_t = δ_t = r_t + V_{t+1} - V_t = [0.3, 0.4, 0.1]
        let oneStep = try gae(values: values, rewards: rewards, start: 0, gamma: 1, lambda: 0)
        expectClose(oneStep.advantages, [0.3, 0.4, 0.1], "λ = 0 advantages")
    }

    @Test("DeepSpeed-Chat's toy from start = 1 (peer-conventions §11)")
    func deepSpeedToy() throws {
        // rewards and values after train_rlhf zeroes them from end = 5 on.
        let rewards = matrix([[0, -0.01, 0.02, -0.03, 0.95, 0]])
        let values = matrix([[0.0, 0.5, 0.4, 0.3, 0.2, 0.0]])
        let result = try gae(values: values, rewards: rewards, start: 1, gamma: 1, lambda: 0.95)
        // t=4: δ = 0.95 - 0.2 = 0.75;           A = 0.75
        // t=3: δ = -0.03 + 0.2 - 0.3 = -0.13;   A = -0.13 + 0.95·0.75 = 0.5825
        // t=2: δ = 0.02 + 0.3 - 0.4 = -0.08;    A = -0.08 + 0.95·0.5825 = 0.473375
        // t=1: δ = -0.01 + 0.4 - 0.5 = -0.11;   A = -0.11 + 0.95·0.473375 = 0.33970625
        expectClose(result.advantages, [0.33970625, 0.473375, 0.5825, 0.75, 0], "advantages")
        expectClose(result.returns, [0.83970625, 0.873375, 0.8825, 0.95, 0], "returns")
    }

    @Test("invariants on random inputs: λ = 0 is the TD error; γ = λ = 1 is reward-to-go minus V")
    func invariants() throws {
        var rng = SplitMix64(seed: 11)
        let (batch, positions) = (3, 9)
        let values = Tensor.make([batch, positions], rng.uniform(count: batch * positions, -1, 1))
        let rewards = Tensor.make([batch, positions], rng.uniform(count: batch * positions, -1, 1))

        let td = try gae(values: values, rewards: rewards, start: 0, gamma: 0.9, lambda: 0)
        var deltas = [Double]()
        for b in 0..<batch {
            for t in 0..<positions {
                let next = t + 1 < positions ? values[b, t + 1] : 0
                deltas.append(rewards[b, t] + 0.9 * next - values[b, t])
            }
        }
        expectClose(td.advantages, deltas, "λ = 0 advantages vs TD errors")

        let full = try gae(values: values, rewards: rewards, start: 0, gamma: 1, lambda: 1)
        var rewardToGoMinusValue = [Double]()
        for b in 0..<batch {
            for t in 0..<positions {
                let toGo = (t..<positions).reduce(0.0) { $0 + rewards[b, $1] }
                rewardToGoMinusValue.append(toGo - values[b, t])
            }
        }
        expectClose(full.advantages, rewardToGoMinusValue, "γ = λ = 1 advantages vs Σ r - V")

        // The recursion runs backwards, so starting later only drops columns.
        let fromZero = try gae(values: values, rewards: rewards, start: 0, gamma: 1, lambda: 0.95)
        let fromFour = try gae(values: values, rewards: rewards, start: 4, gamma: 1, lambda: 0.95)
        var tail = [Double]()
        for b in 0..<batch { for t in 4..<positions { tail.append(fromZero.advantages[b, t]) } }
        expectClose(fromFour.advantages, tail, abs: 0, rel: 0, "start = 4 vs columns 4... of start = 0")
        // returns = advantages + values
        for b in 0..<batch {
            for t in 0..<positions {
                #expect(fromZero.returns[b, t] == fromZero.advantages[b, t] + values[b, t])
            }
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 5], repeating: 0)
        expectStageError(.parameterOutOfRange, argument: "start") { try gae(values: x, rewards: x, start: 5, gamma: 1, lambda: 0.95) }
        expectStageError(.parameterOutOfRange, argument: "start") { try gae(values: x, rewards: x, start: -1, gamma: 1, lambda: 0.95) }
        expectStageError(.shapeMismatch, argument: "rewards") {
            try gae(values: x, rewards: Tensor(shape: [2, 4], repeating: 0), start: 0, gamma: 1, lambda: 0.95)
        }
        var withNaN = x
        withNaN[1, 4] = .nan
        expectStageError(.notANumber, argument: "values") { try gae(values: withNaN, rewards: x, start: 0, gamma: 1, lambda: 0.95) }
        expectStageError(.parameterOutOfRange, argument: "gamma") { try gae(values: x, rewards: x, start: 0, gamma: .nan, lambda: 0.95) }
    }
}

@Suite("gae: infinite inputs")
struct GAEInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64), from the generator's
    // `advantages_and_returns` (GoldenData/generator/stages/gae.py) on the same inputs.

    @Test("an infinite reward makes the advantages and returns up to it -inf, as in PyTorch")
    func infiniteReward() throws {
        let result = try gae(values: matrix([[0.0, 0.5, 0.25, 0.0]]), rewards: matrix([[0, 0, -.infinity, 1]]),
                             start: 1, gamma: 1, lambda: 0.5)
        expectClose(result.advantages, [-.infinity, -.infinity, 1.0], "advantages")
        expectClose(result.returns, [-.infinity, -.infinity, 1.0], "returns")
    }

    @Test("an infinite value at start: PyTorch's advantage there is -inf and its return inf - inf = NaN")
    func infiniteValueMakesReturnsNaN() throws {
        // PyTorch: advantages [-inf, 0.25, 1.0], returns [nan, 0.5, 1.0]. The
        // advantages alone are fine, so only a check of returns catches it.
        expectStageError(.nonFiniteResult, argument: "returns") {
            try gae(values: matrix([[0.0, .infinity, 0.25, 0.0]]), rewards: matrix([[0, 0, 0, 1]]),
                    start: 1, gamma: 1, lambda: 0.5)
        }
        // Later in the row, γ·V_{t+1} = inf meets γλ·A_{t+1} = -inf: PyTorch's
        // advantages [nan, -inf, 1.0].
        expectStageError(.nonFiniteResult, argument: "advantages") {
            try gae(values: matrix([[0.0, 0.5, .infinity, 0.0]]), rewards: matrix([[0, 0, 0, 1]]),
                    start: 1, gamma: 1, lambda: 0.5)
        }
    }
}
