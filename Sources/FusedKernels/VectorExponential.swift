// e^x for sixteen floats at once, for the fused log-softmax kernels.
//
// The C library's expf works one value at a time; the fused kernels need about
// 10^8 exponentials per RLHF step, so they use this vectorised one instead: the
// range reduction of Cephes' expf (to [-ln2/2, ln2/2]), then a degree-6
// polynomial, written over SIMD16<Float>, accurate to about 1 ulp on [-86.5, 0].

/// Sixteen floats, the vector width of the fused kernels: one AVX-512 register,
/// two AVX2 or four SSE ones. Measured against eight, sixteen was faster in both
/// the portable (SSE2) build and one for this machine's CPU.
typealias FloatVector = SIMD16<Float>
/// The lanes of a `FloatVector` as integers, for building 2^n from its bits.
typealias IntVector = SIMD16<Int32>

/// e^x for each lane of `x`, for x in [-inf, 0] (the kernels only exponentiate
/// shifted logits x - max, which are <= 0): within about 1 ulp of the true value.
///
/// ```
/// n = round(x · log2 e),  r = x - n · ln 2          (|r| <= ln2 / 2)
/// e^x = 2^n · e^r,  e^r ≈ 1 + r + r² · P(r)        (P: a degree-4 minimax fit)
/// 2^n · e^r: n added to the exponent field of e^r's bits (an integer add)
/// ```
///
/// Lanes below -86.5 (down to -inf) give exactly 0, so a -inf logit gets an exact
/// zero probability and gradient. The error that makes is under 3e-38 per term,
/// against a sum of exponentials that is always >= 1 (the max term is e^0).
///
/// Every step is chosen to spend few operations on the two multiply-add units,
/// which bound the fused kernels on an AVX2 CPU: P has degree 4 (fitted for the
/// relative error of 1 + r + r²·P on [-ln2/2, ln2/2], 4e-9 with the coefficients
/// in float32, by `Benchmarks/fit_exp_polynomial.py`; so the result is as
/// close to e^x as Cephes' degree-5 P gets: 1.01 ulp in the worst case); and the
/// scale 2^n is an integer add on the bits rather than a multiply. NaN lanes give
/// 0, not NaN: the kernels find NaN through their probe (Σ x), never through exp.
@inline(__always)
func exponential(_ x: FloatVector) -> FloatVector {
    // Clamp first so -inf (or -1e30) cannot reach the rounding trick below. Below
    // -86.5, 2^n · e^r could be subnormal, where adding n to the exponent field is
    // no longer 2^n times the value: those lanes are set to 0 at the end.
    let floor: Float = -86.5
    let clamped = x.replacing(with: floor, where: x .< floor)

    // Round x·log2(e) to an integer by adding 1.5·2^23: a float that large has no
    // bits below 1, so the addition rounds to nearest, and the integer n sits in
    // the low mantissa bits of `shifted` (read back below without a conversion).
    let roundingMagic: Float = 12_582_912  // 1.5 · 2^23
    let ln2High: Float = 0.693_359_375
    let ln2Low: Float = -2.121_944_4e-4
#if RLHF_FMA
    // The same steps with every a·b + c fused into one rounding (Swift never
    // contracts a·b + c by itself). `addingProduct` is one vfmadd per vector on a
    // CPU with FMA, but a libm call per lane on the portable x86-64 baseline, so
    // only `make bench` on an FMA machine turns this on (-D RLHF_FMA).
    let shifted = FloatVector(repeating: roundingMagic).addingProduct(clamped, 1.442_695_04)
    let n = shifted - roundingMagic
    let r = clamped.addingProduct(n, -ln2High).addingProduct(n, -ln2Low)
    var p = FloatVector(repeating: 8.368_710_055_947_304e-3).addingProduct(FloatVector(repeating: 1.381_461_275_741_458e-3), r)
    p = FloatVector(repeating: 4.166_838_899_254_799e-2).addingProduct(p, r)
    p = FloatVector(repeating: 1.666_652_113_199_234e-1).addingProduct(p, r)
    p = FloatVector(repeating: 4.999_999_403_953_552e-1).addingProduct(p, r)
    let expR = r.addingProduct(p, r * r) + 1
#else
    let shifted = clamped * 1.442_695_04 + roundingMagic
    let n = shifted - roundingMagic

    // r = x - n·ln2 in two steps (Cody-Waite): ln2High has 9 significant bits, so
    // n·ln2High (|n| <= 125) is exact, and ln2Low carries the rest of ln 2.
    let r = (clamped - n * ln2High) - n * ln2Low

    // e^r on [-ln2/2, ln2/2]: 1 + r + r²·P(r), P fitted (minimax, Lawson's
    // iteration, Benchmarks/fit_exp_polynomial.py) for the relative error of the
    // whole, 4e-9 < 2^-24.
    var p = FloatVector(repeating: 1.381_461_275_741_458e-3)
    p = p * r + 8.368_710_055_947_304e-3
    p = p * r + 4.166_838_899_254_799e-2
    p = p * r + 1.666_652_113_199_234e-1
    p = p * r + 4.999_999_403_953_552e-1
    let expR = (p * (r * r) + r) + 1
#endif

    // 2^n · e^r by adding n to the exponent field of e^r's bits. `shifted`'s bits
    // are those of 1.5·2^23 plus n; shifting them left by 23 drops the magic
    // number's bits off the top and leaves n · 2^23 (two's complement, wrapping),
    // exactly n in the exponent field. e^r is in [0.7, 1.42] and n >= -125 here,
    // so the sum is a normal float. Wrapping integer operations: no overflow trap.
    let scaled = unsafeBitCast(expR, to: IntVector.self) &+ (unsafeBitCast(shifted, to: IntVector.self) &<< 23)
    let kept = clamped .> floor  // false for lanes at or below -86.5, and NaN
    return unsafeBitCast(scaled, to: FloatVector.self).replacing(with: 0, where: .!kept)
}
