// One streaming pass over a vocabulary row: its max, Σ exp(z - max) and, for the
// entropy, Σ exp(z - max)·(z - max), with the running-max rescaling trick, so
// each logit is read from memory once and exponentiated once. Shared by the three
// fused kernels.

/// Floats per block of the online pass: 64 vectors, 4 KB, so a block that must be
/// exponentiated again (see ``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``)
/// is still in L1 (a block's fixed costs, its horizontal max and the Double adds,
/// were a tenth of the work with blocks of 1 KB).
let onlineBlockLength = 64 * FloatVector.scalarCount

/// How far ahead of the exp loop its logits are prefetched, in floats: two blocks
/// (8 KB, 128 lines, some 3,000 cycles of exp work, many times the latency of
/// memory). In paired runs here, one, two and four blocks ahead were all
/// faster than none (the backward into a reused buffer 2.2-2.6x `read_logits` ->
/// 1.8-2.2x), two blocks the most often.
let onlinePrefetchDistance = 2 * onlineBlockLength

/// A row's max and sums from ``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``.
struct OnlineRowSums {
    /// m = max_v z_v (z = x / divisor, or x).
    var maximum: Float
    /// S = Σ_v exp(z_v - m): about 1 or more for a row of finite logits (its
    /// largest term is e^0, which the pass forms within a few ulp of 1).
    var sumOfExp: Double
    /// W = Σ_v exp(z_v - m)·(z_v - m); 0 unless asked for.
    var weighted: Double

    /// Whether the sums hold for the row: S >= 1/2 and W finite. They do not when
    /// the row holds a NaN (S is NaN), a +inf (the max is inf, and inf - inf NaN) or
    /// only -inf (S = 0), or, for W, a -inf or a z - m past the float range (W is
    /// -inf or NaN). A -inf logit without W is fine: its term is exactly 0. The
    /// caller takes the plain path where this is false.
    var isValid: Bool { sumOfExp >= 0.5 && weighted.isFinite }
}

/// How many blocks of ``onlineBlockLength`` a row of `count` floats has.
@inline(__always)
func onlineBlockCount(_ count: Int) -> Int {
    (count + onlineBlockLength - 1) / onlineBlockLength
}

