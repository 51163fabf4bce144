import TensorCore
import KLControl

/// `adaptive_kl_controller`: the KL coefficient over a run of OpenRLHF's adaptive
/// (Ziegler et al.) or fixed controller. Float64 only, as the peer's Python floats.
public enum AdaptiveKLControllerStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "adaptive_kl_controller", module: "KLControl",
        function: "adaptiveKLCoefficients(currentKL:nSteps:initKLCoef:target:horizon:)",
        peer: "OpenRLHF openrlhf/trainer/ppo_utils/kl_controller.py :: AdaptiveKLController.update, "
            + "FixedKLController (chosen as openrlhf/trainer/ppo_trainer.py :: BasePPOTrainer.__init__)",
        params: [.real("init_kl_coef", default: 0.01), .optionalReal("target"), .real("horizon", default: 10000)],
        inputs: [.float("current_kl"), .ids("n_steps")],
        outputs: ["kl_coef"],
        precisions: [.float64])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let klCoef = try adaptiveKLCoefficients(
            currentKL: a.float("current_kl").converted(to: Double.self), nSteps: a.ids("n_steps"),
            initKLCoef: a.real("init_kl_coef"), target: a.optionalReal("target"), horizon: a.real("horizon"))
        return ["kl_coef": FixtureTensor(klCoef)]
    }
}
