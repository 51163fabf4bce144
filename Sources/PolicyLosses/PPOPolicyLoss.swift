import TensorCore

/// OpenRLHF's `policy_loss_type`: how the importance ratio is formed.
public enum PolicyLossType: String, CaseIterable, Sendable {
    /// Token-level PPO: ρ_t = exp(clamp(d_t, −20, 20)).
    case ppo
    /// GSPO (Zheng et al., 2025): one ratio per sequence, exp of the mean log-ratio,
    /// always reduced at sample level.
    case gspo
}

/// The KL estimator of the KL-loss term (OpenRLHF's `kl_estimator`): k1 = r,
/// k2 = r²/2, k3 = (e^(−r) − 1) + r with r = log_probs − ref_log_probs.
///
/// It is the `kl_estimators` stage's switch (KLControl's `KLEstimator`), repeated
/// here so that this module builds on its own while both are written; the lead
/// replaces it with KLControl's type once both are merged.
public enum PolicyKLEstimator: String, CaseIterable, Sendable {
    case k1, k2, k3
}

/// The params of `ppo_policy_loss`, with OpenRLHF's defaults.
public struct PPOPolicyLossConfig: Sendable {
    /// `policy_loss_type` ("ppo").
    public var policyLossType: PolicyLossType = .ppo
    /// `clip_eps_low` (0.2): the ratio's lower clip bound is 1 − clip_eps_low.
    public var clipEpsLow: Double = 0.2
    /// `clip_eps_high` (0.2): the ratio's upper clip bound is 1 + clip_eps_high.
    public var clipEpsHigh: Double = 0.2
    /// `dual_clip` (nil): with c set, a token with A < 0 loses at most −c·A. Must be > 1.
    public var dualClip: Double? = nil
    /// `token_level_loss` (true): token mean over the batch; false: mean over rows of row means.
    /// `gspo` ignores it (always sample level).
    public var tokenLevelLoss: Bool = true
    /// `use_kl_loss` (false): add `kl_coef` · (token mean of the KL estimate).
    public var useKLLoss: Bool = false
    /// `kl_coef` (0.01): gates the KL term (> 0) and scales it.
    public var klCoef: Double = 0.01
    /// `kl_estimator` ("k1").
    public var klEstimator: PolicyKLEstimator = .k1

    public init(policyLossType: PolicyLossType = .ppo, clipEpsLow: Double = 0.2, clipEpsHigh: Double = 0.2,
                dualClip: Double? = nil, tokenLevelLoss: Bool = true, useKLLoss: Bool = false,
                klCoef: Double = 0.01, klEstimator: PolicyKLEstimator = .k1) {
        self.policyLossType = policyLossType
        self.clipEpsLow = clipEpsLow
        self.clipEpsHigh = clipEpsHigh
        self.dualClip = dualClip
        self.tokenLevelLoss = tokenLevelLoss
        self.useKLLoss = useKLLoss
        self.klCoef = klCoef
        self.klEstimator = klEstimator
    }

    /// Whether the policy term is reduced per token (`gspo` never is).
    @inlinable
    public var reducesPerToken: Bool { policyLossType == .ppo && tokenLevelLoss }
}

/// `ppo_policy_loss`'s outputs and the per-token terms a reader wants to see.
public struct PPOPolicyLossResult<T: FloatScalar>: Sendable {
    /// policy_loss + kl_loss · kl_coef (or policy_loss without the KL loss). Shape [].
    public var loss: T
    /// The reduced clipped surrogate. Shape [].
    public var policyLoss: T
    /// Σ [s2 < s1]·m / Σ m: the share of tokens where the clip bit (strict). Shape [].
    public var clipRatio: T
    /// Σ (−d)·m / Σ m, with the unclamped log-ratio d. Shape [].
    public var ppoKL: T
    /// Σ k·m / Σ m, always a token mean; nil without `use_kl_loss`. Shape [].
    public var klLoss: T?
    /// ρ: exp(clamp(d, −20, 20)) for ppo, exp(g_b)·m for gspo. Shape [B, T].
    public var ratios: Tensor<T>
    /// q before masking: −min(s1, s2), or the dual-clipped −max(min(s1, s2), c·A). Shape [B, T].
    public var tokenLosses: Tensor<T>

