import TensorCore

/// The outputs of ``orpoLoss(chosenLogProbs:rejectedLogProbs:chosenMask:rejectedMask:chosenNLLMask:beta:)``.
public struct ORPOLossResult<T: FloatScalar>: Sendable {
    /// a: each chosen completion's average token log-prob. Shape [B].
    public var chosenLogps: Tensor<T>
    /// b: each rejected completion's average token log-prob. Shape [B].
    public var rejectedLogps: Tensor<T>
    /// β · logσ(log_odds) per pair: ≤ 0, subtracted from the NLL. Shape [B].
    public var losses: Tensor<T>
    /// β · a, detached. Shape [B].
    public var chosenRewards: Tensor<T>
    /// β · b, detached. Shape [B].
    public var rejectedRewards: Tensor<T>
    /// mean_b logσ(log_odds_b), without β. Shape [].
    public var logOddsRatio: T
    /// mean_b log_odds_b. Shape [].
    public var logOddsChosen: T
    /// The token mean of -log p over `chosen_nll_mask` (prompt and completion). Shape [].
    public var nllLoss: T
    /// nll_loss - mean(losses). Shape [].
    public var loss: T
    /// The fraction of pairs with chosen_rewards > rejected_rewards (a tie counts
    /// as wrong). Shape [].
    public var rewardAccuracy: T

    @inlinable
    public init(chosenLogps: Tensor<T>, rejectedLogps: Tensor<T>, losses: Tensor<T>, chosenRewards: Tensor<T>,
                rejectedRewards: Tensor<T>, logOddsRatio: T, logOddsChosen: T, nllLoss: T, loss: T, rewardAccuracy: T) {
        self.chosenLogps = chosenLogps
        self.rejectedLogps = rejectedLogps
        self.losses = losses
        self.chosenRewards = chosenRewards
        self.rejectedRewards = rejectedRewards
        self.logOddsRatio = logOddsRatio
        self.logOddsChosen = logOddsChosen
        self.nllLoss = nllLoss
        self.loss = loss
        self.rewardAccuracy = rewardAccuracy
    }
}

