import TensorCore
import PolicyLosses

/// `grpo_loss`: TRL's GRPO loss family (grpo, bnpo, dr_grpo, dapo, cispo, sapo,
/// luspo, vespo) with token- or sequence-level importance sampling, the KL
/// penalty, the clip metrics, and the gradient with respect to the log-probs.
public enum GRPOLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "grpo_loss", module: "PolicyLosses",
        function: "grpoLoss(logProbs:oldLogProbs:advantages:mask:refLogProbs:config:), grpoLossGradLogProbs(...)",
        peer: "TRL trl/trainer/grpo_trainer.py :: GRPOTrainer._compute_loss (+ get_gamma_weights for vespo)",
        params: [.string("loss_type", default: "dapo"), .real("epsilon", default: 0.2), .optionalReal("epsilon_high"),
                 .optionalReal("delta"), .real("beta", default: 0.0),
                 .string("importance_sampling_level", default: "token"), .int("max_completion_length", default: 512),
                 .bool("use_bias_correction_kl", default: false), .real("sapo_temperature_pos", default: 1.0),
                 .real("sapo_temperature_neg", default: 1.05), .real("vespo_k_pos", default: 2.0),
                 .real("vespo_lambda_pos", default: 3.0), .real("vespo_k_neg", default: 3.0),
                 .real("vespo_lambda_neg", default: 2.0), .int("gradient_accumulation_steps", default: 1),
                 .optionalReal("num_items_in_batch")],
        inputs: [.float("log_probs"), .float("old_log_probs"), .float("advantages"), .mask("mask"),
                 .float("ref_log_probs", optional: true)],
        outputs: ["loss", "kl", "clip_ratio_low", "clip_ratio_high", "clip_ratio_region", "grad_log_probs"])

    /// The stage's params as the library's config (unknown switch values throw).
    public static func config<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> GRPOLossConfig {
        let stage = declaration.name
        return GRPOLossConfig(
            lossType: try peerSwitch(a.string("loss_type"), "loss_type", stage: stage),
            epsilon: try a.real("epsilon"), epsilonHigh: try a.optionalReal("epsilon_high"),
            delta: try a.optionalReal("delta"), beta: try a.real("beta"),
            importanceSamplingLevel: try peerSwitch(a.string("importance_sampling_level"),
                                                    "importance_sampling_level", stage: stage),
            maxCompletionLength: try a.int("max_completion_length"),
            useBiasCorrectionKL: try a.bool("use_bias_correction_kl"),
            sapoTemperaturePos: try a.real("sapo_temperature_pos"), sapoTemperatureNeg: try a.real("sapo_temperature_neg"),
            vespoKPos: try a.real("vespo_k_pos"), vespoLambdaPos: try a.real("vespo_lambda_pos"),
            vespoKNeg: try a.real("vespo_k_neg"), vespoLambdaNeg: try a.real("vespo_lambda_neg"),
            gradientAccumulationSteps: try a.int("gradient_accumulation_steps"),
            numItemsInBatch: try a.optionalReal("num_items_in_batch"))
    }

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let config = try config(a)
        let logProbs = try a.float("log_probs"), oldLogProbs = try a.float("old_log_probs")
        let advantages = try a.float("advantages"), mask = try a.mask("mask")
        let refLogProbs = try a.optionalFloat("ref_log_probs")
        let result = try grpoLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                                  refLogProbs: refLogProbs, config: config)
        var outputs = ["loss": FixtureTensor(scalar: result.loss)]
        if let kl = result.kl { outputs["kl"] = FixtureTensor(scalar: kl) }
        if let low = result.clipRatioLow, let high = result.clipRatioHigh, let region = result.clipRatioRegion {
            outputs["clip_ratio_low"] = FixtureTensor(scalar: low)
            outputs["clip_ratio_high"] = FixtureTensor(scalar: high)
            outputs["clip_ratio_region"] = FixtureTensor(scalar: region)
        }
        // The gradient is an optional output: a forward that is a number is reported
        // even where the backward pass refuses (a fixture expecting the gradient then
        // fails on the missing output, naming it).
        if let grad = try? grpoLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                                mask: mask, refLogProbs: refLogProbs, config: config) {
            outputs["grad_log_probs"] = FixtureTensor(grad)
        }
        return outputs
    }
}