    @inlinable
    public init(loss: T, policyLoss: T, clipRatio: T, ppoKL: T, klLoss: T?, ratios: Tensor<T>, tokenLosses: Tensor<T>) {
        self.loss = loss
        self.policyLoss = policyLoss
        self.clipRatio = clipRatio
        self.ppoKL = ppoKL
        self.klLoss = klLoss
        self.ratios = ratios
        self.tokenLosses = tokenLosses
    }
}

/// OpenRLHF's PPO policy loss: clipped surrogate (asymmetric clip, dual clip, GSPO),
/// token- or sample-level reduction, its metrics, and the KL-loss term.
///
/// ```
/// d      = log_probs − old_log_probs,   m = action_mask,   n_b = Σ_t m[b,t],   n = Σ_b n_b
/// ρ      = exp(clamp(d, −20, 20))                                   (ppo)
/// ρ[b,t] = exp(g_b)·m[b,t],   g_b = Σ_t d·m / max(n_b, 1)           (gspo: no clamp, 0 under the mask)
/// s1 = ρ·A,   s2 = clamp(ρ, 1 − clip_eps_low, 1 + clip_eps_high)·A
/// q  = −min(s1, s2);   with dual_clip = c, where A < 0:  q = −max(min(s1, s2), c·A)
/// policy_loss = Σ q·m / n                                           (token level)
///             = mean over rows with n_b > 0 of Σ_t q·m / (n_b + 1e-8)   (sample level; gspo always)
/// clip_ratio  = Σ [s2 < s1]·m / n            ppo_kl = Σ (−d)·m / n
/// kl_loss     = Σ k·m / n,   k = clamp(kl_estimator(log_probs − ref_log_probs), −10, 10)   (0 if kl_coef ≤ 0)
/// loss        = policy_loss + kl_loss·kl_coef                       (kl_loss only with use_kl_loss)
/// ```
///
/// Shapes: `logProbs`, `oldLogProbs`, `advantages`, `refLogProbs` [B, T] float,
/// `actionMask` [B, T] 0/1 -> every output []. What the mean runs over: the
/// token mean over the whole batch (n tokens), or at sample level the mean of the
/// row means over the rows that keep a token; the KL loss is a token mean even at
/// sample level.
///
/// Matches OpenRLHF `openrlhf/models/loss.py :: PolicyLoss.forward` with
/// `aggregate_loss`, and the KL-loss lines of `openrlhf/trainer/ray/ppo_actor.py ::
/// ActorPPOTrainer.training_step` (one micro-batch on one rank, no vLLM correction,
/// no entropy term). Quirks of the peer, reproduced:
/// - the log-ratio is clamped at ±20 for ppo, not for gspo (a gspo mean log-ratio of
///   900 overflows: we throw);
/// - gspo forces sample-level reduction, but the KL loss stays token level;
/// - sample level divides by `n_b + 1e-8`, which shows at float64 precision;
/// - `ppo_kl` uses the unclamped log-ratio;
/// - the KL term is gated by `kl_coef > 0` and scaled by the same `kl_coef` (OpenRLHF
///   scales it by the controller's current value; one number here).
///
/// - Throws: ``StageError`` for shapes that do not agree, an empty batch, NaN in an
///   input, a mask that is not 0/1, an `action_mask` with no 1 (every normaliser is
///   0/0), `dual_clip ≤ 1`, `use_kl_loss` without `refLogProbs`, a non-finite
///   param, or an output that comes out NaN or infinite.
@inlinable
public func ppoPolicyLoss<T: FloatScalar>(
    logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>, actionMask: Tensor<Int64>,
    refLogProbs: Tensor<T>? = nil, config: PPOPolicyLossConfig = PPOPolicyLossConfig()
) throws(StageError) -> PPOPolicyLossResult<T> {
    let check = InputCheck(stage: "ppo_policy_loss")
    try checkPPOPolicyLossInputs(check, logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                 actionMask: actionMask, refLogProbs: refLogProbs, config: config)
    let (rows, columns) = (logProbs.shape[0], logProbs.shape[1])
    let m = actionMask.scalars
    let n = m.reduce(0) { $0 + Int($1) }
    let ratios = ppoRatios(logProbs: logProbs, oldLogProbs: oldLogProbs, actionMask: actionMask,
                           type: config.policyLossType)
    let lower = T(1 - config.clipEpsLow), upper = T(1 + config.clipEpsHigh)

    // Per-token surrogates, loss and the two metrics' sums, in the peer's order.
    var tokenLosses = [T](repeating: 0, count: rows * columns)
    var clippedSum: T = 0, negativeLogRatioSum: T = 0
    for i in 0..<(rows * columns) {
        let a = advantages.scalars[i], rho = ratios[i], mask = T(m[i])
        let s1 = rho * a
        let s2 = clampToBounds(rho, lower, upper) * a
        let clip1 = minimumKeepingNaN(s1, s2)
        if let c = config.dualClip, a < 0 {
            tokenLosses[i] = -maximumPropagatingNaN(clip1, T(c) * a)
        } else {
            tokenLosses[i] = -clip1
        }
        clippedSum += (s2 < s1 ? 1 : 0) * mask
        negativeLogRatioSum += -(logProbs.scalars[i] - oldLogProbs.scalars[i]) * mask
    }

    let policyLoss: T
    if config.reducesPerToken {
        var sum: T = 0
        for i in 0..<(rows * columns) { sum += tokenLosses[i] * T(m[i]) }
        policyLoss = sum / T(n)
    } else {
        // aggregate_loss, sample level: row sums over (count + 1e-8), then the
        // masked mean over rows whose count is > 0.
        var rowMeanSum: T = 0, keptRows: T = 0
        for b in 0..<rows {
            var rowSum: T = 0, count = 0
            for t in 0..<columns {
                rowSum += tokenLosses[b * columns + t] * T(m[b * columns + t])
                count += Int(m[b * columns + t])
            }
            let kept: T = count > 0 ? 1 : 0
            rowMeanSum += rowSum / (T(count) + T(1e-8)) * kept
            keptRows += kept
        }
        policyLoss = rowMeanSum / keptRows
    }

    var klLoss: T? = nil
    var loss = policyLoss
    if config.useKLLoss, let ref = refLogProbs {
        var sum: T = 0
        if config.klCoef > 0 {
            for i in 0..<(rows * columns) {
                let k = clampToBounds(policyKLEstimate(logProbs.scalars[i] - ref.scalars[i], config.klEstimator),
                                      T(-10), T(10))
                sum += k * T(m[i])
            }
        }
        let kl = sum / T(n)
        klLoss = kl
        loss = policyLoss + kl * T(config.klCoef)
    }

    let result = PPOPolicyLossResult(
        loss: loss, policyLoss: policyLoss, clipRatio: clippedSum / T(n), ppoKL: negativeLogRatioSum / T(n),
        klLoss: klLoss, ratios: Tensor.make(logProbs.shape, ratios), tokenLosses: Tensor.make(logProbs.shape, tokenLosses))
    try check.finiteScalars([("loss", result.loss), ("policy_loss", result.policyLoss),
                             ("clip_ratio", result.clipRatio), ("ppo_kl", result.ppoKL)]
                            + (klLoss.map { [("kl_loss", $0)] } ?? []))
    return result
}

