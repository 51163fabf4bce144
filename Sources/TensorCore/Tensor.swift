// Our tensors: a shape and a flat, row-major array of scalars. Nothing more.
//
// Shapes legend used across the package:
//   B  batch              L  full sequence length (prompt + answer)
//   N  = L - 1 log-prob positions (position t scores token t + 1)
//   V  vocabulary         T  any token axis

/// A shaped, row-major tensor.
///
/// `Tensor<Double>` and `Tensor<Float>` carry float64 and float32 data (each
/// stage computes in the precision it is given); `Tensor<Int64>` carries token
/// ids, labels and 0/1 masks.
///
/// ```
/// let x = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6] as [Double])
/// x[1, 2]  // 6.0: element (1, 2) lives at 1 * 3 + 2
/// ```
public struct Tensor<Scalar: Sendable>: Sendable {
    /// The extent of each axis; `[]` is a scalar holding one element.
    public let shape: [Int]
    /// The elements, last axis fastest.
    public var scalars: [Scalar]

    /// Makes a tensor, checking that `scalars` fills `shape` exactly.
    @inlinable
    public init(shape: [Int], scalars: [Scalar]) throws(StageError) {
        guard let count = TensorLimits.elementCount(shape) else {
            throw StageError(.tooLarge, stage: "tensor", argument: "shape", TensorLimits.refusal(shape))
        }
        guard count == scalars.count else {
            throw StageError(.shapeMismatch, stage: "tensor", argument: "scalars",
                             "shape \(shape) holds \(count) elements, got \(scalars.count)")
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// Makes a tensor of `shape` with every element equal to `value`.
    ///
    /// Precondition (a trap, not a throw): `shape` is within ``TensorLimits``. The
    /// stages call it only for shapes they have checked; for a shape from outside,
    /// use the throwing `init(shape:scalars:)`.
    @inlinable
    public init(shape: [Int], repeating value: Scalar) {
        self.shape = shape
        self.scalars = Array(repeating: value, count: shape.reduce(1, *))
    }

    /// A rank-0 tensor holding one value.
    @inlinable
    public init(scalar value: Scalar) {
        self.shape = []
        self.scalars = [value]
    }

    /// The number of axes.
    public var rank: Int { shape.count }

    /// The number of elements.
    public var count: Int { scalars.count }

    /// Element `[i, j]` of a rank-2 tensor.
    @inlinable
    public subscript(i: Int, j: Int) -> Scalar {
        get { scalars[i * shape[1] + j] }
        set { scalars[i * shape[1] + j] = newValue }
    }

    /// Element `[i, j, k]` of a rank-3 tensor.
    @inlinable
    public subscript(i: Int, j: Int, k: Int) -> Scalar {
        get { scalars[(i * shape[1] + j) * shape[2] + k] }
        set { scalars[(i * shape[1] + j) * shape[2] + k] = newValue }
    }

    /// Row `i` of a rank-2 tensor, as an array.
    @inlinable
    public func row(_ i: Int) -> ArraySlice<Scalar> {
        let width = shape[1]
        return scalars[(i * width)..<((i + 1) * width)]
    }

    /// Columns `range` of a rank-2 tensor, as a new [rows, range.count] tensor:
    /// `x.columns(start...)` is PyTorch's `x[:, start:]`, `x.columns(..<(n - 1))`
    /// its `x[:, :-1]`.
    ///
    /// The PPO stages use it for the answer part `[:, start:]` of every [B, N]
    /// tensor. `range` must lie inside `0..<shape[1]` (the callers check it).
    @inlinable
    public func columns(_ range: some RangeExpression<Int>) -> Tensor {
        let rows = shape[0], width = shape[1]
        let kept = range.relative(to: 0..<width)
        var part = [Scalar]()
        part.reserveCapacity(rows * kept.count)
        for row in 0..<rows {
            part += scalars[(row * width + kept.lowerBound)..<(row * width + kept.upperBound)]
        }
        return Tensor(uncheckedShape: [rows, kept.count], scalars: part)
    }

    /// The multi-index of flat position `flatIndex`, e.g. `[1, 2]` for 5 in a [2, 3] tensor.
    @inlinable
    public func index(ofFlat flatIndex: Int) -> [Int] {
        var rest = flatIndex
        var index = [Int](repeating: 0, count: shape.count)
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] > 0 {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        return index
    }
}

extension Tensor: Equatable where Scalar: Equatable {}

extension Tensor where Scalar: FloatScalar {
    /// The same numbers in another precision (`Float` <-> `Double`).
    @inlinable
    public func converted<Other: FloatScalar>(to _: Other.Type) -> Tensor<Other> {
        Tensor<Other>(uncheckedShape: shape, scalars: scalars.map { Other($0) })
    }
}

extension Tensor {
    /// Internal fast path for results whose shape the stage already knows.
    @usableFromInline
    init(uncheckedShape shape: [Int], scalars: [Scalar]) {
        self.shape = shape
        self.scalars = scalars
    }

    /// Makes a tensor whose shape is known to fit its scalars (used by stages for
    /// their own outputs).
    ///
    /// Precondition (a trap, not a throw): `scalars.count` is the shape's element
    /// count. Only the package's own code calls it, with shapes it made; for data
    /// from outside, use the throwing `init(shape:scalars:)`.
    @inlinable
    public static func make(_ shape: [Int], _ scalars: [Scalar]) -> Tensor {
        precondition(shape.reduce(1, *) == scalars.count, "internal: output shape \(shape) does not fit \(scalars.count) scalars")
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }
}

/// Formats a shape the way PyTorch prints it: `[2, 5]`.
@inlinable
public func describe(shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ", ") + "]"
}
