import TensorCore

/// Advantages and returns from generalized advantage estimation.
public struct GAEResult<T: FloatScalar>: Sendable {
    /// A_t for t in [start, N). Shape [B, N - start].
    public var advantages: Tensor<T>
    /// R_t = A_t + V_t for t in [start, N). Shape [B, N - start].
    public var returns: Tensor<T>
    /// The TD errors δ_t the recursion summed. Shape [B, N - start]; for a reader.
    public var deltas: Tensor<T>

    @inlinable
    public init(advantages: Tensor<T>, returns: Tensor<T>, deltas: Tensor<T>) {
        self.advantages = advantages
        self.returns = returns
        self.deltas = deltas
    }
}

/// Generalized advantage estimation, run backwards from the last position.
///
/// ```
/// V_N = 0 (nothing after the last column),  A_N = 0
/// for t = N-1 down to start:
///   delta_t = r_t + γ·V_{t+1} - V_t
///   A_t     = delta_t + γ·λ·A_{t+1}
/// R_t = A_t + V_t
/// ```
///
/// Shapes: `values`, `rewards` [B, N] float -> `advantages`, `returns`
/// [B, N - start].
///
/// Nothing is masked here: the recursion runs over every position from `start`
/// on, pads included. DeepSpeed-Chat zeroes rewards and values from each row's
/// end before calling it (see `ppoLosses`), and masks in the losses.
///
/// Two ends of λ: with λ = 0, A_t is the one-step TD error δ_t; with γ = λ = 1,
/// A_t is the reward-to-go Σ_{k>=t} r_k minus V_t.
///
/// Matches DeepSpeed-Chat `dschat/rlhf/ppo_trainer.py :: get_advantages_and_returns`
/// (itself from trlx). `γ·λ` is formed in Double before it meets a tensor, as the
/// Python expression `self.gamma * self.lam * lastgaelam` does.
///
/// Infinite inputs give what PyTorch gives: an infinite reward makes the
/// advantages and returns up to it infinite. Where PyTorch's result is NaN the
/// stage throws instead: an infinite V_t makes R_t = A_t + V_t inf - inf (A_t
/// holds -V_t), and A_{t-1} = δ_{t-1} + γλ·A_t meets +γ·V_t and -γλ·V_t
/// (inf - inf, or 0 · inf when γλ = 0).
///
/// - Throws: ``StageError`` for shapes that do not agree, NaN in an input, `start`
///   outside `[0, N)`, a non-finite γ or λ, or an output that would be NaN
///   (`nonFiniteResult` naming `advantages` or `returns` and the index).
@inlinable
public func gae<T: FloatScalar>(
    values: Tensor<T>,
    rewards: Tensor<T>,
    start: Int,
    gamma: Double,
    lambda: Double
) throws(StageError) -> GAEResult<T> {
    let check = InputCheck(stage: "gae")
    try check.rank(values, "values", is: 2, legend: "[B, N]")
    try check.shape(rewards, "rewards", equals: values.shape, sameAs: "same as values")
    try check.parameter("start", start, in: 0..<values.shape[1],
                        "the first answer position, in [0, N) for values \(describe(shape: values.shape))")
    try check.finite("gamma", gamma)
    try check.finite("lambda", lambda)
    let batchSize = values.shape[0], positions = values.shape[1]
    try check.noNaN(values, "values")
    try check.noNaN(rewards, "rewards")

    let width = positions - start
    let discount = T(gamma)
    let discountTimesLambda = T(gamma * lambda)
    var advantages = Tensor<T>(shape: [batchSize, width], repeating: 0)
    var returns = Tensor<T>(shape: [batchSize, width], repeating: 0)
    var deltas = Tensor<T>(shape: [batchSize, width], repeating: 0)
    for row in 0..<batchSize {
        var lastGAELambda: T = 0
        for t in stride(from: positions - 1, through: start, by: -1) {
            let nextValue: T = t < positions - 1 ? values[row, t + 1] : 0
            let delta = rewards[row, t] + discount * nextValue - values[row, t]
            lastGAELambda = delta + discountTimesLambda * lastGAELambda
            deltas[row, t - start] = delta
            advantages[row, t - start] = lastGAELambda
        }
        for t in start..<positions {
            returns[row, t - start] = advantages[row, t - start] + values[row, t]
        }
    }
    try check.noNaNInResult(advantages, "advantages")
    // An infinite V_t reaches A_t as -V_t (through δ_t), so R_t = A_t + V_t is
    // inf - inf = NaN, in PyTorch too: checked on its own, not through advantages.
    try check.noNaNInResult(returns, "returns")
    return GAEResult(advantages: advantages, returns: returns, deltas: deltas)
}
