import TensorCore

/// TRL CPO's `loss_type`, by TRL's names. SimPO is `simpo` with `cpo_alpha = 0`;
/// TRL's `"alphapo"` is config sugar for `simpo` with `cpo_alpha = 0` and an
/// `alpha`, so it is not a case here (set `alpha` instead).
public enum CPOLossType: String, Sendable, CaseIterable {
    /// cDPO on the summed log-probs: `-(1-ε)·logσ(βz) - ε·logσ(-βz)`.
    case sigmoid
    /// SLiC on the summed log-probs: `relu(1 - βz)`.
    case hinge
    /// IPO on the averaged log-probs: `(z - 1/(2β))²`.
    case ipo
    /// SimPO on the averaged log-probs: cDPO on `z - γ/β`.
    case simpo

    /// The loss type TRL calls `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `loss_type`,
    ///   under `stage`) for any other name, "alphapo" included.
    @inlinable
    public init(named name: String, stage: String) throws(StageError) {
        self = try peerSwitch(name, argument: "loss_type", stage: stage, note: "TRL's \"alphapo\" is simpo with cpo_alpha = 0 and alpha set")
    }

    /// Whether the sequence log-prob is the average over the completion tokens
    /// (ipo, simpo) rather than their sum (sigmoid, hinge).
    @inlinable
    public var averagesLogProbs: Bool { self == .ipo || self == .simpo }
}

/// The outputs of ``cpoLoss(chosenLogProbs:rejectedLogProbs:chosenMask:rejectedMask:lossType:beta:labelSmoothing:simpoGamma:cpoAlpha:alpha:)``.
public struct CPOLossResult<T: FloatScalar>: Sendable {
    /// Each chosen completion's log-prob: the sum over its tokens (sigmoid,
    /// hinge) or their average (ipo, simpo). Shape [B].
    public var chosenLogps: Tensor<T>
    /// The same for each rejected completion. Shape [B].
    public var rejectedLogps: Tensor<T>
    /// Each pair's preference loss, before the NLL term. Shape [B].
    public var losses: Tensor<T>
    /// β · chosen_logps, or β · R_w under AlphaPO; detached. Shape [B].
    public var chosenRewards: Tensor<T>
    /// β · rejected_logps, or β · R_l under AlphaPO; detached. Shape [B].
    public var rejectedRewards: Tensor<T>
    /// The token mean of -log p over every chosen completion token of the batch;
    /// 0 when `cpo_alpha = 0`. Shape [].
    public var nllLoss: T
    /// mean(losses) + cpo_alpha · nll_loss. Shape [].
    public var loss: T
    /// The fraction of pairs with chosen_rewards > rejected_rewards (a tie counts
    /// as wrong). Shape [].
    public var rewardAccuracy: T

    @inlinable
    public init(chosenLogps: Tensor<T>, rejectedLogps: Tensor<T>, losses: Tensor<T>, chosenRewards: Tensor<T>,
                rejectedRewards: Tensor<T>, nllLoss: T, loss: T, rewardAccuracy: T) {
        self.chosenLogps = chosenLogps
        self.rejectedLogps = rejectedLogps
        self.losses = losses
        self.chosenRewards = chosenRewards
        self.rejectedRewards = rejectedRewards
        self.nllLoss = nllLoss
        self.loss = loss
        self.rewardAccuracy = rewardAccuracy
    }
}

