/// Whether `values` holds a NaN, at memory speed, for the float32 fast paths.
///
/// ```
/// probe = Σ values            (sixteen lanes at a time)
/// probe finite  -> no NaN     (a NaN anywhere makes every sum after it NaN)
/// else          -> look element by element (an inf or an overflowing sum also
///                  gives a non-finite probe, and must not count as a NaN)
/// ```
///
/// Why not `contains(where: \.isNaN)`: it stops at the first NaN but tests one
/// element per step through a closure, and costs more than the recursion it
/// guards in `gaeFast`; the sum is one vector add per sixteen floats.
public func containsNaN(_ values: [Float]) -> Bool {
    let probe = values.withUnsafeBufferPointer { buffer -> Float in
        guard let base = buffer.baseAddress else { return 0 }
        var lanes = SIMD16<Float>()
        var i = 0
        while i + 16 <= buffer.count {
            lanes += UnsafeRawPointer(base + i).loadUnaligned(as: SIMD16<Float>.self)
            i += 16
        }
        var total = lanes.sum()
        while i < buffer.count {
            total += base[i]
            i += 1
        }
        return total
    }
    return probe.isFinite ? false : values.contains { $0.isNaN }
}
