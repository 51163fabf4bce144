import TensorCore

/// TRL's `loss_type` of `GRPOConfig`: the per-token loss and how it is reduced.
public enum GRPOLossType: String, CaseIterable, Sendable {
    /// Clipped surrogate; mean over rows of each row's token mean (the GRPO paper), then /GA.
    case grpo
    /// Clipped surrogate; token mean over the local batch, then /GA.
    case bnpo
    /// Clipped surrogate; sum over B·max_completion_length (Dr. GRPO, no length bias), then /GA.
    case drGRPO = "dr_grpo"
    /// Clipped surrogate; sum over the global active-token count, no /GA (TRL's default).
    case dapo
    /// CISPO (MiniMax-M1): −sg(min(ρ, ε_high))·A·log π, reduced as dapo.
    case cispo
    /// SAPO: a soft sigmoid gate instead of the clip, reduced as grpo.
    case sapo
    /// LUSPO: the mean of loss × sequence length over all entries, then /GA.
    case luspo
    /// VESPO: −sg(φ(w))·A·log π with a gamma-shaped sequence weight φ, reduced as dapo.
    case vespo

    /// The loss types built on the clipped ratio; only they report clip metrics.
    @inlinable
    public var clips: Bool { [.grpo, .bnpo, .drGRPO, .dapo, .luspo].contains(self) }
}

/// TRL's `importance_sampling_level`.
public enum ImportanceSamplingLevel: String, CaseIterable, Sendable {
    /// One ratio per token: ρ = exp(d).
    case token
    /// One ratio per sequence (GSPO): ρ_b = exp(Σ_t d·m / max(Σ_t m, 1)).
    case sequence
}

/// The params of `grpo_loss`, with TRL's `GRPOConfig` defaults.
public struct GRPOLossConfig: Sendable {
    /// `loss_type` ("dapo").
    public var lossType: GRPOLossType = .dapo
    /// `epsilon` (0.2): ε_l, the lower clip 1 − ε_l.
    public var epsilon: Double = 0.2
    /// `epsilon_high` (nil = `epsilon`): ε_h, the upper clip 1 + ε_h; cispo's absolute cap on ρ.
    public var epsilonHigh: Double? = nil
    /// `delta` (nil): INTELLECT-2's cap on the unclipped ratio.
    public var delta: Double? = nil
    /// `beta` (0.0): the KL coefficient.
    public var beta: Double = 0
    /// `importance_sampling_level` ("token").
    public var importanceSamplingLevel: ImportanceSamplingLevel = .token
    /// `max_completion_length` (512): dr_grpo's constant normaliser.
    public var maxCompletionLength: Int = 512
    /// `use_bias_correction_kl` (false): multiply the KL by ρ (not detached).
    public var useBiasCorrectionKL: Bool = false
    /// `sapo_temperature_pos` (1.0), `sapo_temperature_neg` (1.05).
    public var sapoTemperaturePos: Double = 1.0
    public var sapoTemperatureNeg: Double = 1.05
    /// `vespo_k_pos` (2.0), `vespo_lambda_pos` (3.0), `vespo_k_neg` (3.0), `vespo_lambda_neg` (2.0).
    public var vespoKPos: Double = 2.0
    public var vespoLambdaPos: Double = 3.0
    public var vespoKNeg: Double = 3.0
    public var vespoLambdaNeg: Double = 2.0
    /// `gradient_accumulation_steps` (1): GA, the divisor of grpo, bnpo, dr_grpo, sapo, luspo.
    public var gradientAccumulationSteps: Int = 1
    /// `num_items_in_batch` (nil = Σ mask): dapo's, cispo's and vespo's normaliser.
    public var numItemsInBatch: Double? = nil