/// Contrastive preference optimization (CPO) and its reference-free relatives
/// SimPO and AlphaPO: a preference loss on the policy's own sequence log-probs,
/// plus an NLL term on the chosen completions.
///
/// ```
/// S_w[b] = Σ_t ℓ^w[b,t]·m^w[b,t]                          sigmoid, hinge: chosen_logps = S_w
/// n_w[b] = Σ_t m^w[b,t]                                   ipo, simpo:     chosen_logps = S_w / n_w
/// (rejected likewise, with ℓ^l and m^l)
///
/// alpha = 0:  R = logps                       alpha ≠ 0 (AlphaPO):  p = exp(logps)  (rounded to T)
///                                                                   R = (1 - p^(-alpha)) / alpha
/// z = R_w - R_l,   ε = label_smoothing
///
/// sigmoid:  losses = -(1-ε)·logσ(β·z) - ε·logσ(-β·z)             (cDPO; CPO when ε = 0)
/// simpo:    z ← z - simpo_gamma/β, then the sigmoid form          (= -logσ(β·z - γ) when ε = 0)
/// hinge:    losses = relu(1 - β·z)                                (ε ignored)
/// ipo:      losses = (z - 1/(2β))²                                (ε ignored)
///
/// nll_loss = -Σ_{b,t} ℓ^w·m^w / Σ_{b,t} m^w     (0, and not computed, when cpo_alpha = 0)
/// loss     = mean_b(losses) + cpo_alpha · nll_loss
/// chosen_rewards = β·R_w,  rejected_rewards = β·R_l  (detached)
/// reward_accuracy = mean_b [chosen_rewards > rejected_rewards]
/// ```
///
/// Shapes: `chosen_log_probs`, `rejected_log_probs`, `chosen_mask`,
/// `rejected_mask` [B, T] -> `chosen_logps`, `rejected_logps`, `losses`,
/// `chosen_rewards`, `rejected_rewards` [B]; `nll_loss`, `loss`,
/// `reward_accuracy` [].
///
/// Masked: a position with mask 0 (prompt, padding) adds nothing to a sum, a
/// count or the NLL. Means: `losses` over the B pairs; the NLL over every chosen
/// completion token of the batch (a token mean, so long answers weigh more); no
/// reference model anywhere, β alone scales the margin.
///
/// Matches TRL `trl/experimental/cpo/cpo_trainer.py`: `CPOTrainer.concatenated_forward`
/// (sums or averages, the NLL), `cpo_loss`, `get_batch_loss_metrics`. Quirks kept:
/// - hinge and ipo ignore `label_smoothing` (TRL only warns);
/// - SimPO's γ enters as `γ/β` subtracted from z, so γ is the absolute margin of
///   `β·z`; with ε > 0 the same γ shift is smoothed too;
/// - AlphaPO forms p = exp(logps) before the power, so a long completion's p
///   underflows to 0 (summed log-probs below about -745 in float64, -103 in
///   float32): with alpha > 0, R = (1 - inf)/alpha = -inf, refused here; with
///   alpha < 0, R saturates at 1/alpha, a finite number kept as TRL keeps it;
/// - unlike ORPO's, the NLL covers the completion only, not the prompt.
///
/// - Throws: ``StageError`` for shapes that do not agree or an empty batch, NaN
///   in an input, a mask that is not 0/1, `beta = 0` with ipo or simpo (they
///   divide by β), a row with no completion token under ipo or simpo (0/0), a
///   chosen mask with no 1 at all when `cpo_alpha ≠ 0` (the NLL is 0/0), a
///   non-finite AlphaPO reward R, or any output that comes out NaN or ±inf.
@inlinable
public func cpoLoss<T: FloatScalar>(
    chosenLogProbs: Tensor<T>, rejectedLogProbs: Tensor<T>, chosenMask: Tensor<Int64>, rejectedMask: Tensor<Int64>,
    lossType: CPOLossType = .sigmoid, beta: Double = 0.1, labelSmoothing: Double = 0, simpoGamma: Double = 0.5,
    cpoAlpha: Double = 1, alpha: Double = 0
) throws(StageError) -> CPOLossResult<T> {
    let check = InputCheck(stage: "cpo_loss")
    try checkPairedTokenInputs(check, chosenLogProbs, rejectedLogProbs, chosenMask, rejectedMask)
    for (name, value) in [("beta", beta), ("label_smoothing", labelSmoothing), ("simpo_gamma", simpoGamma),
                          ("cpo_alpha", cpoAlpha), ("alpha", alpha)] {
        try check.finite(name, value)
    }
    if lossType.averagesLogProbs && beta == 0 {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "beta",
                         "beta = 0 with loss_type \"\(lossType.rawValue)\", which divides by beta")
    }
    let batchSize = chosenLogProbs.shape[0]

    // 1. Sequence log-probs: sums, or averages over the completion tokens.
    let chosen = maskedRowSums(chosenLogProbs, chosenMask)
    let rejected = maskedRowSums(rejectedLogProbs, rejectedMask)
    if lossType.averagesLogProbs {
        for (side, rows) in [("chosen_mask", chosen), ("rejected_mask", rejected)] {
            if let empty = rows.counts.firstIndex(of: 0) {
                throw StageError(.emptyMask, stage: check.stage, argument: side,
                                 "row \(empty) selects no token, and loss_type \"\(lossType.rawValue)\" averages over them (0/0)")
            }
        }
    }
    let chosenLogps = lossType.averagesLogProbs ? zip(chosen.sums, chosen.counts).map { $0 / T($1) } : chosen.sums
    let rejectedLogps = lossType.averagesLogProbs ? zip(rejected.sums, rejected.counts).map { $0 / T($1) } : rejected.sums

    // 2. Rewards: the log-probs themselves, or AlphaPO's transform of them.
    let chosenR = try alphaPOReward(chosenLogps, alpha: alpha, check, "chosen_rewards")
    let rejectedR = try alphaPOReward(rejectedLogps, alpha: alpha, check, "rejected_rewards")

    // 3. Per-pair losses.
    let scale = T(beta)
    var losses = [T]()
    losses.reserveCapacity(batchSize)
    for b in 0..<batchSize {
        losses.append(cpoPairLoss(z: chosenR[b] - rejectedR[b], lossType: lossType, beta: beta,
                                  labelSmoothing: labelSmoothing, simpoGamma: simpoGamma))
    }

    // 4. NLL over every chosen completion token of the batch.
    var nllLoss: T = 0
    if cpoAlpha != 0 {
        let tokens = chosen.counts.reduce(0, +)
        guard tokens > 0 else {
            throw StageError(.emptyMask, stage: check.stage, argument: "chosen_mask",
                             "no chosen completion token in the batch, and cpo_alpha = \(cpoAlpha) needs the NLL (0/0)")
        }
        nllLoss = -maskedSum(chosenLogProbs.scalars, mask: chosenMask.scalars).sum / T(tokens)
    }

    // 5. Totals.
    let chosenRewards = chosenR.map { scale * $0 }, rejectedRewards = rejectedR.map { scale * $0 }
    let meanLoss = T(losses.reduce(0.0) { $0 + Double($1) }) / T(batchSize)
    let correct = (0..<batchSize).filter { chosenRewards[$0] > rejectedRewards[$0] }.count
    let result = CPOLossResult(
        chosenLogps: Tensor.make([batchSize], chosenLogps), rejectedLogps: Tensor.make([batchSize], rejectedLogps),
        losses: Tensor.make([batchSize], losses), chosenRewards: Tensor.make([batchSize], chosenRewards),
        rejectedRewards: Tensor.make([batchSize], rejectedRewards), nllLoss: nllLoss,
        loss: meanLoss + T(cpoAlpha) * nllLoss, rewardAccuracy: T(correct) / T(batchSize))
    try check.finiteOutput(result.chosenLogps, "chosen_logps")
    try check.finiteOutput(result.rejectedLogps, "rejected_logps")
    try check.finiteOutput(result.losses, "losses")
    try check.finiteOutput(result.chosenRewards, "chosen_rewards")
    try check.finiteOutput(result.rejectedRewards, "rejected_rewards")
    try check.finiteOutput(Tensor(scalar: result.nllLoss), "nll_loss")
    try check.finiteOutput(Tensor(scalar: result.loss), "loss")
    return result
}

