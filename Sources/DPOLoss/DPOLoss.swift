import TensorCore

/// align-anything's DPO loss and the metrics it reports.
public struct DPOLossResult<T: FloatScalar>: Sendable {
    /// mean_i -log σ(β · (h_w,i - h_l,i)). Shape [].
    public var loss: T
    /// better_sample_reward + worse_sample_reward. Shape [B].
    public var reward: Tensor<T>
    /// β · h_w: the implicit reward of the preferred answer. Shape [B].
    public var betterSampleReward: Tensor<T>
    /// β · h_l: the implicit reward of the dispreferred answer. Shape [B].
    public var worseSampleReward: Tensor<T>
    /// The fraction of pairs with better_sample_reward > worse_sample_reward
    /// (strictly: a tie counts as wrong). Shape [].
    public var rewardAccuracy: T
    /// better_sample_reward - worse_sample_reward. Shape [B].
    public var rewardMargin: Tensor<T>
    /// Each pair's loss. Shape [B]; for a reader.
    public var pairLosses: Tensor<T>

    @inlinable
    public init(loss: T, reward: Tensor<T>, betterSampleReward: Tensor<T>, worseSampleReward: Tensor<T>, rewardAccuracy: T, rewardMargin: Tensor<T>, pairLosses: Tensor<T>) {
        self.loss = loss
        self.reward = reward
        self.betterSampleReward = betterSampleReward
        self.worseSampleReward = worseSampleReward
        self.rewardAccuracy = rewardAccuracy
        self.rewardMargin = rewardMargin
        self.pairLosses = pairLosses
    }
}

