import TensorCore

/// `gae` for float32, at memory speed: the same recursion over flat buffers,
/// with no generic dispatch per element.
///
/// ```
/// V_N = 0,  A_N = 0
/// for t = N-1 down to start:
///   delta_t = r_t + γ·V_{t+1} - V_t
///   A_t     = delta_t + γ·λ·A_{t+1}
/// R_t = A_t + V_t
/// ```
///
/// Shapes: `values`, `rewards` [B, N] float32 -> `advantages`, `returns`,
/// `deltas` [B, N - start]. B batch, N log-prob positions.
///
/// Equals the plain `gae(values:rewards:start:gamma:lambda:)` bit for bit (the
/// same float32 operations in the same order; the tests compare with `==`), and
/// through it DeepSpeed-Chat `ppo_trainer.py :: get_advantages_and_returns`.
///
/// Why a second version: the plain one is generic over ``FloatScalar`` and
/// reads through `Tensor`'s subscripts; called from another module it runs
/// unspecialised, every add a protocol call (about 100x slower at B = 64,
/// N = 2048). One thread: the recursion is sequential in t, and a row of 2048 is
/// far too little work to hand to another core. Allocates the three results
/// only, each written once.
///
/// - Throws: the same ``StageError``s as `gae`, in the same order.
public func gaeFast(
    values: Tensor<Float>,
    rewards: Tensor<Float>,
    start: Int,
    gamma: Double,
    lambda: Double
) throws(StageError) -> GAEResult<Float> {
    let check = InputCheck(stage: "gae")
    try checkGAEInputs(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda, check)
    let batchSize = values.shape[0], positions = values.shape[1]
    // A concrete scan first; the generic check runs only to name the NaN.
    if values.scalars.contains(where: \.isNaN) { try check.noNaN(values, "values") }
    if rewards.scalars.contains(where: \.isNaN) { try check.noNaN(rewards, "rewards") }

    let width = positions - start
    let discount = Float(gamma)
    let discountTimesLambda = Float(gamma * lambda)  // γ·λ in Double first, as in `gae`
    var advantages = [Float](repeating: 0, count: batchSize * width)
    var returns = [Float](repeating: 0, count: batchSize * width)
    var deltas = [Float](repeating: 0, count: batchSize * width)
    values.scalars.withUnsafeBufferPointer { v in
        rewards.scalars.withUnsafeBufferPointer { r in
            advantages.withUnsafeMutableBufferPointer { a in
                returns.withUnsafeMutableBufferPointer { ret in
                    deltas.withUnsafeMutableBufferPointer { d in
                        for row in 0..<batchSize {
                            let input = row * positions, output = row * width - start
                            var lastGAELambda: Float = 0
                            var nextValue: Float = 0
                            for t in stride(from: positions - 1, through: start, by: -1) {
                                let value = v[input + t]
                                let delta = r[input + t] + discount * nextValue - value
                                lastGAELambda = delta + discountTimesLambda * lastGAELambda
                                d[output + t] = delta
                                a[output + t] = lastGAELambda
                                ret[output + t] = lastGAELambda + value
                                nextValue = value
                            }
                        }
                    }
                }
            }
        }
    }
    let shape = [batchSize, width]
    if advantages.contains(where: \.isNaN) { try check.noNaNInResult(Tensor.make(shape, advantages), "advantages") }
    return GAEResult(advantages: Tensor.make(shape, advantages), returns: Tensor.make(shape, returns),
                     deltas: Tensor.make(shape, deltas))
}