/// The gradient of `ppoPolicyLoss`'s `loss` with respect to `log_probs`.
///
/// ```
/// W[b,t]  = m/n (token level),   m·[n_b > 0] / ((n_b + 1e-8)·#rows kept) (sample level)
/// ∂q/∂min = −1,  or with dual clip and A < 0:  −(1, ½, 0) as min(s1,s2) >, =, < c·A
/// ∂min/∂s1, ∂min/∂s2 = (1, 0), (½, ½), (0, 1) as s1 <, =, > s2
/// ∂L/∂ρ   = W · ∂q/∂min · (∂min/∂s1·A + ∂min/∂s2·A·[1 − ε_low ≤ ρ ≤ 1 + ε_high])
/// ppo:   grad[b,t] = ∂L/∂ρ · ρ · [−20 ≤ d ≤ 20]
/// gspo:  ∂L/∂g_b = Σ_t ∂L/∂ρ[b,t] · e^(g_b)·m[b,t],   grad[b,t] = ∂L/∂g_b · m[b,t] / max(n_b, 1)
/// KL:    grad[b,t] += kl_coef · m/n · k'(r) · [−10 ≤ k(r) ≤ 10]   (use_kl_loss, kl_coef > 0)
///        k1' = 1,  k2' = r,  k3' = 1 − e^(−r)
/// ```
///
/// Shapes: as `ppoPolicyLoss`; `grad_log_probs` [B, T]. The tie and clamp rules are
/// PyTorch autograd's (a tie splits half/half, a clamp passes on its closed
/// interval). In gspo each row's mean log-ratio reaches every unmasked position
/// of that row. A zero upstream derivative is not multiplied by the ratio, so an
/// overflowed ratio whose branch the loss does not use contributes exactly 0
/// (autograd would give 0·inf = NaN there).
///
/// - Throws: ``StageError`` as `ppoPolicyLoss` does, and for a NaN gradient.
@inlinable
public func ppoPolicyLossGradLogProbs<T: FloatScalar>(
    logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>, actionMask: Tensor<Int64>,
    refLogProbs: Tensor<T>? = nil, config: PPOPolicyLossConfig = PPOPolicyLossConfig()
) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "ppo_policy_loss")
    let forward = try ppoPolicyLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                    actionMask: actionMask, refLogProbs: refLogProbs, config: config)
    let (rows, columns) = (logProbs.shape[0], logProbs.shape[1])
    let m = actionMask.scalars
    let n = m.reduce(0) { $0 + Int($1) }
    let rowCounts = (0..<rows).map { b in (0..<columns).reduce(0) { $0 + Int(m[b * columns + $1]) } }
    let keptRows = rowCounts.filter { $0 > 0 }.count
    let lower = T(1 - config.clipEpsLow), upper = T(1 + config.clipEpsHigh)

    // ∂L/∂ρ at every position.
    var upstream = [T](repeating: 0, count: rows * columns)
    for b in 0..<rows {
        let weight: T = config.reducesPerToken
            ? 1 / T(n)
            : (rowCounts[b] > 0 ? 1 / ((T(rowCounts[b]) + T(1e-8)) * T(keptRows)) : 0)
        for t in 0..<columns where m[b * columns + t] != 0 {
            let i = b * columns + t
            let a = advantages.scalars[i], rho = forward.ratios.scalars[i]
            let s1 = rho * a
            let s2 = clampToBounds(rho, lower, upper) * a
            var throughMin: T = -1
            if let c = config.dualClip, a < 0 {
                throughMin = -maximumGradientShares(minimumKeepingNaN(s1, s2), T(c) * a).toFirst
            }
            let shares = minimumGradientShares(s1, s2)
            let inside: T = rho >= lower && rho <= upper ? 1 : 0
            upstream[i] = weight * throughMin * (shares.toFirst * a + shares.toSecond * a * inside)
        }
    }

    var gradient = [T](repeating: 0, count: rows * columns)
    switch config.policyLossType {
    case .ppo:
        for i in 0..<(rows * columns) where upstream[i] != 0 {
            let d = logProbs.scalars[i] - oldLogProbs.scalars[i]
            if d >= -20 && d <= 20 { gradient[i] = upstream[i] * forward.ratios.scalars[i] }
        }
    case .gspo:
        for b in 0..<rows {
            // ρ[b,t] = e^(g_b)·m[b,t], so ∂ρ[b,t]/∂g_b = ρ[b,t] (0 under the mask).
            var towardMean: T = 0
            for t in 0..<columns where upstream[b * columns + t] != 0 {
                towardMean += upstream[b * columns + t] * forward.ratios.scalars[b * columns + t]
            }
            let perPosition = towardMean / T(max(rowCounts[b], 1))
            for t in 0..<columns { gradient[b * columns + t] = perPosition * T(m[b * columns + t]) }
        }
    }

    if config.useKLLoss, config.klCoef > 0, let ref = refLogProbs {
        let scale = T(config.klCoef) / T(n)
        for i in 0..<(rows * columns) where m[i] != 0 {
            let r = logProbs.scalars[i] - ref.scalars[i]
            let k = policyKLEstimate(r, config.klEstimator)
            if k >= -10 && k <= 10 {
                gradient[i] += scale * policyKLEstimateDerivative(r, config.klEstimator)
            }
        }
    }
    let result = Tensor.make(logProbs.shape, gradient)
    try check.noNaNInResult(result, "grad_log_probs")
    return result
}

