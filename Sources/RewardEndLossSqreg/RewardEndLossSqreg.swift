import TensorCore

/// align-anything's reward-model loss and what it reports.
public struct RewardEndLossSqregResult<T: FloatScalar>: Sendable {
    /// mean_i softplus(-(h_i - l_i)), plus the square regularizer when λ > 0. Shape [].
    public var loss: T
    /// h: the better answers' end scores, `end_scores[:B]`. Shape [B].
    public var higherEndReward: Tensor<T>
    /// l: the worse answers' end scores, `end_scores[B:]`. Shape [B].
    public var lowerEndReward: Tensor<T>
    /// #{i : h_i > l_i} / B (strict: a tie counts as wrong). Shape [].
    public var accuracy: T
    /// Each pair's softplus(-(h_i - l_i)). Shape [B]; for a reader.
    public var pairLosses: Tensor<T>

    @inlinable
    public init(loss: T, higherEndReward: Tensor<T>, lowerEndReward: Tensor<T>, accuracy: T, pairLosses: Tensor<T>) {
        self.loss = loss
        self.higherEndReward = higherEndReward
        self.lowerEndReward = lowerEndReward
        self.accuracy = accuracy
        self.pairLosses = pairLosses
    }
}

/// The pairwise loss on end scores, with align-anything's square regularizer.
///
/// ```
/// h = end_scores[:B] (better),   l = end_scores[B:] (worse)
/// loss = (1/B) Σ_i softplus(-(h_i - l_i))                       (= -mean log σ(h - l))
///      + [λ > 0] · λ · (1/(2B)) Σ_i (h_i² + l_i²)               (mean of all 2B squares)
/// accuracy = #{i : h_i > l_i} / B
/// ```
///
/// Shapes: `endScores` [2B] float, the B better rows first, then the B worse ones,
/// as align-anything's `PreferenceCollator` stacks them -> `loss` [],
/// `higher_end_reward`, `lower_end_reward` [B], `accuracy` [].
///
/// One score per sequence (its end score, see `rewardEndScoresAttn`), not a
/// per-token window. The regularizer is the mean of every squared end score; it
/// pulls the scores toward 0 so only their difference carries meaning.
///
/// Quirks kept from the peer:
/// - λ ≤ 0 adds nothing: the peer adds the term only `if regularization > 0`, so a
///   negative λ is ignored, not subtracted, and λ = 0 is no term at all.
/// - Ties count as wrong in the accuracy (strict `>`). It is the exact fraction
///   k/B rounded once to `T` (the peer computes it in float32).
///
/// Matches align-anything `align_anything/trainers/text_to_text/rm.py :: RMTrainer.loss`
/// (`regularization` 0.001 in `configs/train/text_to_text/rm.yaml`).
///
/// - Throws: ``StageError`` for `endScores` not of rank 1, an odd number of rows
///   (`invalidPair`; the peer fails to unpack or asserts the halves match), no row
///   at all (the mean would be 0/0), a non-finite λ, NaN in `endScores`, or a NaN
///   loss (`nonFiniteResult`; infinite scores of the same sign in one pair).
@inlinable
public func rewardEndLossSqreg<T: FloatScalar>(
    endScores: Tensor<T>,
    regularization: Double
) throws(StageError) -> RewardEndLossSqregResult<T> {
    let check = InputCheck(stage: "reward_end_loss_sqreg")
    let batchSize = try preferencePairCount(endScores, check)
    try check.finite("regularization", regularization)
    try check.noNaN(endScores, "end_scores")

    var higher = [T](), lower = [T](), pairLosses = [T]()
    var pairLossSum = 0.0, squareSum = 0.0
    var correct = 0
    for i in 0..<batchSize {
        let h = endScores.scalars[i], l = endScores.scalars[batchSize + i]
        // softplus(-x) as -logSigmoid(x): log(1 + e^-x) overflows to inf for
        // x < -88.7 in float32; -logSigmoid never exponentiates a positive number.
        let pairLoss = -logSigmoid(h - l)
        pairLosses.append(pairLoss)
        pairLossSum += Double(pairLoss)
        squareSum += Double(h * h) + Double(l * l)
        if h > l { correct += 1 }
        higher.append(h)
        lower.append(l)
    }
    var loss = T(pairLossSum) / T(batchSize)
    if regularization > 0 {
        loss = loss + T(regularization) * (T(squareSum) / T(2 * batchSize))
    }
    let result = RewardEndLossSqregResult(
        loss: loss, higherEndReward: Tensor.make([batchSize], higher), lowerEndReward: Tensor.make([batchSize], lower),
        accuracy: T(correct) / T(batchSize), pairLosses: Tensor.make([batchSize], pairLosses))
    try check.noNaNInResult(Tensor(scalar: result.loss), "loss")
    return result
}