    public init(lossType: GRPOLossType = .dapo, epsilon: Double = 0.2, epsilonHigh: Double? = nil,
                delta: Double? = nil, beta: Double = 0, importanceSamplingLevel: ImportanceSamplingLevel = .token,
                maxCompletionLength: Int = 512, useBiasCorrectionKL: Bool = false,
                sapoTemperaturePos: Double = 1.0, sapoTemperatureNeg: Double = 1.05,
                vespoKPos: Double = 2.0, vespoLambdaPos: Double = 3.0, vespoKNeg: Double = 3.0,
                vespoLambdaNeg: Double = 2.0, gradientAccumulationSteps: Int = 1, numItemsInBatch: Double? = nil) {
        self.lossType = lossType
        self.epsilon = epsilon
        self.epsilonHigh = epsilonHigh
        self.delta = delta
        self.beta = beta
        self.importanceSamplingLevel = importanceSamplingLevel
        self.maxCompletionLength = maxCompletionLength
        self.useBiasCorrectionKL = useBiasCorrectionKL
        self.sapoTemperaturePos = sapoTemperaturePos
        self.sapoTemperatureNeg = sapoTemperatureNeg
        self.vespoKPos = vespoKPos
        self.vespoLambdaPos = vespoLambdaPos
        self.vespoKNeg = vespoKNeg
        self.vespoLambdaNeg = vespoLambdaNeg
        self.gradientAccumulationSteps = gradientAccumulationSteps
        self.numItemsInBatch = numItemsInBatch
    }

    /// ε_h: `epsilon_high`, or `epsilon` when it is not set.
    @inlinable
    public var resolvedEpsilonHigh: Double { epsilonHigh ?? epsilon }

    /// Whether the policy term has one value per sequence ([B, 1]): sequence-level
    /// ratios through a loss type that does not multiply by the per-token log-probs.
    @inlinable
    public var policyTermPerSequence: Bool {
        importanceSamplingLevel == .sequence && lossType != .cispo && lossType != .vespo
    }
}

/// `grpo_loss`'s outputs and the per-token terms a reader wants to see.
public struct GRPOLossResult<T: FloatScalar>: Sendable {
    /// The reduced loss, after the /GA rules. Shape [].
    public var loss: T
    /// Σ k·m / max(Σ m, 1), the logged KL; nil when beta = 0. Shape [].
    public var kl: T?
    /// Clip metrics (clipping loss types only; nil otherwise), after the delta cap. Shape [].
    public var clipRatioLow: T?
    public var clipRatioHigh: T?
    public var clipRatioRegion: T?
    /// ρ = exp(w): [B, T] at token level, [B, 1] at sequence level (before the delta cap).
    public var importanceRatios: Tensor<T>
    /// The per-token loss q (policy term + beta·k), broadcast to [B, T], before the mask.
    public var tokenLosses: Tensor<T>

    @inlinable
    public init(loss: T, kl: T?, clipRatioLow: T?, clipRatioHigh: T?, clipRatioRegion: T?,
                importanceRatios: Tensor<T>, tokenLosses: Tensor<T>) {
        self.loss = loss
        self.kl = kl
        self.clipRatioLow = clipRatioLow
        self.clipRatioHigh = clipRatioHigh
        self.clipRatioRegion = clipRatioRegion
        self.importanceRatios = importanceRatios
        self.tokenLosses = tokenLosses
    }
}