/// Direct preference optimization: the preference loss with the policy's own
/// log-ratio to the reference as the implicit reward.
///
/// ```
/// S(x)  = Σ_t x[t]                               (sequence log-prob; pads are 0)
/// h_w   = S(better_log_probs) - S(ref_better_log_probs)
/// h_l   = S(worse_log_probs)  - S(ref_worse_log_probs)
/// loss  = mean_i -log σ(β · (h_w,i - h_l,i))
/// better_sample_reward = β · h_w,   worse_sample_reward = β · h_l
/// reward = better + worse,          reward_margin = better - worse
/// reward_accuracy = mean_i [better_sample_reward_i > worse_sample_reward_i]
/// ```
///
/// Shapes: the four inputs [B, T] float, per-token log-probs of each answer,
/// zero-padded on the right -> `loss` [], `reward`, `better_sample_reward`,
/// `worse_sample_reward`, `reward_margin` [B], `reward_accuracy` [].
///
/// Sums, not means, over tokens: the padding zeros add nothing. The loss is a
/// mean over pairs. No reward model appears: β · log(π/π_ref) plays its part.
/// When the policy equals the reference, every h is 0 and the loss is ln 2.
///
/// Matches align-anything `trainers/text_to_text/dpo.py :: DPOTrainer.loss`
/// (`scale_coeff` is β). Its `compute_log_probs`, which builds the per-token
/// inputs, scores only the last R - 1 answer tokens; that window is the caller's.
///
/// Infinite log-probs give what PyTorch gives: an infinite sequence log-prob
/// makes its sample reward ±inf, the loss 0 or +inf, and the accuracy a plain
/// comparison. Where PyTorch gives NaN in an output the stage throws, naming the
/// first such output in the order above: `loss` (h = inf - inf, or β = 0 times
/// an infinite margin), `reward` (better + worse = inf - inf: one reward +inf,
/// the other -inf, while the loss is still 0 or inf), the two sample rewards,
/// `reward_margin`.
///
/// - Throws: ``StageError`` for shapes that do not agree, NaN in an input, or an
///   output that would be NaN (`nonFiniteResult` naming it and the index).
@inlinable
public func dpoLoss<T: FloatScalar>(
    betterLogProbs: Tensor<T>,
    worseLogProbs: Tensor<T>,
    refBetterLogProbs: Tensor<T>,
    refWorseLogProbs: Tensor<T>,
    beta: Double
) throws(StageError) -> DPOLossResult<T> {
    let check = InputCheck(stage: "dpo_loss")
    try check.rank(betterLogProbs, "better_log_probs", is: 2, legend: "[B, T]")
    let batchSize = betterLogProbs.shape[0]
    try check.rank(worseLogProbs, "worse_log_probs", is: 2, legend: "[B, T]")
    try check.shape(worseLogProbs, "worse_log_probs", equals: [batchSize, worseLogProbs.shape[1]],
                    sameAs: "[B, T] with B = \(batchSize) from better_log_probs \(describe(shape: betterLogProbs.shape))")
    try check.shape(refBetterLogProbs, "ref_better_log_probs", equals: betterLogProbs.shape, sameAs: "same as better_log_probs")
    try check.shape(refWorseLogProbs, "ref_worse_log_probs", equals: worseLogProbs.shape, sameAs: "same as worse_log_probs")
    guard batchSize > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "better_log_probs",
                         "expected at least one pair, got shape \(describe(shape: betterLogProbs.shape))")
    }
    try check.finite("beta", beta)
    try check.noNaN(betterLogProbs, "better_log_probs")
    try check.noNaN(worseLogProbs, "worse_log_probs")
    try check.noNaN(refBetterLogProbs, "ref_better_log_probs")
    try check.noNaN(refWorseLogProbs, "ref_worse_log_probs")

    let scale = T(beta)
    var betterRewards = [T](), worseRewards = [T](), pairLosses = [T]()
    var lossSum = 0.0
    for row in 0..<batchSize {
        let (betterLogRatio, worseLogRatio) = logRatios(row, betterLogProbs, worseLogProbs, refBetterLogProbs, refWorseLogProbs)
        let pairLoss = -logSigmoid(scale * (betterLogRatio - worseLogRatio))
        pairLosses.append(pairLoss)
        lossSum += Double(pairLoss)
        betterRewards.append(scale * betterLogRatio)
        worseRewards.append(scale * worseLogRatio)
    }
    let correct = (0..<batchSize).filter { betterRewards[$0] > worseRewards[$0] }.count
    let result = DPOLossResult(
        loss: T(lossSum) / T(batchSize),
        reward: Tensor.make([batchSize], (0..<batchSize).map { betterRewards[$0] + worseRewards[$0] }),
        betterSampleReward: Tensor.make([batchSize], betterRewards),
        worseSampleReward: Tensor.make([batchSize], worseRewards),
        rewardAccuracy: T(correct) / T(batchSize),
        rewardMargin: Tensor.make([batchSize], (0..<batchSize).map { betterRewards[$0] - worseRewards[$0] }),
        pairLosses: Tensor.make([batchSize], pairLosses)
    )
    // Every output, in the fixture's order. The two rewards are added and
    // subtracted apart from the loss: +inf and -inf give a NaN reward beside a loss
    // of 0. reward_accuracy counts comparisons and is never NaN.
    try check.noNaNInResult(result.loss, "loss", terms: result.pairLosses, "the pair loss")
    try check.noNaNInResult(result.reward, "reward")
    try check.noNaNInResult(result.betterSampleReward, "better_sample_reward")
    try check.noNaNInResult(result.worseSampleReward, "worse_sample_reward")
    try check.noNaNInResult(result.rewardMargin, "reward_margin")
    return result
}

/// The gradients of `dpoLoss` with respect to the policy's per-token log-probs.
public struct DPOLossGradients<T: FloatScalar>: Sendable {
    /// ∂ loss / ∂ better_log_probs. Shape [B, T].
    public var gradBetterLogProbs: Tensor<T>
    /// ∂ loss / ∂ worse_log_probs. Shape [B, T].
    public var gradWorseLogProbs: Tensor<T>