/// Odds-ratio preference optimization (ORPO): supervised fine-tuning on the
/// chosen answer plus a penalty on the log odds ratio of chosen over rejected,
/// with no reference model.
///
/// ```
/// a[b] = Σ_t ℓ^w[b,t]·m^w[b,t] / Σ_t m^w[b,t]        (average token log-prob, chosen)
/// b[b] = Σ_t ℓ^l[b,t]·m^l[b,t] / Σ_t m^l[b,t]        (rejected)
/// L(v) = log(1 - e^v)  = log1p(-exp(v)) if v < -ln 2, else log(-expm1(v))
/// log_odds = (a - b) - (L(a) - L(b))                  (log[p_w/(1-p_w)] - log[p_l/(1-p_l)], p = e^avg)
/// losses   = β·logσ(log_odds)                         (≤ 0)
/// log_odds_ratio  = mean_b logσ(log_odds),   log_odds_chosen = mean_b log_odds
/// nll_loss = -Σ_{b,t} ℓ^w·n / Σ_{b,t} n               (n = chosen_nll_mask: prompt + completion)
/// loss     = nll_loss - mean_b(losses)
/// chosen_rewards = β·a,  rejected_rewards = β·b  (detached)
/// reward_accuracy = mean_b [chosen_rewards > rejected_rewards]
/// ```
///
/// Shapes: `chosen_log_probs`, `rejected_log_probs`, `chosen_mask`,
/// `rejected_mask`, `chosen_nll_mask` [B, T] -> `chosen_logps`, `rejected_logps`,
/// `losses`, `chosen_rewards`, `rejected_rewards` [B]; `log_odds_ratio`,
/// `log_odds_chosen`, `nll_loss`, `loss`, `reward_accuracy` [].
///
/// Masked: the averages run over the completion masks; the NLL over
/// `chosen_nll_mask`, which in TRL is every non-padding position of the chosen
/// row (`attention_mask[:, 1:]`), the prompt included. Means: the per-pair terms
/// over B; the NLL over every selected token of the batch.
///
/// Matches TRL `trl/experimental/orpo/orpo_trainer.py`: `ORPOTrainer.concatenated_forward`,
/// `odds_ratio_loss` with `log1mexp`, `get_batch_loss_metrics`. Quirks:
/// - TRL casts a and b to float32 before the odds ratio (so its rewards are
///   float32 too). This stage computes in the input's precision: for float32
///   inputs the cast changes nothing and the numbers are TRL's; for float64
///   inputs they are the formula without the cast (the spec's float64 rule), so
///   TRL run in float64 differs from them by about 1e-7 relative.
/// - `losses` keep TRL's sign (β·logσ ≤ 0), and the total subtracts their mean.
/// - Unlike CPO's, the NLL includes the prompt.
///
/// - Throws: ``StageError`` for shapes that do not agree or an empty batch, NaN
///   in an input, a mask that is not 0/1, a chosen or rejected row whose mask has
///   no 1 (0/0), a `chosen_nll_mask` with no 1, an average a or b ≥ 0 (the odds
///   p/(1-p) are undefined at p = 1: TRL returns inf or NaN), or any output that
///   comes out NaN or ±inf.
@inlinable
public func orpoLoss<T: FloatScalar>(
    chosenLogProbs: Tensor<T>, rejectedLogProbs: Tensor<T>, chosenMask: Tensor<Int64>, rejectedMask: Tensor<Int64>,
    chosenNLLMask: Tensor<Int64>, beta: Double = 0.1
) throws(StageError) -> ORPOLossResult<T> {
    let check = InputCheck(stage: "orpo_loss")
    let parts = try orpoAverages(check, chosenLogProbs, rejectedLogProbs, chosenMask, rejectedMask, chosenNLLMask, beta)
    let batchSize = chosenLogProbs.shape[0]
    let scale = T(beta)
    var logOdds = [T](), ratios = [T](), losses = [T]()
    for i in 0..<batchSize {
        let a = parts.chosen[i], b = parts.rejected[i]
        let odds = (a - b) - (log1mexp(a) - log1mexp(b))
        logOdds.append(odds)
        ratios.append(logSigmoid(odds))
        losses.append(scale * ratios[i])
    }
    let nllLoss = -maskedSum(chosenLogProbs.scalars, mask: chosenNLLMask.scalars).sum / T(parts.nllTokens)
    let meanLoss = T(losses.reduce(0.0) { $0 + Double($1) }) / T(batchSize)
    let chosenRewards = parts.chosen.map { scale * $0 }, rejectedRewards = parts.rejected.map { scale * $0 }
    let correct = (0..<batchSize).filter { chosenRewards[$0] > rejectedRewards[$0] }.count
    let result = ORPOLossResult(
        chosenLogps: Tensor.make([batchSize], parts.chosen), rejectedLogps: Tensor.make([batchSize], parts.rejected),
        losses: Tensor.make([batchSize], losses), chosenRewards: Tensor.make([batchSize], chosenRewards),
        rejectedRewards: Tensor.make([batchSize], rejectedRewards),
        logOddsRatio: T(ratios.reduce(0.0) { $0 + Double($1) }) / T(batchSize),
        logOddsChosen: T(logOdds.reduce(0.0) { $0 + Double($1) }) / T(batchSize),
        nllLoss: nllLoss, loss: nllLoss - meanLoss, rewardAccuracy: T(correct) / T(batchSize))
    try check.finiteOutput(result.chosenLogps, "chosen_logps")
    try check.finiteOutput(result.rejectedLogps, "rejected_logps")
    try check.finiteOutput(result.losses, "losses")
    try check.finiteOutput(result.chosenRewards, "chosen_rewards")
    try check.finiteOutput(result.rejectedRewards, "rejected_rewards")
    try check.finiteOutput(Tensor(scalar: result.logOddsRatio), "log_odds_ratio")
    try check.finiteOutput(Tensor(scalar: result.logOddsChosen), "log_odds_chosen")
    try check.finiteOutput(Tensor(scalar: result.nllLoss), "nll_loss")
    try check.finiteOutput(Tensor(scalar: result.loss), "loss")
    return result
}

