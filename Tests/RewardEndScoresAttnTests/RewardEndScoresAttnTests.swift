import Testing
import TensorCore
import TestSupport
@testable import RewardEndScoresAttn

@Suite("reward_end_scores_attn")
struct RewardEndScoresAttnTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "reward_end_scores_attn", minimum: 10)
    }

    @Test("the last attended position, by hand: right padding, left padding, a hole")
    func byHand() throws {
        let scores = matrix([[0.1, 0.2, 0.3, 0.4, 0.5],
                             [1.1, 1.2, 1.3, 1.4, 1.5],
                             [2.1, 2.2, 2.3, 2.4, 2.5]])
        let mask = intMatrix([[1, 1, 1, 0, 0],    // right padding: the last 1 is at 2
                              [0, 0, 1, 1, 1],    // left padding: the row ends at L - 1 = 4
                              [1, 1, 0, 1, 0]])   // a hole at 2 is skipped: the last 1 is at 3
        let result = try rewardEndScoresAttn(scores: scores, attentionMask: mask)
        #expect(result.endIndex.scalars == [2, 4, 3])
        #expect(result.endScores.scalars == [0.3, 1.5, 2.4])
    }

    @Test("without a mask, one row is scored at L - 1")
    func singleRowWithoutMask() throws {
        let result = try rewardEndScoresAttn(scores: matrix([[0.5, -0.25, 0.75]]), attentionMask: nil)
        #expect(result.endIndex.scalars == [2])
        #expect(result.endScores.scalars == [0.75])
    }

    @Test("pad == eos in PPO: with the mask ids != pad the EOS is not attended, the token before it is scored")
    func padEqualsEOSInPPO() throws {
        // ids [7, 8, 9, eos, eos] with eos = pad = 2: mask [1, 1, 1, 0, 0], end 2.
        let ids: [Int64] = [7, 8, 9, 2, 2]
        let mask = Tensor.make([1, 5], ids.map { $0 != 2 ? 1 : 0 } as [Int64])
        let result = try rewardEndScoresAttn(scores: matrix([[0, 1, 2, 3, 4]]), attentionMask: mask)
        #expect(result.endIndex.scalars == [2])
        // The reward-model tokenizer's mask covers the EOS: then the EOS itself (3) is scored.
        let trained = try rewardEndScoresAttn(scores: matrix([[0, 1, 2, 3, 4]]), attentionMask: intMatrix([[1, 1, 1, 1, 0]]))
        #expect(trained.endIndex.scalars == [3])
    }

    @Test("invariants: the mask decides; scores where it is 0 never matter; padding side does not change the score")
    func invariants() throws {
        var rng = SplitMix64(seed: 71)
        let (batch, length) = (4, 7)
        let scores = Tensor.make([batch, length], rng.uniform(count: batch * length, -3, 3))
        let mask = intMatrix([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0]])
        let result = try rewardEndScoresAttn(scores: scores, attentionMask: mask)
        for b in 0..<batch {
            #expect(result.endScores.scalars[b] == scores[b, Int(result.endIndex.scalars[b])])
            #expect(mask[b, Int(result.endIndex.scalars[b])] == 1)
            for t in (Int(result.endIndex.scalars[b]) + 1)..<length { #expect(mask[b, t] == 0) }
        }
        // Changing every score past each row's end changes nothing.
        var changed = scores
        for b in 0..<batch { for t in (Int(result.endIndex.scalars[b]) + 1)..<length { changed[b, t] = 1000 } }
        #expect(try rewardEndScoresAttn(scores: changed, attentionMask: mask).endScores.scalars == result.endScores.scalars)
        // The same sequence right-padded and left-padded gets the same score.
        let content = [0.3, -0.7, 1.9]
        let right = try rewardEndScoresAttn(scores: matrix([content + [5, 5]]), attentionMask: intMatrix([[1, 1, 1, 0, 0]]))
        let left = try rewardEndScoresAttn(scores: matrix([[5, 5] + content]), attentionMask: intMatrix([[0, 0, 1, 1, 1]]))
        #expect(right.endScores.scalars == left.endScores.scalars)
        // A full mask and no mask agree on a single row.
        let row = Tensor.make([1, length], Array(scores.row(0)))
        #expect(try rewardEndScoresAttn(scores: row, attentionMask: Tensor(shape: [1, length], repeating: 1)).endIndex.scalars
                == (try rewardEndScoresAttn(scores: row, attentionMask: nil)).endIndex.scalars)
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let scores = Tensor<Double>(shape: [2, 4], repeating: 0.5)
        let mask = intMatrix([[1, 1, 0, 0], [1, 1, 1, 0]])
        // A row with no attended position: the peer's nonzero()[-1] raises IndexError.
        expectStageError(.emptyMask, argument: "attention_mask") {
            try rewardEndScoresAttn(scores: scores, attentionMask: intMatrix([[1, 1, 0, 0], [0, 0, 0, 0]]))
        }
        // No mask with more than one row: the peer raises ValueError.
        expectStageError(.shapeMismatch, argument: "attention_mask") { try rewardEndScoresAttn(scores: scores, attentionMask: nil) }
        expectStageError(.shapeMismatch, argument: "attention_mask") {
            try rewardEndScoresAttn(scores: scores, attentionMask: intMatrix([[1, 1, 0], [1, 1, 1]]))
        }
        expectStageError(.invalidMask, argument: "attention_mask") {
            try rewardEndScoresAttn(scores: scores, attentionMask: intMatrix([[1, 2, 0, 0], [1, 1, 1, 0]]))
        }
        // NaN where the mask is 0, never read, is still an error.
        expectStageError(.notANumber, argument: "scores") {
            try rewardEndScoresAttn(scores: matrix([[0, 0, 0, .nan], [0, 0, 0, 0]]), attentionMask: mask)
        }
        expectStageError(.shapeMismatch, argument: "scores") {
            try rewardEndScoresAttn(scores: Tensor<Double>(shape: [0, 4], repeating: 0), attentionMask: Tensor(shape: [0, 4], repeating: 1))
        }
        expectStageError(.shapeMismatch, argument: "scores") { try rewardEndScoresAttn(scores: Tensor<Double>(shape: [1, 0], repeating: 0), attentionMask: nil) }
        expectStageError(.shapeMismatch, argument: "scores") { try rewardEndScoresAttn(scores: vector([1, 2]), attentionMask: nil) }
    }
}