/// The gradient of `rewardEndLossSqreg` with respect to the end scores.
///
/// ```
/// loss = (1/B) Σ_i softplus(-x_i) + [λ > 0]·λ/(2B) Σ_i (h_i² + l_i²),   x_i = h_i - l_i
/// d softplus(-x)/dx = -σ(-x)
/// ∂loss/∂h_i = -(1/B)·σ(-x_i) + [λ > 0]·λ·h_i/B
/// ∂loss/∂l_i = +(1/B)·σ(-x_i) + [λ > 0]·λ·l_i/B
/// ```
///
/// Shapes: as `rewardEndLossSqreg`; `grad_end_scores` [2B], the better rows first.
///
/// σ(-x) is the pair's weight: a pair ranked far the right way (x large) barely
/// moves, a pair ranked the wrong way moves by up to 1/B. The regularizer pulls
/// every score toward 0 in proportion to its size; with λ ≤ 0 it is absent.
///
/// - Throws: ``StageError`` as `rewardEndLossSqreg` does, and `nonFiniteResult`
///   where the gradient is NaN (an infinite score in a pair that ties at infinity).
@inlinable
public func rewardEndLossSqregGradEndScores<T: FloatScalar>(
    endScores: Tensor<T>, regularization: Double
) throws(StageError) -> Tensor<T> {
    _ = try rewardEndLossSqreg(endScores: endScores, regularization: regularization)  // the checks
    let check = InputCheck(stage: "reward_end_loss_sqreg")
    let batchSize = endScores.count / 2
    let perPair = T(1) / T(batchSize)
    let squareWeight: T = regularization > 0 ? T(regularization) / T(batchSize) : 0
    var grad = Tensor<T>(shape: endScores.shape, repeating: 0)
    for i in 0..<batchSize {
        let h = endScores.scalars[i], l = endScores.scalars[batchSize + i]
        let pairWeight = perPair * sigmoid(-(h - l))
        grad.scalars[i] = regularization > 0 ? -pairWeight + squareWeight * h : -pairWeight
        grad.scalars[batchSize + i] = regularization > 0 ? pairWeight + squareWeight * l : pairWeight
    }
    try check.noNaNInResult(grad, "grad_end_scores")
    return grad
}

/// B for a stacked [2B] batch of preference scores, after checking its rank, that
/// its rows pair up, and that there is at least one pair.
@inlinable
func preferencePairCount<T: FloatScalar>(_ scores: Tensor<T>, _ check: InputCheck) throws(StageError) -> Int {
    try check.rank(scores, "end_scores", is: 1, legend: "[2B]")
    guard scores.count % 2 == 0 else {
        throw StageError(.invalidPair, stage: check.stage, argument: "end_scores",
                         "expected an even number of rows (B better over B worse), got shape \(describe(shape: scores.shape))")
    }
    guard scores.count > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "end_scores",
                         "expected at least one better/worse pair, got shape \(describe(shape: scores.shape))")
    }
    return scores.count / 2
}
