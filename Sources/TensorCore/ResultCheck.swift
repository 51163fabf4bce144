// The checks on what a stage computed, beside InputCheck's checks on what it was
// given. The rule: where PyTorch gives a number or an infinity for infinite
// inputs, a stage gives the same; where PyTorch gives NaN in any output, the stage
// throws `nonFiniteResult` naming that output (no silent NaN).

extension InputCheck {
    /// Throws if a computed scalar (a loss) is NaN although every input was
    /// NaN-free: `noNaNInResult` for one value.
    @inlinable
    public func noNaNInResult<T: FloatScalar>(_ value: T, _ output: String) throws(StageError) {
        if value.isNaN {
            throw StageError(.nonFiniteResult, stage: stage, argument: output,
                             "the result is NaN at index [] (infinite inputs?)")
        }
    }

    /// Throws if a scalar reduced from `terms` (a loss from its per-token or
    /// per-pair terms) is NaN, naming the first NaN term, e.g. "the token loss is
    /// NaN at index [1, 3]".
    @inlinable
    public func noNaNInResult<T: FloatScalar>(
        _ value: T, _ output: String, terms: Tensor<T>, _ termName: String
    ) throws(StageError) {
        guard value.isNaN else { return }
        var detail = "the result is NaN at index []"
        if let flat = terms.scalars.firstIndex(where: \.isNaN) {
            detail += ": \(termName) is NaN at index \(describe(shape: terms.index(ofFlat: flat))) (infinite inputs?)"
        }
        throw StageError(.nonFiniteResult, stage: stage, argument: output, detail)
    }

    /// Throws if an element that a 0/1 mask drops is infinite or NaN, where the
    /// peer's masked sum `Σ x · m` then gives NaN.
    ///
    /// ```
    /// PyTorch:  sum(x * mask)   with x = inf at a dropped element: inf · 0 = NaN
    /// we:       Σ_{m = 1} x     skips the dropped elements, so it would give a number
    /// ```
    ///
    /// `values` and `mask` have the same count; `shape` is theirs, for the index;
    /// `output` is the output the NaN reaches (the loss). The detail names the
    /// first such element.
    @inlinable
    public func noNonFiniteDroppedByMask<T: FloatScalar>(
        _ values: [T], mask: [Int64], shape: [Int], _ output: String, what: String
    ) throws(StageError) {
        guard containsNonFiniteDroppedByMask(values, mask: mask) else { return }
        for flat in values.indices where mask[flat] == 0 && !values[flat].isFinite {
            let index = describe(shape: Tensor<T>.make(shape, values).index(ofFlat: flat))
            throw StageError(.nonFiniteResult, stage: stage, argument: output,
                             "the result is NaN: \(what) is \(values[flat]) at index \(index), where the mask is 0, "
                             + "and the masked sum multiplies it by 0 (inf · 0 = NaN, as in PyTorch)")
        }
    }
}

/// Whether an element of `values` is infinite or NaN where `mask` is 0, in one
/// pass without a branch per element (see ``containsNaN(_:)`` for why, and why
/// never inlined).
///
/// ```
/// saw |= (m == 0) & !(x - x == 0)      (x - x is 0 for every finite x, NaN for ±inf and NaN)
/// ```
///
/// Over buffer pointers with an index: `zip(values, mask)` did not vectorise and
/// cost actor_loss and critic_loss at 64x2048 about 0.2 ms, this under 0.1 ms.
@inlinable @inline(never)
public func containsNonFiniteDroppedByMask<T: FloatScalar>(_ values: [T], mask: [Int64]) -> Bool {
    var saw: UInt8 = 0
    values.withUnsafeBufferPointer { values in
        mask.withUnsafeBufferPointer { mask in
            for i in 0..<min(values.count, mask.count) {
                let dropped: UInt8 = mask[i] == 0 ? 1 : 0
                let nonFinite: UInt8 = values[i] - values[i] == 0 ? 0 : 1
                saw |= dropped & nonFinite
            }
        }
    }
    return saw != 0
}

/// `torch.maximum(a, b)`: the larger of two numbers, NaN if either is NaN.
///
/// Why not `max(a, b)`: Swift's `max` returns `a` when `b` is NaN (`b >= a` is
/// false), so `max(inf, NaN)` is inf and the NaN vanishes before any result
/// check can see it, where PyTorch's loss is NaN.
@inlinable
public func maximumPropagatingNaN<T: FloatScalar>(_ a: T, _ b: T) -> T {
    a != a || b != b ? a + b : max(a, b)
}
