import TensorCore
import DPOLoss

/// `dpo_loss`: align-anything's DPO loss on summed answer log-probs, its logged
/// rewards, and its gradients with respect to the two policies' log-probs.
public enum DPOLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "dpo_loss", module: "DPOLoss",
        function: "dpoLoss(betterLogProbs:worseLogProbs:refBetterLogProbs:refWorseLogProbs:beta:), dpoLossGradLogProbs(...)",
        peer: "align-anything align_anything/trainers/text_to_text/dpo.py :: DPOTrainer.loss",
        params: [.real("beta")],
        inputs: [.float("better_log_probs"), .float("worse_log_probs"), .float("ref_better_log_probs"),
                 .float("ref_worse_log_probs")],
        outputs: ["loss", "reward", "better_sample_reward", "worse_sample_reward", "reward_accuracy", "reward_margin",
                  "grad_better_log_probs", "grad_worse_log_probs"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let better = try a.float("better_log_probs"), worse = try a.float("worse_log_probs")
        let refBetter = try a.float("ref_better_log_probs"), refWorse = try a.float("ref_worse_log_probs")
        let beta = try a.real("beta")
        let result = try dpoLoss(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: refBetter,
                                 refWorseLogProbs: refWorse, beta: beta)
        let grads = try dpoLossGradLogProbs(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: refBetter,
                                            refWorseLogProbs: refWorse, beta: beta)
        return ["loss": FixtureTensor(scalar: result.loss),
                "reward": FixtureTensor(result.reward),
                "better_sample_reward": FixtureTensor(result.betterSampleReward),
                "worse_sample_reward": FixtureTensor(result.worseSampleReward),
                "reward_accuracy": FixtureTensor(scalar: result.rewardAccuracy),
                "reward_margin": FixtureTensor(result.rewardMargin),
                "grad_better_log_probs": FixtureTensor(grads.gradBetterLogProbs),
                "grad_worse_log_probs": FixtureTensor(grads.gradWorseLogProbs)]
    }
}