/// The gradients of ``cpoLoss(chosenLogProbs:rejectedLogProbs:chosenMask:rejectedMask:lossType:beta:labelSmoothing:simpoGamma:cpoAlpha:alpha:)``.
public struct CPOLossGradients<T: FloatScalar>: Sendable {
    /// ∂ loss / ∂ chosen_log_probs. Shape [B, T]; 0 where the chosen mask is 0.
    public var gradChosenLogProbs: Tensor<T>
    /// ∂ loss / ∂ rejected_log_probs. Shape [B, T]; 0 where the rejected mask is 0.
    public var gradRejectedLogProbs: Tensor<T>

    @inlinable
    public init(gradChosenLogProbs: Tensor<T>, gradRejectedLogProbs: Tensor<T>) {
        self.gradChosenLogProbs = gradChosenLogProbs
        self.gradRejectedLogProbs = gradRejectedLogProbs
    }
}

/// The backward pass of `cpoLoss`: d(loss) / d(per-token log-probs).
///
/// ```
/// g_b = (1/B) · ∂losses_b/∂z_b:
///   sigmoid, simpo:  β · (-(1-ε)·σ(-x) + ε·σ(x)),   x = β·z (z after the γ shift)
///   hinge:           -β if 1 - β·z > 0, else 0      (relu passes nothing at 0)
///   ipo:             2·(z - 1/(2β))
/// ∂R/∂logps = 1 (alpha = 0), p^(-alpha) (AlphaPO: R = (1 - e^(-alpha·logps))/alpha)
/// ∂logps/∂ℓ[b,t] = m[b,t] (sums) or m[b,t]/n[b] (averages)
///
/// grad_chosen_log_probs[b,t]   =  g_b·∂R_w/∂logps·∂logps_w/∂ℓ[b,t] - cpo_alpha·m^w[b,t]/Σ m^w
/// grad_rejected_log_probs[b,t] = -g_b·∂R_l/∂logps·∂logps_l/∂ℓ[b,t]
/// ```
///
/// Shapes: as `cpoLoss`; both gradients [B, T], 0 at every masked position.
/// The rewards and the accuracy are detached and pass nothing.
///
/// - Throws: ``StageError`` as `cpoLoss` does, and `nonFiniteResult` naming a
///   gradient that comes out NaN or ±inf.
@inlinable
public func cpoLossGradLogProbs<T: FloatScalar>(
    chosenLogProbs: Tensor<T>, rejectedLogProbs: Tensor<T>, chosenMask: Tensor<Int64>, rejectedMask: Tensor<Int64>,
    lossType: CPOLossType = .sigmoid, beta: Double = 0.1, labelSmoothing: Double = 0, simpoGamma: Double = 0.5,
    cpoAlpha: Double = 1, alpha: Double = 0
) throws(StageError) -> CPOLossGradients<T> {
    let forward = try cpoLoss(chosenLogProbs: chosenLogProbs, rejectedLogProbs: rejectedLogProbs, chosenMask: chosenMask,
                              rejectedMask: rejectedMask, lossType: lossType, beta: beta, labelSmoothing: labelSmoothing,
                              simpoGamma: simpoGamma, cpoAlpha: cpoAlpha, alpha: alpha)  // the checks, the log-probs
    let batchSize = chosenLogProbs.shape[0], width = chosenLogProbs.shape[1]
    let chosenCounts = maskedRowSums(chosenLogProbs, chosenMask).counts
    let rejectedCounts = maskedRowSums(rejectedLogProbs, rejectedMask).counts
    let nllTokens = chosenCounts.reduce(0, +)
    var gradChosen = Tensor<T>(shape: chosenLogProbs.shape, repeating: 0)
    var gradRejected = Tensor<T>(shape: rejectedLogProbs.shape, repeating: 0)
    for b in 0..<batchSize {
        let chosenLogp = forward.chosenLogps.scalars[b], rejectedLogp = forward.rejectedLogps.scalars[b]
        let z = alphaPOReward(chosenLogp, alpha: alpha) - alphaPOReward(rejectedLogp, alpha: alpha)
        let g = cpoPairLossDerivative(z: z, lossType: lossType, beta: beta, labelSmoothing: labelSmoothing,
                                      simpoGamma: simpoGamma) / T(batchSize)
        let perChosenToken = g * alphaPORewardDerivative(chosenLogp, alpha: alpha)
            / (lossType.averagesLogProbs ? T(chosenCounts[b]) : 1)
        let perRejectedToken = -g * alphaPORewardDerivative(rejectedLogp, alpha: alpha)
            / (lossType.averagesLogProbs ? T(rejectedCounts[b]) : 1)
        for t in 0..<width {
            if chosenMask[b, t] != 0 {
                gradChosen[b, t] = perChosenToken
                    + (cpoAlpha != 0 ? -T(cpoAlpha) / T(nllTokens) : 0)
            }
            if rejectedMask[b, t] != 0 {
                gradRejected[b, t] = perRejectedToken
            }
        }
    }
    let check = InputCheck(stage: "cpo_loss")
    try check.finiteOutput(gradChosen, "grad_chosen_log_probs")
    try check.finiteOutput(gradRejected, "grad_rejected_log_probs")
    return CPOLossGradients(gradChosenLogProbs: gradChosen, gradRejectedLogProbs: gradRejected)
}

