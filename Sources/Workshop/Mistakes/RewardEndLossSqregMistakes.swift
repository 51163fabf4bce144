import TensorCore
import Golden
import RewardEndLossSqreg

/// The well-known wrong align-anything reward-model losses.
enum RewardEndLossSqregMistakes {
    static let chapter = "Chapters/11-three-reward-models"

    static let entry = StageMistakes(stage: "reward_end_loss_sqreg", mistakes: [noRegularizer])

    static let noRegularizer = Mistake(
        id: "reward_end_loss_sqreg.no-regularizer", stage: "reward_end_loss_sqreg", chapter: chapter,
        title: "the pairwise loss without the square regularizer",
        explanation: "align-anything adds λ · mean(h² + l²)/2 over all 2B end scores (λ = regularization, 0.001 by default) to keep the scores near 0: the pairwise loss alone fixes only their differences. Without it the scores may drift.") { a in
        let result = try rewardEndLossSqreg(endScores: a.float("end_scores"), regularization: 0)
        return ["loss": FixtureTensor(scalar: result.loss)]
    }
}
