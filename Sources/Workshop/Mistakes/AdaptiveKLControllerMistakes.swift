import TensorCore
import Golden

/// The well-known wrong adaptive KL controllers (Ziegler et al., as OpenRLHF runs it).
enum AdaptiveKLControllerMistakes {
    static let chapter = "Chapters/13-kl-estimators"

    static let entry = StageMistakes(stage: "adaptive_kl_controller", mistakes: [noClip, zeroTargetAdaptive])

    /// The controller's run with the error clipped to ±`clip` (nil: not clipped), target taken as given.
    static func coefficients(_ a: FixtureArguments<Double>, target: Double, clip: Double?) throws -> [String: FixtureTensor] {
        let kl = try a.float("current_kl"), steps = try a.ids("n_steps")
        let horizon = try a.real("horizon")
        var c = try a.real("init_kl_coef")
        var values = [Double]()
        for s in 0..<kl.count {
            var error = kl.scalars[s] / target - 1
            if let clip { error = min(max(error, -clip), clip) }
            c *= 1 + (error * Double(steps.scalars[s])) / horizon
            values.append(c)
        }
        return ["kl_coef": output([values.count], values)]
    }

    static let noClip = Mistake(
        id: "adaptive_kl_controller.no-clip", stage: "adaptive_kl_controller", chapter: chapter,
        title: "the proportional error KL/target - 1 not clipped to [-0.2, 0.2]",
        explanation: "Ziegler et al. clip the error e = KL/target - 1 to ±0.2 before the update c ← c·(1 + e·n_steps/horizon), so one batch with a KL ten times the target moves the coefficient by at most 0.2·n_steps/horizon. Unclipped, a spike in the measured KL makes the coefficient jump (or go negative) in one step.") { a in
        let target = try require(a.optionalReal("target"), "target")
        guard target != 0 else { throw NotApplicable("fixed controller") }
        return try coefficients(a, target: target, clip: nil)
    }

    static let zeroTargetAdaptive = Mistake(
        id: "adaptive_kl_controller.zero-target-adaptive", stage: "adaptive_kl_controller", chapter: chapter,
        title: "target 0 run as an adaptive controller instead of the fixed one",
        explanation: "OpenRLHF picks the controller with `if args.kl_target:`, a truth test, so a target of 0 (like none) selects FixedKLController and the coefficient stays init_kl_coef. Run adaptively, KL/0 is +inf, the clip makes the error +0.2 and the coefficient grows at every step.") { a in
        guard let target = try a.optionalReal("target"), target == 0 else { throw NotApplicable("target is not 0") }
        return try coefficients(a, target: 0, clip: 0.2)
    }
}