/// The gradients of ``orpoLoss(chosenLogProbs:rejectedLogProbs:chosenMask:rejectedMask:chosenNLLMask:beta:)``.
public struct ORPOLossGradients<T: FloatScalar>: Sendable {
    /// ∂ loss / ∂ chosen_log_probs. Shape [B, T]; 0 where both the chosen mask
    /// and the NLL mask are 0.
    public var gradChosenLogProbs: Tensor<T>
    /// ∂ loss / ∂ rejected_log_probs. Shape [B, T]; 0 where the rejected mask is 0.
    public var gradRejectedLogProbs: Tensor<T>

    @inlinable
    public init(gradChosenLogProbs: Tensor<T>, gradRejectedLogProbs: Tensor<T>) {
        self.gradChosenLogProbs = gradChosenLogProbs
        self.gradRejectedLogProbs = gradRejectedLogProbs
    }
}

/// The backward pass of `orpoLoss`: d(loss) / d(per-token log-probs).
///
/// ```
/// L'(v) = -e^v / (1 - e^v),  so  ∂log_odds/∂a = 1 - L'(a) = 1/(1 - e^a) = -1/expm1(a)
///                                 ∂log_odds/∂b = -(1 - L'(b))          =  1/expm1(b)
/// ∂loss/∂log_odds_b = -(β/B)·σ(-log_odds_b)        (loss = nll - (β/B)·Σ logσ(log_odds))
///
/// grad_chosen_log_probs[b,t]   = -(β/B)·σ(-log_odds_b)·(-1/expm1(a_b))·m^w[b,t]/n^w_b - n[b,t]/Σ n
/// grad_rejected_log_probs[b,t] = -(β/B)·σ(-log_odds_b)·( 1/expm1(b_b))·m^l[b,t]/n^l_b
/// ```
///
/// Shapes: as `orpoLoss`; both gradients [B, T]. A chosen position gets the
/// odds-ratio part where `chosen_mask` is 1 and the NLL part where
/// `chosen_nll_mask` is 1; a position with neither gets 0. The rewards are
/// detached and pass nothing.
///
/// Why the odds ratio pushes hard near a = 0: 1/(1 - e^a) grows like -1/a, so an
/// answer the model already gives with probability near 1 is pulled further, a
/// known property of ORPO's odds (not a numerical problem: expm1 keeps it exact).
///
/// - Throws: ``StageError`` as `orpoLoss` does, and `nonFiniteResult` naming a
///   gradient that comes out NaN or ±inf.
@inlinable
public func orpoLossGradLogProbs<T: FloatScalar>(
    chosenLogProbs: Tensor<T>, rejectedLogProbs: Tensor<T>, chosenMask: Tensor<Int64>, rejectedMask: Tensor<Int64>,
    chosenNLLMask: Tensor<Int64>, beta: Double = 0.1
) throws(StageError) -> ORPOLossGradients<T> {
    _ = try orpoLoss(chosenLogProbs: chosenLogProbs, rejectedLogProbs: rejectedLogProbs, chosenMask: chosenMask,
                     rejectedMask: rejectedMask, chosenNLLMask: chosenNLLMask, beta: beta)  // the checks
    let check = InputCheck(stage: "orpo_loss")
    let parts = try orpoAverages(check, chosenLogProbs, rejectedLogProbs, chosenMask, rejectedMask, chosenNLLMask, beta)
    let batchSize = chosenLogProbs.shape[0], width = chosenLogProbs.shape[1]
    let scale = T(beta)
    var gradChosen = Tensor<T>(shape: chosenLogProbs.shape, repeating: 0)
    var gradRejected = Tensor<T>(shape: rejectedLogProbs.shape, repeating: 0)
    let perNLLToken = -1 / T(parts.nllTokens)
    for i in 0..<batchSize {
        let a = parts.chosen[i], b = parts.rejected[i]
        let odds = (a - b) - (log1mexp(a) - log1mexp(b))
        let dLossDOdds = -(scale / T(batchSize)) * sigmoid(-odds)
        let perChosenToken = dLossDOdds * (-1 / T.expm1(a)) / T(parts.chosenCounts[i])
        let perRejectedToken = dLossDOdds * (1 / T.expm1(b)) / T(parts.rejectedCounts[i])
        for t in 0..<width {
            var g: T = 0
            if chosenMask[i, t] != 0 { g += perChosenToken }
            if chosenNLLMask[i, t] != 0 { g += perNLLToken }
            gradChosen[i, t] = g
            if rejectedMask[i, t] != 0 { gradRejected[i, t] = perRejectedToken }
        }
    }
    try check.finiteOutput(gradChosen, "grad_chosen_log_probs")
    try check.finiteOutput(gradRejected, "grad_rejected_log_probs")
    return ORPOLossGradients(gradChosenLogProbs: gradChosen, gradRejectedLogProbs: gradRejected)
}