// MARK: - The pieces

/// One pair's loss from its margin z, by `lossType` (before the batch mean).
///
/// The constants are formed in Double and rounded once, as PyTorch rounds a
/// Python float meeting a tensor: γ/β, 1/(2β), 1 - ε.
@inlinable
func cpoPairLoss<T: FloatScalar>(z: T, lossType: CPOLossType, beta: Double, labelSmoothing: Double,
                                 simpoGamma: Double) -> T {
    let scale = T(beta)
    switch lossType {
    case .sigmoid, .simpo:
        let shifted = lossType == .simpo ? z - T(simpoGamma / beta) : z
        let x = scale * shifted
        return -logSigmoid(x) * T(1 - labelSmoothing) - logSigmoid(-x) * T(labelSmoothing)
    case .hinge:
        return max(1 - scale * z, 0)
    case .ipo:
        let d = z - T(1 / (2 * beta))
        return d * d
    }
}

/// ∂ cpoPairLoss / ∂ z.
///
/// ```
/// d/dx [-(1-ε)·logσ(x) - ε·logσ(-x)] = -(1-ε)·σ(-x) + ε·σ(x),   dx/dz = β
/// ```
@inlinable
func cpoPairLossDerivative<T: FloatScalar>(z: T, lossType: CPOLossType, beta: Double, labelSmoothing: Double,
                                           simpoGamma: Double) -> T {
    let scale = T(beta)
    switch lossType {
    case .sigmoid, .simpo:
        let shifted = lossType == .simpo ? z - T(simpoGamma / beta) : z
        let x = scale * shifted
        return scale * (-T(1 - labelSmoothing) * sigmoid(-x) + T(labelSmoothing) * sigmoid(x))
    case .hinge:
        return 1 - scale * z > 0 ? -scale : 0
    case .ipo:
        return 2 * (z - T(1 / (2 * beta)))
    }
}

