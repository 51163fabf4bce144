import TensorCore

/// The KL coefficient after each of a run of controller updates: Ziegler et
/// al.'s (2019) adaptive controller, or the fixed one.
///
/// ```
/// target nil or 0:  kl_coef[s] = init_kl_coef                 (fixed; horizon not read)
/// otherwise:        c = init_kl_coef
///                   for s = 0, 1, ..., S−1:
///                     e = clip(current_kl[s] / target − 1, −0.2, 0.2)
///                     c = c · (1 + (e · n_steps[s]) / horizon)
///                     kl_coef[s] = c
/// ```
///
/// Shapes: `currentKL` [S] Double, `nSteps` [S] Int64 -> [S] Double. S = 0 is
/// allowed and gives an empty output.
///
/// The controller is proportional in log space: above the target KL (e > 0) the
/// coefficient grows, below it shrinks, by at most 20% of `n_steps/horizon` per
/// update. The clip bounds the error, nothing bounds the multiplier: with e =
/// −0.2 and `n_steps/horizon ≥ 5` the multiplier is ≤ 0, so the coefficient hits
/// 0 or flips its sign and the KL penalty becomes a KL bonus.
///
/// Matches OpenRLHF `openrlhf/trainer/ppo_utils/kl_controller.py ::
/// AdaptiveKLController.update` and `FixedKLController`, chosen as
/// `openrlhf/trainer/ppo_trainer.py :: BasePPOTrainer.__init__` chooses (`if
/// self.args.kl_target:` tests the target for truth, so 0 selects the fixed
/// controller). The arithmetic is the peer's Python floats, in the peer's order:
/// `e · n_steps` first, then `/ horizon`, then `1 +`, then the product.
///
/// - Throws: ``StageError`` for inputs that are not [S] of one length, NaN in
///   `currentKL`, `n_steps < 0`, `target < 0`, a non-finite `init_kl_coef`, for
///   the adaptive controller `horizon ≤ 0` (OpenRLHF divides by it: inf or NaN),
///   and a coefficient that overflows (`nonFiniteResult`).
@inlinable
public func adaptiveKLCoefficients(
    currentKL: Tensor<Double>,
    nSteps: Tensor<Int64>,
    initKLCoef: Double,
    target: Double?,
    horizon: Double
) throws(StageError) -> Tensor<Double> {
    let check = InputCheck(stage: "adaptive_kl_controller")
    try check.rank(currentKL, "current_kl", is: 1, legend: "[S]")
    try check.rank(nSteps, "n_steps", is: 1, legend: "[S]")
    try check.shape(nSteps, "n_steps", equals: currentKL.shape, sameAs: "same as current_kl")
    try check.noNaN(currentKL, "current_kl")
    if let flat = nSteps.scalars.firstIndex(where: { $0 < 0 }) {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "n_steps",
                         "n_steps = \(nSteps.scalars[flat]) at index [\(flat)] must be >= 0")
    }
    try check.finite("init_kl_coef", initKLCoef)
    if let target {
        try check.nonNegative("target", target)
    }
    let steps = currentKL.count
    // A falsy target (None or 0) selects FixedKLController, whose update does nothing.
    guard let target, target != 0 else {
        return Tensor(shape: [steps], repeating: initKLCoef)
    }
    guard horizon > 0 else {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "horizon",
                         "horizon = \(horizon) must be > 0: the adaptive controller divides by it")
    }

    var coefficient = initKLCoef
    var coefficients = Tensor<Double>(shape: [steps], repeating: 0)
    for s in 0..<steps {
        let proportionalError = min(max(currentKL.scalars[s] / target - 1, -0.2), 0.2)
        let multiplier = 1 + (proportionalError * Double(nSteps.scalars[s])) / horizon
        coefficient *= multiplier
        guard coefficient.isFinite else {
            throw StageError(.nonFiniteResult, stage: check.stage, argument: "kl_coef",
                             "the coefficient overflows to \(coefficient) at step [\(s)] (multiplier \(multiplier))")
        }
        coefficients.scalars[s] = coefficient
    }
    return coefficients
}
