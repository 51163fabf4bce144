// e^x for sixteen floats at once, for the fused log-softmax kernels.
//
// The C library's expf works one value at a time; the fused kernels need about
// 10^8 exponentials per RLHF step, so they use this vectorised one instead: the
// range reduction of Cephes' expf (to [-ln2/2, ln2/2]), then a degree-5
// polynomial, written over SIMD16<Float>, within 2.3 ulp on [-86.5, 4]
// (VectorExponentialTests). Built for AVX-512 (-D RLHF_AVX512), it reduces to
// [-ln2/32, ln2/32] instead, with sixteen powers 2^(j/16) in one register and a
// degree-3 polynomial (``exponentialBySixteenths(_:exactZeros:)``).

#if RLHF_AVX512
import _Builtin_intrinsics.intel  // _mm512_permutexvar_ps: clang's own module, shipped with the Swift toolchain
#endif

/// Sixteen floats, the vector width of the fused kernels: one AVX-512 register,
/// two AVX2 or four SSE ones. Measured against eight, sixteen was faster in both
/// the portable (SSE2) build and one for this machine's CPU.
typealias FloatVector = SIMD16<Float>
/// The lanes of a `FloatVector` as integers, for building 2^n from its bits.
typealias IntVector = SIMD16<Int32>

/// e^x for each lane of `x`, for x in [-inf, 4] (the kernels exponentiate shifted
/// logits z - M, with M the max so far: at most 4 above it, see
/// ``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``): within 2.3 ulp
/// of the true value.
///
/// ```
/// n = round(x · log2 e),  r = x - n · ln 2          (|r| <= ln2 / 2)
/// e^r ≈ 1 + q,  q = r + r² · P(r)                   (P: a degree-3 minimax fit)
///       P(r) = (c0 + c1·r) + r² · (c2 + c3·r)              (Estrin's scheme)
/// e^x = 2^n · e^r = 2^n + q · 2^n                   (2^n built from n's bits)
/// ```
///
/// With `exactZeros`, lanes at or below -86.5 (down to -inf) give exactly 0, so a
/// -inf logit gets an exact zero probability and gradient; the error that makes
/// is under 3e-38 per term. Without, they give e^-86.5 (about 2.7e-38) and the
/// compare and select per vector are saved: for a sum of exponentials, which is
/// always >= 1 (the max term is e^0), the two are the same number.
///
/// Every step is chosen for the two multiply-add units and for a short chain of
/// dependent operations, which bound the fused kernels on an AVX2 CPU: P has
/// degree 3 (fitted for the relative error of 1 + r + r²·P on [-ln2/2, ln2/2],
/// 1.1e-7 with the coefficients in float32, by `Benchmarks/fit_exp_polynomial.py`).
/// A degree-4 P (4e-9, within 1 ulp, as Cephes' degree 5) cost one more
/// multiply-add per vector, a tenth of the log-probs with entropy's time in
/// paired runs; the kernels match their plain stages to 1e-6 relative, about
/// 8 ulp, so the extra 1.3 ulp buys nothing a caller can see. P is evaluated
/// by Estrin's scheme, not Horner's: the same number of operations, but fewer
/// multiply-adds in a row, and each costs four cycles of latency that only
/// independent work can hide. 2^n + q·2^n is one multiply-add, and equals
/// (1 + q) rounded then scaled by 2^n exactly. NaN lanes give NaN, which is how
/// the kernels find a NaN logit: their sums turn NaN.
///
/// Built with -D RLHF_AVX512, this is ``exponentialBySixteenths(_:exactZeros:)``.
@_transparent
func exponential(_ x: FloatVector, exactZeros: Bool) -> FloatVector {
#if RLHF_AVX512
    exponentialBySixteenths(x, exactZeros: exactZeros)
#else
    // Clamp first, so that -inf (or -1e30) cannot reach the rounding trick below,
    // and n >= -125: 2^n is then a normal float, whose bits are built below. With
    // `exactZeros` the clamped lanes get a scale of 0, so their result is 0·q + 0.
    let floor: Float = -86.5
    let clamped = x.replacing(with: floor, where: x .< floor)

    // Round x·log2(e) to an integer by adding 1.5·2^23 + 127: a float that large
    // has no bits below 1, so the addition rounds to nearest, and n + 127 sits in
    // the low mantissa bits of `shifted` (read back below without a conversion).
    let roundingMagic: Float = 12_583_039  // 1.5 · 2^23 + 127
    let ln2High: Float = 0.693_359_375
    let ln2Low: Float = -2.121_944_4e-4
    let c0: Float = 4.999_923_110_008_24e-1, c1: Float = 1.666_711_419_820_785_5e-1
    let c2: Float = 4.189_011_454_582_214_4e-2, c3: Float = 8.312_525_227_665_901e-3
#if RLHF_FMA
    // The same steps with every a·b + c fused into one rounding (Swift never
    // contracts a·b + c by itself). `addingProduct` is one vfmadd per vector on a
    // CPU with FMA, but a libm call per lane on the portable x86-64 baseline, so
    // only `make bench` on an FMA machine turns this on (-D RLHF_FMA).
    let shifted = FloatVector(repeating: roundingMagic).addingProduct(clamped, 1.442_695_04)
    let n = shifted - roundingMagic
    let r = clamped.addingProduct(n, -ln2High).addingProduct(n, -ln2Low)
    let r2 = r * r
    let low = FloatVector(repeating: c0).addingProduct(r, c1)
    let high = FloatVector(repeating: c2).addingProduct(r, c3)
    let q = r.addingProduct(low.addingProduct(high, r2), r2)
#else
    let shifted = clamped * 1.442_695_04 + roundingMagic
    let n = shifted - roundingMagic

    // r = x - n·ln2 in two steps (Cody-Waite): ln2High has 9 significant bits, so
    // n·ln2High (|n| <= 125) is exact, and ln2Low carries the rest of ln 2.
    let r = (clamped - n * ln2High) - n * ln2Low

    // e^r - 1 on [-ln2/2, ln2/2]: r + r²·P(r), P fitted (minimax, Lawson's
    // iteration, Benchmarks/fit_exp_polynomial.py) for the relative error of
    // 1 + r + r²·P, 1.1e-7.
    let r2 = r * r
    let low = r * c1 + c0
    let high = r * c3 + c2
    let q = (low + high * r2) * r2 + r
#endif

    // 2^n from the bits of `shifted`: they are those of 1.5·2^23 plus n + 127;
    // shifting them left by 23 drops the magic number's bits off the top and leaves
    // n + 127, the biased exponent of 2^n, in the exponent field (n >= -125 here,
    // so 2^n is a normal float). Wrapping integer shift: no overflow trap.
    var scale = unsafeBitCast(unsafeBitCast(shifted, to: IntVector.self) &<< 23, to: FloatVector.self)
    if exactZeros {
        let kept = clamped .> floor  // false for lanes at or below -86.5, and NaN
        scale = scale.replacing(with: 0, where: .!kept)
    }
#if RLHF_FMA
    return scale.addingProduct(q, scale)
#else
    // q·2^n is a power-of-two scaling, exact unless it falls below 2^-126 (then off
    // by under 2^-149), so this rounds once, as the FMA does.
    return q * scale + scale
#endif
#endif
}