/// One pass over a row of `count` logits x, as z = x / `divisor` (or x itself):
/// its max m, S = Σ exp(z - m) and, with `entropy`, W = Σ exp(z - m)·(z - m).
///
/// ```
/// M = the max of the first block, by a scan;  then per block of 1,024 floats:
///   t = (x - M)·(1/d)                              (= z - M; no division per logit)
///   s = Σ_block e^t,  w = Σ_block e^t·t,  τ = max_block t               (one loop)
///   if τ > 0:  M_b = the block's max, by a scan (from L1),  ρ = (M_b - M)/d
///              S ← S·e^-ρ,   W ← e^-ρ·(W - ρ·S)    (and s, w the same; or, if ρ > 4,
///              M ← M_b                             s, w again against M_b)
///   S += s,  W += w
/// ```
///
/// Why rescale instead of a first pass for the max: a max pass reads the row from
/// memory and the exp pass reads it again. Here each block is exponentiated
/// against the max so far, and the same loop finds whether any of its t is above
/// 0; only then is its max looked up, and the sums are multiplied by e^(M - M_b)
/// once (the terms keep their relative sizes). For random logits the max rises a
/// few times per row, mostly in the first blocks. Terms above the old max are
/// above 1: where a block rises by more than 4 (e^4 ≈ 55), it is exponentiated
/// again, against its own max, from L1, so no term overflows and W's W - ρ·S
/// never cancels more than a few bits. Checking the block in the exp loop, rather
/// than finding the next block's max in a second load stream beside it, saves a
/// load per vector; taking the max of t, not of x, lets x die as soon as t is
/// formed (x held two more of AVX2's sixteen registers, and the loop spilled its
/// sums to memory). A row that starts with blocks of -inf (a masked vocabulary)
/// gets its first finite block's max by a scan, as the first block.
///
/// With `expInto`, e^t is stored for every element (exactly 0 for a -inf
/// logit), and `blockShifts[b]` is the M that block b was exponentiated against:
/// e^(z - m) is then stored · e^((M_b - m)/d) without another exp. Each block
/// sums in Float lanes (64 terms a lane), then adds to S and W in Double, as the
/// plain Double sum. Meaningful only where ``OnlineRowSums/isValid`` is true; the
/// caller takes the plain path otherwise (so no separate scan for NaN).
///
/// With `writingBehind` (the backward), the previous row's gradient is written
/// as this row is read: one vector of it for each vector of this row that is
/// exponentiated (``GradientWriteBehind``); a block exponentiated again does not
/// write it again.
@_transparent
func onlineRowPass(
    _ row: UnsafePointer<Float>, _ count: Int, divisor: Float?, entropy: Bool,
    expInto store: UnsafeMutablePointer<Float>?, blockShifts: UnsafeMutablePointer<Float>?,
    writingBehind behind: GradientWriteBehind? = nil
) -> OnlineRowSums {
    // The max so far is kept in x (the logits' own units): z - M = (x - M) / d is
    // then formed as (x - M)·(1/d), exactly 0 at the max. A division per logit
    // (x / d, as the plain stage) cost as much as the rest of the pass on a CPU
    // whose divider takes a vector every few cycles. Not x·(1/d) - M·(1/d) in one
    // multiply-add: M/d is rounded to an ulp of M/d, which for logits near 1e4 is
    // 1e-3, far outside the float32 round-off of the result.
    let inverse = divisor.map { 1 / $0 }
    let largestRise: Float = 4  // in z: a block rising more than this is exponentiated again
    var maximum = -Float.infinity  // M, the max so far, in x's units
    var sumOfExp = 0.0, weighted = 0.0  // S and W against M
    var start = 0, block = 0
    while start < count {
        let end = min(start + onlineBlockLength, count)
        if maximum == -.infinity {
            // No finite logit so far: this block's max first.
            maximum = blockMax(row, start, end)
            if maximum == -.infinity {
                // Nothing but -inf (or NaN) here: every term is 0 (a NaN is kept in S).
                if let store { for j in start..<end { store[j] = 0 } }
                for j in start..<end where row[j].isNaN { sumOfExp = .nan }
                if let behind { writeGradientBlock(behind, block, start, end) }
                blockShifts?[block] = maximum
                start = end
                block &+= 1
                continue
            }
        }
        var sums = exponentiateBlock(row, start, end, shift: maximum, inverse: inverse, entropy: entropy, expInto: store,
                                     writingBehind: behind, block: block)
        var shift = maximum  // what this block's terms are against
        if sums.largestShifted > 0 {
            // The max rises in this block: bring the sums so far to its max, then this
            // block's own sums, or, if it rose far, this block exponentiated again.
            let blockMaximum = blockMax(row, start, end)
            rescale(&sumOfExp, &weighted, from: maximum, to: blockMaximum, inverse: inverse, entropy: entropy)
            if (blockMaximum - maximum) * (inverse ?? 1) > largestRise {
                shift = blockMaximum
                sums = exponentiateBlock(row, start, end, shift: shift, inverse: inverse, entropy: entropy,
                                         expInto: store, writingBehind: nil, block: block)  // written above
            } else {
                rescale(&sums.sum, &sums.weighted, from: maximum, to: blockMaximum, inverse: inverse, entropy: entropy)
            }
            maximum = blockMaximum
        }
        sumOfExp += sums.sum
        weighted += sums.weighted
        blockShifts?[block] = shift
        start = end
        block &+= 1
    }
    // x / d is monotone in x for d > 0 (rounding included), so the max of z is the
    // max of x divided once, as the plain stage's max of its z.
    return OnlineRowSums(maximum: divisor.map { maximum / $0 } ?? maximum, sumOfExp: sumOfExp, weighted: weighted)
}

