import Testing
import TensorCore
import TestSupport
@testable import RewardEndScoresSeqcls

@Suite("reward_end_scores_seqcls")
struct RewardEndScoresSeqclsTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "reward_end_scores_seqcls", minimum: 10)
    }

    @Test("the last non-pad token, by hand: right padding, left padding, a pad inside, an all-pad row")
    func byHand() throws {
        let ids = intMatrix([[11, 12, 13, 0, 0],    // right padding: last non-pad at 2
                             [0, 0, 11, 12, 13],    // left padding: at 4
                             [11, 0, 12, 0, 0],     // a pad inside is skipped: at 2
                             [0, 0, 0, 0, 0],       // only pads: argmax of zeros, index 0
                             [11, 0, 0, 0, 0]])     // only position 0: index 0 too
        let scores = matrix([[0.1, 0.2, 0.3, 0.4, 0.5], [1.1, 1.2, 1.3, 1.4, 1.5], [2.1, 2.2, 2.3, 2.4, 2.5],
                             [3.1, 3.2, 3.3, 3.4, 3.5], [4.1, 4.2, 4.3, 4.4, 4.5]])
        let result = try rewardEndScoresSeqcls(inputIds: ids, scores: scores, padTokenId: 0)
        #expect(result.endIndex.scalars == [2, 4, 2, 0, 0])
        #expect(result.endScores.scalars == [0.3, 1.5, 2.3, 3.1, 4.1])
    }

    @Test("pad == eos (the TRL article): the trailing EOS is padding, an EOS earlier in the row is a token")
    func padEqualsEOS() throws {
        // GPT-2: eos = pad = 50256. RewardTrainer appended the EOS at 4; the one at 1 sits in the prompt.
        let eos: Int64 = 50256
        let ids = intMatrix([[464, eos, 318, 257, eos, eos, eos]])
        let result = try rewardEndScoresSeqcls(inputIds: ids, scores: matrix([[0, 1, 2, 3, 4, 5, 6]]), padTokenId: eos)
        // Before transformers PR #35911 the token before the first pad (0) was scored, a prompt token.
        #expect(result.endIndex.scalars == [3])
        #expect(result.endScores.scalars == [3])
    }

    @Test("pad_token_id null: one row is scored at L - 1, whatever its last id")
    func nullPad() throws {
        let result = try rewardEndScoresSeqcls(inputIds: intMatrix([[5, 6, 0, 0]]), scores: matrix([[1, 2, 3, 4]]), padTokenId: nil)
        #expect(result.endIndex.scalars == [3])
        #expect(result.endScores.scalars == [4])
    }

    @Test("invariants: appending pads or changing scores at pads after the end changes nothing")
    func invariants() throws {
        var rng = SplitMix64(seed: 72)
        let ids = intMatrix([[3, 4, 5, 0, 0, 0], [0, 3, 4, 5, 6, 7], [3, 0, 0, 4, 0, 0]])
        let scores = Tensor.make([3, 6], rng.uniform(count: 18, -2, 2))
        let result = try rewardEndScoresSeqcls(inputIds: ids, scores: scores, padTokenId: 0)
        for b in 0..<3 {
            let end = Int(result.endIndex.scalars[b])
            #expect(result.endScores.scalars[b] == scores[b, end])
            #expect(ids[b, end] != 0)
            for t in (end + 1)..<6 { #expect(ids[b, t] == 0) }
        }
        var changed = scores
        for b in 0..<3 { for t in (Int(result.endIndex.scalars[b]) + 1)..<6 { changed[b, t] = -99 } }
        #expect(try rewardEndScoresSeqcls(inputIds: ids, scores: changed, padTokenId: 0).endScores.scalars == result.endScores.scalars)
        // Two more pads on the right: same index, same score.
        let longer: Tensor<Int64> = Tensor.make([3, 8], (0..<3).flatMap { b -> [Int64] in Array(ids.row(b)) + [0, 0] })
        let longerScores: Tensor<Double> = Tensor.make([3, 8], (0..<3).flatMap { b -> [Double] in Array(scores.row(b)) + [7, 7] })
        let again = try rewardEndScoresSeqcls(inputIds: longer, scores: longerScores, padTokenId: 0)
        #expect(again.endIndex.scalars == result.endIndex.scalars)
        #expect(again.endScores.scalars == result.endScores.scalars)
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let ids = intMatrix([[5, 6, 0], [5, 0, 0]])
        let scores = Tensor<Double>(shape: [2, 3], repeating: 0.5)
        // pad_token_id null with more than one row: the peer raises ValueError; so with none.
        expectStageError(.parameterOutOfRange, argument: "pad_token_id") {
            try rewardEndScoresSeqcls(inputIds: ids, scores: scores, padTokenId: nil)
        }
        expectStageError(.parameterOutOfRange, argument: "pad_token_id") {
            try rewardEndScoresSeqcls(inputIds: Tensor(shape: [0, 3], repeating: 0), scores: Tensor<Double>(shape: [0, 3], repeating: 0), padTokenId: nil)
        }
        expectStageError(.shapeMismatch, argument: "scores") {
            try rewardEndScoresSeqcls(inputIds: ids, scores: Tensor<Double>(shape: [2, 4], repeating: 0), padTokenId: 0)
        }
        expectStageError(.notANumber, argument: "scores") {
            try rewardEndScoresSeqcls(inputIds: ids, scores: matrix([[0, 0, .nan], [0, 0, 0]]), padTokenId: 0)
        }
        expectStageError(.shapeMismatch, argument: "input_ids") {
            try rewardEndScoresSeqcls(inputIds: Tensor(shape: [2, 0], repeating: 0), scores: Tensor<Double>(shape: [2, 0], repeating: 0), padTokenId: 0)
        }
        // An empty batch with a pad id is what the peer returns too: nothing.
        let empty = try rewardEndScoresSeqcls(inputIds: Tensor(shape: [0, 3], repeating: 0), scores: Tensor<Double>(shape: [0, 3], repeating: 0), padTokenId: 0)
        #expect(empty.endIndex.shape == [0])
    }
}
