import TensorCore
import PreferenceLosses

/// `kto_loss`: TRL's KTO loss (and APO-zero for unpaired data) on sequence
/// log-probs with precomputed reference log-probs, and its gradient.
public enum KTOLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "kto_loss", module: "PreferenceLosses",
        function: "ktoLoss(policyLogps:refLogps:labels:klLogps:refKLLogps:lossType:beta:desirableWeight:undesirableWeight:), ktoLossGradPolicyLogps(...)",
        peer: "TRL trl/trainer/kto_trainer.py :: KTOTrainer._compute_loss (precomputed reference log-probs), KTOTrainer.__init__",
        params: [.string("loss_type", default: "kto"), .real("beta", default: 0.1),
                 .real("desirable_weight", default: 1.0), .real("undesirable_weight", default: 1.0)],
        // kl_logps and ref_kl_logps: only kto reads them, and refuses their absence.
        inputs: [.float("policy_logps"), .float("ref_logps"), .mask("labels"), .float("kl_logps", optional: true),
                 .float("ref_kl_logps", optional: true)],
        outputs: ["losses", "kl", "chosen_rewards", "rejected_rewards", "loss", "grad_policy_logps"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let policy = try a.float("policy_logps"), ref = try a.float("ref_logps"), labels = try a.mask("labels")
        let kl = try a.optionalFloat("kl_logps"), refKL = try a.optionalFloat("ref_kl_logps")
        let lossType = try KTOLossType(named: a.string("loss_type"), stage: declaration.name)
        let beta = try a.real("beta")
        let desirableWeight = try a.real("desirable_weight"), undesirableWeight = try a.real("undesirable_weight")
        let result = try ktoLoss(policyLogps: policy, refLogps: ref, labels: labels, klLogps: kl, refKLLogps: refKL,
                                 lossType: lossType, beta: beta, desirableWeight: desirableWeight,
                                 undesirableWeight: undesirableWeight)
        let grad = try ktoLossGradPolicyLogps(policyLogps: policy, refLogps: ref, labels: labels, klLogps: kl,
                                              refKLLogps: refKL, lossType: lossType, beta: beta,
                                              desirableWeight: desirableWeight, undesirableWeight: undesirableWeight)
        return ["losses": FixtureTensor(result.losses),
                "kl": FixtureTensor(scalar: result.kl),
                "chosen_rewards": FixtureTensor(result.chosenRewards),
                "rejected_rewards": FixtureTensor(result.rejectedRewards),
                "loss": FixtureTensor(scalar: result.loss),
                "grad_policy_logps": FixtureTensor(grad)]
    }
}