// MARK: - Pieces

/// The ratio ρ of `ppo_policy_loss` at every position, flat [B·T].
@inlinable
func ppoRatios<T: FloatScalar>(logProbs: Tensor<T>, oldLogProbs: Tensor<T>, actionMask: Tensor<Int64>,
                               type: PolicyLossType) -> [T] {
    let (rows, columns) = (logProbs.shape[0], logProbs.shape[1])
    var ratios = [T](repeating: 0, count: rows * columns)
    switch type {
    case .ppo:
        for i in 0..<(rows * columns) {
            ratios[i] = T.exp(clampToBounds(logProbs.scalars[i] - oldLogProbs.scalars[i], T(-20), T(20)))
        }
    case .gspo:
        for b in 0..<rows {
            var sum: T = 0, count = 0
            for t in 0..<columns {
                let i = b * columns + t
                sum += (logProbs.scalars[i] - oldLogProbs.scalars[i]) * T(actionMask.scalars[i])
                count += Int(actionMask.scalars[i])
            }
            let sequenceRatio = T.exp(sum / T(max(count, 1)))
            for t in 0..<columns { ratios[b * columns + t] = sequenceRatio * T(actionMask.scalars[b * columns + t]) }
        }
    }
    return ratios
}

/// The checks of `ppo_policy_loss`, in the order the errors are listed.
@inlinable
func checkPPOPolicyLossInputs<T: FloatScalar>(
    _ check: InputCheck, logProbs: Tensor<T>, oldLogProbs: Tensor<T>, advantages: Tensor<T>,
    actionMask: Tensor<Int64>, refLogProbs: Tensor<T>?, config: PPOPolicyLossConfig
) throws(StageError) {
    try check.rank(logProbs, "log_probs", is: 2, legend: "[B, T]")
    try check.shape(oldLogProbs, "old_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(advantages, "advantages", equals: logProbs.shape, sameAs: "same as log_probs")
    try check.shape(actionMask, "action_mask", equals: logProbs.shape, sameAs: "same as log_probs")
    if let ref = refLogProbs {
        try check.shape(ref, "ref_log_probs", equals: logProbs.shape, sameAs: "same as log_probs")
    }
    try check.nonEmptyBatch(logProbs.shape, "log_probs")
    try check.noNaN(logProbs, "log_probs")
    try check.noNaN(oldLogProbs, "old_log_probs")
    try check.noNaN(advantages, "advantages")
    if let ref = refLogProbs { try check.noNaN(ref, "ref_log_probs") }
    try check.binaryMask(actionMask, "action_mask")
    guard actionMask.scalars.contains(1) else {
        throw StageError(.emptyMask, stage: check.stage, argument: "action_mask",
                         "action_mask \(describe(shape: actionMask.shape)) holds no 1: every normaliser of the peer is 0/0")
    }
    try check.finite("clip_eps_low", config.clipEpsLow)
    try check.finite("clip_eps_high", config.clipEpsHigh)
    try check.finite("kl_coef", config.klCoef)
    if let c = config.dualClip {
        guard c.isFinite, c > 1 else {
            throw StageError(.parameterOutOfRange, stage: check.stage, argument: "dual_clip",
                             "dual_clip = \(c) must be > 1 (OpenRLHF asserts it)")
        }
    }
    if config.useKLLoss, refLogProbs == nil {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "ref_log_probs",
                         "use_kl_loss needs ref_log_probs [B, T], none given")
    }
}