/// S and W against `old` turned into S and W against `new` > `old` (both in x's
/// units): with ρ = (new - old)/d, every term e^(z - old) becomes e^(z - old)·e^-ρ
/// and every z - old becomes z - new = (z - old) - ρ.
@inline(__always)
private func rescale(
    _ sumOfExp: inout Double, _ weighted: inout Double, from old: Float, to new: Float, inverse: Float?, entropy: Bool
) {
    let rise = (Double(new) - Double(old)) * Double(inverse ?? 1)  // ρ
    let factor = Double.exp(-rise)
    if entropy { weighted = factor * (weighted - rise * sumOfExp) }
    sumOfExp *= factor
}

/// The max of `row[start..<end]` (-inf if empty; NaN elements are passed over).
@inline(__always)
private func blockMax(_ row: UnsafePointer<Float>, _ start: Int, _ end: Int) -> Float {
    var maxLanes = FloatVector(repeating: -.infinity)
    var i = start
    while i + FloatVector.scalarCount <= end {
        let x = load(row + i)
        maxLanes = maxLanes.replacing(with: x, where: maxLanes .< x)
        i &+= FloatVector.scalarCount
    }
    var maximum = maxLanes.max()
    while i < end {
        maximum = max(maximum, row[i])
        i &+= 1
    }
    return maximum
}

/// Over `row[start..<end]`, with t = (x - shift)·inverse (or x - shift): Σ e^t,
/// Σ e^t·t (with `entropy`) and the largest t (NaN passed over), in one loop; e^t
/// stored at `store + i` if asked.
///
/// `@_transparent` (always inlined, as swift-numerics marks its hot functions):
/// each caller then gets the loop for its own case (W or not, stored exponentials
/// or not) with no test inside it. `@inline(__always)` was not honoured here, and
/// the one shared copy, its tests per vector and the sums it kept in memory took a
/// quarter of the entropy kernel's time. The largest t and W are kept in
/// ``AccumulatorVector`` lanes (eight, or sixteen with AVX-512); S keeps sixteen
/// (64 terms a lane).
///
/// Stored exponentials are exactly 0 for t below -86.5 (a -inf logit gets a zero
/// gradient); in a sum only, such a term is e^-86.5 (about 3e-38), which a sum
/// whose largest term is about 1 cannot hold, and the compare and select are
/// saved. A -inf logit still makes W's e^t·t -inf, so ``OnlineRowSums/isValid``
/// sends the row to the plain stage.
@_transparent
private func exponentiateBlock(
    _ row: UnsafePointer<Float>, _ start: Int, _ end: Int, shift: Float, inverse: Float?, entropy: Bool,
    expInto store: UnsafeMutablePointer<Float>?, writingBehind behind: GradientWriteBehind?, block: Int
) -> (sum: Double, weighted: Double, largestShifted: Float) {
    let width = FloatVector.scalarCount
    var maxLanes = AccumulatorVector(repeating: -.infinity)
    var sumLanes = FloatVector()
    var weightedLanes = AccumulatorVector()
    let behindFactor = FloatVector(repeating: behind?.factors[block] ?? 0)
    var i = start
    while i &+ width <= end {
        prefetchForReading(row + (i &+ onlinePrefetchDistance))  // one line, as many as this iteration reads
        let t = shiftedLogits(load(row + i), shift: shift, inverse: inverse)
        maxLanes = largerLanes(maxLanes, folding: t)
        let e = exponential(t, exactZeros: store != nil)
        if let store { storeVector(e, store + i) }
        sumLanes += e
        if entropy { weightedLanes = multiplyAdd(e, t, folding: weightedLanes) }
        if let behind { writeGradientVector(behind, behindFactor, i) }
        i &+= width
    }
    if let behind, i < end { writeGradientBlock(behind, block, i, end) }
    if i < end {
        // The tail, padded with -inf: e^t is exactly 0 there, and W gets 0·0 from
        // the padding (t set to 0), but 0·(-inf) = NaN from a -inf logit, as above.
        var tail = FloatVector(repeating: -.infinity)
        for lane in 0..<(end - i) { tail[lane] = row[i + lane] }
        let t = shiftedLogits(tail, shift: shift, inverse: inverse)
        maxLanes = largerLanes(maxLanes, folding: t)
        let e = exponential(t, exactZeros: true)
        if let store { for lane in 0..<(end - i) { store[i + lane] = e[lane] } }
        sumLanes += e
        if entropy {
            var tOfLogits = t
            for lane in (end - i)..<width { tOfLogits[lane] = 0 }
            weightedLanes = multiplyAdd(e, tOfLogits, folding: weightedLanes)
        }
    }
    let weighted = entropy ? sumInDouble(weightedLanes) : 0
    var largest = maxLanes[0]
    for lane in 1..<AccumulatorVector.scalarCount where maxLanes[lane] > largest { largest = maxLanes[lane] }
    return (sumInDouble(sumLanes), weighted, largest)
}

