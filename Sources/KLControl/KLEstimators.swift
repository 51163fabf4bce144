import TensorCore

/// Which of Schulman's three single-sample KL estimators to use, by OpenRLHF's
/// `kl_estimator` names (`--init_kl_coef` ... `--kl_estimator k1|k2|k3`).
///
/// With `r = log π(a) − log π_ref(a)` for a token `a` drawn from π:
///
/// | estimator | value | E_π[value] | sign |
/// |---|---|---|---|
/// | `k1` | `r` | KL(π‖π_ref), unbiased | any (a single sample can be negative) |
/// | `k2` | `r²/2` | not KL(π‖π_ref) (biased; close when π ≈ π_ref) | ≥ 0 |
/// | `k3` | `(e^(−r) − 1) + r` | KL(π‖π_ref), unbiased | ≥ 0 (e^x ≥ 1 + x) |
///
/// (`RewardsKLFirstPad` has its own `KLEstimator` with TRL's two cases and TRL's
/// sign convention; the two never meet in one file.)
public enum KLEstimator: String, CaseIterable, Sendable {
    case k1
    case k2
    case k3

    /// The estimator OpenRLHF calls `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `argument`, under
    ///   `stage`) for a name other than "k1", "k2" and "k3". OpenRLHF would leave
    ///   its result unbound and fail with an UnboundLocalError.
    @inlinable
    public init(named name: String, stage: String, argument: String = "estimator") throws(StageError) {
        self = try peerSwitch(name, argument: argument, stage: stage, note: "OpenRLHF would fail with an UnboundLocalError")
    }
}

/// One estimate from one log-ratio `r = log π − log π_ref`, unclamped.
///
/// ```
/// k1 = r
/// k2 = r·r / 2
/// k3 = (exp(−r) − 1) + r        (in this order)
/// ```
///
/// The order of k3 is OpenRLHF's: it negates the log-ratio, takes `exp(−r) − 1`,
/// then subtracts the negated ratio. In float32 that order cancels badly for small
/// `|r|`: `exp(−r) − 1` keeps only the bits of `exp(−r)` above 1 (about 6e-8 of
/// absolute resolution), and `+ r` then cancels the first-order term, so k3 ≈ r²/2
/// comes out with an absolute error of a few 1e-8. The float32 fixtures are the
/// peer's bits, so this function does not use `expm1` (which would be more
/// accurate, and wrong against the peer). The same cancellation can even make the
/// evaluated k3 negative, though the exact k3 is ≥ 0. In Float, r = 1e-7 gives
/// exp(−r) = 0.99999988 (the float below 1), so k3 = −1.19e-7 + 1e-7 = −1.9e-8.
/// The dip stays below one unit in the last place of 1 (1.19e-7 in Float, 2.2e-16
/// in Double). torch's vectorised exp is not always correctly rounded: at r =
/// −2^−24 it returns exp(2^−24) = 1 where libm's expf gives 1 + 2^−23, so the
/// peer's k3 is −5.96e-8 there (fixture `k3-tiny-ratios-f32`) and ours +5.96e-8,
/// one ulp of 1 apart, well inside the float32 tolerance.
///
/// `exp(−r)` overflows to `+inf` for `r < −709.78` (Double) or `r < −88.72`
/// (Float); then k3 is `+inf` and only a clamp brings it back (see
/// ``klEstimate(logProbs:refLogProbs:estimator:clipRange:)``).
@inlinable
public func klEstimate<T: FloatScalar>(logRatio r: T, estimator: KLEstimator) -> T {
    switch estimator {
    case .k1:
        return r
    case .k2:
        return r * r / 2
    case .k3:
        return (T.exp(-r) - 1) + r
    }
}

/// d(estimate)/d(log π) for one log-ratio `r`, before any clamp (the reference
/// log-prob is a constant):
///
/// ```
/// k1:  1
/// k2:  r
/// k3:  1 − exp(−r)
/// ```
///
/// A caller that clamps multiplies by ``klClampPasses(_:clipRange:)`` (torch's
/// clamp passes the derivative on its closed interval and blocks it outside).
@inlinable
public func klEstimateDerivative<T: FloatScalar>(logRatio r: T, estimator: KLEstimator) -> T {
    switch estimator {
    case .k1:
        return 1
    case .k2:
        return r
    case .k3:
        return 1 - T.exp(-r)
    }
}