    @inlinable
    public init(gradBetterLogProbs: Tensor<T>, gradWorseLogProbs: Tensor<T>) {
        self.gradBetterLogProbs = gradBetterLogProbs
        self.gradWorseLogProbs = gradWorseLogProbs
    }
}

/// The gradient of `dpoLoss` with respect to the policy's log-probs (the reference
/// ones are constants).
///
/// ```
/// loss = (1/B) Σ_i -log σ(z_i),   z_i = β · (h_w,i - h_l,i),   h = Σ_t logπ - Σ_t logπ_ref
/// ∂ loss / ∂ better_log_probs[i, t] = -(β / B) · σ(-z_i)       for every t
/// ∂ loss / ∂ worse_log_probs[i, t]  = +(β / B) · σ(-z_i)       for every t
/// ```
///
/// Shapes: as `dpoLoss`; both gradients [B, T].
///
/// Every position of a row gets the same gradient, padding included, because the
/// sequence log-prob is a plain sum over T. σ(-z) is the weight: a pair the policy
/// already ranks far apart (z large) barely moves; a wrongly ranked pair moves by
/// up to β / B per token.
///
/// An infinite z gives σ(-z) = 0 or 1, a finite gradient, as autograd does;
/// a NaN z is already a NaN loss, which `dpoLoss` refuses.
///
/// - Throws: ``StageError`` as `dpoLoss` does (a NaN in any of its outputs
///   included), and `nonFiniteResult` naming a gradient that would be NaN.
@inlinable
public func dpoLossGradLogProbs<T: FloatScalar>(
    betterLogProbs: Tensor<T>, worseLogProbs: Tensor<T>, refBetterLogProbs: Tensor<T>, refWorseLogProbs: Tensor<T>,
    beta: Double
) throws(StageError) -> DPOLossGradients<T> {
    _ = try dpoLoss(betterLogProbs: betterLogProbs, worseLogProbs: worseLogProbs,
                    refBetterLogProbs: refBetterLogProbs, refWorseLogProbs: refWorseLogProbs, beta: beta)  // the checks
    let batchSize = betterLogProbs.shape[0]
    let scale = T(beta)
    var gradBetter = Tensor<T>(shape: betterLogProbs.shape, repeating: 0)
    var gradWorse = Tensor<T>(shape: worseLogProbs.shape, repeating: 0)
    for row in 0..<batchSize {
        let (betterLogRatio, worseLogRatio) = logRatios(row, betterLogProbs, worseLogProbs, refBetterLogProbs, refWorseLogProbs)
        let z = scale * (betterLogRatio - worseLogRatio)
        let weight = (T(1) / T(batchSize)) * sigmoid(-z) * scale
        for t in 0..<betterLogProbs.shape[1] { gradBetter[row, t] = -weight }
        for t in 0..<worseLogProbs.shape[1] { gradWorse[row, t] = weight }
    }
    let check = InputCheck(stage: "dpo_loss")
    try check.noNaNInResult(gradBetter, "grad_better_log_probs")
    try check.noNaNInResult(gradWorse, "grad_worse_log_probs")
    return DPOLossGradients(gradBetterLogProbs: gradBetter, gradWorseLogProbs: gradWorse)
}

/// h_w and h_l of one row: each sequence log-prob S(x) = Σ_t x[t] (accumulated in
/// Double, rounded once) minus the reference's.
@inlinable
func logRatios<T: FloatScalar>(
    _ row: Int, _ better: Tensor<T>, _ worse: Tensor<T>, _ refBetter: Tensor<T>, _ refWorse: Tensor<T>
) -> (better: T, worse: T) {
    func sequenceLogProb(_ x: Tensor<T>) -> T {
        T(x.row(row).reduce(0.0) { $0 + Double($1) })
    }
    return (sequenceLogProb(better) - sequenceLogProb(refBetter), sequenceLogProb(worse) - sequenceLogProb(refWorse))
}