/// TRL's GRPO loss family: eight loss types, token- or sequence-level importance
/// sampling, the k3 KL penalty, and the clip metrics.
///
/// ```
/// d = log_probs − old_log_probs,  m = mask,  n_b = Σ_t m[b,t],  N = Σ_b n_b,  A_b = advantages[b]
/// w = d (token)  or  w_b = Σ_t d·m / max(n_b, 1) (sequence, [B,1]);   ρ = exp(w), no clamp
/// k = exp(ref − lp) − (ref − lp) − 1;   with use_bias_correction_kl: k ← k·ρ   (beta ≠ 0)
/// grpo, bnpo, dr_grpo, dapo, luspo:
///     ρc = clamp(ρ, 1 − ε_l, 1 + ε_h);  ρ ← min(ρ, delta) if delta is set;  q = −min(ρ·A, ρc·A)
/// cispo:  q = −c·A·lp,  c = sg(min(ρ, ε_h))                      (ε_h an absolute cap)
/// sapo:   q = −(σ(τ·(ρ − 1))·4/τ)·A,  τ = sapo_temperature_pos if A > 0 else _neg
/// vespo:  q = −sg(φ_b)·A·lp,  S_b = Σ_t clamp(d, −20, 20)·m,  ℓ = clamp(S_b, ln 1e-8, 20),
///         φ = exp(λ + k·ℓ − λ·e^ℓ)  (NaN/±inf → 0),  (k, λ) by the sign of A, λ ≥ 1e-4
/// q ← q + beta·k
/// loss: grpo, sapo  mean_b(Σ_t q·m / max(n_b, 1)) / GA       bnpo     Σ q·m / max(N, 1) / GA
///       dr_grpo     Σ q·m / (B·max_completion_length) / GA   dapo, cispo, vespo  Σ q·m / max(num_items_in_batch ?? N, 1)
///       luspo       mean over all entries of q·n_b / GA    ([B,1] q: over B; [B,T] q: over B·T, padding included)
/// kl = Σ k·m / max(N, 1);   clip_ratio_low = [ρ < 1 − ε_l ∧ A < 0], _high = [ρ > 1 + ε_h ∧ A > 0],
///   _region = either, each Σ x·m / max(N, 1) (token) or mean over B (sequence), ρ after the delta cap
///   (with T = 1 every metric is the unmasked mean over B: see the quirks)
/// ```
///
/// Shapes: `logProbs`, `oldLogProbs`, `refLogProbs` [B, T] float, `advantages` [B]
/// float, `mask` [B, T] 0/1 -> every output []. A fully masked row or batch is no
/// error: every normaliser is at least 1, so its loss is 0.
///
/// Matches TRL `trl/trainer/grpo_trainer.py :: GRPOTrainer._compute_loss` (one
/// process, training, no vLLM correction, no off-policy or entropy mask, no entropy
/// bonus) and `GRPOTrainer.get_gamma_weights` for vespo. Quirks of the peer,
/// reproduced:
/// - cispo's `epsilon_high` is an absolute cap on ρ (TRL recommends 5.0), not 1 + ε_h;
/// - the delta cap applies after ρc was taken, and it changes the clip metrics;
/// - luspo at token level averages over padding (no mask), and divides by GA;
/// - vespo's weight uses the token-level *sum* of log-ratios at either level;
/// - dapo (the default) divides by a global token count and not by GA;
/// - the metrics' helper (`global_masked_mean`) tells a per-sequence tensor by its single
///   column, so with T = 1 the `kl` and clip metrics are unmasked means over B even at
///   token level (a masked row counts); the spec's masked formula differs only there;
/// - sapo's and vespo's per-sign tables are float32 in TRL (a float64 run differs by ~1e-7).
///
/// - Throws: ``StageError`` for shapes that do not agree (`advantages` not of length
///   B), an empty batch, NaN in an input, a mask that is not 0/1, `beta ≠ 0` without
///   `refLogProbs`, dr_grpo with `max_completion_length ≤ 0`,
///   `gradient_accumulation_steps < 1`, a non-finite param, or an output that comes
///   out NaN or infinite (an overflowed ratio, infinite inputs).
@inlinable
public func grpoLoss<T: FloatScalar>(
    logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>, mask: Tensor<Int64>,
    refLogProbs: Tensor<T>? = nil, config: GRPOLossConfig = GRPOLossConfig()
) throws(StageError) -> GRPOLossResult<T> {
    let check = InputCheck(stage: "grpo_loss")
    try checkGRPOLossInputs(check, logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                            mask: mask, refLogProbs: refLogProbs, config: config)
    let parts = grpoParts(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                          refLogProbs: refLogProbs, config: config)
    let (rows, columns) = (parts.rows, parts.columns)
    let m = mask.scalars
    let q = parts.tokenLosses

    // Reduction, in the peer's order of operations.
    let ga = T(config.gradientAccumulationSteps)
    let loss: T
    switch config.lossType {
    case .grpo, .sapo:
        var rowMeans: T = 0
        for b in 0..<rows {
            var rowSum: T = 0
            for t in 0..<columns { rowSum += q[b * columns + t] * T(m[b * columns + t]) }
            rowMeans += rowSum / T(max(parts.rowCounts[b], 1))
        }
        loss = rowMeans / T(rows) / ga
    case .bnpo:
        loss = maskedTotal(q, m) / T(max(parts.tokenCount, 1)) / ga
    case .drGRPO:
        loss = maskedTotal(q, m) / T(rows * config.maxCompletionLength) / ga
    case .dapo, .cispo, .vespo:
        loss = maskedTotal(q, m) / T(max(config.numItemsInBatch ?? Double(parts.tokenCount), 1))
    case .luspo:
        var sum: T = 0
        if parts.lossPerSequence {
            for b in 0..<rows { sum += q[b * columns] * T(parts.rowCounts[b]) }
            loss = sum / T(rows) / ga
        } else {
            for b in 0..<rows {
                for t in 0..<columns { sum += q[b * columns + t] * T(parts.rowCounts[b]) }
            }
            loss = sum / T(rows * columns) / ga
        }
    }

    // The metrics' mean: TRL's helper takes a tensor with one column for one value per
    // sequence, so with T = 1 it is the unmasked mean over B even at token level.
    let oneColumn = columns == 1
    var kl: T? = nil
    if let k = parts.kl {
        kl = oneColumn ? k.reduce(0, +) / T(rows) : maskedTotal(k, m) / T(max(parts.tokenCount, 1))
    }

    var low: T? = nil, high: T? = nil, region: T? = nil
    if config.lossType.clips {
        let lower = T(1 - config.epsilon), upper = T(1 + config.resolvedEpsilonHigh)
        var sums: (low: T, high: T, region: T) = (0, 0, 0)
        let perSequence = config.importanceSamplingLevel == .sequence || oneColumn
        for b in 0..<rows {
            let a = advantages.scalars[b]
            for t in 0..<(perSequence ? 1 : columns) {
                let rho = parts.cappedRatio(b, t)
                let isLow: T = rho < lower && a < 0 ? 1 : 0
                let isHigh: T = rho > upper && a > 0 ? 1 : 0
                let isRegion: T = isLow + isHigh > 0 ? 1 : 0
                let weight: T = perSequence ? 1 : T(m[b * columns + t])
                sums.low += isLow * weight
                sums.high += isHigh * weight
                sums.region += isRegion * weight
            }
        }
        let count = T(max(perSequence ? rows : parts.tokenCount, 1))
        (low, high, region) = (sums.low / count, sums.high / count, sums.region / count)
    }

    let result = GRPOLossResult(
        loss: loss, kl: kl, clipRatioLow: low, clipRatioHigh: high, clipRatioRegion: region,
        importanceRatios: Tensor.make([rows, parts.ratioColumns], parts.ratios),
        tokenLosses: Tensor.make(logProbs.shape, q))
    var outputs = [("loss", loss)]
    if let kl { outputs.append(("kl", kl)) }
    if let low, let high, let region {
        outputs += [("clip_ratio_low", low), ("clip_ratio_high", high), ("clip_ratio_region", region)]
    }
    try check.finiteScalars(outputs)
    return result
}

