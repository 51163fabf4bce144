// The few numerically careful helpers the stages share.

/// log Σ_v exp(x_v) over one row, and the row's maximum.
///
/// ```
/// m = max_v x_v
/// logSumExp = log Σ_v exp(x_v - m)        (the result is m + logSumExp)
/// ```
///
/// Returned as the pair `(maximum, logSumShifted)` so a caller can form
/// `(x - maximum) - logSumShifted` in the same order PyTorch's `log_softmax` does.
///
/// Why subtract the max: exp(x) overflows to inf for x > 88.7 in float32 (709.8 in
/// float64), so exp(1e4) / Σ exp is inf / inf = NaN. After the shift every
/// exponent is <= 0, the largest term is exactly 1, and nothing overflows.
///
/// The sum of exponentials is accumulated in `Double` even for `Float` rows, so a
/// row of 50k terms stays within a few ulps of PyTorch's cascade summation.
@inlinable
public func logSumExpParts<T: FloatScalar>(_ row: ArraySlice<T>) -> (maximum: T, logSumShifted: T) {
    var maximum = -T.infinity
    for x in row where x > maximum {
        maximum = x
    }
    var sumOfExp = 0.0
    for x in row {
        sumOfExp += Double(T.exp(x - maximum))
    }
    return (maximum, T.log(T(sumOfExp)))
}

/// log σ(x) = log(1 / (1 + e^-x)), finite for every finite x.
///
/// ```
/// logSigmoid(x) = min(x, 0) - log1p(exp(-|x|))
/// ```
///
/// Why not log(sigmoid(x)): for x = -800, sigmoid underflows to 0 and log gives
/// -inf (float32 already at x < -88). This form never exponentiates a positive
/// number, so it returns -800 there. It is PyTorch's `F.logsigmoid` formula.
@inlinable
public func logSigmoid<T: FloatScalar>(_ x: T) -> T {
    min(x, 0) - T.log1p(T.exp(-abs(x)))
}

/// Σ values[i] * mask[i] over the elements the 0/1 mask keeps, and how many it keeps.
///
/// Masked-out elements are skipped, not multiplied by zero. The sum is accumulated
/// in `Double` and rounded once to `T`.
@inlinable
public func maskedSum<T: FloatScalar>(_ values: [T], mask: [Int64]) -> (sum: T, count: Int) {
    var sum = 0.0
    var count = 0
    for i in values.indices where mask[i] != 0 {
        sum += Double(values[i])
        count += 1
    }
    return (T(sum), count)
}

/// How `max(a, b)` passes its gradient back: all to the larger, half to each on a tie.
///
/// ```
/// a > b: (1, 0)      a < b: (0, 1)      a == b: (1/2, 1/2)
/// ```
///
/// The tie rule is PyTorch's (`torch.maximum` backward), which the losses' golden
/// gradients are computed with; any split would be a valid subgradient, this one
/// matches autograd.
@inlinable
public func maximumGradientShares<T: FloatScalar>(_ a: T, _ b: T) -> (toFirst: T, toSecond: T) {
    if a > b { return (1, 0) }
    if a < b { return (0, 1) }
    return (0.5, 0.5)
}

/// σ(x) = 1 / (1 + e^-x), without overflow for any x.
///
/// Why two branches: for x = -800, e^-x overflows to inf; 1 / (1 + inf) happens to
/// give 0, but e^-x / (1 + e^-x) would give inf / inf = NaN. Each branch only
/// exponentiates a non-positive number.
@inlinable
public func sigmoid<T: FloatScalar>(_ x: T) -> T {
    if x >= 0 {
        return 1 / (1 + T.exp(-x))
    }
    let e = T.exp(x)
    return e / (1 + e)
}

/// log(1 - e^v) for v < 0, accurate over the whole range.
///
/// ```
/// log1mexp(v) = log1p(-exp(v))    if v < -ln 2
///               log(-expm1(v))    otherwise
/// ```
///
/// Why two branches: near v = 0, e^v rounds to a number next to 1 and 1 - e^v
/// keeps only the few bits that differ (v = -1e-10: float64 gives 1.0000000827e-10
/// for 0.99999999995e-10, float32 gives 0 and the log -inf); expm1 keeps them. Far
/// below 0, -expm1(v) rounds to 1 and the log gives 0 (v = -50: the answer is
/// -1.93e-22), where log1p(-e^v) keeps the small term. The
/// branch point -ln 2 (where e^v = 1/2) is Mächler's and TRL ORPO's `log1mexp`.
/// v = 0 gives -inf and v > 0 NaN; callers refuse those.
@inlinable
public func log1mexp<T: FloatScalar>(_ v: T) -> T {
    if v < T(-0.6931471805599453) {
        return T.log1p(-T.exp(v))
    }
    return T.log(-T.expm1(v))
}