/// The `kl_estimators` formula (KLControl's stage), unclamped, for r = log_probs −
/// ref_log_probs: k1 = r, k2 = r²/2, k3 = (e^(−r) − 1) + r in that order. Kept here
/// until this module calls KLControl's public function.
@inlinable
func policyKLEstimate<T: FloatScalar>(_ r: T, _ estimator: PolicyKLEstimator) -> T {
    switch estimator {
    case .k1: return r
    case .k2: return r * r / 2
    case .k3: return (T.exp(-r) - 1) + r
    }
}

/// dk/dr of ``policyKLEstimate(_:_:)``: 1, r, 1 − e^(−r).
@inlinable
func policyKLEstimateDerivative<T: FloatScalar>(_ r: T, _ estimator: PolicyKLEstimator) -> T {
    switch estimator {
    case .k1: return 1
    case .k2: return r
    case .k3: return 1 - T.exp(-r)
    }
}

// MARK: - Helpers shared by the module's stages

/// `torch.clamp(x, lo, hi)`: max(x, lo), then min with hi (so hi wins when lo > hi,
/// as in PyTorch).
@inlinable
func clampToBounds<T: FloatScalar>(_ x: T, _ lo: T, _ hi: T) -> T {
    min(max(x, lo), hi)
}

/// `torch.minimum(a, b)`: the smaller, NaN if either is NaN (Swift's `min` drops a
/// NaN second argument; PyTorch's loss would be NaN, which the result check must see).
@inlinable
func minimumKeepingNaN<T: FloatScalar>(_ a: T, _ b: T) -> T {
    a != a || b != b ? a + b : min(a, b)
}