/// AlphaPO's reward of one sequence log-prob, or the log-prob itself when alpha = 0.
///
/// ```
/// p = exp(logp)                   rounded to T first, as TRL forms it
/// R = (1 - p^(-alpha)) / alpha    (→ logp as alpha → 0)
/// ```
@inlinable
func alphaPOReward<T: FloatScalar>(_ logp: T, alpha: Double) -> T {
    guard alpha != 0 else { return logp }
    let p = T.exp(logp)
    return (1 - T.pow(p, T(-alpha))) / T(alpha)
}

/// ∂R/∂logp: 1 when alpha = 0, else p^(-alpha), since R = (1 - e^(-alpha·logp))/alpha.
@inlinable
func alphaPORewardDerivative<T: FloatScalar>(_ logp: T, alpha: Double) -> T {
    guard alpha != 0 else { return 1 }
    return T.pow(T.exp(logp), T(-alpha))
}

/// The rewards R of one side, refusing a non-finite one under AlphaPO (p = 0
/// for alpha > 0 gives 0^(-alpha) = inf; p = inf for alpha < 0 likewise).
@inlinable
func alphaPOReward<T: FloatScalar>(_ logps: [T], alpha: Double, _ check: InputCheck, _ output: String) throws(StageError) -> [T] {
    let rewards = logps.map { alphaPOReward($0, alpha: alpha) }
    if alpha != 0, let bad = rewards.firstIndex(where: { !$0.isFinite }) {
        throw StageError(.nonFiniteResult, stage: check.stage, argument: output,
                         "the AlphaPO reward (1 - p^(-alpha))/alpha is \(rewards[bad]) at row \(bad): "
                         + "p = exp(\(logps[bad])) = \(T.exp(logps[bad])) with alpha = \(alpha)")
    }
    return rewards
}

