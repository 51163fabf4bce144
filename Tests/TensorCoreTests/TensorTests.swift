import Foundation
import Testing
import TestSupport
@testable import TensorCore

@Suite("TensorCore")
struct TensorCoreTests {
    @Test("a tensor checks that its scalars fill its shape")
    func shapeCheck() throws {
        #expect(throws: StageError.self) { try Tensor(shape: [2, 3], scalars: [1, 2, 3] as [Double]) }
        #expect(throws: StageError.self) { try Tensor(shape: [-1], scalars: [] as [Double]) }
        let x = try Tensor(shape: [2, 3], scalars: [0, 1, 2, 3, 4, 5] as [Double])
        #expect(x[1, 2] == 5)
        #expect(x.index(ofFlat: 4) == [1, 1])
        #expect(Tensor(scalar: 2.5).shape == [])
        let cube = Tensor<Int64>(shape: [2, 3, 4], repeating: 0)
        #expect(cube.index(ofFlat: 23) == [1, 2, 3])
    }

    @Test("TensorLimits: counts without overflow; refuses a negative extent, 2^31 elements, or a large empty loop")
    func limits() {
        #expect(TensorLimits.elementCount([2, 3]) == 6)
        #expect(TensorLimits.elementCount([]) == 1)
        #expect(TensorLimits.elementCount([0]) == 0)
        #expect(TensorLimits.elementCount([1 << 31]) == 1 << 31)
        #expect(TensorLimits.elementCount([1 << 31, 2]) == nil)
        #expect(TensorLimits.elementCount([4_294_967_296, 4_294_967_296]) == nil, "overflows Int when multiplied")
        #expect(TensorLimits.elementCount([1 << 62, 1 << 62, 0]) == nil)
        #expect(TensorLimits.elementCount([-1, 0]) == nil)
        #expect(TensorLimits.elementCount([1 << 20, 0]) == 0, "an empty batch of 2^20 rows is fine")
        #expect(TensorLimits.elementCount([(1 << 20) + 1, 0]) == nil)
        #expect(TensorLimits.elementCount([1_000_000_000_000, 0, 5]) == nil)
        expectStageError(.tooLarge, argument: "shape") { try Tensor(shape: [1 << 40, 1 << 40], scalars: [Double]()) }
        expectStageError(.tooLarge, argument: "shape") { try Tensor(shape: [-2], scalars: [Double]()) }
        // An empty tensor with a huge batch reaches a stage only through the
        // non-throwing init; the stage's rank check refuses it before any loop.
        let empty = Tensor<Double>(shape: [1_000_000_000_000, 0], repeating: 0)
        let check = InputCheck(stage: "dpo_loss")
        expectStageError(.tooLarge, argument: "better_log_probs") {
            try check.rank(empty, "better_log_probs", is: 2, legend: "[B, T]")
        }
    }

    @Test("logSigmoid is finite where log(sigmoid) is not (pitfalls test 9)")
    func logSigmoidExtremes() {
        // x = -100, -1e4, +1e4 -> -100, -1e4, ~0
        expectClose(logSigmoid(-100.0), -100, abs: 1e-12, rel: 0, "logSigmoid(-100)")
        expectClose(logSigmoid(-1e4), -1e4, abs: 0, rel: 0, "logSigmoid(-1e4)")
        expectClose(logSigmoid(1e4), 0, abs: 0, rel: 0, "logSigmoid(1e4)")
        expectClose(logSigmoid(Float(-100)), -100, abs: 1e-4, rel: 0, "float32 logSigmoid(-100)")
        expectClose(logSigmoid(0.0), -log(2.0), "logSigmoid(0)")
        // The naive float32 form: sigmoid(-100) underflows to 0, log gives -inf.
        let naive = logf(1 / (1 + expf(100)))
        #expect(naive == -.infinity)
    }

    @Test("logSumExpParts subtracts the max: no overflow at 1e4")
    func logSumExp() {
        let (maximum, logSum) = logSumExpParts([1e4, 1e4, 1e4][...])
        #expect(maximum == 1e4)
        expectClose(logSum, log(3.0), "log Σ exp(x - max)")
        let (m32, l32) = logSumExpParts([Float(1e6), 1e6 - 1][...])
        #expect(m32 == 1e6)
        expectClose(l32, log(1 + exp(-1.0)), abs: 1e-6, rel: 0, "float32")
    }

    @Test("maskedSum skips masked elements")
    func maskedSums() {
        let (sum, count) = maskedSum([1.0, 2, 4, 8], mask: [1, 0, 1, 0])
        #expect(sum == 5 && count == 2)
    }

    @Test("errors read as one line naming stage, argument and shapes")
    func errorDescription() throws {
        let check = InputCheck(stage: "gae")
        do {
            try check.shape(Tensor<Double>(shape: [2, 4], repeating: 0), "rewards", equals: [2, 5], sameAs: "same as values")
            Issue.record("expected a throw")
        } catch {
            #expect(error.description == "gae: shape mismatch in 'rewards': expected shape [2, 5] (same as values), got [2, 4]")
        }
    }

    @Test("containsNaN finds a NaN anywhere (vector body and tail); infinities are not NaN")
    func nanScan() {
        #expect(!containsNaN([Float]()))
        #expect(!containsNaN([Double](repeating: 1, count: 37)))
        for position in [0, 15, 16, 31, 32, 36] {
            var values = [Float](repeating: 0.5, count: 37)
            values[position] = .nan
            #expect(containsNaN(values), "NaN at \(position) of 37")
        }
        #expect(!containsNaN([Float.infinity, -.infinity, .greatestFiniteMagnitude, 0]))
    }

    @Test("containsNonBinary: anything but 0 and 1, negative values and large ones included")
    func maskScan() {
        #expect(!containsNonBinary([]))
        #expect(!containsNonBinary([0, 1, 1, 0, 1]))
        for bad: Int64 in [-1, 2, 3, -2, .max, .min] {
            var mask = [Int64](repeating: 1, count: 33)
            mask[32] = bad
            #expect(containsNonBinary(mask), "\(bad) at the end of 33")
        }
    }

    @Test("containsNonFiniteDroppedByMask: an inf or NaN where the mask is 0, nowhere else")
    func droppedByMask() {
        let mask: [Int64] = [1, 0, 1, 0]
        #expect(!containsNonFiniteDroppedByMask([1, 2, 3, 4] as [Double], mask: mask))
        #expect(!containsNonFiniteDroppedByMask([.infinity, 2, -.infinity, 4] as [Double], mask: mask), "kept infinities are no concern")
        #expect(containsNonFiniteDroppedByMask([1, .infinity, 3, 4] as [Double], mask: mask))
        #expect(containsNonFiniteDroppedByMask([1, 2, 3, -Float.infinity], mask: mask))
        #expect(containsNonFiniteDroppedByMask([1, .nan, 3, 4] as [Float], mask: mask))
        #expect(!containsNonFiniteDroppedByMask([Double](), mask: []))
    }

    @Test("maximumPropagatingNaN is torch.maximum: NaN if either is NaN, else the larger")
    func maximumKeepsNaN() {
        #expect(maximumPropagatingNaN(1.0, 2.0) == 2)
        #expect(maximumPropagatingNaN(Double.infinity, -1) == .infinity)
        #expect(maximumPropagatingNaN(Double.infinity, .nan).isNaN, "Swift's max(inf, NaN) is inf")
        #expect(maximumPropagatingNaN(Float.nan, 3).isNaN)
    }
}