/// e^x in plain Swift, for Double: within 1 ulp of the C library's `exp` (tested
/// against it), and inline, so a loop of them vectorises.
///
/// ```
/// n = round(x · log2 e),   r = x - n · ln 2          (|r| <= ln 2 / 2)
/// e^x = 2^n · e^r,   e^r = 1 + r + r²/2! + ... + r^13/13!   (Horner)
/// ```
///
/// Why not call `exp` from the C library: it is one opaque call per element, so
/// the compiler cannot vectorise a loop around it; this function is straight-line
/// arithmetic on the value's bits, which it can.
///
/// Each step, and why the plain form would fail:
/// - n by the magic number: x · log2 e + 1.5 · 2^52 rounds to a whole number,
///   since a Double that large has no bits below 1, and n sits in the low bits of
///   the sum. `(x * log2e).rounded()` would be a library call per lane on older
///   CPUs, and `Int64(...)` of a non-finite or huge value traps.
/// - r in two steps (Cody-Waite): ln 2 is split into a high part with 32 trailing
///   zero bits, so n · ln2High is exact, and a low part. One-step x - n · ln 2
///   loses the low bits of x for |n| near 1000, a relative error of ~1e-13.
/// - 2^n from its bits as 2^(n/2) · 2^(n - n/2): one factor 2^n would need an
///   exponent field of n + 1023, outside [1, 2046] where e^x is subnormal (x <
///   -708.4) or overflows (x > 709.7). Two factors each stay in range, and the
///   last multiply then rounds to the subnormal result, 0 or inf as it should.
/// - The integer bit operations are the wrapping ones (`&+`, `&-`, `&<<`, `&>>`):
///   the checked ones trap on overflow, which a branch per lane would test for.
/// - x is clamped to [-746, 710] first (e^x is 0 or inf beyond them): with -inf or
///   1e300, x · log2 e + 1.5 · 2^52 is no longer a whole number near n. NaN passes
///   the comparisons and stays NaN.
///
/// exp(0) = 1 exactly (n = 0, r = 0).
@inlinable
public func exponential(_ x: Double) -> Double {
    let clamped = x < -746 ? -746 : (x > 710 ? 710 : x)
    let roundingMagic = 6_755_399_441_055_744.0  // 1.5 · 2^52
    let shifted = clamped * 1.442_695_040_888_963_4 + roundingMagic
    let n = shifted - roundingMagic
    let ln2High = 6.931_471_803_691_238_164_90e-01  // 0x3FE62E42_FEE00000
    let ln2Low = 1.908_214_929_270_587_700_02e-10
    let r = (clamped - n * ln2High) - n * ln2Low
    // e^r - 1 by Horner over 1/k!, then 1 + that once: the last rounding is the
    // only one at the scale of the result.
    var p = 1.0 / 6_227_020_800  // 1/13!
    p = p * r + 1.0 / 479_001_600
    p = p * r + 1.0 / 39_916_800
    p = p * r + 1.0 / 3_628_800
    p = p * r + 1.0 / 362_880
    p = p * r + 1.0 / 40_320
    p = p * r + 1.0 / 5_040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    let expR = 1 + (r + (r * r) * p)
    let bits = Int64(bitPattern: shifted.bitPattern) &- Int64(bitPattern: roundingMagic.bitPattern)  // n
    let half = bits &>> 1
    let scale1 = Double(bitPattern: UInt64(bitPattern: (half &+ 1023) &<< 52))
    let scale2 = Double(bitPattern: UInt64(bitPattern: ((bits &- half) &+ 1023) &<< 52))
    return (expR * scale1) * scale2
}

/// e^x in plain Swift, for Float: computed in Double lanes and rounded to Float
/// once, so within an ulp of `expf` and almost always the correctly rounded value.
///
/// ```
/// x clamped to [-104, 89]             (e^x rounds to 0 or inf in Float beyond)
/// n = round(x · log2 e),   r = x - n · ln 2                        (Double)
/// e^r = 1 + r + r²/2! + ... + r^10/10!   (Estrin: five pairs joined by r², r⁴)
/// e^x = Float(2^n · e^r)
/// ```
///
/// Why through Double: a Float polynomial of the usual accuracy (about 1 ulp)
/// differs from `expf` in the last bit at some points, and a ratio that must land
/// exactly on a clip bound (e^(5/32) = 1 + ε) would then miss it. In Double, a
/// degree-10 polynomial is 2e-13 from e^r, far below Float's half ulp (3e-8), so
/// the one rounding to Float decides the result (it equals the Double
/// ``exponential(_:)`` rounded to Float at all but 12 of 5·10^7 sampled points).
///
/// Why not the Double function's form: its degree-13 Horner chain is 24 dependent
/// operations, and with four Double lanes a vector (AVX2) the loop waits on that
/// chain. Estrin's scheme evaluates the five pairs (1 + r, 1/2! + r/3!, ...)
/// at once and joins them with r² and r⁴: the same terms, a third of the latency.
/// The clamp keeps n in [-150, 129], so 2^n is one normal Double built from its
/// bits (no two-factor split), and the rounding to Float gives the subnormal,
/// 0 or inf result as `expf` does. NaN passes the comparisons and stays NaN.
@inlinable
public func exponential(_ x: Float) -> Float {
    let wide = Double(x)
    let clamped = wide < -104 ? -104 : (wide > 89 ? 89 : wide)
    let roundingMagic = 6_755_399_441_055_744.0  // 1.5 · 2^52, as in the Double exponential
    let shifted = clamped * 1.442_695_040_888_963_4 + roundingMagic
    let n = shifted - roundingMagic
    let ln2High = 6.931_471_803_691_238_164_90e-01
    let ln2Low = 1.908_214_929_270_587_700_02e-10
    let r = (clamped - n * ln2High) - n * ln2Low
    let r2 = r * r, r4 = r2 * r2
    let terms01 = 1 + r
    let terms23 = 1.0 / 2 + r * (1.0 / 6)
    let terms45 = 1.0 / 24 + r * (1.0 / 120)
    let terms67 = 1.0 / 720 + r * (1.0 / 5_040)
    let terms89 = 1.0 / 40_320 + r * (1.0 / 362_880)
    let term10 = 1.0 / 3_628_800
    let expR = (terms01 + r2 * terms23) + r4 * ((terms45 + r2 * terms67) + r4 * (terms89 + r2 * term10))
    let bits = Int64(bitPattern: shifted.bitPattern) &- Int64(bitPattern: roundingMagic.bitPattern)  // n
    let scale = Double(bitPattern: UInt64(bitPattern: (bits &+ 1023) &<< 52))  // 2^n
    return Float(expR * scale)
}