/// The gradient of `grpoLoss`'s `loss` with respect to `log_probs`.
///
/// ```
/// R[b,t]  = ∂loss/∂q[b,t] of the reduction (q broadcast to [B,T]):
///           grpo, sapo m/(max(n_b,1)·B·GA)   bnpo m/(max(N,1)·GA)   dr_grpo m/(B·L·GA)
///           dapo, cispo, vespo m/max(num_items, 1)   luspo n_b/(B·T·GA)  (every entry)
/// ∂q/∂ρ   clipping: −(s1·A·[ρ ≤ delta] + s2·A·[1 − ε_l ≤ ρ ≤ 1 + ε_h]),
///                   (s1, s2) = min's shares of (ρ'·A, ρc·A): (1,0), (½,½) at a tie, (0,1)
///         sapo:     −4·A·σ(1 − σ),  σ = σ(τ·(ρ − 1))
/// ∂k/∂ρ   = k_raw (bias correction);   ∂k/∂lp = (1 − exp(ref − lp))·(ρ with bias correction, else 1)
/// ∂L/∂ρ   = Σ over ρ's entries of R·(∂q/∂ρ + beta·∂k/∂ρ);   ∂L/∂w = ∂L/∂ρ · ρ
/// grad    = ∂L/∂w[b,t] (token)  or  ∂L/∂w_b · m[b,t]/max(n_b,1) (sequence)
///         + R·beta·∂k/∂lp  + R·(−c·A) (cispo)  or  R·(−φ·A) (vespo)   (c, φ detached)
/// ```
///
/// Shapes: as `grpoLoss`; `grad_log_probs` [B, T]. Ties and clamps follow PyTorch
/// autograd (a min splits half/half at a tie; a clamp passes on its closed
/// interval, including delta's one-sided `clamp(max:)`). A zero upstream
/// derivative is not multiplied by the ratio, so an overflowed ratio whose branch
/// the loss does not use contributes exactly 0 (autograd: 0·inf = NaN).
///
/// - Throws: ``StageError`` as `grpoLoss` does, and for a NaN gradient.
@inlinable
public func grpoLossGradLogProbs<T: FloatScalar>(
    logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>, mask: Tensor<Int64>,
    refLogProbs: Tensor<T>? = nil, config: GRPOLossConfig = GRPOLossConfig()
) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "grpo_loss")
    _ = try grpoLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                     refLogProbs: refLogProbs, config: config)
    let parts = grpoParts(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                          refLogProbs: refLogProbs, config: config)
    let (rows, columns) = (parts.rows, parts.columns)
    let m = mask.scalars
    let ga = T(config.gradientAccumulationSteps)

    // R[b,t]: how the reduction weighs each (broadcast) entry of q.
    var reduction = [T](repeating: 0, count: rows * columns)
    for b in 0..<rows {
        for t in 0..<columns {
            let i = b * columns + t, mask = T(m[i])
            switch config.lossType {
            case .grpo, .sapo: reduction[i] = mask / (T(max(parts.rowCounts[b], 1)) * T(rows) * ga)
            case .bnpo: reduction[i] = mask / (T(max(parts.tokenCount, 1)) * ga)
            case .drGRPO: reduction[i] = mask / (T(rows * config.maxCompletionLength) * ga)
            case .dapo, .cispo, .vespo:
                reduction[i] = mask / T(max(config.numItemsInBatch ?? Double(parts.tokenCount), 1))
            case .luspo: reduction[i] = T(parts.rowCounts[b]) / (T(rows * columns) * ga)
            }
        }
    }

    let lower = T(1 - config.epsilon), upper = T(1 + config.resolvedEpsilonHigh)
    let beta = T(config.beta)
    var towardRatio = [T](repeating: 0, count: parts.ratios.count)   // ∂L/∂ρ, one per ρ entry
    var gradient = [T](repeating: 0, count: rows * columns)
    for b in 0..<rows {
        let a = advantages.scalars[b]
        for t in 0..<columns {
            let i = b * columns + t, r = reduction[i]
            let j = parts.ratioIndex(b, t)
            let rho = parts.ratios[j]
            switch config.lossType {
            case .grpo, .bnpo, .drGRPO, .dapo, .luspo:
                let capped = parts.cappedRatio(b, t)
                let shares = minimumGradientShares(capped * a, clampToBounds(rho, lower, upper) * a)
                let throughCap: T = config.delta.map { rho <= T($0) ? 1 : 0 } ?? 1
                let inside: T = rho >= lower && rho <= upper ? 1 : 0
                let derivative = -(shares.toFirst * a * throughCap + shares.toSecond * a * inside)
                if r != 0 && derivative != 0 { towardRatio[j] += r * derivative }
            case .sapo:
                let tau = T(a > 0 ? config.sapoTemperaturePos : config.sapoTemperatureNeg)
                let s = sigmoid(tau * (rho - 1))
                let derivative = -a * 4 * s * (1 - s)
                if r != 0 && derivative != 0 { towardRatio[j] += r * derivative }
            case .cispo:
                let c = min(rho, T(config.resolvedEpsilonHigh))
                gradient[i] += r * (-c * a)
            case .vespo:
                gradient[i] += r * (-parts.vespoWeights[b] * a)
            }
            if config.beta != 0, let ref = refLogProbs, r != 0 {
                let x = ref.scalars[i] - logProbs.scalars[i]
                let direct = 1 - T.exp(x)
                if config.useBiasCorrectionKL {
                    gradient[i] += r * beta * direct * rho
                    let kRaw = (T.exp(x) - x) - 1
                    towardRatio[j] += r * beta * kRaw
                } else {
                    gradient[i] += r * beta * direct
                }
            }
        }
    }
    // Through ρ = exp(w) to the log-probs.
    for b in 0..<rows {
        switch config.importanceSamplingLevel {
        case .token:
            for t in 0..<columns where towardRatio[b * columns + t] != 0 {
                gradient[b * columns + t] += towardRatio[b * columns + t] * parts.ratios[b * columns + t]
            }
        case .sequence:
            guard towardRatio[b] != 0 else { continue }
            let perPosition = towardRatio[b] * parts.ratios[b] / T(max(parts.rowCounts[b], 1))
            for t in 0..<columns { gradient[b * columns + t] += perPosition * T(m[b * columns + t]) }
        }
    }
    let result = Tensor.make(logProbs.shape, gradient)
    try check.noNaNInResult(result, "grad_log_probs")
    return result
}