/// How `min(a, b)` passes its gradient back: all to the smaller, half to each on a
/// tie (PyTorch's `torch.minimum` backward).
@inlinable
func minimumGradientShares<T: FloatScalar>(_ a: T, _ b: T) -> (toFirst: T, toSecond: T) {
    if a < b { return (1, 0) }
    if a > b { return (0, 1) }
    return (0.5, 0.5)
}

/// A peer's string switch as its enum, or the `unknown value` error naming the
/// accepted values.
@inlinable
public func peerSwitch<E: RawRepresentable & CaseIterable>(
    _ value: String, _ argument: String, stage: String
) throws(StageError) -> E where E.RawValue == String {
    guard let parsed = E(rawValue: value) else {
        throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                         "unknown \(argument) \"\(value)\"; known: \(E.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return parsed
}

extension InputCheck {
    /// Throws for a [B, T] input with B = 0 or T = 0 (nothing to average).
    @inlinable
    func nonEmptyBatch(_ shape: [Int], _ argument: String) throws(StageError) {
        guard shape.allSatisfy({ $0 > 0 }) else {
            throw StageError(.shapeMismatch, stage: stage, argument: argument,
                             "empty batch \(describe(shape: shape)): B and T must be > 0")
        }
    }

    /// Throws at the first named scalar output that is NaN or infinite.
    @inlinable
    func finiteScalars<T: FloatScalar>(_ outputs: [(String, T)]) throws(StageError) {
        for (name, value) in outputs where !value.isFinite {
            throw StageError(.nonFiniteResult, stage: stage, argument: name,
                             "the result is \(value) (an overflowed ratio, or infinite inputs)")
        }
    }
}
