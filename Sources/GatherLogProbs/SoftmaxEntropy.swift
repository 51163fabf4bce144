import TensorCore

/// The entropy of softmax(z) at every position, as TRL logs it:
///
/// ```
/// m = max_v z_v,   S = Σ_v e^(z_v - m)
/// logsumexp(z) = m + log S,   softmax(z)_v = e^(z_v - m) / S
/// entropy = logsumexp(z) - Σ_v softmax(z)_v · z_v
/// ```
///
/// Shapes: `z` [B, T, V] -> [B, T].
///
/// Why subtract m: e^z overflows for z > 88.7 in float32 (709.8 in float64), and
/// the softmax would be ∞/∞ = NaN; shifted, every exponent is <= 0 and S >= 1, so
/// log S is finite. The sums are accumulated in Double and rounded once. Any
/// infinite logit gives NaN, as in torch (∞ - ∞ in the shift, or 0·(-∞) in the
/// expectation); the stage then throws.
@inlinable
public func softmaxEntropy<T: FloatScalar>(_ z: Tensor<T>) -> Tensor<T> {
    let batchSize = z.shape[0], length = z.shape[1], vocabularySize = z.shape[2]
    var entropy = Tensor<T>(shape: [batchSize, length], repeating: 0)
    for position in 0..<(batchSize * length) {
        let rowStart = position * vocabularySize
        var maximum = -T.infinity
        for v in 0..<vocabularySize where z.scalars[rowStart + v] > maximum {
            maximum = z.scalars[rowStart + v]
        }
        var sumOfExp = 0.0
        for v in 0..<vocabularySize {
            sumOfExp += Double(T.exp(z.scalars[rowStart + v] - maximum))
        }
        let total = T(sumOfExp)
        let logSumExp = maximum + T.log(total)
        var expectedLogit = 0.0
        for v in 0..<vocabularySize {
            let logit = z.scalars[rowStart + v]
            expectedLogit += Double(T.exp(logit - maximum) / total * logit)
        }
        entropy.scalars[position] = logSumExp - T(expectedLogit)
    }
    return entropy
}