/// The lanes of `v` added in Double, four at a time. (Written out: the generic
/// `SIMD8<Double>(v).sum()` was a call per block in the kernels' loops.)
@inline(__always)
private func sumInDouble(_ v: HalfVector) -> Double {
    let low = Double(v[0]) + Double(v[1]) + (Double(v[2]) + Double(v[3]))
    let high = Double(v[4]) + Double(v[5]) + (Double(v[6]) + Double(v[7]))
    return low + high
}

/// The lanes of `v` added in Double: each half as above, then the two.
@inline(__always)
private func sumInDouble(_ v: FloatVector) -> Double {
    let (low, high) = halves(v)
    return sumInDouble(low) + sumInDouble(high)
}

/// Half a ``FloatVector``: one AVX2 register.
typealias HalfVector = SIMD8<Float>

#if RLHF_AVX512
/// The lanes the exp loop keeps its largest t and W in: sixteen, one register,
/// where the build is for a CPU with AVX-512 (-D RLHF_AVX512, which `make bench`
/// passes on such a CPU). It has thirty-two vector registers, and the halves of
/// the eight-lane form below cost it a mask round trip per vector: the compiler
/// split the whole exp into 256-bit halves, and the log-probs with entropy took
/// 1.8-2.0x `read_logits` on an AVX-512 Zen 4 against 1.1-1.6x with sixteen lanes.
typealias AccumulatorVector = FloatVector
#else
/// The lanes the exp loop keeps its largest t and W in: eight, each vector's two
/// halves folded in first, so that the loop's values fit AVX2's sixteen
/// registers (with sixteen-lane sums it spilled them to memory every iteration).
/// With AVX-512, sixteen (-D RLHF_AVX512, above).
typealias AccumulatorVector = HalfVector
#endif

/// The two halves of `v`, lanes 0..<8 and 8..<16: the same bytes, read as two
/// vectors. (`lowHalf` and `highHalf` are the readable form, but in one of the
/// kernels' loops the compiler called them as functions, twice per vector.)
@_transparent
private func halves(_ v: FloatVector) -> (HalfVector, HalfVector) {
    unsafeBitCast(v, to: (HalfVector, HalfVector).self)
}

/// The larger of `a` and `b` in each lane; a NaN in `b` is passed over.
/// (On the concrete ``AccumulatorVector``, not generic over `SIMD<Float>`: the
/// generic `.<` and `replacing` became a loop over the lanes, 12x slower.)
@inline(__always)
private func largerLanes(_ a: AccumulatorVector, _ b: AccumulatorVector) -> AccumulatorVector {
    a.replacing(with: b, where: a .< b)
}

/// `maxLanes` with each lane of `t` taken in: lane by lane, or, with eight
/// accumulator lanes, `t`'s two halves first.
@_transparent
private func largerLanes(_ maxLanes: AccumulatorVector, folding t: FloatVector) -> AccumulatorVector {
#if RLHF_AVX512
    largerLanes(maxLanes, t)
#else
    let (tLow, tHigh) = halves(t)
    return largerLanes(maxLanes, largerLanes(tLow, tHigh))
#endif
}

