import TensorCore

/// mean_b Σ_j x[b, j]: the row sums (Double, rounded once each to T), then their
/// mean in T, as TRL's `x.sum(1).mean()`.
@inlinable
func meanOfRowSums<T: FloatScalar>(_ x: Tensor<T>) -> T {
    let batchSize = x.shape[0]
    var total = 0.0
    for b in 0..<batchSize {
        total += Double(T(x.row(b).reduce(0.0) { $0 + Double($1) }))
    }
    return T(total) / T(batchSize)
}
