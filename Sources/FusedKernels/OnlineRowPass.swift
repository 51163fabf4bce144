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
    /// S = Σ_v exp(z_v - m).
    var sumOfExp: Double
    /// W = Σ_v exp(z_v - m)·(z_v - m); 0 unless asked for.
    var weighted: Double
    /// Σ_v x_v: not finite when the row holds a NaN or an infinite logit (or sums
    /// past the float range), the sign to take the plain path.
    var probe: Float
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
/// With `expInto`, e^(z - M_b) is stored for every element, and `blockShifts[b]`
/// is M_b, the max the block was exponentiated against: e^(z - m) is then
/// stored · e^(M_b - m) without another exp. Each block sums in Float lanes (16
/// terms a lane), then adds to S and W in Double, as the plain Double sum.
/// Meaningful only for a row whose probe is finite; the caller takes the plain
/// path otherwise.
@inline(__always)
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
    var probeLanes = FloatVector()
    var probeTail: Float = 0
    // The first block's max; each later block's is found while the block before it
    // is exponentiated, so its loads from memory overlap that arithmetic.
    var blockMaximum = scanBlock(row, 0, min(onlineBlockLength, count), probeLanes: &probeLanes, probeTail: &probeTail)
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
            // Nothing but -inf so far: every term is 0 (the row's max comes later).
            if let store { for j in start..<end { store[j] = 0 } }
            blockMaximum = scanBlock(row, end, min(end + onlineBlockLength, count), probeLanes: &probeLanes,
                                     probeTail: &probeTail)
        } else {
            let sums = exponentiateBlock(row, start, end, count, inverse: inverse, shift: maximum, entropy: entropy,
                                         expInto: store, probeLanes: &probeLanes, probeTail: &probeTail)
            sumOfExp += sums.sum
            weighted += sums.weighted
            blockMaximum = sums.nextMaximum
        }
        start = end
        block &+= 1
    }
    // x / d is monotone in x for d > 0 (rounding included), so the max of z is the
    // max of x divided once, as the plain stage's max of its z.
    return OnlineRowSums(maximum: divisor.map { maximum / $0 } ?? maximum, sumOfExp: sumOfExp, weighted: weighted,
                         probe: probeLanes.sum() + probeTail)
}

/// The max of `row[start..<end]` (-inf if empty), adding the elements to the probe.
@inline(__always)
private func scanBlock(_ row: UnsafePointer<Float>, _ start: Int, _ end: Int, probeLanes: inout FloatVector,
                       probeTail: inout Float) -> Float {
    var maxLanes = FloatVector(repeating: -.infinity)
    var i = start
    while i + FloatVector.scalarCount <= end {
        let x = load(row + i)
        maxLanes = maxLanes.replacing(with: x, where: maxLanes .< x)
        probeLanes += x
        i &+= FloatVector.scalarCount
    }
    var maximum = maxLanes.max()
    while i < end {
        maximum = max(maximum, row[i])
        probeTail += row[i]
        i &+= 1
    }
    return maximum
}

/// Σ e^(z - shift) and Σ e^(z - shift)·(z - shift) over `row[start..<end]`
/// (from L1), and the max of the next block, `row[end..<end + 1024]` clipped to
/// `count`, read from memory in the same loop (its elements added to the probe):
/// the loads of the next block overlap the arithmetic of this one.
@inline(__always)
private func exponentiateBlock(
    _ row: UnsafePointer<Float>, _ start: Int, _ end: Int, _ count: Int, inverse: Float?, shift: Float, entropy: Bool,
    expInto store: UnsafeMutablePointer<Float>?, probeLanes: inout FloatVector, probeTail: inout Float
) -> (sum: Double, weighted: Double, nextMaximum: Float) {
    let shiftLanes = FloatVector(repeating: shift)
    let inverseLanes = FloatVector(repeating: inverse ?? 1)
    // `exponential` gives exactly 0 below -86.5; clamping the tail's -inf padding
    // to -150 keeps its 0·(z - shift) at 0 (not 0·(-inf) = NaN) in W.
    let floor = FloatVector(repeating: -150)
    let nextEnd = min(end + onlineBlockLength, count)
    var sumLanes = FloatVector(), weightedLanes = FloatVector()
    var nextMaxLanes = FloatVector(repeating: -.infinity)
    var i = start
    var next = end  // the next block is scanned up to here
    while i + FloatVector.scalarCount <= end {
        // t = z - shift. No clamp for W's e·t here: only a -inf logit makes that
        // 0·(-inf), and such a row's probe sends it to the plain stage anyway.
        let t = inverse == nil ? load(row + i) - shiftLanes : (load(row + i) - shiftLanes) * inverseLanes
        let e = exponential(t)
        if let store { storeVector(e, store + i) }
        sumLanes += e
        if entropy { weightedLanes = accumulate(weightedLanes, e, t) }
        if next + FloatVector.scalarCount <= nextEnd {
            let y = load(row + next)
            nextMaxLanes = nextMaxLanes.replacing(with: y, where: nextMaxLanes .< y)
            probeLanes += y
            next &+= FloatVector.scalarCount
        }
        i &+= FloatVector.scalarCount
    }
    if i < end {
        // The tail, padded with -inf (exp gives exactly 0 there).
        var tail = FloatVector(repeating: -.infinity)
        for lane in 0..<(end - i) { tail[lane] = row[i + lane] }
        var t = inverse == nil ? tail - shiftLanes : (tail - shiftLanes) * inverseLanes
        t = t.replacing(with: floor, where: t .< floor)
        let e = exponential(t)
        if let store { for lane in 0..<(end - i) { store[i + lane] = e[lane] } }
        sumLanes += e
        if entropy { weightedLanes = accumulate(weightedLanes, e, t) }
    }
    // Whatever of the next block the loop did not reach (its tail, or all of it
    // after a short block).
    let rest = scanBlock(row, next, nextEnd, probeLanes: &probeLanes, probeTail: &probeTail)
    let sum = (SIMD8<Double>(sumLanes.lowHalf) + SIMD8<Double>(sumLanes.highHalf)).sum()
    let weighted = entropy ? (SIMD8<Double>(weightedLanes.lowHalf) + SIMD8<Double>(weightedLanes.highHalf)).sum() : 0
    return (sum, weighted, max(nextMaxLanes.max(), rest))
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
