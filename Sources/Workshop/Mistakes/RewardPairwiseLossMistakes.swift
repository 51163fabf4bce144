import TensorCore
import Golden
import PairwiseRewardLoss

/// The well-known wrong DeepSpeed-Chat pairwise reward losses.
enum RewardPairwiseLossMistakes {
    static let chapter = "Chapters/02-pairwise-reward-loss"

    static let entry = StageMistakes(stage: "reward_pairwise_loss", mistakes: [endScoresOnly, oneMeanOverBatch])

    /// The right loss, with the windows it averaged over.
    static func right(_ a: FixtureArguments<Double>) throws -> PairwiseRewardLossResult<Double> {
        try pairwiseRewardLoss(inputIds: a.ids("input_ids"), rewards: a.float("rewards"),
                               padId: Int64(a.int("pad_id")), numPaddingAtBeginning: a.int("num_padding_at_beginning"))
    }

    static let endScoresOnly = Mistake(
        id: "reward_pairwise_loss.end-scores-only", stage: "reward_pairwise_loss", chapter: chapter,
        title: "-log σ(chosen end score - rejected end score): the last token only",
        explanation: "That is the InstructGPT loss (and align-anything's), not DeepSpeed-Chat's. DeepSpeed-Chat averages -log σ(r_chosen[t] - r_rejected[t]) over every position of the window [divergence, end) of each pair, then over pairs; only the logged mean scores use the end token.") { a in
        let result = try right(a)
        let pairs = result.chosenMeanScores.count
        var sum = 0.0
        for i in 0..<pairs { sum += -logSig(result.chosenMeanScores.scalars[i] - result.rejectedMeanScores.scalars[i]) }
        return ["loss": output(sum / Double(pairs))]
    }

    static let oneMeanOverBatch = Mistake(
        id: "reward_pairwise_loss.one-mean-over-batch", stage: "reward_pairwise_loss", chapter: chapter,
        title: "one mean over every window token of the batch, not a mean per pair then over pairs",
        explanation: "The mean runs over the positions of one pair's window, then the pair losses are averaged: a pair with a short window weighs as much as one with a long window. Pooling all window tokens of the batch gives long windows more weight.") { a in
        let result = try right(a)
        let rewards = try a.float("rewards")
        let pairs = result.chosenMeanScores.count
        var sum = 0.0, count = 0
        for i in 0..<pairs {
            for t in result.divergenceIndices[i]..<result.endIndices[i] {
                sum += -logSig(rewards[i, t] - rewards[pairs + i, t])
                count += 1
            }
        }
        return ["loss": output(sum / Double(count))]
    }
}