// MARK: - Pieces

/// The forward intermediates of `grpo_loss` shared by the loss and its gradient.
@usableFromInline
struct GRPOParts<T: FloatScalar> {
    @usableFromInline let rows: Int
    @usableFromInline let columns: Int
    @usableFromInline let rowCounts: [Int]
    @usableFromInline let tokenCount: Int
    /// ρ, flat: [B, T] at token level, [B, 1] at sequence level.
    @usableFromInline let ratios: [T]
    @usableFromInline let ratioColumns: Int
    /// delta, when set (the cap of the unclipped ratio).
    @usableFromInline let delta: T?
    /// k after the bias correction, [B, T]; nil when beta = 0.
    @usableFromInline let kl: [T]?
    /// vespo's detached φ_b, [B] (empty for the other loss types).
    @usableFromInline let vespoWeights: [T]
    /// q broadcast to [B, T].
    @usableFromInline let tokenLosses: [T]
    /// Whether q is one value per sequence ([B, 1] in the peer): luspo's mean then runs over B.
    @usableFromInline let lossPerSequence: Bool

    @inlinable
    init(rows: Int, columns: Int, rowCounts: [Int], tokenCount: Int, ratios: [T], ratioColumns: Int, delta: T?,
         kl: [T]?, vespoWeights: [T], tokenLosses: [T], lossPerSequence: Bool) {
        self.rows = rows
        self.columns = columns
        self.rowCounts = rowCounts
        self.tokenCount = tokenCount
        self.ratios = ratios
        self.ratioColumns = ratioColumns
        self.delta = delta
        self.kl = kl
        self.vespoWeights = vespoWeights
        self.tokenLosses = tokenLosses
        self.lossPerSequence = lossPerSequence
    }

