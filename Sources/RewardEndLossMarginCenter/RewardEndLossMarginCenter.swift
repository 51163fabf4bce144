import TensorCore

/// TRL's reward-model loss and the metrics it logs.
public struct RewardEndLossMarginCenterResult<T: FloatScalar>: Sendable {
    /// mean_i softplus(-(c_i - r_i - m_i)), plus κ · mean_i (c_i + r_i)² when κ is not null. Shape [].
    public var loss: T
    /// #{i : c_i > r_i} / B (strict: a tie counts as wrong). Shape [].
    public var accuracy: T
    /// mean_i (c_i - r_i), without the margin input. Shape [].
    public var meanMargin: T
    /// The smallest of all 2B rewards. Shape [].
    public var minReward: T
    /// The mean of all 2B rewards. Shape [].
    public var meanReward: T
    /// The largest of all 2B rewards. Shape [].
    public var maxReward: T
    /// Each pair's softplus(-(c_i - r_i - m_i)). Shape [B]; for a reader.
    public var pairLosses: Tensor<T>

    @inlinable
    public init(loss: T, accuracy: T, meanMargin: T, minReward: T, meanReward: T, maxReward: T, pairLosses: Tensor<T>) {
        self.loss = loss
        self.accuracy = accuracy
        self.meanMargin = meanMargin
        self.minReward = minReward
        self.meanReward = meanReward
        self.maxReward = maxReward
        self.pairLosses = pairLosses
    }
}

/// TRL's `RewardTrainer` loss: the pairwise loss with an optional margin and an
/// optional centering term on each pair's sum.
///
/// ```
/// c = rewards[:B] (chosen),   r = rewards[B:] (rejected),   m = margin, or 0 when absent
/// x_i = (c_i - r_i) - m_i
/// loss = (1/B) Σ_i softplus(-x_i)                               (= -mean log σ(x))
///      + [κ not null] · κ · (1/B) Σ_i (c_i + r_i)²
/// accuracy    = #{i : c_i > r_i} / B
/// mean_margin = (1/B) Σ_i (c_i - r_i)
/// min_reward, mean_reward, max_reward over all 2B rewards
/// ```
///
/// Shapes: `rewards` [2B] float, the B chosen rows first, then the B rejected ones,
/// as TRL's `DataCollatorForPreference` stacks them; `margin` [B] float or nil ->
/// every output [].
///
/// Quirks kept from the peer:
/// - κ (`center_rewards_coefficient`) not null includes 0 and negative values: the
///   peer tests `is not None`, so κ = 0 still adds 0 · mean(...) (NaN if that mean
///   is infinite: thrown here), and a negative κ rewards spreading the pair sums.
/// - The centering term squares each pair's sum, (c_i + r_i)², not each score: a
///   pair with c_i = -r_i costs nothing however large its scores.
/// - `mean_margin` ignores the `margin` input: it is the mean of c - r.
/// - Ties count as wrong in the accuracy (strict `>`); it is the exact fraction
///   k/B rounded once to `T` (the peer computes it in float32).
///
/// Matches TRL `trl/trainer/reward_trainer.py :: RewardTrainer.compute_loss`
/// (training mode, one process, so the gathers are the identity).
///
/// - Throws: ``StageError`` for `rewards` not of rank 1, an odd number of rows
///   (`invalidPair`; the peer raises for 1 row, and for 3 silently broadcasts a 2 + 1
///   split), no row at all, a `margin` not of shape [B] (the peer broadcasts a [1]
///   margin silently), a non-finite κ, NaN in an input, or a NaN result
///   (`nonFiniteResult`; infinite rewards).
@inlinable
public func rewardEndLossMarginCenter<T: FloatScalar>(
    rewards: Tensor<T>,
    margin: Tensor<T>?,
    centerRewardsCoefficient: Double?
) throws(StageError) -> RewardEndLossMarginCenterResult<T> {
    let check = InputCheck(stage: "reward_end_loss_margin_center")
    let batchSize = try checkedPairCount(rewards: rewards, margin: margin, centerRewardsCoefficient, check)

    var pairLosses = [T]()
    var pairLossSum = 0.0, centerSum = 0.0, marginSum = 0.0, rewardSum = 0.0
    var correct = 0
    for i in 0..<batchSize {
        let c = rewards.scalars[i], r = rewards.scalars[batchSize + i]
        // softplus(-x) as -logSigmoid(x): log(1 + e^-x) overflows to inf for
        // x < -88.7 in float32; -logSigmoid never exponentiates a positive number.
        let pairLoss = -logSigmoid(marginLogit(c, r, margin, i))
        pairLosses.append(pairLoss)
        pairLossSum += Double(pairLoss)
        let pairSum = c + r
        centerSum += Double(pairSum * pairSum)
        marginSum += Double(c - r)
        if c > r { correct += 1 }
    }
    var minReward = rewards.scalars[0], maxReward = rewards.scalars[0]
    for reward in rewards.scalars {
        minReward = min(minReward, reward)
        maxReward = max(maxReward, reward)
        rewardSum += Double(reward)
    }
    var loss = T(pairLossSum) / T(batchSize)
    if let kappa = centerRewardsCoefficient {
        loss = loss + T(kappa) * (T(centerSum) / T(batchSize))
    }
    let result = RewardEndLossMarginCenterResult(
        loss: loss, accuracy: T(correct) / T(batchSize), meanMargin: T(marginSum) / T(batchSize),
        minReward: minReward, meanReward: T(rewardSum) / T(2 * batchSize), maxReward: maxReward,
        pairLosses: Tensor.make([batchSize], pairLosses))
    for (name, value) in [("loss", result.loss), ("mean_margin", result.meanMargin), ("mean_reward", result.meanReward)] {
        try check.noNaNInResult(Tensor(scalar: value), name)
    }
    return result
}