#if RLHF_AVX512
/// e^x for each lane of `x` in [-inf, 4], as ``exponential(_:exactZeros:)``, on
/// a CPU with AVX-512 (the build needs -D RLHF_AVX512 and a -target-cpu that
/// has it; `make bench` passes both where /proc/cpuinfo shows avx512f): within
/// 1 ulp of the true value (0.99 measured).
///
/// ```
/// n = round(x · 16/ln2) = 16k + j   (0 <= j < 16),   r = x - n · ln2/16    (|r| <= ln2/32)
/// e^r ≈ 1 + q,  q = r + r² · (c2 + c3·r)            (a degree-3 minimax fit)
/// e^x = 2^k · 2^(j/16) · e^r = T + q · T,  T = 2^k · 2^(j/16)
/// ```
///
/// Why a table: on [-ln2/2, ln2/2] e^r needs a degree-5 polynomial (five
/// multiplies and multiply-adds after r); on an interval sixteen times shorter a
/// degree-3 one is within 1.6e-9, in three. The sixteen powers 2^(j/16) fit one
/// 512-bit register, and one permute (`vpermps`, which reads only the low four
/// bits of each index) picks each lane's 2^(j/16) by the low bits of n, with no
/// load from memory: the loops that exponentiate every logit are bound by the two
/// multiply-add units, which this frees for two of about eleven operations per 16
/// floats (the log-probs with entropy: 14 -> 12.7 cycles per 16 floats from L3
/// on one Zen 4 core, 9% faster). The table's floats are the powers rounded to
/// float32 (up to 0.4 ulp off), which with the final rounding leaves 0.99 ulp.
/// AVX2 has a permute of eight floats only; there the polynomial above stays.
///
/// T is built without a multiply: the bits of `shifted` are those of 1.5·2^23
/// plus n, so shifting them left by 19 leaves n·2^19 = k·2^23 + j·2^19, k in the
/// exponent field (the magic number's bits fall off the top) and j in the top
/// of the mantissa. The table holds bits(2^(j/16)) - j·2^19, so that one integer
/// add of the two gives bits(2^(j/16)) + k·2^23 = bits(2^k · 2^(j/16)): a normal
/// float, as k >= -125 after the clamp at -86.5. Wrapping integer operations:
/// no overflow trap.
@_transparent
func exponentialBySixteenths(_ x: FloatVector, exactZeros: Bool) -> FloatVector {
    let floor: Float = -86.5
    let clamped = x.replacing(with: floor, where: x .< floor)  // as `exponential`: -inf cannot reach the rounding
    let roundingMagic: Float = 12_582_912  // 1.5 · 2^23: x·16/ln2 + this rounds to an integer n
    let sixteenOverLn2: Float = 23.083_120  // 16 · log2(e)
    // ln2/16 in two parts (Cody-Waite): the high part has 9 significant bits, so
    // n·ln2High is exact for |n| <= 2^15 (here |n| <= 1,997).
    let ln2High: Float = 0.693_359_375 / 16, ln2Low: Float = -2.121_944_4e-4 / 16
    // e^r - 1 ≈ r + r²·(c2 + c3·r) on [-ln2/32, ln2/32], fitted as the degree-3
    // polynomial of `exponential` (Benchmarks/fit_exp_polynomial.py): 1.6e-9.
    let c2: Float = 0.500_016_152_858_734_1, c3: Float = 0.166_667_178_273_201
    let shifted = FloatVector(repeating: roundingMagic).addingProduct(clamped, sixteenOverLn2)
    let n = shifted - roundingMagic
    let r = clamped.addingProduct(n, -ln2High).addingProduct(n, -ln2Low)
    let q = r.addingProduct(r * r, FloatVector(repeating: c2).addingProduct(r, c3))
    let bits = unsafeBitCast(shifted, to: IntVector.self)  // bits(1.5·2^23) + n
    // bits(2^(j/16)) - j·2^19 for j = 0..<16 (2^(j/16) rounded to float32).
    let table = IntVector(
        0x3F80_0000, 0x3F7D_AAC3, 0x3F7B_95C2, 0x3F79_C3D3, 0x3F78_37F0, 0x3F76_F532, 0x3F75_FED7, 0x3F75_583F,
        0x3F75_04F3, 0x3F75_08A4, 0x3F75_672A, 0x3F76_248C, 0x3F77_44FD, 0x3F78_CCDF, 0x3F7A_C0C7, 0x3F7D_257D)
    let entry = unsafeBitCast(
        _mm512_permutexvar_ps(unsafeBitCast(bits, to: __m512i.self), unsafeBitCast(table, to: __m512.self)),
        to: IntVector.self)  // lane i: table[bits[i] & 15] = table[j]
    var scale = unsafeBitCast(entry &+ (bits &<< 19), to: FloatVector.self)  // T = 2^k · 2^(j/16)
    if exactZeros {
        let kept = clamped .> floor  // as `exponential`: 0 at or below -86.5
        scale = scale.replacing(with: 0, where: .!kept)
    }
    return scale.addingProduct(q, scale)  // T + q·T, one rounding
}
#endif