/// Per row of a [B, T] tensor: Σ_t x[b,t] over the positions the 0/1 mask keeps
/// (accumulated in Double, rounded once) and how many it keeps.
@inlinable
func maskedRowSums<T: FloatScalar>(_ x: Tensor<T>, _ mask: Tensor<Int64>) -> (sums: [T], counts: [Int]) {
    var sums = [T](), counts = [Int]()
    let width = x.shape[1]
    for b in 0..<x.shape[0] {
        let (sum, count) = maskedSum(Array(x.scalars[(b * width)..<((b + 1) * width)]),
                                     mask: Array(mask.scalars[(b * width)..<((b + 1) * width)]))
        sums.append(sum)
        counts.append(count)
    }
    return (sums, counts)
}

/// The input checks of the per-token preference stages (cpo_loss, orpo_loss):
/// four [B, T] tensors of one shape, B ≥ 1, no NaN, 0/1 masks, and no ±inf
/// where a mask is 0 (the peer's `Σ ℓ·m` would make it inf · 0 = NaN).
@inlinable
func checkPairedTokenInputs<T: FloatScalar>(
    _ check: InputCheck, _ chosen: Tensor<T>, _ rejected: Tensor<T>, _ chosenMask: Tensor<Int64>,
    _ rejectedMask: Tensor<Int64>
) throws(StageError) {
    try check.rank(chosen, "chosen_log_probs", is: 2, legend: "[B, T]")
    try check.shape(rejected, "rejected_log_probs", equals: chosen.shape, sameAs: "chosen_log_probs")
    try check.shape(chosenMask, "chosen_mask", equals: chosen.shape, sameAs: "chosen_log_probs")
    try check.shape(rejectedMask, "rejected_mask", equals: chosen.shape, sameAs: "chosen_log_probs")
    guard chosen.shape[0] > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "chosen_log_probs",
                         "expected at least one pair, got shape \(describe(shape: chosen.shape))")
    }
    try check.noNaN(chosen, "chosen_log_probs")
    try check.noNaN(rejected, "rejected_log_probs")
    try check.binaryMask(chosenMask, "chosen_mask")
    try check.binaryMask(rejectedMask, "rejected_mask")
    try check.noNonFiniteDroppedByMask(chosen.scalars, mask: chosenMask.scalars, shape: chosen.shape, "chosen_logps",
                                       what: "chosen_log_probs")
    try check.noNonFiniteDroppedByMask(rejected.scalars, mask: rejectedMask.scalars, shape: rejected.shape,
                                       "rejected_logps", what: "rejected_log_probs")
}

extension InputCheck {
    /// Throws `nonFiniteResult` at the first NaN or ±inf of a computed output: the
    /// zoo stages refuse every non-finite forward output (spec v1.1-zoo, errors).
    @inlinable
    func finiteOutput<T: FloatScalar>(_ tensor: Tensor<T>, _ output: String) throws(StageError) {
        if let flat = tensor.scalars.firstIndex(where: { !$0.isFinite }) {
            throw StageError(.nonFiniteResult, stage: stage, argument: output,
                             "\(tensor.scalars[flat]) at index \(describe(shape: tensor.index(ofFlat: flat)))")
        }
    }
}