/// The gradient of `rewardEndLossMarginCenter`'s loss with respect to the rewards
/// (the margin is data, a constant).
///
/// ```
/// loss = (1/B) Σ_i softplus(-x_i) + [κ not null]·(κ/B) Σ_i s_i²,   x_i = c_i - r_i - m_i,   s_i = c_i + r_i
/// d softplus(-x)/dx = -σ(-x)
/// ∂loss/∂c_i = -(1/B)·σ(-x_i) + [κ not null]·(2κ/B)·s_i
/// ∂loss/∂r_i = +(1/B)·σ(-x_i) + [κ not null]·(2κ/B)·s_i
/// ```
///
/// Shapes: as `rewardEndLossMarginCenter`; `grad_rewards` [2B], the chosen rows first.
///
/// The centering term pushes both scores of a pair the same way, toward a pair sum
/// of 0; it leaves their difference, which the first term acts on, alone. A
/// margin m_i > 0 asks for a wider gap: the pair keeps a larger weight σ(-x_i)
/// until c_i - r_i exceeds m_i.
///
/// - Throws: ``StageError`` as `rewardEndLossMarginCenter` does, and
///   `nonFiniteResult` where the gradient is NaN (κ = 0 times an infinite pair sum,
///   as autograd gives it).
@inlinable
public func rewardEndLossMarginCenterGradRewards<T: FloatScalar>(
    rewards: Tensor<T>, margin: Tensor<T>?, centerRewardsCoefficient: Double?
) throws(StageError) -> Tensor<T> {
    _ = try rewardEndLossMarginCenter(rewards: rewards, margin: margin,
                                      centerRewardsCoefficient: centerRewardsCoefficient)  // the checks
    let check = InputCheck(stage: "reward_end_loss_margin_center")
    let batchSize = rewards.count / 2
    let perPair = T(1) / T(batchSize)
    var grad = Tensor<T>(shape: rewards.shape, repeating: 0)
    for i in 0..<batchSize {
        let c = rewards.scalars[i], r = rewards.scalars[batchSize + i]
        let pairWeight = perPair * sigmoid(-marginLogit(c, r, margin, i))
        var centerGrad: T = 0
        if let kappa = centerRewardsCoefficient {
            centerGrad = T(2) * (T(kappa) / T(batchSize)) * (c + r)
        }
        grad.scalars[i] = -pairWeight + centerGrad
        grad.scalars[batchSize + i] = pairWeight + centerGrad
    }
    try check.noNaNInResult(grad, "grad_rewards")
    return grad
}

/// x_i = (c_i - r_i) - m_i, subtracted in the peer's order; m_i = 0 without a margin.
@inlinable
func marginLogit<T: FloatScalar>(_ c: T, _ r: T, _ margin: Tensor<T>?, _ i: Int) -> T {
    guard let margin else { return c - r }
    return (c - r) - margin.scalars[i]
}

/// B for a stacked [2B] batch of rewards, after every input check.
@inlinable
func checkedPairCount<T: FloatScalar>(
    rewards: Tensor<T>, margin: Tensor<T>?, _ centerRewardsCoefficient: Double?, _ check: InputCheck
) throws(StageError) -> Int {
    try check.rank(rewards, "rewards", is: 1, legend: "[2B]")
    guard rewards.count % 2 == 0 else {
        throw StageError(.invalidPair, stage: check.stage, argument: "rewards",
                         "expected an even number of rows (B chosen over B rejected), got shape \(describe(shape: rewards.shape))")
    }
    guard rewards.count > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "rewards",
                         "expected at least one chosen/rejected pair, got shape \(describe(shape: rewards.shape))")
    }
    let batchSize = rewards.count / 2
    if let margin {
        try check.rank(margin, "margin", is: 1, legend: "[B]")
        try check.shape(margin, "margin", equals: [batchSize], sameAs: "[B] with B = \(batchSize) pairs in rewards \(describe(shape: rewards.shape))")
    }
    if let centerRewardsCoefficient {
        try check.finite("center_rewards_coefficient", centerRewardsCoefficient)
    }
    try check.noNaN(rewards, "rewards")
    if let margin {
        try check.noNaN(margin, "margin")
    }
    return batchSize
}