/// The checked inputs of ORPO and its averages: a and b per row, the counts
/// behind them, and the number of NLL tokens.
@inlinable
func orpoAverages<T: FloatScalar>(
    _ check: InputCheck, _ chosenLogProbs: Tensor<T>, _ rejectedLogProbs: Tensor<T>, _ chosenMask: Tensor<Int64>,
    _ rejectedMask: Tensor<Int64>, _ chosenNLLMask: Tensor<Int64>, _ beta: Double
) throws(StageError) -> (chosen: [T], rejected: [T], chosenCounts: [Int], rejectedCounts: [Int], nllTokens: Int) {
    try checkPairedTokenInputs(check, chosenLogProbs, rejectedLogProbs, chosenMask, rejectedMask)
    try check.shape(chosenNLLMask, "chosen_nll_mask", equals: chosenLogProbs.shape, sameAs: "chosen_log_probs")
    try check.binaryMask(chosenNLLMask, "chosen_nll_mask")
    try check.noNonFiniteDroppedByMask(chosenLogProbs.scalars, mask: chosenNLLMask.scalars, shape: chosenLogProbs.shape,
                                       "nll_loss", what: "chosen_log_probs")
    try check.finite("beta", beta)
    let chosen = maskedRowSums(chosenLogProbs, chosenMask), rejected = maskedRowSums(rejectedLogProbs, rejectedMask)
    for (side, rows) in [("chosen_mask", chosen), ("rejected_mask", rejected)] {
        if let empty = rows.counts.firstIndex(of: 0) {
            throw StageError(.emptyMask, stage: check.stage, argument: side,
                             "row \(empty) selects no completion token, and ORPO averages over them (0/0)")
        }
    }
    let nllTokens = chosenNLLMask.scalars.reduce(0) { $0 + Int($1) }
    guard nllTokens > 0 else {
        throw StageError(.emptyMask, stage: check.stage, argument: "chosen_nll_mask",
                         "selects no token, and the NLL is a token mean over it (0/0)")
    }
    let a = zip(chosen.sums, chosen.counts).map { $0 / T($1) }
    let b = zip(rejected.sums, rejected.counts).map { $0 / T($1) }
    for (side, averages) in [("chosen_log_probs", a), ("rejected_log_probs", b)] {
        if let bad = averages.firstIndex(where: { !($0 < 0) }) {
            throw StageError(.nonFiniteResult, stage: check.stage, argument: side,
                             "the average log-prob of row \(bad) is \(averages[bad]) ≥ 0: p = 1 has no odds "
                             + "p/(1-p) (TRL's log1mexp gives -inf or NaN)")
        }
    }
    return (a, b, chosen.counts, rejected.counts, nllTokens)
}
