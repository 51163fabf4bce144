// e^x for sixteen floats at once, for the fused log-softmax kernels.
//
// The C library's expf works one value at a time; the fused kernels need about
// 10^8 exponentials per RLHF step, so they use this vectorised one instead. It is
// Cephes' expf (range reduction to [-ln2/2, ln2/2], then a degree-7 polynomial)
// written over SIMD16<Float>, accurate to about 1 ulp on [-87.3, 0].

/// Sixteen floats, the vector width of the fused kernels: one AVX-512 register,
/// two AVX2 or four SSE ones. Measured against eight, sixteen was faster in both
/// the portable (SSE2) build and one for this machine's CPU.
typealias FloatVector = SIMD16<Float>
/// The lanes of a `FloatVector` as integers, for building 2^n from its bits.
typealias IntVector = SIMD16<Int32>

/// e^x for each lane of `x`, for x in [-inf, 0] (the kernels only exponentiate
/// shifted logits x - max, which are <= 0): about 1 ulp from the true value.
///
/// ```
/// n = round(x · log2 e),  r = x - n · ln 2          (|r| <= ln2 / 2)
/// e^x = 2^n · e^r,  e^r ≈ 1 + r + r² · P(r)        (P: Cephes' degree-5 fit)
/// ```
///
/// Lanes below ln(2^-126) = -87.34 (where e^x would be subnormal, down to -inf)
/// give exactly 0. The error that makes is under 1.2e-38 per term, against a sum
/// of exponentials that is always >= 1 (the max term is e^0).
@inline(__always)
func exponential(_ x: FloatVector) -> FloatVector {
    // Clamp first so -inf cannot reach the rounding trick below; any lane under
    // -87.34 ends with 2^n = 0, so -150 is as good as -inf there.
    let floor: Float = -150
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
    var p = FloatVector(repeating: 1.398_199_95e-3).addingProduct(FloatVector(repeating: 1.987_569_15e-4), r)
    p = FloatVector(repeating: 8.333_451_907e-3).addingProduct(p, r)
    p = FloatVector(repeating: 4.166_579_589e-2).addingProduct(p, r)
    p = FloatVector(repeating: 1.666_666_546e-1).addingProduct(p, r)
    p = FloatVector(repeating: 5.000_000_12e-1).addingProduct(p, r)
    let expR = r.addingProduct(p, r * r) + 1
#else
    let shifted = clamped * 1.442_695_04 + roundingMagic
    let n = shifted - roundingMagic

    // r = x - n·ln2 in two steps (Cody-Waite): ln2High has 9 significant bits, so
    // n·ln2High (|n| <= 217) is exact, and ln2Low carries the rest of ln 2.
    let r = (clamped - n * ln2High) - n * ln2Low

    // e^r on [-ln2/2, ln2/2]: Cephes' minimax coefficients (relative error < 2^-24).
    var p = FloatVector(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_907e-3
    p = p * r + 4.166_579_589e-2
    p = p * r + 1.666_666_546e-1
    p = p * r + 5.000_000_12e-1
    let expR = (p * (r * r) + r) + 1
#endif

    // 2^n built from its bits: the exponent field of a float is n + 127. Where
    // n < -126 the field is clamped to 0, which with a zero mantissa is +0.0. The
    // clamp is bit arithmetic (field >> 31 is all ones for a negative field), not
    // a mask select: LLVM turns selects here into a branch or a store per lane.
    let magicBits = unsafeBitCast(FloatVector(repeating: roundingMagic), to: IntVector.self)
    let field = (unsafeBitCast(shifted, to: IntVector.self) &- magicBits) &+ 127
    let clampedField = field & ~(field &>> 31)
    return expR * unsafeBitCast(clampedField &<< 23, to: FloatVector.self)
}
