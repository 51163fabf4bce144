import TensorCore

/// Whitened values, with the statistics they were whitened with.
public struct MaskedWhitenResult<T: FloatScalar>: Sendable {
    /// (values - μ)·rsqrt(σ² + 1e-8), plus μ again when `shiftMean` is false, at
    /// every position (masked ones too). Shape [B, T].
    public var whitened: Tensor<T>
    /// μ = Σ values·mask / n.
    public var mean: T
    /// σ² = (Σ (values - μ)²·mask / n) · c, the Bessel-corrected variance.
    public var variance: T
    /// c = n / (n - 1), a binary32 division of the two counts (see ``maskedWhiten(values:mask:shiftMean:)``).
    public var besselFactor: Float
    /// n = Σ mask, how many positions the statistics run over.
    public var count: Int

    @inlinable
    public init(whitened: Tensor<T>, mean: T, variance: T, besselFactor: Float, count: Int) {
        self.whitened = whitened
        self.mean = mean
        self.variance = variance
        self.besselFactor = besselFactor
        self.count = count
    }
}

/// TRL's masked whitening: shift and scale every value by the mean and the
/// unbiased standard deviation of the selected ones.
///
/// ```
/// n  = Σ_{b,t} mask[b,t]                                (all rows together)
/// μ  = Σ_{b,t} values·mask / n
/// σ² = (Σ_{b,t} (values - μ)²·mask / n) · c,     c = Float(n) / Float(n - 1)
/// whitened[b,t] = (values[b,t] - μ) · rsqrt(σ² + 1e-8)         (every position)
/// shiftMean == false:  whitened[b,t] += μ
/// ```
///
/// Shapes: `values` [B, T] float, `mask` [B, T] 0/1 -> `whitened` [B, T].
///
/// The mean and the variance run over the positions the mask selects, over the
/// whole batch at once (not per row). Then **every** position is transformed,
/// the masked ones included: they are not zeroed (TRL zeroes them afterwards
/// where it needs to, with a separate `masked_fill`). With `shiftMean` false the
/// result keeps the mean and only the spread is rescaled (TRL uses it on rewards,
/// where the sign of the mean carries information).
///
/// Quirks reproduced from the peer:
/// - **The Bessel factor is computed in float32**, whatever the values' dtype:
///   TRL divides the two integer counts `mask_sum / (mask_sum - 1)`, and torch's
///   true division of integer tensors yields its default dtype, float32. So c is a
///   binary32 quotient, widened to Double for float64 values (for n = 7, c =
///   1.16666663 instead of 1.16666667: a relative change of 3e-8 in σ², above the
///   float64 tolerance).
/// - `rsqrt(σ² + 1e-8)` is `1 / sqrt(σ² + 1e-8)` in the values' precision, as torch
///   computes it on the 0-dim variance; 1e-8 is rounded to the values' dtype first.
/// - The sums multiply by the mask (`values * mask`) rather than skip masked
///   positions, so an infinite value under the mask gives NaN, as in torch (and then
///   this function throws).
///
/// Two numerical notes. The variance is computed in two passes (the mean first,
/// then the centred squares): the one-pass E[x²] - μ² cancels catastrophically
/// when |μ| ≫ σ and can even turn negative. The 1e-8 is TRL's guard for σ² = 0
/// (all selected values equal): without it (values - μ)·(1/0) would be 0·∞ = NaN
/// at the selected positions; with it they become 0 and the others (v - μ)·1e4.
/// The sums are accumulated in Double and rounded once to the values' precision.
///
/// Matches TRL `trl/experimental/ppo/ppo_trainer.py :: masked_whiten` (with
/// `masked_mean` and `masked_var(unbiased=True)`).
///
/// - Throws: ``StageError`` for shapes that do not agree, a mask that is not 0/1,
///   NaN in `values`, fewer than two selected positions (`emptyMask`: TRL raises for
///   n = 0, and n = 1 gives c = 1/0 and a NaN result), or a NaN result from
///   infinite values (`nonFiniteResult`).
@inlinable
public func maskedWhiten<T: FloatScalar>(
    values: Tensor<T>,
    mask: Tensor<Int64>,
    shiftMean: Bool
) throws(StageError) -> MaskedWhitenResult<T> {
    let check = InputCheck(stage: "masked_whiten")
    try check.rank(values, "values", is: 2, legend: "[B, T]")
    try check.shape(mask, "mask", equals: values.shape, sameAs: "same as values")
    try check.binaryMask(mask, "mask")
    try check.noNaN(values, "values")
    let count = mask.scalars.reduce(0) { $0 + Int($1) }
    guard count >= 2 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "mask",
                         "the mask \(describe(shape: mask.shape)) selects \(count) position(s); the unbiased variance needs at least 2 (n / (n - 1))")
    }

    // μ = Σ values·mask / n: the sum rounded to T, then divided by n in T, as torch does.
    let mean = maskedMean(values.scalars, mask: mask.scalars, count: count)
    // σ² = masked mean of (values - μ)², then the Bessel factor.
    let squaredDeviations = values.scalars.map { ($0 - mean) * ($0 - mean) }
    let besselFactor = Float(count) / Float(count - 1)
    let variance = maskedMean(squaredDeviations, mask: mask.scalars, count: count) * T(besselFactor)
    let inverseDeviation = 1 / (variance + T(1e-8)).squareRoot()
    var whitened = values
    for i in whitened.scalars.indices {
        whitened.scalars[i] = (values.scalars[i] - mean) * inverseDeviation
        if !shiftMean {
            whitened.scalars[i] += mean
        }
    }
    try check.noNaNInResult(whitened, "whitened")
    return MaskedWhitenResult(whitened: whitened, mean: mean, variance: variance, besselFactor: besselFactor,
                              count: count)
}

/// Σ x·m / n for a 0/1 mask, TRL's `masked_mean` over the whole tensor: each
/// product formed in T (so ∞·0 is NaN, as in torch), summed in Double, the sum
/// rounded once to T, then divided by n in T.
@inlinable
func maskedMean<T: FloatScalar>(_ values: [T], mask: [Int64], count: Int) -> T {
    var sum = 0.0
    for i in values.indices {
        sum += Double(values[i] * T(mask[i]))
    }
    return T(sum) / T(count)
}