/// `torch.clamp(estimate, lo, hi)`: `min(max(x, lo), hi)`, the bounds rounded to
/// the estimate's precision first, as torch rounds a Python float bound to the
/// tensor's dtype.
@inlinable
public func klClamp<T: FloatScalar>(_ x: T, clipRange: ClosedRange<Double>?) -> T {
    guard let range = clipRange else { return x }
    return min(max(x, T(range.lowerBound)), T(range.upperBound))
}

/// Whether the clamp passes the derivative at the unclamped estimate `x`: on the
/// closed interval `[lo, hi]` yes, outside no (PyTorch's rule at the bounds).
/// Always true without a clamp.
@inlinable
public func klClampPasses<T: FloatScalar>(_ x: T, clipRange: ClosedRange<Double>?) -> Bool {
    guard let range = clipRange else { return true }
    return x >= T(range.lowerBound) && x <= T(range.upperBound)
}

/// The clamp range `[lo, hi]` of the estimators, checked: `lo ≤ hi` and neither
/// bound NaN (a `ClosedRange` with `lo > hi` cannot even be formed; Swift traps).
///
/// OpenRLHF always clamps to `[−10, 10]` (``openRLHFKLClipRange``); TRL never
/// clamps (`nil`).
///
/// - Throws: ``StageError`` (`parameterOutOfRange`, argument `clip_range`) for
///   `lo > hi` or a NaN bound.
@inlinable
public func klClipRange(lo: Double, hi: Double, stage: String = "kl_estimators") throws(StageError) -> ClosedRange<Double> {
    guard !lo.isNaN, !hi.isNaN, lo <= hi else {
        throw StageError(.parameterOutOfRange, stage: stage, argument: "clip_range",
                         "clip_range = [\(lo), \(hi)] must have lo <= hi")
    }
    return lo...hi
}

/// OpenRLHF's fixed clamp of every KL estimate, `[−10, 10]`.
public let openRLHFKLClipRange: ClosedRange<Double> = -10...10

/// Per-token KL estimates of a policy against a reference, clamped.
///
/// ```
/// r[b,t]  = log_probs[b,t] − ref_log_probs[b,t]
/// kl[b,t] = clamp(k(r[b,t]), lo, hi)          k = k1, k2 or k3 (klEstimate(logRatio:))
/// ```
///
/// Shapes: `logProbs`, `refLogProbs` [B, T] float -> [B, T]. Every position gets
/// an estimate; nothing is masked here.
///
/// This is the per-element function other stages call (`ppo_policy_loss`'s KL
/// loss calls it with `clipRange` ``openRLHFKLClipRange``).
///
/// Matches OpenRLHF `openrlhf/models/utils.py :: compute_approx_kl` (with its
/// clamp to [−10, 10]) and, with `clipRange` nil, TRL
/// `trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train`'s KL lines (TRL writes
/// `logr = ref − logprob`, `kl = −logr` or `(exp(logr) − 1) − logr`: the same
/// numbers).
///
/// Quirk: OpenRLHF casts both inputs to float32 (`.float()`) before the
/// estimators whatever their dtype. Here a `Float` input computes in `Float` (the
/// peer's bits) and a `Double` input in `Double` (the peer's formula without the
/// cast).
///
/// - Throws: ``StageError`` for inputs that are not [B, T] of one shape, an empty
///   batch (B = 0), NaN in an input, or an estimate that is not finite after the
///   clamp (`nonFiniteResult`: `inf − inf` from two infinite log-probs, or an
///   unclamped estimate that overflowed, e.g. k3 at r = −900).
@inlinable
public func klEstimate<T: FloatScalar>(
    logProbs: Tensor<T>,
    refLogProbs: Tensor<T>,
    estimator: KLEstimator,
    clipRange: ClosedRange<Double>?
) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "kl_estimators")
    try check.rank(logProbs, "log_probs", is: 2, legend: "[B, T]")
    try check.shape(refLogProbs, "ref_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    guard logProbs.shape[0] > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "log_probs",
                         "the batch is empty: shape \(describe(shape: logProbs.shape))")
    }
    try check.noNaN(logProbs, "log_probs")
    try check.noNaN(refLogProbs, "ref_log_probs")

    var kl = logProbs
    for i in kl.scalars.indices {
        let logRatio = logProbs.scalars[i] - refLogProbs.scalars[i]
        kl.scalars[i] = klClamp(klEstimate(logRatio: logRatio, estimator: estimator), clipRange: clipRange)
    }
    if let flat = kl.scalars.firstIndex(where: { !$0.isFinite }) {
        throw StageError(.nonFiniteResult, stage: check.stage, argument: "kl",
                         "the estimate is \(kl.scalars[flat]) at index \(describe(shape: kl.index(ofFlat: flat)))"
                         + " (log_probs \(logProbs.scalars[flat]), ref_log_probs \(refLogProbs.scalars[flat]))")
    }
    return kl
}

