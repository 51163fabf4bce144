import Testing
import TensorCore
import TestSupport
import GAE
@testable import GAEMasked

@Suite("gae_masked")
struct GAEMaskedTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "gae_masked", minimum: 10)
    }

    @Test("a garbage value past the end is masked, not bootstrapped from (pitfalls test 15)")
    func garbagePastEnd() throws {
        // m = [1, 1, 0], r = [0, 1, 0], V = [0, 0, 100], γ = 1, λ = 0.95. Masked: v = [0, 0, 0].
        // t=2: δ = 0;  t=1: δ = 1 + 0 - 0 = 1, A = 1;  t=0: δ = 0, A = 0.95·1 = 0.95.
        // Unmasked, the 100 would leak in: A = [5.7, 6.0, ·].
        let result = try gaeMasked(values: matrix([[0, 0, 100]]), rewards: matrix([[0, 1, 0]]),
                                   sequenceMask: intMatrix([[1, 1, 0]]), start: 0)
        expectClose(result.advantages, [0.95, 1, 0], "advantages")
        expectClose(result.returns, [0.95, 1, 0], "returns (masked values added)")
    }

    @Test("align-anything's toy by hand from start = 1 (peer-conventions §11)")
    func toy() throws {
        // The rewards of rewards_kl_end_clamped (β = 0.1), m = [1, 1, 1, 1, 0, 0]:
        // masked r = [0, -0.01, 0.02, 0.97, 0, 0], masked v = [0, 0.5, 0.4, 0.3, 0, 0].
        // t=5, 4: δ = 0, A = 0
        // t=3: δ = 0.97 + 0 - 0.3 = 0.67;          A = 0.67
        // t=2: δ = 0.02 + 0.3 - 0.4 = -0.08;       A = -0.08 + 0.95·0.67 = 0.5565
        // t=1: δ = -0.01 + 0.4 - 0.5 = -0.11;      A = -0.11 + 0.95·0.5565 = 0.418675
        let result = try gaeMasked(values: matrix([[0, 0.5, 0.4, 0.3, 0.2, 0.1]]),
                                   rewards: matrix([[0, -0.01, 0.02, 0.97, -0.05, 0.04]]),
                                   sequenceMask: intMatrix([[1, 1, 1, 1, 0, 0]]), start: 1, gamma: 1, gaeLambda: 0.95)
        expectClose(result.advantages, [0.418675, 0.5565, 0.67, 0, 0], "advantages")
        expectClose(result.returns, [0.918675, 0.9565, 0.97, 0, 0], "returns")
    }

    @Test("a hole is zeroed and the recursion runs on through it")
    func hole() throws {
        // m = [1, 0, 1], r = [0, 5, 1], V = [0.5, 9, 0.25], γ = 1, λ = 0.5.
        // masked r = [0, 0, 1], v = [0.5, 0, 0.25]
        // t=2: δ = 1 - 0.25 = 0.75;             A = 0.75
        // t=1: δ = 0 + 0.25 - 0 = 0.25;         A = 0.25 + 0.5·0.75 = 0.625   (not restarted at the hole)
        // t=0: δ = 0 + 0 - 0.5 = -0.5;          A = -0.5 + 0.5·0.625 = -0.1875
        let result = try gaeMasked(values: matrix([[0.5, 9, 0.25]]), rewards: matrix([[0, 5, 1]]),
                                   sequenceMask: intMatrix([[1, 0, 1]]), start: 0, gamma: 1, gaeLambda: 0.5)
        expectClose(result.advantages, [-0.1875, 0.625, 0.75], abs: 0, rel: 0, "advantages")
        expectClose(result.returns, [0.3125, 0.625, 1], abs: 0, rel: 0, "returns")
    }

    @Test("invariants: with a mask of ones it is v1's gae bit for bit; otherwise v1's gae on the masked inputs")
    func invariants() throws {
        var rng = SplitMix64(seed: 29)
        let (batch, positions, start) = (3, 8, 2)
        let values = Tensor.make([batch, positions], rng.uniform(count: batch * positions, -1, 1))
        let rewards = Tensor.make([batch, positions], rng.uniform(count: batch * positions, -1, 1))
        let ones = Tensor<Int64>(shape: [batch, positions], repeating: 1)
        let plain = try gae(values: values, rewards: rewards, start: start, gamma: 0.99, lambda: 0.9)
        let masked = try gaeMasked(values: values, rewards: rewards, sequenceMask: ones, start: start,
                                   gamma: 0.99, gaeLambda: 0.9)
        #expect(masked.advantages == plain.advantages && masked.returns == plain.returns)

        let mask = intMatrix([[1, 1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0, 0]])
        var zeroedValues = values, zeroedRewards = rewards
        for i in 0..<mask.count where mask.scalars[i] == 0 {
            zeroedValues.scalars[i] = 0
            zeroedRewards.scalars[i] = 0
        }
        let reference = try gae(values: zeroedValues, rewards: zeroedRewards, start: start, gamma: 0.99, lambda: 0.9)
        let result = try gaeMasked(values: values, rewards: rewards, sequenceMask: mask, start: start,
                                   gamma: 0.99, gaeLambda: 0.9)
        #expect(result.advantages == reference.advantages && result.returns == reference.returns)
        // Past each row's end, advantages and returns are 0.
        #expect(result.advantages[2, 5] == 0 && result.returns[0, 5] == 0)
    }

    @Test("an infinity under a 0 of the mask: NaN in the peer (inf·0) where the recursion reads it, unread before start")
    func maskedInfinity() throws {
        let mask = intMatrix([[1, 1, 1, 0]])
        // Before start = 2 the recursion reads nothing: the peer's NaN there never reaches an output.
        let unread = try gaeMasked(values: matrix([[.infinity, 0.5, 0.25, 0]]), rewards: matrix([[0, 0, 1, 0]]),
                                   sequenceMask: intMatrix([[0, 1, 1, 0]]), start: 2)
        expectClose(unread.advantages, [0.75, 0], "advantages")
        expectStageError(.nonFiniteResult, argument: "advantages") {
            try gaeMasked(values: matrix([[0, 0.5, 0.25, .infinity]]), rewards: matrix([[0, 0, 1, 0]]),
                          sequenceMask: mask, start: 1)
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 5], repeating: 0)
        let mask = Tensor<Int64>(shape: [2, 5], repeating: 1)
        expectStageError(.parameterOutOfRange, argument: "start") { try gaeMasked(values: x, rewards: x, sequenceMask: mask, start: 5) }
        expectStageError(.parameterOutOfRange, argument: "start") { try gaeMasked(values: x, rewards: x, sequenceMask: mask, start: -1) }
        expectStageError(.shapeMismatch, argument: "rewards") {
            try gaeMasked(values: x, rewards: Tensor(shape: [2, 6], repeating: 0), sequenceMask: mask, start: 0)
        }
        expectStageError(.shapeMismatch, argument: "sequence_mask") {
            try gaeMasked(values: x, rewards: x, sequenceMask: Tensor(shape: [2, 4], repeating: 1), start: 0)
        }
        expectStageError(.invalidMask, argument: "sequence_mask") {
            try gaeMasked(values: x, rewards: x, sequenceMask: intMatrix([[1, 1, 1, 1, 2], [1, 1, 1, 1, 1]]), start: 0)
        }
        var withNaN = x
        withNaN[1, 4] = .nan
        expectStageError(.notANumber, argument: "values") {
            try gaeMasked(values: withNaN, rewards: x, sequenceMask: intMatrix([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), start: 0)
        }
        expectStageError(.parameterOutOfRange, argument: "gae_lambda") {
            try gaeMasked(values: x, rewards: x, sequenceMask: mask, start: 0, gaeLambda: .infinity)
        }
    }
}
