/// How large a tensor this package accepts from outside: a fixture, or a caller's
/// `Tensor(shape:scalars:)`.
///
/// ```
/// loop size = Π_i max(shape[i], 1)       (a 0 extent counted as 1)
/// accepted  when every extent >= 0 and
///           loop size <= maximumElements (2^31), or <= maximumEmptyLoop (2^20)
///           for a tensor with no element
/// ```
///
/// Why count a 0 extent as 1: a [10^12, 0, 5] tensor holds no element, yet a stage
/// that walks its rows loops 10^12 times before it finds nothing to do, and may
/// allocate a [10^12] result for them. An empty tensor costs nothing to write in a
/// fixture, so its other extents get the smaller limit. Why a limit at all: the
/// product of a fixture's extents can overflow `Int` (a trap), and a shape that
/// asks for 10^11 floats would be allocated before any other check could see it.
/// 2^31 elements is 8 GiB of float32 and 16 GiB of float64, more than any stage
/// needs at RLHF sizes (B·T·V = 1x2048x151936 is 3.1·10^8).
public enum TensorLimits {
    public static let maximumElements = 1 << 31
    public static let maximumEmptyLoop = 1 << 20

    /// The number of elements of `shape`, or nil when an extent is negative or the
    /// loop size exceeds its limit (checked without overflow).
    @inlinable
    public static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1, loopSize = 1
        for extent in shape {
            guard extent >= 0 else { return nil }
            let (product, overflow) = loopSize.multipliedReportingOverflow(by: max(extent, 1))
            guard !overflow, product <= maximumElements else { return nil }
            loopSize = product
            count = extent == 0 ? 0 : count * extent  // <= loopSize, so no overflow
        }
        guard count > 0 || loopSize <= maximumEmptyLoop else { return nil }
        return count
    }

    /// Why `shape` is refused, for an error message.
    public static func refusal(_ shape: [Int]) -> String {
        if let extent = shape.first(where: { $0 < 0 }) {
            return "a shape cannot have a negative extent, got \(extent) in \(describe(shape: shape))"
        }
        return "shape \(describe(shape: shape)) is beyond the limit of 2^31 elements, 2^20 for an empty tensor (a 0 extent counted as 1)"
    }
}
