import TensorCore
import KLControl

/// `kl_estimators`: OpenRLHF's k1/k2/k3 per-token KL estimates, clamped, and the
/// per-sequence masked mean it logs.
public enum KLEstimatorsStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "kl_estimators", module: "KLControl",
        function: "klEstimators(logProbs:refLogProbs:mask:estimator:clipRange:)",
        peer: "OpenRLHF openrlhf/models/utils.py :: compute_approx_kl, masked_mean; TRL (clip_range null) "
            + "trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train",
        params: [.string("estimator", default: "k1"), .optionalRealList("clip_range", default: [-10, 10])],
        inputs: [.float("log_probs"), .float("ref_log_probs"), .mask("mask", optional: true)],
        outputs: ["kl", "kl_mean"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let estimator = try KLEstimator(named: a.string("estimator"), stage: declaration.name)
        let clipRange = try a.optionalRange("clip_range").map { range throws(StageError) in
            try klClipRange(lo: range.lo, hi: range.hi, stage: declaration.name)
        }
        let result = try klEstimators(logProbs: a.float("log_probs"), refLogProbs: a.float("ref_log_probs"),
                                      mask: a.optionalMask("mask"), estimator: estimator, clipRange: clipRange)
        var outputs = ["kl": FixtureTensor(result.kl)]
        if let klMean = result.klMean {
            outputs["kl_mean"] = FixtureTensor(klMean)
        }
        return outputs
    }
}
