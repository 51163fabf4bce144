import TensorCore
import RewardEndLossSqreg

/// `reward_end_loss_sqreg`: align-anything's pairwise loss on end scores with its
/// square regularizer, its accuracy, and the gradient with respect to the scores.
public enum RewardEndLossSqregStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "reward_end_loss_sqreg", module: "RewardEndLossSqreg",
        function: "rewardEndLossSqreg(endScores:regularization:), rewardEndLossSqregGradEndScores(...)",
        peer: "align-anything align_anything/trainers/text_to_text/rm.py :: RMTrainer.loss",
        params: [.real("regularization", default: 0.001)],
        inputs: [.float("end_scores")],
        outputs: ["loss", "higher_end_reward", "lower_end_reward", "accuracy", "grad_end_scores"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let endScores = try a.float("end_scores"), regularization = try a.real("regularization")
        let result = try rewardEndLossSqreg(endScores: endScores, regularization: regularization)
        let grad = try rewardEndLossSqregGradEndScores(endScores: endScores, regularization: regularization)
        return ["loss": FixtureTensor(scalar: result.loss),
                "higher_end_reward": FixtureTensor(result.higherEndReward),
                "lower_end_reward": FixtureTensor(result.lowerEndReward),
                "accuracy": FixtureTensor(scalar: result.accuracy),
                "grad_end_scores": FixtureTensor(grad)]
    }
}
