/// The input checks every stage runs before it computes anything.
///
/// Each check throws a ``StageError`` that names the stage, the argument and the
/// shapes or values at fault, so a bad input never reaches the math (no trap, no
/// silent NaN).
///
/// ```
/// let check = InputCheck(stage: "gae")
/// try check.rank(values, "values", is: 2, legend: "[B, N]")
/// try check.shape(rewards, "rewards", equals: values.shape, sameAs: "values")
/// try check.noNaN(values, "values")
/// ```
public struct InputCheck: Sendable {
    /// The fixture stage name the errors carry.
    public let stage: String

    @inlinable
    public init(stage: String) {
        self.stage = stage
    }

    /// Throws unless `tensor` has `rank` axes; `legend` spells them out, e.g. `"[B, T, V]"`.
    @inlinable
    ///
    /// It also refuses a shape beyond ``TensorLimits`` (a [10^12, 0, 5] tensor is
    /// empty, yet a loop over its rows would run 10^12 times). Every stage checks
    /// the rank of each input first, so no stage loops over such a shape.
    public func rank<S>(_ tensor: Tensor<S>, _ argument: String, is rank: Int, legend: String) throws(StageError) {
        guard tensor.rank == rank else {
            throw StageError(.shapeMismatch, stage: stage, argument: argument,
                             "expected rank \(rank) \(legend), got shape \(describe(shape: tensor.shape))")
        }
        guard TensorLimits.elementCount(tensor.shape) != nil else {
            throw StageError(.tooLarge, stage: stage, argument: argument, TensorLimits.refusal(tensor.shape))
        }
    }

    /// Throws unless `tensor` has exactly `expected` as its shape.
    ///
    /// `sameAs` says where the expected shape comes from, e.g. `"values"` or
    /// `"[B] from log_probs"`.
    @inlinable
    public func shape<S>(_ tensor: Tensor<S>, _ argument: String, equals expected: [Int], sameAs source: String) throws(StageError) {
        guard tensor.shape == expected else {
            throw StageError(.shapeMismatch, stage: stage, argument: argument,
                             "expected shape \(describe(shape: expected)) (\(source)), got \(describe(shape: tensor.shape))")
        }
    }

    /// Throws at the first NaN in `tensor`, naming its index.
    ///
    /// A NaN in a masked slot is rejected too: multiplying by a 0 mask does not
    /// remove a NaN (NaN * 0 = NaN), so accepting it would only hide the problem.
    @inlinable
    public func noNaN<T: FloatScalar>(_ tensor: Tensor<T>, _ argument: String) throws(StageError) {
        if containsNaN(tensor.scalars), let flat = tensor.scalars.firstIndex(where: \.isNaN) {
            throw StageError(.notANumber, stage: stage, argument: argument,
                             "NaN at index \(describe(shape: tensor.index(ofFlat: flat))) of shape \(describe(shape: tensor.shape))")
        }
    }

    /// Throws at the first element of `mask` that is neither 0 nor 1.
    @inlinable
    public func binaryMask(_ mask: Tensor<Int64>, _ argument: String) throws(StageError) {
        if containsNonBinary(mask.scalars), let flat = mask.scalars.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw StageError(.invalidMask, stage: stage, argument: argument,
                             "masks hold 0/1, got \(mask.scalars[flat]) at index \(describe(shape: mask.index(ofFlat: flat)))")
        }
    }

    /// Throws at the first label outside `[0, vocabularySize)`.
    @inlinable
    public func labels(_ labels: Tensor<Int64>, _ argument: String, vocabularySize: Int) throws(StageError) {
        for flat in 0..<labels.count where labels.scalars[flat] < 0 || labels.scalars[flat] >= Int64(vocabularySize) {
            throw StageError(.labelOutOfRange, stage: stage, argument: argument,
                             "label \(labels.scalars[flat]) at index \(describe(shape: labels.index(ofFlat: flat))) is outside [0, V) = [0, \(vocabularySize))")
        }
    }

    /// Throws unless `value` lies in `range`; `meaning` explains the range.
    @inlinable
    public func parameter(_ argument: String, _ value: Int, in range: Range<Int>, _ meaning: String) throws(StageError) {
        guard range.contains(value) else {
            throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                             "\(argument) = \(value) must be in [\(range.lowerBound), \(range.upperBound)): \(meaning)")
        }
    }

    /// Throws unless `value` is finite and at least zero (clip ranges, coefficients).
    @inlinable
    public func nonNegative(_ argument: String, _ value: Double) throws(StageError) {
        guard value.isFinite, value >= 0 else {
            throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                             "\(argument) = \(value) must be finite and >= 0")
        }
    }

    /// Throws unless `value` is finite (discounts, coefficients that may be any sign).
    @inlinable
    public func finite(_ argument: String, _ value: Double) throws(StageError) {
        guard value.isFinite else {
            throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                             "\(argument) = \(value) must be finite")
        }
    }

    /// Throws if a computed output holds a NaN although every input was NaN-free.
    ///
    /// PyTorch would return that NaN silently (e.g. `inf - inf` from two infinite
    /// log-probs); we name the output and the index instead.
    @inlinable
    public func noNaNInResult<T: FloatScalar>(_ tensor: Tensor<T>, _ output: String) throws(StageError) {
        if containsNaN(tensor.scalars), let flat = tensor.scalars.firstIndex(where: \.isNaN) {
            throw StageError(.nonFiniteResult, stage: stage, argument: output,
                             "the result is NaN at index \(describe(shape: tensor.index(ofFlat: flat))) (infinite inputs?)")
        }
    }
}

/// Whether `values` holds a NaN, in one pass without a branch per element.
///
/// ```
/// sawNaN |= (x != x)      for every x      (x != x only for NaN)
/// ```
///
/// Why not `values.contains(where: \.isNaN)`: it stops early but tests one element
/// per branch, and `isNaN` tests exponent bits; OR-ing a compare into a byte lets
/// the compiler turn the loop into vector compares, about 7x faster over a
/// [64, 2048] input, and every stage scans each float input once. Never inlined:
/// inlined into a caller that then looks for the NaN's index, the compiler fuses
/// the two loops back into one early-exit scan with a branch per element.
@inlinable @inline(never)
public func containsNaN<T: FloatScalar>(_ values: [T]) -> Bool {
    var sawNaN: UInt8 = 0
    for x in values {
        sawNaN |= x != x ? 1 : 0
    }
    return sawNaN != 0
}

/// Whether `mask` holds anything but 0 and 1, in one pass without a branch per
/// element (see ``containsNaN(_:)`` for why, and why never inlined).
///
/// ```
/// sawOther |= (m & ~1 != 0)      for every m      (m & ~1 clears the lowest bit:
///                                                   0 exactly for m = 0 and m = 1)
/// ```
@inlinable @inline(never)
public func containsNonBinary(_ mask: [Int64]) -> Bool {
    var sawOther: UInt8 = 0
    for m in mask {
        sawOther |= m & ~1 != 0 ? 1 : 0
    }
    return sawOther != 0
}
