import TensorCore
import Golden
import CriticLoss

/// The well-known wrong align-anything value losses.
enum CriticLossSeqMeanMistakes {
    static let chapter = "Chapters/12-three-ppo-steps"

    static let entry = StageMistakes(stage: "critic_loss_seq_mean", mistakes: [tokenMean])

    static let tokenMean = Mistake(
        id: "critic_loss_seq_mean.token-mean", stage: "critic_loss_seq_mean", chapter: chapter,
        title: "one token-mean over the batch instead of a mean per sequence, then over rows",
        explanation: "align-anything's value loss averages each row's clipped squared errors over its own tokens, then the rows. A single token-mean over the batch (DeepSpeed-Chat's rule) weighs long answers more.") { a in
        let result = try criticLoss(values: a.float("values"), oldValues: a.float("old_values"), returns: a.float("returns"),
                                    mask: a.mask("mask"), cliprangeValue: a.real("clip_range_value"))
        return ["loss": FixtureTensor(scalar: result.loss)]
    }
}