    /// Where position (b, t)'s ratio lives in `ratios`.
    @inlinable
    func ratioIndex(_ b: Int, _ t: Int) -> Int { ratioColumns == 1 ? b : b * columns + t }

    /// ρ at (b, t) after the delta cap (`torch.clamp(coef_1, max=delta)`).
    @inlinable
    func cappedRatio(_ b: Int, _ t: Int) -> T {
        let rho = ratios[ratioIndex(b, t)]
        guard let delta else { return rho }
        return rho != rho ? rho : min(rho, delta)
    }
}

/// Steps 1–4 of `grpo_loss`: ρ, k, vespo's φ and the per-token loss q.
@inlinable
func grpoParts<T: FloatScalar>(
    logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>, mask: Tensor<Int64>,
    refLogProbs: Tensor<T>?, config: GRPOLossConfig
) -> GRPOParts<T> {
    let (rows, columns) = (logProbs.shape[0], logProbs.shape[1])
    let m = mask.scalars
    let lp = logProbs.scalars
    var d = [T](repeating: 0, count: rows * columns)
    for i in 0..<(rows * columns) { d[i] = lp[i] - oldLogProbs.scalars[i] }
    let rowCounts = (0..<rows).map { b in (0..<columns).reduce(0) { $0 + Int(m[b * columns + $1]) } }
    let tokenCount = rowCounts.reduce(0, +)

    // 1. Importance weight and ratio.
    let ratios: [T]
    let ratioColumns: Int
    switch config.importanceSamplingLevel {
    case .token:
        ratios = d.map { T.exp($0) }
        ratioColumns = columns
    case .sequence:
        ratios = (0..<rows).map { b in
            var sum: T = 0
            for t in 0..<columns { sum += d[b * columns + t] * T(m[b * columns + t]) }
            return T.exp(sum / T(max(rowCounts[b], 1)))
        }
        ratioColumns = 1
    }
    let ratioAt = { (b: Int, t: Int) -> T in ratioColumns == 1 ? ratios[b] : ratios[b * columns + t] }

    // 2. KL, k3 in TRL's order, with the bias correction.
    var kl: [T]? = nil
    if config.beta != 0, let ref = refLogProbs {
        var k = [T](repeating: 0, count: rows * columns)
        for b in 0..<rows {
            for t in 0..<columns {
                let i = b * columns + t
                let x = ref.scalars[i] - lp[i]
                k[i] = (T.exp(x) - x) - 1
                if config.useBiasCorrectionKL { k[i] = k[i] * ratioAt(b, t) }
            }
        }
        kl = k
    }

    // vespo's φ_b: from the token-level log-ratios' sum, whatever the level.
    var vespoWeights = [T]()
    if config.lossType == .vespo {
        let lowerClamp = T(Double.log(1e-8))
        vespoWeights = (0..<rows).map { b in
            var sum: T = 0
            for t in 0..<columns { sum += clampToBounds(d[b * columns + t], T(-20), T(20)) * T(m[b * columns + t]) }
            let logW = clampToBounds(sum, lowerClamp, T(20))
            let w = T.exp(logW)
            let nonNegative = advantages.scalars[b] >= 0
            let k = T(nonNegative ? config.vespoKPos : config.vespoKNeg)
            let lambda = max(T(nonNegative ? config.vespoLambdaPos : config.vespoLambdaNeg), T(1e-4))
            let phi = T.exp(lambda + k * logW - lambda * w)
            return phi.isFinite ? phi : 0   // nan_to_num(nan=0, posinf=0, neginf=0)
        }
    }

    // 3. The policy term, then 4. + beta·k, broadcast to [B, T].
    let lower = T(1 - config.epsilon), upper = T(1 + config.resolvedEpsilonHigh)
    let delta = config.delta.map { T($0) }
    let beta = T(config.beta)
    var q = [T](repeating: 0, count: rows * columns)
    for b in 0..<rows {
        let a = advantages.scalars[b]
        for t in 0..<columns {
            let i = b * columns + t, rho = ratioAt(b, t)
            var term: T
            switch config.lossType {
            case .grpo, .bnpo, .drGRPO, .dapo, .luspo:
                let clipped = clampToBounds(rho, lower, upper)
                let capped = delta.map { rho != rho ? rho : min(rho, $0) } ?? rho
                term = -minimumKeepingNaN(capped * a, clipped * a)
            case .cispo:
                let c = rho != rho ? rho : min(rho, T(config.resolvedEpsilonHigh))
                term = -c * a * lp[i]
            case .sapo:
                let tau = T(a > 0 ? config.sapoTemperaturePos : config.sapoTemperatureNeg)
                term = -(sigmoid(tau * (rho - 1)) * 4 / tau) * a
            case .vespo:
                term = -vespoWeights[b] * a * lp[i]
            }
            if let kl { term = term + beta * kl[i] }
            q[i] = term
        }
    }
    return GRPOParts(rows: rows, columns: columns, rowCounts: rowCounts, tokenCount: tokenCount, ratios: ratios,
                     ratioColumns: ratioColumns, delta: delta, kl: kl, vespoWeights: vespoWeights, tokenLosses: q,
                     lossPerSequence: config.policyTermPerSequence && config.beta == 0)
}

