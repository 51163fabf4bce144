// The float types a stage can compute in, and the few libm functions the stages
// need, kept in this one file so the dependency on the C math library is visible.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `Double` (float64 fixtures) or `Float` (float32 fixtures).
///
/// A stage is written once over `FloatScalar` and runs in the precision of its
/// inputs, as PyTorch does: a float32 fixture is computed in `Float`, a float64
/// fixture in `Double`.
public protocol FloatScalar: BinaryFloatingPoint, Sendable, LosslessStringConvertible {
    /// e^x.
    static func exp(_ x: Self) -> Self
    /// e^x in plain Swift (``exponential(_:)`` in Numerics.swift), within an ulp of
    /// `exp`: a loop that calls it vectorises, where a loop calling `exp` cannot.
    static func expInline(_ x: Self) -> Self
    /// The natural logarithm.
    static func log(_ x: Self) -> Self
    /// log(1 + x), exact for small x.
    static func log1p(_ x: Self) -> Self
    /// e^x - 1, exact for small x (`log1mexp` needs it near 0).
    static func expm1(_ x: Self) -> Self
    /// x^y, as C's `pow` (`powf` for Float), which PyTorch's `Tensor.pow(scalar)` calls.
    static func pow(_ x: Self, _ y: Self) -> Self
    /// The fixture dtype name: "float64" or "float32".
    static var dtypeName: String { get }
}

extension Double: FloatScalar {
    @inlinable public static func exp(_ x: Double) -> Double { libmExp(x) }
    @inlinable public static func expInline(_ x: Double) -> Double { exponential(x) }
    @inlinable public static func log(_ x: Double) -> Double { libmLog(x) }
    @inlinable public static func log1p(_ x: Double) -> Double { libmLog1p(x) }
    @inlinable public static func expm1(_ x: Double) -> Double { libmExpm1(x) }
    @inlinable public static func pow(_ x: Double, _ y: Double) -> Double { libmPow(x, y) }
    public static var dtypeName: String { "float64" }
}

extension Float: FloatScalar {
    @inlinable public static func exp(_ x: Float) -> Float { libmExpf(x) }
    @inlinable public static func expInline(_ x: Float) -> Float { exponential(x) }
    @inlinable public static func log(_ x: Float) -> Float { libmLogf(x) }
    @inlinable public static func log1p(_ x: Float) -> Float { libmLog1pf(x) }
    @inlinable public static func expm1(_ x: Float) -> Float { libmExpm1f(x) }
    @inlinable public static func pow(_ x: Float, _ y: Float) -> Float { libmPowf(x, y) }
    public static var dtypeName: String { "float32" }
}

// The C functions under names that do not collide with the protocol requirements.
@inlinable func libmExp(_ x: Double) -> Double { exp(x) }
@inlinable func libmLog(_ x: Double) -> Double { log(x) }
@inlinable func libmLog1p(_ x: Double) -> Double { log1p(x) }
@inlinable func libmExpf(_ x: Float) -> Float { expf(x) }
@inlinable func libmLogf(_ x: Float) -> Float { logf(x) }
@inlinable func libmLog1pf(_ x: Float) -> Float { log1pf(x) }
@inlinable func libmExpm1(_ x: Double) -> Double { expm1(x) }
@inlinable func libmPow(_ x: Double, _ y: Double) -> Double { pow(x, y) }
@inlinable func libmExpm1f(_ x: Float) -> Float { expm1f(x) }
@inlinable func libmPowf(_ x: Float, _ y: Float) -> Float { powf(x, y) }
