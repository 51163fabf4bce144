import TensorCore
import Golden
import ActorLoss

/// The well-known wrong align-anything policy losses.
enum ActorLossSeqMeanMistakes {
    static let chapter = "Chapters/12-three-ppo-steps"

    static let entry = StageMistakes(stage: "actor_loss_seq_mean", mistakes: [tokenMean])

    static let tokenMean = Mistake(
        id: "actor_loss_seq_mean.token-mean", stage: "actor_loss_seq_mean", chapter: chapter,
        title: "one token-mean over the batch (DeepSpeed-Chat's rule) instead of a mean per sequence, then over rows",
        explanation: "align-anything's masked_mean averages each row over its own tokens, then averages the rows: a short answer's tokens weigh more. A token-mean over the whole batch weighs every token the same; the two differ whenever rows have different lengths.") { a in
        let result = try actorLoss(logProbs: a.float("log_probs"), oldLogProbs: a.float("old_log_probs"),
                                   advantages: a.float("advantages"), mask: a.mask("mask"),
                                   cliprange: a.real("clip_range_ratio"))
        return ["loss": FixtureTensor(scalar: result.loss)]
    }
}
