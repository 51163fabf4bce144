import Testing
import TensorCore
import TestSupport
@testable import CriticLoss

@Suite("critic_loss")
struct CriticLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "critic_loss")
    }

    @Test("value clipping by hand, ε_v = 0.2 (pitfalls test 19)")
    func valueClipping() throws {
        // R = 10, old = 5, new = 1: clip(1) = 4.8; ½·max(81, 27.04) = 40.5
        let first = try criticLoss(values: matrix([[1]]), oldValues: matrix([[5]]), returns: matrix([[10]]),
                                   mask: intMatrix([[1]]), cliprangeValue: 0.2)
        expectClose(first.loss, 40.5, "new below old")
        // R = 10, old = 1, new = 5: clip(5) = 1.2; ½·max(25, 77.44) = 38.72
        let second = try criticLoss(values: matrix([[5]]), oldValues: matrix([[1]]), returns: matrix([[10]]),
                                    mask: intMatrix([[1]]), cliprangeValue: 0.2)
        expectClose(second.loss, 38.72, "new above old, clipped term wins")
        expectClose(second.clippedValues, [1.2], "clipped value")
    }

    @Test("with values = old values the clip is idle: ½ · masked mean of (V - R)²")
    func idleClip() throws {
        var rng = SplitMix64(seed: 9)
        let values = rng.uniform(count: 8, -1, 1), returns = rng.uniform(count: 8, -1, 1)
        let mask: [Int64] = [1, 1, 0, 1, 1, 1, 0, 1]
        let result = try criticLoss(values: Tensor.make([2, 4], values), oldValues: Tensor.make([2, 4], values),
                                    returns: Tensor.make([2, 4], returns), mask: Tensor.make([2, 4], mask),
                                    cliprangeValue: 0.2)
        var sum = 0.0
        for i in 0..<8 where mask[i] == 1 { sum += (values[i] - returns[i]) * (values[i] - returns[i]) }
        expectClose(result.loss, 0.5 * sum / 6, "loss")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 3], repeating: 0)
        expectStageError(.emptyMask, argument: "mask") {
            try criticLoss(values: x, oldValues: x, returns: x, mask: Tensor(shape: [2, 3], repeating: 0), cliprangeValue: 0.2)
        }
        expectStageError(.shapeMismatch, argument: "returns") {
            try criticLoss(values: x, oldValues: x, returns: Tensor(shape: [3, 2], repeating: 0), mask: Tensor(shape: [2, 3], repeating: 1), cliprangeValue: 0.2)
        }
        expectStageError(.notANumber, argument: "values") {
            try criticLoss(values: matrix([[.nan, 0, 0], [0, 0, 0]]), oldValues: x, returns: x,
                           mask: Tensor(shape: [2, 3], repeating: 1), cliprangeValue: 0.2)
        }
    }
}

@Suite("critic_loss backward")
struct CriticLossBackwardTests {
    @Test("grad_values equals central differences, away from the clip boundaries and ties")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 47)
        let old = rng.uniform(count: 8, -1, 1)
        // Values 0.05..0.6 away from the old ones: some inside ±0.2, some outside, none at ±0.2.
        let x = (0..<8).map { i -> Double in
            let offset = [0.05, -0.1, 0.35, -0.5, 0.15, 0.6, -0.3, 0.08][i]
            return old[i] + offset
        }
        let returns = Tensor.make([2, 4], rng.uniform(count: 8, -2, 2))
        let mask = Tensor.make([2, 4], [1, 1, 1, 1, 1, 0, 1, 1] as [Int64])
        let oldValues = Tensor.make([2, 4], old)
        let grad = try criticLossGradValues(values: Tensor.make([2, 4], x), oldValues: oldValues, returns: returns,
                                            mask: mask, cliprangeValue: 0.2)
        let numeric = try centralDifferenceGradient(at: x) { probe in
            Double(try criticLoss(values: Tensor.make([2, 4], probe), oldValues: oldValues, returns: returns, mask: mask,
                                  cliprangeValue: 0.2).loss)
        }
        expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_values vs finite differences")
    }

    @Test("by hand: zero where the clipped error wins outside the bounds (pitfalls test 19)")
    func byHand() throws {
        // R = 10, old = 5, new = 1: the unclipped error 81 wins; ∂/∂V ½(V - R)² = V - R = -9.
        // R = 10, old = 1, new = 5: the clipped error 77.44 wins and 5 is outside [0.8, 1.2]: 0.
        let grad = try criticLossGradValues(values: matrix([[1, 5]]), oldValues: matrix([[5, 1]]), returns: matrix([[10, 10]]),
                                            mask: intMatrix([[1, 1]]), cliprangeValue: 0.2)
        expectClose(grad, [-9.0 / 2, 0], abs: 0, rel: 1e-15, "grad_values (mean over 2 tokens)")
    }
}

