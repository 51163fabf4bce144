// One streaming pass over a vocabulary row: its max, Σ exp(z - max) and, for the
// entropy, Σ exp(z - max)·(z - max), with the running-max rescaling trick, so
// each logit is read from memory once. Shared by the fused backward and the
// fused log-probs with entropy.

/// Floats per block of the online pass: 64 vectors, 4 KB, so a block read from
/// memory for its max is still in L1 when it is exponentiated (a block's fixed
/// costs, its horizontal max and the Double adds, were a tenth of the work with
/// blocks of 1 KB).
let onlineBlockLength = 64 * FloatVector.scalarCount

/// A row's max and sums from ``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:)``.
struct OnlineRowSums {
    /// m = max_v z_v (z = x / divisor, or x).
    var maximum: Float
    /// S = Σ_v exp(z_v - m): at least 1 for a row of finite logits (its largest
    /// term is e^0 = 1).
    var sumOfExp: Double
    /// W = Σ_v exp(z_v - m)·(z_v - m); 0 unless asked for.
    var weighted: Double

    /// Whether the sums hold for the row: S >= 1 and W finite. They do not when the
    /// row holds a NaN (S is NaN), a +inf (the max is inf, and inf - inf NaN) or
    /// only -inf (S = 0), or, for W, a -inf or a z - m past the float range (W is
    /// -inf or NaN). A -inf logit without W is fine: its term is exactly 0. The
    /// caller takes the plain path where this is false.
    var isValid: Bool { sumOfExp >= 1 && weighted.isFinite }
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
/// per block of 1,024 floats (read from memory once, then from L1):
///   M' = max(M, max of the block)                         (maxima kept in x)
///   z - M' = (x - M'_x) · (1/d)                           (no division per logit)
///   S ← S·e^(M - M'),   W ← e^(M - M')·(W - (M' - M)·S)     (earlier terms rescaled)
///   S += Σ_block e^(z - M'),   W += Σ_block e^(z - M')·(z - M')
/// ```
///
/// Why rescale instead of a first pass for the max: a max pass reads the row from
/// memory and the exp pass reads it again. Here each block is exponentiated
/// against the max so far while it is in L1; when a later block raises the max,
/// the sums so far are multiplied by e^(M - M') once (the terms keep their
/// relative sizes). For random logits the max rises a few times per row.
///
/// With `expInto`, e^(z - M_b) is stored for every element (exactly 0 for a -inf
/// logit), and `blockShifts[b]` is M_b, the max the block was exponentiated
/// against: e^(z - m) is then stored · e^(M_b - m) without another exp. Each
/// block sums in Float lanes (64 terms a lane), then adds to S and W in Double,
/// as the plain Double sum. Meaningful only where ``OnlineRowSums/isValid`` is true;
/// the caller takes the plain path otherwise (so no separate scan for NaN).
@_transparent
func onlineRowPass(
    _ row: UnsafePointer<Float>, _ count: Int, divisor: Float?, entropy: Bool,
    expInto store: UnsafeMutablePointer<Float>?, blockShifts: UnsafeMutablePointer<Float>?
) -> OnlineRowSums {
    // The max so far is kept in x (the logits' own units): z - M = (x - M_x) / d is
    // then formed as (x - M_x) · (1/d), exactly 0 at the max. A division per logit
    // (x / d, as the plain stage) cost as much as the rest of the pass on a CPU
    // whose divider takes a vector every few cycles.
    let inverse = divisor.map { 1 / $0 }
    var maximum = -Float.infinity
    var sumOfExp = 0.0, weighted = 0.0
    // The first block's max; each later block's is found while the block before it
    // is exponentiated, so its loads from memory overlap that arithmetic.
    var blockMaximum = blockMax(row, 0, min(onlineBlockLength, count))
    var start = 0, block = 0
    while start < count {
        let end = min(start + onlineBlockLength, count)
        if blockMaximum > maximum {
            if maximum > -.infinity {
                let rise = (Double(blockMaximum) - Double(maximum)) * Double(inverse ?? 1)  // M' - M in z
                let factor = Double.exp(-rise)
                if entropy { weighted = factor * (weighted - rise * sumOfExp) }
                sumOfExp *= factor
            }
            maximum = blockMaximum
        }
        blockShifts?[block] = maximum
        if maximum == -.infinity {
            // Nothing but -inf (or NaN) so far: every term is 0 (the row's max comes later).
            if let store { for j in start..<end { store[j] = 0 } }
            blockMaximum = blockMax(row, end, min(end + onlineBlockLength, count))
        } else {
            let sums = exponentiateBlock(row, start, end, count, inverse: inverse, shift: maximum, entropy: entropy,
                                         expInto: store)
            sumOfExp += sums.sum
            weighted += sums.weighted
            blockMaximum = sums.nextMaximum
        }
        start = end
        block &+= 1
    }
    // x / d is monotone in x for d > 0 (rounding included), so the max of z is the
    // max of x divided once, as the plain stage's max of its z.
    return OnlineRowSums(maximum: divisor.map { maximum / $0 } ?? maximum, sumOfExp: sumOfExp, weighted: weighted)
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

/// Σ e^(z - shift) and Σ e^(z - shift)·(z - shift) over `row[start..<end]`
/// (from L1), and the max of the next block, `row[end..<end + 1024]` clipped to
/// `count`, read from memory in the same loop: the loads of the next block
/// overlap the arithmetic of this one.
///
/// `@_transparent` (always inlined, as swift-numerics marks its hot functions):
/// each caller then gets the loop for its own case (a divisor or not, W or not,
/// stored exponentials or not) with no test inside it. `@inline(__always)` was
/// not honoured here, and the one shared copy, its three tests per vector and the
/// sums it kept in memory took a quarter of the entropy kernel's time.
@_transparent
private func exponentiateBlock(
    _ row: UnsafePointer<Float>, _ start: Int, _ end: Int, _ count: Int, inverse: Float?, shift: Float, entropy: Bool,
    expInto store: UnsafeMutablePointer<Float>?
) -> (sum: Double, weighted: Double, nextMaximum: Float) {
    let width = FloatVector.scalarCount
    let nextEnd = min(end + onlineBlockLength, count)
    var sums = BlockSums()
    var nextMaxLanes = FloatVector(repeating: -.infinity)
    // The vectors of this block that have a vector of the next block beside them:
    // all of them but at the row's end.
    let paired = min((end - start) / width, (nextEnd - end) / width)
    var i = start
    var next = end  // the next block is scanned up to here
    for _ in 0..<paired {
        addExponentials(load(row + i), at: i, shift: shift, inverse: inverse, entropy: entropy, expInto: store, &sums)
        let y = load(row + next)
        nextMaxLanes = nextMaxLanes.replacing(with: y, where: nextMaxLanes .< y)
        next &+= width
        i &+= width
    }
    while i + width <= end {
        addExponentials(load(row + i), at: i, shift: shift, inverse: inverse, entropy: entropy, expInto: store, &sums)
        i &+= width
    }
    if i < end {
        // The tail, padded with -inf: exp gives exactly 0 there, and t is clamped to
        // -150 so that W gets 0·(-150), not 0·(-inf) = NaN.
        var tail = FloatVector(repeating: -.infinity)
        for lane in 0..<(end - i) { tail[lane] = row[i + lane] }
        let floor = FloatVector(repeating: -150)
        var t = shiftedLogits(tail, shift: shift, inverse: inverse)
        t = t.replacing(with: floor, where: t .< floor)
        let e = exponential(t, exactZeros: true)
        if let store { for lane in 0..<(end - i) { store[i + lane] = e[lane] } }
        sums.sum += e
        if entropy { sums.weighted = accumulate(sums.weighted, e, t) }
    }
    // Whatever of the next block the loop did not reach (its tail, or all of it
    // after a short block).
    let rest = blockMax(row, next, nextEnd)
    let sum = (SIMD8<Double>(sums.sum.lowHalf) + SIMD8<Double>(sums.sum.highHalf)).sum()
    let weighted = entropy ? (SIMD8<Double>(sums.weighted.lowHalf) + SIMD8<Double>(sums.weighted.highHalf)).sum() : 0
    return (sum, weighted, max(nextMaxLanes.max(), rest))
}

/// A block's running sums, one per lane: Σ e^t and Σ e^t·t.
private struct BlockSums {
    var sum = FloatVector()
    var weighted = FloatVector()
}

/// For one vector of logits x at `row[i...]`: t = (x - shift)·inverse (or x - shift),
/// e^t added to `sums.sum`, e^t·t to `sums.weighted` with `entropy`, and e^t
/// stored at `store + i` if asked.
///
/// Stored exponentials are exactly 0 for t below -86.5 (a -inf logit gets a zero
/// gradient); in a sum only, such a term is e^-86.5 (about 3e-38), which a sum
/// whose largest term is 1 cannot hold, and the compare and select are saved. A
/// -inf logit still makes W's e·t -inf, so ``OnlineRowSums/isValid`` sends the row
/// to the plain stage.
@_transparent
private func addExponentials(
    _ x: FloatVector, at i: Int, shift: Float, inverse: Float?, entropy: Bool, expInto store: UnsafeMutablePointer<Float>?,
    _ sums: inout BlockSums
) {
    let t = shiftedLogits(x, shift: shift, inverse: inverse)
    let e = exponential(t, exactZeros: store != nil)
    if let store { storeVector(e, store + i) }
    sums.sum += e
    if entropy { sums.weighted = accumulate(sums.weighted, e, t) }
}

/// t = z - M = (x - shift)·inverse, or x - shift without a divisor.
@_transparent
private func shiftedLogits(_ x: FloatVector, shift: Float, inverse: Float?) -> FloatVector {
    inverse == nil ? x - shift : (x - shift) * (inverse ?? 1)
}

/// a + b·c, one fused multiply-add per lane where the build has FMA (-D RLHF_FMA:
/// on the portable baseline `addingProduct` is a libm call per lane).
@inline(__always)
private func accumulate(_ a: FloatVector, _ b: FloatVector, _ c: FloatVector) -> FloatVector {
#if RLHF_FMA
    a.addingProduct(b, c)
#else
    a + b * c
#endif
}
