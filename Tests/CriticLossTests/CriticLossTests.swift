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
