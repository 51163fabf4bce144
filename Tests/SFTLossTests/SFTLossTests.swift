import Foundation
import Testing
import TensorCore
import TestSupport
@testable import SFTLoss

@Suite("sft_loss")
struct SFTLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "sft_loss")
    }

    @Test("uniform logits by hand: loss log V, gradient (1/V - onehot)/n")
    func uniformLogits() throws {
        // B = 1, L = 3, V = 4; labels[:, 1:] = [2, -100]: one counted label.
        let logits = Tensor<Double>(shape: [1, 3, 4], repeating: 0)
        let labels = intMatrix([[9, 2, -100]])  // labels[:, 0] is never used
        let result = try sftLoss(logits: logits, labels: labels)
        expectClose(result.loss, log(4.0), "loss")
        #expect(result.tokenCount == 1)
        let grad = try sftLossGradLogits(logits: logits, labels: labels)
        expectClose(grad, [0.25, 0.25, -0.75, 0.25, 0, 0, 0, 0, 0, 0, 0, 0], "grad_logits")
    }

    @Test("the shift: logits at t are scored against labels at t + 1")
    func shift() throws {
        // Logits at t = 0 put all their weight (20) on token 1, at t = 1 on token 3.
        var logits = Tensor<Double>(shape: [1, 3, 4], repeating: 0)
        logits[0, 0, 1] = 20
        logits[0, 1, 3] = 20
        let right = try sftLoss(logits: logits, labels: intMatrix([[0, 1, 3]]))
        expectClose(right.loss, log(1 + 3 * exp(-20.0)), abs: 1e-15, rel: 0, "loss with the shift")
        let unshifted = try sftLoss(logits: logits, labels: intMatrix([[1, 3, 0]]))
        #expect(unshifted.loss > 10)
    }

    @Test("grad_logits equals central differences; counted rows sum to zero")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 59)
        let x = rng.uniform(count: 2 * 4 * 5, -3, 3)
        let labels = intMatrix([[7, 1, 4, -100], [-100, 0, 2, 3]])
        let grad = try sftLossGradLogits(logits: Tensor.make([2, 4, 5], x), labels: labels)
        let numeric = try centralDifferenceGradient(at: x) { probe in
            Double(try sftLoss(logits: Tensor.make([2, 4, 5], probe), labels: labels).loss)
        }
        expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_logits vs finite differences")
        for row in 0..<8 {
            let sum = (0..<5).reduce(0.0) { $0 + grad.scalars[row * 5 + $1] }
            expectClose([sum], [0], abs: 1e-16, rel: 0, "Σ_v grad_logits[row \(row)]")
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let logits = Tensor<Double>(shape: [1, 3, 4], repeating: 0)
        expectStageError(.emptyMask, argument: "labels") { try sftLoss(logits: logits, labels: intMatrix([[1, -100, -100]])) }
        expectStageError(.labelOutOfRange, argument: "labels") { try sftLoss(logits: logits, labels: intMatrix([[1, 4, 0]])) }
        expectStageError(.labelOutOfRange, argument: "labels") { try sftLoss(logits: logits, labels: intMatrix([[1, -1, 0]])) }
        expectStageError(.shapeMismatch, argument: "labels") { try sftLoss(logits: logits, labels: intMatrix([[1, 2]])) }
        expectStageError(.emptyMask, argument: "labels") {
            try sftLoss(logits: Tensor<Double>(shape: [1, 1, 4], repeating: 0), labels: intMatrix([[1]]))
        }
        // A custom ignore index: -1 is ignored, -100 is then out of range.
        #expect(try sftLoss(logits: logits, labels: intMatrix([[0, -1, 2]]), ignoreIndex: -1).tokenCount == 1)
        expectStageError(.labelOutOfRange, argument: "labels") {
            try sftLoss(logits: logits, labels: intMatrix([[0, -100, 2]]), ignoreIndex: -1)
        }
    }
}

@Suite("SFT and reward data on token ids")
struct SupervisedDataTests {
    @Test("prompt + answer + end token, right-padded; labels -100 on padding only")
    func tokenizedSequenceByHand() throws {
        // OPT style: BOS = pad = eos = 2.
        let sequence = try tokenizedSequence(promptIds: [5, 6], answerIds: [7], endOfConversationIds: [2],
                                             maxSeqLen: 6, padId: 2, beginningOfSequenceId: 2)
        #expect(sequence.inputIds == [2, 5, 6, 7, 2, 2])
        #expect(sequence.attentionMask == [1, 1, 1, 1, 1, 0])
        #expect(sequence.labels() == [2, 5, 6, 7, 2, -100])  // the prompt is trained on
        let truncated = try tokenizedSequence(promptIds: [5, 6], answerIds: [7, 8], endOfConversationIds: [2],
                                              maxSeqLen: 3, padId: 2, beginningOfSequenceId: 2)
        #expect(truncated.inputIds == [2, 5, 6] && truncated.attentionMask == [1, 1, 1])
        expectStageError(.parameterOutOfRange, argument: "max_seq_len") {
            try tokenizedSequence(promptIds: [1], answerIds: [], endOfConversationIds: [], maxSeqLen: 0, padId: 0)
        }
    }

    @Test("the reward collator stacks every chosen row over every rejected row")
    func collator() throws {
        func row(_ answer: [Int64]) throws -> TokenizedSequence {
            try tokenizedSequence(promptIds: [5], answerIds: answer, endOfConversationIds: [2], maxSeqLen: 4, padId: 0)
        }
        let (ids, mask) = try collateRewardBatch([(try row([7]), try row([8, 8])), (try row([9]), try row([3]))])
        #expect(ids.shape == [4, 4])
        #expect(ids.scalars == [5, 7, 2, 0, 5, 9, 2, 0, 5, 8, 8, 2, 5, 3, 2, 0])
        #expect(mask.scalars == [1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0])
        expectStageError(.shapeMismatch, argument: "pairs") { try collateRewardBatch([]) }
    }