@Suite("critic_loss: infinite inputs")
struct CriticLossInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `clipped_value_loss` (GoldenData/generator/stages/critic_loss.py) and autograd,
    // on the same inputs. ε_v = 0.5; the last token is masked.
    static let mask = intMatrix([[1, 1, 1, 0]])

    @Test("infinite inputs at kept tokens: autograd's exact 0 outside the clip bounds, ±inf elsewhere")
    func infiniteInputs() throws {
        // Token 0: V_old = inf, so V_clipped = inf wins the max; V = 1 is outside
        // [inf, inf] and the clamp passes nothing: 0, not 2·inf · 0 = NaN.
        // Token 1: R = inf, both errors inf (a tie): -inf. Token 2: V = inf: +inf.
        let values = matrix([[1, 1, .infinity, 0]]), oldValues = matrix([[.infinity, 1, 0, 0]])
        let returns = matrix([[0, .infinity, 0, 0]])
        let loss = try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: Self.mask,
                                  cliprangeValue: 0.5).loss
        expectClose(loss, .infinity, "loss")
        let grad = try criticLossGradValues(values: values, oldValues: oldValues, returns: returns, mask: Self.mask,
                                            cliprangeValue: 0.5)
        expectClose(grad, [0, -.infinity, .infinity, 0], "grad_values")

        // R = -inf with V = 1 outside [V_old - 0.5, V_old + 0.5] = [-0.5, 0.5]: +inf.
        let grad2 = try criticLossGradValues(values: matrix([[1, 1, 0, 0]]), oldValues: matrix([[1, 0, 0, 0]]),
                                             returns: matrix([[0, -.infinity, 0, 0]]), mask: Self.mask,
                                             cliprangeValue: 0.5)
        expectClose(grad2, [1.0 / 3, .infinity, 0, 0], "grad_values")
    }

    @Test("where PyTorch's loss is NaN, a nonFiniteResult naming loss")
    func nanLoss() throws {
        // -inf at the masked token: (V - R)² = inf, times the mask 0.
        expectStageError(.nonFiniteResult, argument: "loss") {
            try criticLoss(values: matrix([[1, 1, 0, -.infinity]]), oldValues: matrix([[1, 0, 0, 0]]),
                           returns: matrix([[0, 0, 0, 0]]), mask: Self.mask, cliprangeValue: 0.5)
        }
        // V_old = R = inf at a kept token: the clipped error (inf - inf)² is NaN
        // beside an unclipped inf, and torch.max keeps the NaN.
        let values = matrix([[1, 1, 0, 0]]), oldValues = matrix([[.infinity, 0, 0, 0]])
        let returns = matrix([[.infinity, 0, 0, 0]])
        expectStageError(.nonFiniteResult, argument: "loss") {
            try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: Self.mask, cliprangeValue: 0.5)
        }
        expectStageError(.nonFiniteResult, argument: "loss") {
            try criticLossGradValues(values: values, oldValues: oldValues, returns: returns, mask: Self.mask,
                                     cliprangeValue: 0.5)
        }
    }
}