/// Σ x·m over every entry (the peer's `(x * mask).sum()`: a masked infinity gives NaN).
@inlinable
func maskedTotal<T: FloatScalar>(_ x: [T], _ m: [Int64]) -> T {
    var sum: T = 0
    for i in x.indices { sum += x[i] * T(m[i]) }
    return sum
}

/// The checks of `grpo_loss`, in the order the errors are listed.
@inlinable
func checkGRPOLossInputs<T: FloatScalar>(
    _ check: InputCheck, logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>,
    mask: Tensor<Int64>, refLogProbs: Tensor<T>?, config: GRPOLossConfig
) throws(StageError) {
    try check.rank(logProbs, "log_probs", is: 2, legend: "[B, T]")
    try check.shape(oldLogProbs, "old_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(mask, "mask", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(advantages, "advantages", equals: [logProbs.shape[0]], sameAs: "[B] from log_probs")
    if let ref = refLogProbs {
        try check.shape(ref, "ref_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    }
    try check.nonEmptyBatch(logProbs.shape, "log_probs")
    try check.noNaN(logProbs, "log_probs")
    try check.noNaN(oldLogProbs, "old_log_probs")
    try check.noNaN(advantages, "advantages")
    if let ref = refLogProbs { try check.noNaN(ref, "ref_log_probs") }
    try check.binaryMask(mask, "mask")
    let reals: [(String, Double?)] = [
        ("epsilon", config.epsilon), ("epsilon_high", config.epsilonHigh), ("delta", config.delta),
        ("beta", config.beta), ("sapo_temperature_pos", config.sapoTemperaturePos),
        ("sapo_temperature_neg", config.sapoTemperatureNeg), ("vespo_k_pos", config.vespoKPos),
        ("vespo_lambda_pos", config.vespoLambdaPos), ("vespo_k_neg", config.vespoKNeg),
        ("vespo_lambda_neg", config.vespoLambdaNeg), ("num_items_in_batch", config.numItemsInBatch),
    ]
    for (name, value) in reals {
        if let value { try check.finite(name, value) }
    }
    if config.beta != 0, refLogProbs == nil {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "ref_log_probs",
                         "beta = \(config.beta) ≠ 0 needs ref_log_probs [B, T], none given")
    }
    if config.lossType == .drGRPO, config.maxCompletionLength <= 0 {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "max_completion_length",
                         "max_completion_length = \(config.maxCompletionLength) must be > 0 for dr_grpo (its normaliser)")
    }
    if config.lossType == .drGRPO, config.maxCompletionLength > Int.max / max(logProbs.shape[0], 1) {
        throw StageError(.tooLarge, stage: check.stage, argument: "max_completion_length",
                         "B·max_completion_length overflows")
    }
    if config.gradientAccumulationSteps < 1 {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "gradient_accumulation_steps",
                         "gradient_accumulation_steps = \(config.gradientAccumulationSteps) must be >= 1")
    }
}