    @Test("tokenizedSequence checks every argument before it allocates: max_seq_len in [1, 2^31], no negative id")
    func tokenizedSequenceArguments() throws {
        func sequence(prompt: [Int64] = [5], answer: [Int64] = [6], end: [Int64] = [2], maxSeqLen: Int = 4,
                      pad: Int64 = 0, bos: Int64? = nil) throws -> TokenizedSequence {
            try tokenizedSequence(promptIds: prompt, answerIds: answer, endOfConversationIds: end, maxSeqLen: maxSeqLen,
                                  padId: pad, beginningOfSequenceId: bos)
        }
        // .max used to trap allocating the padding.
        expectStageError(.tooLarge, argument: "max_seq_len") { try sequence(maxSeqLen: .max) }
        expectStageError(.tooLarge, argument: "max_seq_len") { try sequence(maxSeqLen: (1 << 31) + 1) }
        expectStageError(.parameterOutOfRange, argument: "max_seq_len") { try sequence(maxSeqLen: .min) }
        expectStageError(.labelOutOfRange, argument: "prompt_ids") { try sequence(prompt: [5, -1]) }
        expectStageError(.labelOutOfRange, argument: "answer_ids") { try sequence(answer: [-100]) }
        expectStageError(.labelOutOfRange, argument: "end_of_conversation_ids") { try sequence(end: [-2]) }
        expectStageError(.labelOutOfRange, argument: "pad_id") { try sequence(pad: -1) }
        expectStageError(.labelOutOfRange, argument: "beginning_of_sequence_id") { try sequence(bos: -1) }
        // Truncation keeps exactly the first max_seq_len tokens, across the parts.
        #expect(try sequence(prompt: [5, 6], answer: [7, 8], maxSeqLen: 3, bos: 1).inputIds == [1, 5, 6])
        #expect(try sequence(prompt: [], answer: [], end: [], maxSeqLen: 2).attentionMask == [0, 0])
    }

    @Test("collateRewardBatch refuses masks of another length or not 0/1, which used to trap building the tensor")
    func collatorArguments() throws {
        let good = try tokenizedSequence(promptIds: [5], answerIds: [7], endOfConversationIds: [2], maxSeqLen: 4, padId: 0)
        let shortMask = TokenizedSequence(inputIds: [5, 8, 2, 0], attentionMask: [1, 1, 1])
        expectStageError(.shapeMismatch, argument: "pairs") { try collateRewardBatch([(good, shortMask)]) }
        let longer = TokenizedSequence(inputIds: [5, 8, 2, 0, 0], attentionMask: [1, 1, 1, 0, 0])
        expectStageError(.shapeMismatch, argument: "pairs") { try collateRewardBatch([(good, good), (longer, good)]) }
        let badMask = TokenizedSequence(inputIds: [5, 8, 2, 0], attentionMask: [1, 1, 2, 0])
        expectStageError(.invalidMask, argument: "pairs") { try collateRewardBatch([(good, badMask)]) }
    }
}

@Suite("sft_loss: infinite inputs")
struct SFTLossInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `sft_loss` (F.cross_entropy, GoldenData/generator/stages/sft_loss.py) and
    // autograd, on the same inputs. [1, 3, 2] logits: positions 0 and 1 are scored
    // against labels 1 and 2; position 2 never is.

    @Test("a -inf logit at a counted label: loss +inf, gradient -1/n there; the last position is never read")
    func infiniteLogits() throws {
        let logits = Tensor.make([1, 3, 2], [0, -.infinity, 0, 0, 5, 5] as [Double])
        let labels = intMatrix([[0, 1, 0]])
        expectClose(try sftLoss(logits: logits, labels: labels).loss, .infinity, "loss")
        expectClose(try sftLossGradLogits(logits: logits, labels: labels), [0.5, -0.5, -0.25, 0.25, 0, 0], "grad_logits")

        let lastInfinite = Tensor.make([1, 3, 2], [0, 0, 0, 0, .infinity, .infinity] as [Double])
        let labels2 = intMatrix([[0, 1, 1]])
        expectClose(try sftLoss(logits: lastInfinite, labels: labels2).loss, 0.6931471805599453, "loss")
        expectClose(try sftLossGradLogits(logits: lastInfinite, labels: labels2), [0.25, -0.25, 0.25, -0.25, 0, 0],
                    "grad_logits")
    }

    @Test("an ignored position whose log-softmax is NaN: the loss is a number, PyTorch's gradient NaN")
    func ignoredRowWithNaNLogSoftmax() throws {
        // cross_entropy forms the log-softmax of every row of logits[:, :-1]; the
        // ignored row 1 holds +inf (or only -inf), so its backward 0 - exp(NaN)·0 is NaN.
        let labels = intMatrix([[0, 1, -100]])
        for row: [Double] in [[.infinity, 0], [-.infinity, -.infinity]] {
            let logits = Tensor.make([1, 3, 2], [0, 0] + row + [5, 5])
            expectClose(try sftLoss(logits: logits, labels: labels).loss, 0.6931471805599453, "loss")
            expectStageError(.nonFiniteResult, argument: "grad_logits") {
                try sftLossGradLogits(logits: logits, labels: labels)
            }
        }
        // The same row counted: the loss itself is NaN.
        let counted = Tensor.make([1, 3, 2], [0, 0, .infinity, 0, 5, 5] as [Double])
        expectStageError(.nonFiniteResult, argument: "loss") {
            try sftLoss(logits: counted, labels: intMatrix([[0, 1, 1]]))
        }
    }
}