/// The estimates and, with a mask, their per-sequence masked mean.
public struct KLEstimatesResult<T: FloatScalar>: Sendable {
    /// The clamped estimate at every position. Shape [B, T].
    public var kl: Tensor<T>
    /// `Σ_t kl·mask / Σ_t mask` per row, shape [B]; nil without a mask.
    public var klMean: Tensor<T>?

    @inlinable
    public init(kl: Tensor<T>, klMean: Tensor<T>?) {
        self.kl = kl
        self.klMean = klMean
    }
}

/// The `kl_estimators` stage: per-token KL estimates and, with a mask, OpenRLHF's
/// logged per-sequence KL.
///
/// ```
/// r[b,t]     = log_probs[b,t] − ref_log_probs[b,t]
/// kl[b,t]    = clamp(k(r[b,t]), lo, hi)             (clipRange nil: no clamp)
/// kl_mean[b] = Σ_t kl[b,t]·mask[b,t] / Σ_t mask[b,t]
/// ```
///
/// Shapes: `logProbs`, `refLogProbs` [B, T] float; `mask` [B, T] 0/1 (optional)
/// -> `kl` [B, T], `klMean` [B] (only with a mask).
///
/// The mask does not touch `kl`: masked positions keep their estimate. The mean
/// runs over each row's selected positions only (OpenRLHF's `masked_mean(kl,
/// action_mask, dim=-1)`). The products `kl·mask` are summed in Double and the
/// sum rounded once to `T` before the division by the count, in `T`.
///
/// Matches OpenRLHF `openrlhf/models/utils.py :: compute_approx_kl` and
/// `masked_mean` as `RemoteExperienceMaker.make_experience` logs it.
///
/// - Throws: ``StageError`` as ``klEstimate(logProbs:refLogProbs:estimator:clipRange:)``,
///   plus a mask of another shape, a mask that is not 0/1, a mask row with no 1
///   (`emptyMask`: OpenRLHF divides 0 by 0 and logs NaN), and a mean that
///   overflows (`nonFiniteResult`).
@inlinable
public func klEstimators<T: FloatScalar>(
    logProbs: Tensor<T>,
    refLogProbs: Tensor<T>,
    mask: Tensor<Int64>?,
    estimator: KLEstimator,
    clipRange: ClosedRange<Double>?
) throws(StageError) -> KLEstimatesResult<T> {
    let check = InputCheck(stage: "kl_estimators")
    if let mask {
        try check.rank(logProbs, "log_probs", is: 2, legend: "[B, T]")
        try check.shape(mask, "mask", equals: logProbs.shape, sameAs: "same as log_probs")
        try check.binaryMask(mask, "mask")
    }
    let kl = try klEstimate(logProbs: logProbs, refLogProbs: refLogProbs, estimator: estimator, clipRange: clipRange)
    guard let mask else { return KLEstimatesResult(kl: kl, klMean: nil) }

    let rows = kl.shape[0], columns = kl.shape[1]
    var klMean = Tensor<T>(shape: [rows], repeating: 0)
    for b in 0..<rows {
        var sum = 0.0
        var count = 0
        for t in 0..<columns {
            let m = mask[b, t]
            sum += Double(kl[b, t] * T(m))
            count += Int(m)
        }
        guard count > 0 else {
            throw StageError(.emptyMask, stage: check.stage, argument: "mask",
                             "row \(b) of mask \(describe(shape: mask.shape)) has no 1: its mean would be 0/0")
        }
        klMean.scalars[b] = T(sum) / T(count)
        // Finite estimates can still sum past the dtype's range (k2 of log-ratios near 1e154 in Double).
        guard klMean.scalars[b].isFinite else {
            throw StageError(.nonFiniteResult, stage: check.stage, argument: "kl_mean",
                             "the mean of row \(b) overflows to \(klMean.scalars[b])")
        }
    }
    return KLEstimatesResult(kl: kl, klMean: klMean)
}
