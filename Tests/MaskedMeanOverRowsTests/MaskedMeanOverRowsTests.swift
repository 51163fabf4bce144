import Testing
import TensorCore
import TestSupport
@testable import MaskedMeanOverRows

@Suite("masked mean over rows (align-anything's masked_mean)")
struct MaskedMeanOverRowsTests {
    @Test("the loss-aggregation golden of pitfalls test 17: per-sequence mean 6, not the token mean 10/3")
    func pitfallsSeventeen() {
        // Row 0 keeps its first five 2s: mean 2. Row 1 keeps only its 10: mean 10.
        // Per-sequence then batch mean: (2 + 10)/2 = 6. The token mean would be (5·2 + 10)/6 = 10/3.
        let values = matrix([[2, 2, 2, 2, 2, 6, 5, 3, 2, 4], [10, 3, 4, 5, 2, 3, 4, 1, 1, 3]])
        let mask = intMatrix([[1, 1, 1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
        expectClose(maskedMeanOverRows(values, mask: mask), 6, abs: 0, rel: 0, "masked mean over rows")
        #expect(rowCounts(mask) == [5, 1])
        #expect(maskedRowSums(values, mask: mask) == [10, 10])
    }

    @Test("with every row of the same length it is the token mean")
    func equalLengths() {
        var rng = SplitMix64(seed: 3)
        let values = Tensor.make([3, 5], rng.uniform(count: 15, -2, 2))
        let mask = intMatrix([[1, 1, 0, 1, 0], [0, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
        let (sum, count) = maskedSum(values.scalars, mask: mask.scalars)
        expectClose(maskedMeanOverRows(values, mask: mask), sum / Double(count), "3 tokens in every row")
    }

    @Test("the mask multiplies, as in PyTorch: an infinity under a 0 gives NaN; an empty row gives 0/0")
    func multiplies() {
        let mask = intMatrix([[1, 0], [1, 1]])
        #expect(maskedMeanOverRows(matrix([[1, .infinity], [2, 3]]), mask: mask).isNaN)
        #expect(maskedMeanOverRows(matrix([[1, 2], [2, 3]]), mask: intMatrix([[0, 0], [1, 1]])).isNaN)
        // Under a 1 an infinity stays an infinity.
        #expect(maskedMeanOverRows(matrix([[.infinity, 5], [2, 3]]), mask: mask) == .infinity)
    }

    @Test("the gradient reweighting: a token mean's 1/(B·M) becomes m/(B·n_b)")
    func gradientWeights() {
        // B = 2, M = 4: a token-mean gradient of 1/8 everywhere (the terms themselves).
        // Row 0 keeps 1 token: weight 1/(2·1) = 0.5; row 1 keeps 4: weight 1/(2·4) = 0.125.
        let tokenMean = Tensor<Double>(shape: [2, 4], repeating: 0.125)
        let mask = intMatrix([[0, 0, 1, 0], [1, 1, 1, 1]])
        let gradient = maskedMeanOverRowsGradient(fromTokenMeanGradient: tokenMean, mask: mask)
        expectClose(gradient, [0, 0, 0.5, 0, 0.125, 0.125, 0.125, 0.125], abs: 0, rel: 0, "weights")
        // A NaN or infinite per-token derivative under a 0 stays NaN (autograd's 0 · inf).
        let overflowed = maskedMeanOverRowsGradient(fromTokenMeanGradient: matrix([[.infinity, 1]]), mask: intMatrix([[0, 1]]))
        #expect(overflowed[0, 0].isNaN && overflowed[0, 1] == 2)
    }

    @Test("every row must select something, and there must be a row")
    func everyRow() throws {
        let check = InputCheck(stage: "test")
        try check.everyRowSelects(intMatrix([[0, 1], [1, 0]]), "mask", describedAs: "mask")
        expectStageError(.emptyMask, argument: "mask") {
            try check.everyRowSelects(intMatrix([[1, 1], [0, 0]]), "mask", describedAs: "mask")
        }
        expectStageError(.emptyMask, argument: "attention_mask") {
            try check.everyRowSelects(Tensor(shape: [0, 3], repeating: 1), "attention_mask", describedAs: "m_s")
        }
    }

    @Test("the loss-input checks name the argument at fault, and a called stage's error is re-thrown under this one")
    func lossInputsAndRethrow() throws {
        let check = InputCheck(stage: "outer")
        let x = Tensor<Double>(shape: [2, 3], repeating: 0)
        try check.maskedLossInputs([(x, "a"), (x, "b")], mask: intMatrix([[1, 0, 0], [0, 0, 1]]))
        expectStageError(.shapeMismatch, argument: "b") {
            try check.maskedLossInputs([(x, "a"), (Tensor(shape: [2, 2], repeating: 0), "b")], mask: intMatrix([[1, 0, 0], [0, 0, 1]]))
        }
        expectStageError(.notANumber, argument: "b") {
            try check.maskedLossInputs([(x, "a"), (matrix([[0, 0, 0], [.nan, 0, 0]]), "b")], mask: intMatrix([[1, 0, 0], [0, 0, 1]]))
        }
        do {
            _ = try check.underThisStage { () throws(StageError) -> Int in
                throw StageError(.emptyMask, stage: "inner", argument: "mask", "nothing selected")
            }
            Issue.record("expected a re-thrown error")
        } catch {
            #expect(error == StageError(.emptyMask, stage: "outer", argument: "mask", "in inner: nothing selected"))
        }
    }
}
