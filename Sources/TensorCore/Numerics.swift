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
