import Dispatch
import TensorCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
/// N = 2048). The recursion is sequential in t but the rows are independent:
/// from 32k elements on, the rows are split over the cores. Allocates the three
/// results only, each written once.
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
    if containsNaN(values.scalars) { try check.noNaN(values, "values") }
    if containsNaN(rewards.scalars) { try check.noNaN(rewards, "rewards") }

    let width = positions - start
    let discount = Float(gamma)
    let discountTimesLambda = Float(gamma * lambda)  // γ·λ in Double first, as in `gae`
    let shape = [batchSize, width], count = batchSize * width
    guard count > 0 else {
        let empty = Tensor<Float>.make(shape, [])
        return GAEResult(advantages: empty, returns: empty, deltas: empty)
    }
    // The results are made uninitialised: the recursion writes every element once,
    // so zero-filling them first would only be another pass over 3 x B x (N - start).
    var returns = [Float](), deltas = [Float]()
    let advantages = [Float](unsafeUninitializedCapacity: count) { a, aCount in
        returns = [Float](unsafeUninitializedCapacity: count) { ret, retCount in
            deltas = [Float](unsafeUninitializedCapacity: count) { d, dCount in
                values.scalars.withUnsafeBufferPointer { v in
                    rewards.scalars.withUnsafeBufferPointer { r in
                        recurse(values: UnsafeShared(v.baseAddress), rewards: UnsafeShared(r.baseAddress),
                                advantages: UnsafeShared(a.baseAddress), returns: UnsafeShared(ret.baseAddress),
                                deltas: UnsafeShared(d.baseAddress), batchSize: batchSize, positions: positions,
                                start: start, discount: discount, discountTimesLambda: discountTimesLambda)
                    }
                }
                dCount = count
            }
            retCount = count
        }
        aCount = count
    }
    if containsNaN(advantages) { try check.noNaNInResult(Tensor.make(shape, advantages), "advantages") }
    return GAEResult(advantages: Tensor.make(shape, advantages), returns: Tensor.make(shape, returns),
                     deltas: Tensor.make(shape, deltas))
}

/// The recursion of `gaeFast` over flat [B, N] inputs into [B, N - start] outputs.
///
/// Rows are independent: from 32k elements on they are split over the cores
/// (each thread writes only its own rows, and every row sees the same operations
/// in the same order as on one thread).
private func recurse(values v: UnsafeShared, rewards r: UnsafeShared, advantages a: UnsafeShared,
                     returns ret: UnsafeShared, deltas d: UnsafeShared, batchSize: Int, positions: Int, start: Int,
                     discount: Float, discountTimesLambda: Float) {
    let width = positions - start
    let chunks = batchSize * positions >= 32_768 ? min(batchSize, activeCores()) : 1
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
        for row in (batchSize * chunk / chunks)..<(batchSize * (chunk + 1) / chunks) {
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

/// A pointer handed to the worker threads; each thread touches only its own rows.
private struct UnsafeShared: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>

    init(_ pointer: UnsafeMutablePointer<Float>?) { self.pointer = pointer! }
    init(_ pointer: UnsafePointer<Float>?) { self.pointer = UnsafeMutablePointer(mutating: pointer!) }

    subscript(index: Int) -> Float {
        get { pointer[index] }
        nonmutating set { pointer[index] = newValue }
    }
}

/// The cores this process may run on.
private func activeCores() -> Int {
    max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}