/// `sum + e·t`, e·t of sixteen lanes taken into ``AccumulatorVector`` lanes.
@_transparent
private func multiplyAdd(_ e: FloatVector, _ t: FloatVector, folding sum: AccumulatorVector) -> AccumulatorVector {
#if RLHF_AVX512
    multiplyAdd(e, t, sum)
#else
    let (eLow, eHigh) = halves(e), (tLow, tHigh) = halves(t)
    return multiplyAdd(eHigh, tHigh, multiplyAdd(eLow, tLow, sum))
#endif
}

/// t = z - M = (x - shift)·inverse, or x - shift without a divisor.
@_transparent
private func shiftedLogits(_ x: FloatVector, shift: Float, inverse: Float?) -> FloatVector {
    inverse == nil ? x - shift : (x - shift) * (inverse ?? 1)
}

/// a·b + c, one fused multiply-add per lane where the build has FMA (-D RLHF_FMA:
/// on the portable baseline `addingProduct` is a libm call per lane).
@inline(__always)
private func multiplyAdd(_ a: AccumulatorVector, _ b: AccumulatorVector, _ c: AccumulatorVector) -> AccumulatorVector {
#if RLHF_FMA
    c.addingProduct(a, b)
#else
    a * b + c
#endif
}

// MARK: - The previous row's gradient, written behind

/// A row of the backward whose max and sums are known, so its gradient can be
/// written: `grad[v] = exps[v]·factors[v / 1,024]`, and `labelTerm` at `label`.
///
/// The backward writes it while it exponentiates the next row, one vector for
/// each vector of that row (``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``):
/// a core then reads the next row's logits and writes this row's gradient in the
/// same loop, so memory is read and written at once, where a pass of its own per
/// row left the writes waiting for the exp pass, and the reads for the writes.
struct GradientWriteBehind {
    /// e^(x - M_b) for the row, as the online pass stored it.
    let exps: UnsafePointer<Float>
    /// Per block b: -g·e^(M_b - m)/S, so exps·factor is -g·softmax.
    let factors: UnsafePointer<Float>
    /// Where the row's gradient goes.
    let grad: UnsafeMutablePointer<Float>
    let label: Int
    /// g - g·softmax(x)_y, the label's element.
    let labelTerm: Float
}

/// The gradient's vector at `i` (16 floats), written with a non-temporal store;
/// the label's element is written apart, after the row (``writeLabelGradient(_:)``).
@_transparent
func writeGradientVector(_ behind: GradientWriteBehind, _ factor: FloatVector, _ i: Int) {
    storeVectorStreaming(load(behind.exps + i) * factor, behind.grad + i)
}

/// The gradient's elements `start..<end` of block `block`: whole vectors, then
/// one float at a time (the label's element too, written again after the row).
@inline(__always)
func writeGradientBlock(_ behind: GradientWriteBehind, _ block: Int, _ start: Int, _ end: Int) {
    let factor = behind.factors[block]
    let factorLanes = FloatVector(repeating: factor)
    var i = start
    while i &+ FloatVector.scalarCount <= end {
        writeGradientVector(behind, factorLanes, i)
        i &+= FloatVector.scalarCount
    }
    while i < end {
        behind.grad[i] = behind.exps[i] * factor
        i &+= 1
    }
}

/// The label's element of a row whose other elements are written, once they
/// are: after a fence, as a non-temporal store is not ordered with a later plain
/// store to the same line. (Put into its vector inside the loop instead, it cost
/// a compare per vector, and on AVX2 a trip through memory per vector.)
@inline(__always)
func writeLabelGradient(_ behind: GradientWriteBehind) {
    finishStreamingStores()
    behind.grad[behind.label] = behind.labelTerm
}
