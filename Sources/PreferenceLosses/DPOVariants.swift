import TensorCore

/// TRL's DPO `loss_type`s, by TRL's names, plus OpenRLHF's IPO on summed log-ratios.
///
/// Fourteen are TRL `DPOConfig.loss_type` values (all but `sft`, which needs the
/// logits); `ipo_sum` is OpenRLHF `DPOLoss(ipo=True)`. The formulas are listed at
/// ``dpoVariants(chosenLogps:rejectedLogps:refChosenLogps:refRejectedLogps:chosenLengths:rejectedLengths:lossType:beta:labelSmoothing:discopopTau:fDivergence:fAlphaDivergenceCoef:)``.
public enum DPOLossType: String, Sendable, CaseIterable {
    case sigmoid
    case hinge
    case ipo
    case ipoSum = "ipo_sum"
    case exoPair = "exo_pair"
    case ncaPair = "nca_pair"
    case robust
    case bcoPair = "bco_pair"
    case sppoHard = "sppo_hard"
    case aot
    case aotUnpaired = "aot_unpaired"
    case apoZero = "apo_zero"
    case apoDown = "apo_down"
    case discopop
    case sigmoidNorm = "sigmoid_norm"

    /// The loss type TRL (or OpenRLHF, for `ipo_sum`) calls `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `loss_type`) for any
    ///   other name.
    @inlinable
    public init(named name: String, stage: String = "dpo_variants") throws(StageError) {
        self = try peerSwitch(name, argument: "loss_type", stage: stage)
    }

    /// Whether the loss reads `label_smoothing` (ε).
    @inlinable
    public var usesLabelSmoothing: Bool {
        switch self {
        case .sigmoid, .exoPair, .robust, .aot, .aotUnpaired: return true
        default: return false
        }
    }
}

/// TRL's f-divergence (`DPOConfig.f_divergence_type`): how a log-ratio `h` becomes
/// the score `u` the losses compare, by TRL's names.
///
/// ```
/// reverse_kl:        u = h                     (standard DPO)
/// forward_kl:        u = -exp(-h)
/// js_divergence:     u = log σ(h)
/// alpha_divergence:  u = exp(min((a - 1)·h, 80)) · (1 / (a - 1)),  u = h when |a - 1| < 1e-6
/// ```
public enum FDivergence: String, Sendable, CaseIterable {
    case reverseKL = "reverse_kl"
    case forwardKL = "forward_kl"
    case jsDivergence = "js_divergence"
    case alphaDivergence = "alpha_divergence"

    /// The f-divergence TRL calls `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `f_divergence`) for
    ///   any other name.
    @inlinable
    public init(named name: String, stage: String = "dpo_variants") throws(StageError) {
        self = try peerSwitch(name, argument: "f_divergence", stage: stage)
    }
}

/// The DPO family's per-pair losses, their mean and TRL's reward metrics.
public struct DPOVariantsResult<T: FloatScalar>: Sendable {
    /// Each pair's loss. Shape [B]. For `aot` and `aot_unpaired` entry i belongs to
    /// rank i of the sort, not to pair i.
    public var losses: Tensor<T>
    /// mean(losses). Shape [].
    public var loss: T
    /// β · h_w (the log-ratio, not the f-score), detached. Shape [B].
    public var chosenRewards: Tensor<T>
    /// β · h_l, detached. Shape [B].
    public var rejectedRewards: Tensor<T>
    /// The fraction of pairs with chosen_rewards > rejected_rewards, strictly (a tie
    /// counts as wrong). Shape [].
    public var rewardAccuracy: T
    /// chosen_rewards - rejected_rewards. Shape [B].
    public var rewardMargin: Tensor<T>
    /// u_w, the f-score of each chosen log-ratio; for a reader. Shape [B].
    public var chosenScores: Tensor<T>
    /// u_l; for a reader. Shape [B].
    public var rejectedScores: Tensor<T>

    @inlinable
    public init(losses: Tensor<T>, loss: T, chosenRewards: Tensor<T>, rejectedRewards: Tensor<T>, rewardAccuracy: T,
                rewardMargin: Tensor<T>, chosenScores: Tensor<T>, rejectedScores: Tensor<T>) {
        self.losses = losses
        self.loss = loss
        self.chosenRewards = chosenRewards
        self.rejectedRewards = rejectedRewards
        self.rewardAccuracy = rewardAccuracy
        self.rewardMargin = rewardMargin
        self.chosenScores = chosenScores
        self.rejectedScores = rejectedScores
    }
}

/// The gradients of the mean DPO-family loss with respect to the policy's sequence log-probs.
public struct DPOVariantsGradients<T: FloatScalar>: Sendable {
    /// ∂ loss / ∂ chosen_logps. Shape [B].
    public var gradChosenLogps: Tensor<T>
    /// ∂ loss / ∂ rejected_logps. Shape [B].
    public var gradRejectedLogps: Tensor<T>

    @inlinable
    public init(gradChosenLogps: Tensor<T>, gradRejectedLogps: Tensor<T>) {
        self.gradChosenLogps = gradChosenLogps
        self.gradRejectedLogps = gradRejectedLogps
    }
}

/// The DPO family: fifteen preference losses on one batch of chosen/rejected
/// sequence log-probs, with the policy's log-ratio to the reference as the implicit
/// reward.
///
/// ```
/// h_w = chosen_logps - ref_chosen_logps          h_l = rejected_logps - ref_rejected_logps
/// u = f(h)    (f_divergence, see FDivergence)    δ = u_w - u_l    x = β·δ    ε = label_smoothing
/// n_w = max(chosen_lengths, 1)                   n_l = max(rejected_lengths, 1)
///
/// sigmoid       -(1-ε)·logσ(x) - ε·logσ(-x)                     (cDPO; DPO at ε = 0)
/// hinge         relu(1 - x)
/// ipo           (u_w/n_w - u_l/n_l - 1/(2β))²                    (TRL: length-normalised)
/// ipo_sum       (δ - 1/(2β))²                                    (OpenRLHF: summed)
/// exo_pair      σ(x)·(logσ(x) - log(1-ε)) + σ(-x)·(logσ(-x) - log ε)
/// nca_pair      -logσ(β·u_w) - ½·logσ(-β·u_w) - ½·logσ(-β·u_l)
/// robust        (-(1-ε)·logσ(x) + ε·logσ(-x)) / (1 - 2ε)
/// bco_pair      -logσ(β·u_w) - logσ(-β·u_l)
/// sppo_hard     (u_w - 1/(2β))² + (u_l + 1/(2β))²
/// aot           Δ = sort(chosen - rejected) - sort(ref_chosen - ref_rejected), then the sigmoid form on β·Δ
/// aot_unpaired  Δ = sort(h_w) - sort(h_l), then the sigmoid form on β·Δ
/// apo_zero      (1 - σ(β·h_w)) + σ(β·h_l)
/// apo_down      σ(β·h_w) + (1 - σ(x))
/// discopop      (1 - m)·(-logσ(x)) + m·exp(-x),   m = σ(x / discopop_tau)
/// sigmoid_norm  -logσ(β·(u_w/n_w - u_l/n_l))
///
/// loss = mean(losses)
/// chosen_rewards = β·h_w    rejected_rewards = β·h_l    reward_margin = chosen_rewards - rejected_rewards
/// reward_accuracy = mean(chosen_rewards > rejected_rewards)
/// ```
///
/// Shapes: the four log-probs [B] float (sums over each completion's tokens,
/// TRL's convention), the two lengths [B] int64 (completion token counts) ->
/// `losses` [B], `loss` [], `chosen_rewards`, `rejected_rewards`, `reward_margin`
/// [B], `reward_accuracy` [].
///
/// The mean runs over the B pairs. Nothing is masked: the inputs are already
/// summed; only `ipo` and `sigmoid_norm` divide by the lengths, a length of 0
/// counting as 1. The rewards use h, not u, whatever the f-divergence.
///
/// Matches TRL `trl/trainer/dpo_trainer.py :: DPOTrainer._compute_loss` (its
/// `loss_type` loop and reward metrics), and OpenRLHF `openrlhf/models/loss.py ::
/// DPOLoss.forward` for `sigmoid` with ε > 0 and for `ipo_sum`. Quirks, named:
/// - **sigmoid and label smoothing.** TRL's `sigmoid` ignores `label_smoothing`
///   since its refactor (PR #3906); OpenRLHF, DeepSpeed-Chat and TRL's CPO read it
///   as cDPO. This follows cDPO, so a TRL user compares at ε = 0. For ε > 0 with
///   plain log-ratios (reverse_kl) δ is formed in OpenRLHF's order,
///   `(chosen - rejected) - (ref_chosen - ref_rejected)`; so is it for `ipo_sum`.
///   Elsewhere δ = u_w - u_l as TRL forms it (the same number up to rounding).
/// - **ipo vs ipo_sum.** TRL's IPO divides each score by its completion length,
///   OpenRLHF's does not: on a 100-token answer the two differ by a factor of 100
///   inside the square.
/// - **aot, aot_unpaired and apo_zero ignore f_divergence**: they read the raw
///   log-probs or h. **apo_down mixes** the plain h_w with the f-aware x.
/// - **aot losses are in sorted order**: the batch's policy and reference
///   log-ratios are sorted separately and subtracted rank by rank, so entry i
///   belongs to rank i, not to pair i.
/// - **The α-divergence clamp.** TRL clamps (a - 1)·h at 80 before exp (for
///   float32; its table has no float64 key, so a float64 TRL run raises KeyError).
///   Here 80 holds in both precisions; beyond it the score is constant.
/// - **robust** divides by 1 - 2ε (TRL only warns for ε outside [0, 0.5)); `exo_pair`
///   needs 0 < ε < 1 (log ε, log(1 - ε)).
///
/// Numerics: every logσ is ``logSigmoid(_:)`` (margins of ±900 would give
/// log(0) = -inf in the naive form) and every σ is the two-branch ``sigmoid(_:)``.
/// Constants the peers form in Python floats (1/(2β), 0.5/β, 1 - ε, 1/(a - 1)) are
/// formed in Double and rounded once to T, as torch rounds a Python scalar.
///
/// - Throws: ``StageError`` for shapes that do not agree or an empty batch, NaN in a
///   float input, a negative length, `beta = 0` with `ipo`, `ipo_sum` or
///   `sppo_hard` (they divide by β), `robust` with ε outside [0, 0.5), `exo_pair`
///   with ε outside (0, 1), `discopop_tau ≤ 0`, `discopop` where exp(-x) overflows
///   (the peer returns inf · 0 = NaN), `forward_kl` where exp(-h) overflows, and any
///   output that comes out non-finite (`nonFiniteResult`).
@inlinable
public func dpoVariants<T: FloatScalar>(
    chosenLogps: Tensor<T>, rejectedLogps: Tensor<T>, refChosenLogps: Tensor<T>, refRejectedLogps: Tensor<T>,
    chosenLengths: Tensor<Int64>, rejectedLengths: Tensor<Int64>,
    lossType: DPOLossType = .sigmoid, beta: Double = 0.1, labelSmoothing: Double = 0.0, discopopTau: Double = 0.05,
    fDivergence: FDivergence = .reverseKL, fAlphaDivergenceCoef: Double = 0.5
) throws(StageError) -> DPOVariantsResult<T> {
    let pass = try DPOVariantsPass(
        chosenLogps: chosenLogps, rejectedLogps: rejectedLogps, refChosenLogps: refChosenLogps,
        refRejectedLogps: refRejectedLogps, chosenLengths: chosenLengths, rejectedLengths: rejectedLengths,
        lossType: lossType, beta: beta, labelSmoothing: labelSmoothing, discopopTau: discopopTau,
        fDivergence: fDivergence, fAlphaDivergenceCoef: fAlphaDivergenceCoef, withGradients: false)
    return pass.result
}

/// The gradient of `dpoVariants`' `loss` (the mean of the per-pair losses) with
/// respect to `chosen_logps` and `rejected_logps`; the reference log-probs and the
/// lengths are constants, the rewards are detached.
///
/// ```
/// ∂loss/∂chosen_logps[i]   = (1/B) · Σ_j ∂ℓ_j/∂u_w,i · f'(h_w,i)
/// ∂loss/∂rejected_logps[i] = (1/B) · Σ_j ∂ℓ_j/∂u_l,i · f'(h_l,i)
///
/// f'(h):  reverse_kl 1,  forward_kl exp(-h),  js_divergence σ(-h),
///         alpha_divergence exp((a-1)·h) while (a-1)·h ≤ 80, else 0
/// ∂ℓ/∂x for the forms in x:  sigmoid  -(1-ε)·σ(-x) + ε·σ(x)     hinge  -1 if x < 1, else 0
///                            robust   (-(1-ε)·σ(-x) - ε·σ(x)) / (1 - 2ε)
///                            exo_pair σ(x)·σ(-x)·(x - log(1-ε) + log ε)
/// ```
///
/// Every loss but the sorted ones gives pair i's loss to pair i only (j = i).
/// The other loss types' derivatives sit beside their forward formula in
/// `DPOVariantsPass`, each written term by term in the order autograd meets them:
/// σ'(y) as (1 - σ(y))·σ(y), d logσ(y)/dy as 1 - e/(1+e) for y < 0 and e/(1+e)
/// otherwise (e = exp(-|y|)), torch's own formulas, so float32 agrees with autograd
/// where σ(y) rounds to 1.
///
/// PyTorch's conventions at the kinks: `relu` passes nothing at 0 (hinge at x = 1);
/// the α clamp passes the derivative at exactly 80 and blocks it beyond; a sort
/// sends each rank's derivative back to the pair that landed there (among tied
/// values, to the one that comes first in the batch: a stable sort; autograd leaves
/// that choice unspecified, and no fixture with a tie carries gradients).
///
/// - Throws: ``StageError`` as `dpoVariants` does, and `nonFiniteResult` naming a
///   gradient that would not be finite.
@inlinable
public func dpoVariantsGradients<T: FloatScalar>(
    chosenLogps: Tensor<T>, rejectedLogps: Tensor<T>, refChosenLogps: Tensor<T>, refRejectedLogps: Tensor<T>,
    chosenLengths: Tensor<Int64>, rejectedLengths: Tensor<Int64>,
    lossType: DPOLossType = .sigmoid, beta: Double = 0.1, labelSmoothing: Double = 0.0, discopopTau: Double = 0.05,
    fDivergence: FDivergence = .reverseKL, fAlphaDivergenceCoef: Double = 0.5
) throws(StageError) -> DPOVariantsGradients<T> {
    let pass = try DPOVariantsPass(
        chosenLogps: chosenLogps, rejectedLogps: rejectedLogps, refChosenLogps: refChosenLogps,
        refRejectedLogps: refRejectedLogps, chosenLengths: chosenLengths, rejectedLengths: rejectedLengths,
        lossType: lossType, beta: beta, labelSmoothing: labelSmoothing, discopopTau: discopopTau,
        fDivergence: fDivergence, fAlphaDivergenceCoef: fAlphaDivergenceCoef, withGradients: true)
    return DPOVariantsGradients(gradChosenLogps: pass.gradChosen, gradRejectedLogps: pass.gradRejected)
}

/// One forward (and optionally backward) pass of `dpoVariants`: the checks, the
/// scores, each loss type's per-pair loss with its derivative beside it, the
/// metrics and the result checks.
@usableFromInline
struct DPOVariantsPass<T: FloatScalar> {
    @usableFromInline var result: DPOVariantsResult<T>
    @usableFromInline var gradChosen: Tensor<T>
    @usableFromInline var gradRejected: Tensor<T>

    @inlinable
    init(
        chosenLogps: Tensor<T>, rejectedLogps: Tensor<T>, refChosenLogps: Tensor<T>, refRejectedLogps: Tensor<T>,
        chosenLengths: Tensor<Int64>, rejectedLengths: Tensor<Int64>, lossType: DPOLossType, beta: Double,
        labelSmoothing: Double, discopopTau: Double, fDivergence: FDivergence, fAlphaDivergenceCoef: Double,
        withGradients: Bool
    ) throws(StageError) {
        typealias M = DPOVariantsMath
        let check = InputCheck(stage: "dpo_variants")
        // ---- the inputs ----
        try check.rank(chosenLogps, "chosen_logps", is: 1, legend: "[B]")
        let batchSize = chosenLogps.shape[0]
        let batchShape = "[B] from chosen_logps \(describe(shape: chosenLogps.shape))"
        try check.shape(rejectedLogps, "rejected_logps", equals: [batchSize], sameAs: batchShape)
        try check.shape(refChosenLogps, "ref_chosen_logps", equals: [batchSize], sameAs: batchShape)
        try check.shape(refRejectedLogps, "ref_rejected_logps", equals: [batchSize], sameAs: batchShape)
        try check.shape(chosenLengths, "chosen_lengths", equals: [batchSize], sameAs: batchShape)
        try check.shape(rejectedLengths, "rejected_lengths", equals: [batchSize], sameAs: batchShape)
        guard batchSize > 0 else {
            throw StageError(.shapeMismatch, stage: check.stage, argument: "chosen_logps",
                             "expected at least one pair, got shape \(describe(shape: chosenLogps.shape))")
        }
        try check.noNaN(chosenLogps, "chosen_logps")
        try check.noNaN(rejectedLogps, "rejected_logps")
        try check.noNaN(refChosenLogps, "ref_chosen_logps")
        try check.noNaN(refRejectedLogps, "ref_rejected_logps")
        for (lengths, name) in [(chosenLengths, "chosen_lengths"), (rejectedLengths, "rejected_lengths")] {
            if let i = lengths.scalars.firstIndex(where: { $0 < 0 }) {
                throw StageError(.parameterOutOfRange, stage: check.stage, argument: name,
                                 "a completion length is a token count >= 0, got \(lengths.scalars[i]) at index [\(i)]")
            }
        }
        // ---- the params ----
        try check.finite("beta", beta)
        try check.finite("label_smoothing", labelSmoothing)
        try check.finite("f_alpha_divergence_coef", fAlphaDivergenceCoef)
        guard discopopTau.isFinite, discopopTau > 0 else {
            throw StageError(.parameterOutOfRange, stage: check.stage, argument: "discopop_tau",
                             "discopop_tau = \(discopopTau) must be finite and > 0 (it divides the margin)")
        }
        if beta == 0, [.ipo, .ipoSum, .sppoHard].contains(lossType) {
            throw StageError(.parameterOutOfRange, stage: check.stage, argument: "beta",
                             "beta = 0 with loss_type \(lossType.rawValue), whose target margin 1/(2β) divides by β")
        }
        let epsilon = labelSmoothing
        if lossType == .robust, !(epsilon >= 0 && epsilon < 0.5) {
            throw StageError(.parameterOutOfRange, stage: check.stage, argument: "label_smoothing",
                             "robust: ε = \(epsilon) not in [0, 0.5)")
        }
        if lossType == .exoPair, !(epsilon > 0 && epsilon < 1) {
            throw StageError(.parameterOutOfRange, stage: check.stage, argument: "label_smoothing",
                             "exo_pair: ε = \(epsilon) not in (0, 1)")
        }

        // ---- h and the scores u = f(h), with f'(h) for the backward ----
        let b = T(beta)
        var chosenLogRatios = [T](), rejectedLogRatios = [T]()
        var chosenScores = [T](), rejectedScores = [T]()
        var chosenSlopes = [T](), rejectedSlopes = [T]()
        for i in 0..<batchSize {
            let hw = chosenLogps.scalars[i] - refChosenLogps.scalars[i]
            let hl = rejectedLogps.scalars[i] - refRejectedLogps.scalars[i]
            chosenLogRatios.append(hw)
            rejectedLogRatios.append(hl)
            let (uw, uwSlope) = try M.fScore(hw, fDivergence, fAlphaDivergenceCoef, "chosen_logps", i, check)
            let (ul, ulSlope) = try M.fScore(hl, fDivergence, fAlphaDivergenceCoef, "rejected_logps", i, check)
            chosenScores.append(uw)
            rejectedScores.append(ul)
            chosenSlopes.append(uwSlope)
            rejectedSlopes.append(ulSlope)
        }
        // δ: OpenRLHF's grouping for its two cases on plain log-ratios, TRL's u_w - u_l elsewhere.
        let plainLogRatios = fDivergence == .reverseKL
            || (fDivergence == .alphaDivergence && abs(fAlphaDivergenceCoef - 1) < 1e-6)
        let openRLHFOrder = plainLogRatios && (lossType == .ipoSum || (lossType == .sigmoid && epsilon != 0))
        var deltas = [T]()
        for i in 0..<batchSize {
            if openRLHFOrder {
                let policy = chosenLogps.scalars[i] - rejectedLogps.scalars[i]
                let reference = refChosenLogps.scalars[i] - refRejectedLogps.scalars[i]
                deltas.append(policy - reference)
            } else {
                deltas.append(chosenScores[i] - rejectedScores[i])
            }
        }

        // ---- the per-pair losses, each with ∂ℓ/∂u_w and ∂ℓ/∂u_l (or, for the loss
        // types that read h or the raw log-probs, ∂ℓ/∂chosen_logps directly) ----
        let keepWeight = T(1 - epsilon), flipWeight = T(epsilon)
        var losses = [T](repeating: 0, count: batchSize)
        // ∂ℓ_j/∂(pair i's chosen / rejected log-prob), summed over j; before the 1/B of the mean.
        var towardChosen = [T](repeating: 0, count: batchSize)
        var towardRejected = [T](repeating: 0, count: batchSize)
        /// Records ∂ℓ/∂u_w, ∂ℓ/∂u_l of pair i, through f' to the log-probs.
        func throughScores(_ i: Int, _ dUw: T, _ dUl: T) {
            towardChosen[i] += dUw * chosenSlopes[i]
            towardRejected[i] += dUl * rejectedSlopes[i]
        }
        /// Records ∂ℓ/∂x of pair i, x = β·δ, through δ = u_w - u_l (or OpenRLHF's
        /// grouping, whose ∂δ/∂chosen_logps is 1: it only runs on plain log-ratios).
        func throughMargin(_ i: Int, _ dX: T) {
            throughScores(i, dX * b, -(dX * b))
        }
        let lengthsW = chosenLengths.scalars.map { T(max($0, 1)) }
        let lengthsL = rejectedLengths.scalars.map { T(max($0, 1)) }

        switch lossType {
        case .sigmoid:
            for i in 0..<batchSize {
                let x = b * deltas[i]
                losses[i] = (-logSigmoid(x)) * keepWeight - logSigmoid(-x) * flipWeight
                throughMargin(i, -keepWeight * M.logSigmoidSlope(x) + flipWeight * M.logSigmoidSlope(-x))
            }
        case .hinge:
            for i in 0..<batchSize {
                let slack = 1 - b * deltas[i]
                losses[i] = max(slack, 0)
                throughMargin(i, slack > 0 ? -1 : 0)  // relu passes nothing at 0
            }
        case .ipo, .sigmoidNorm:
            for i in 0..<batchSize {
                let averaged = chosenScores[i] / lengthsW[i] - rejectedScores[i] / lengthsL[i]
                let dAveraged: T
                if lossType == .ipo {
                    let miss = averaged - T(1 / (2 * beta))
                    losses[i] = miss * miss
                    dAveraged = 2 * miss
                } else {
                    losses[i] = -logSigmoid(b * averaged)
                    dAveraged = -M.logSigmoidSlope(b * averaged) * b
                }
                throughScores(i, dAveraged / lengthsW[i], -dAveraged / lengthsL[i])
            }
        case .ipoSum:
            for i in 0..<batchSize {
                let miss = deltas[i] - T(1 / (2 * beta))
                losses[i] = miss * miss
                throughScores(i, 2 * miss, -(2 * miss))
            }
        case .exoPair:
            // log(1 - ε) and log ε, in T (TRL forms ε as a float32 tensor; float64 keeps it in Double).
            let logKeep = T.log1p(-T(epsilon)), logFlip = T.log(T(epsilon))
            for i in 0..<batchSize {
                let x = b * deltas[i]
                let qw = sigmoid(x), ql = sigmoid(-x)
                let logQw = logSigmoid(x), logQl = logSigmoid(-x)
                losses[i] = qw * (logQw - logKeep) + ql * (logQl - logFlip)
                let dX = M.sigmoidSlope(qw) * (logQw - logKeep) + qw * M.logSigmoidSlope(x)
                    - (M.sigmoidSlope(ql) * (logQl - logFlip) + ql * M.logSigmoidSlope(-x))
                throughMargin(i, dX)
            }
        case .ncaPair:
            for i in 0..<batchSize {
                let rw = b * chosenScores[i], rl = b * rejectedScores[i]
                losses[i] = -logSigmoid(rw) - 0.5 * logSigmoid(-rw) - 0.5 * logSigmoid(-rl)
                throughScores(i, (-M.logSigmoidSlope(rw) + 0.5 * M.logSigmoidSlope(-rw)) * b,
                              (0.5 * M.logSigmoidSlope(-rl)) * b)
            }
        case .robust:
            let clean = T(-(1 - epsilon)), flipped = T(-epsilon), norm = T(1 - 2 * epsilon)
            for i in 0..<batchSize {
                let x = b * deltas[i]
                losses[i] = (clean * logSigmoid(x) - flipped * logSigmoid(-x)) / norm
                throughMargin(i, (clean * M.logSigmoidSlope(x) + flipped * M.logSigmoidSlope(-x)) / norm)
            }
        case .bcoPair:
            for i in 0..<batchSize {
                let rw = b * chosenScores[i], rl = b * rejectedScores[i]
                losses[i] = -logSigmoid(rw) - logSigmoid(-rl)
                throughScores(i, -M.logSigmoidSlope(rw) * b, M.logSigmoidSlope(-rl) * b)
            }
        case .sppoHard:
            let target = T(0.5 / beta)
            for i in 0..<batchSize {
                let winnerMiss = chosenScores[i] - target, loserMiss = rejectedScores[i] + target
                losses[i] = winnerMiss * winnerMiss + loserMiss * loserMiss
                throughScores(i, 2 * winnerMiss, 2 * loserMiss)
            }
        case .aot, .aotUnpaired:
            // Two batch-wide sorts; rank j pairs the j-th smallest of each.
            let first: [T], second: [T]
            if lossType == .aot {
                first = (0..<batchSize).map { chosenLogps.scalars[$0] - rejectedLogps.scalars[$0] }
                second = (0..<batchSize).map { refChosenLogps.scalars[$0] - refRejectedLogps.scalars[$0] }
            } else {
                first = chosenLogRatios
                second = rejectedLogRatios
            }
            let firstOrder = M.ascendingOrder(first), secondOrder = M.ascendingOrder(second)
            for j in 0..<batchSize {
                let x = b * (first[firstOrder[j]] - second[secondOrder[j]])
                losses[j] = (-logSigmoid(x)) * keepWeight - logSigmoid(-x) * flipWeight
                let dDelta = (-keepWeight * M.logSigmoidSlope(x) + flipWeight * M.logSigmoidSlope(-x)) * b
                // aot: first = chosen - rejected, so the rank's derivative goes to both log-probs of the pair
                // that landed there; second is the reference's (a constant). aot_unpaired: first = h_w of one
                // pair, second = h_l of another.
                towardChosen[firstOrder[j]] += dDelta
                if lossType == .aot {
                    towardRejected[firstOrder[j]] += -dDelta
                } else {
                    towardRejected[secondOrder[j]] += -dDelta
                }
            }
        case .apoZero:
            for i in 0..<batchSize {
                let sw = sigmoid(b * chosenLogRatios[i]), sl = sigmoid(b * rejectedLogRatios[i])
                losses[i] = (1 - sw) + sl
                towardChosen[i] += -M.sigmoidSlope(sw) * b
                towardRejected[i] += M.sigmoidSlope(sl) * b
            }
        case .apoDown:
            for i in 0..<batchSize {
                let sw = sigmoid(b * chosenLogRatios[i]), sx = sigmoid(b * deltas[i])
                losses[i] = sw + (1 - sx)
                towardChosen[i] += M.sigmoidSlope(sw) * b  // the h_w term, past f
                throughMargin(i, -M.sigmoidSlope(sx))      // the x term, through f
            }
        case .discopop:
            let tau = T(discopopTau)
            for i in 0..<batchSize {
                let x = deltas[i] * b
                let growth = T.exp(-x)
                guard growth.isFinite else {
                    throw StageError(.nonFiniteResult, stage: check.stage, argument: "losses",
                                     "discopop at index [\(i)]: exp(-x) = exp(\(-x)) overflows \(T.dtypeName) "
                                     + "(the peer multiplies it by σ(x/τ) = 0 and returns NaN)")
                }
                let m = sigmoid(x / tau), logistic = -logSigmoid(x)
                losses[i] = logistic * (1 - m) + growth * m
                let dM = M.sigmoidSlope(m) / tau
                throughMargin(i, -M.logSigmoidSlope(x) * (1 - m) - logistic * dM - growth * m + growth * dM)
            }
        }

        // ---- the mean and the metrics ----
        var sum = 0.0
        for value in losses { sum += Double(value) }
        let loss = T(sum) / T(batchSize)
        let chosenRewards = chosenLogRatios.map { b * $0 }, rejectedRewards = rejectedLogRatios.map { b * $0 }
        let correct = (0..<batchSize).filter { chosenRewards[$0] > rejectedRewards[$0] }.count
        result = DPOVariantsResult(
            losses: Tensor.make([batchSize], losses), loss: loss,
            chosenRewards: Tensor.make([batchSize], chosenRewards),
            rejectedRewards: Tensor.make([batchSize], rejectedRewards),
            rewardAccuracy: T(correct) / T(batchSize),
            rewardMargin: Tensor.make([batchSize], (0..<batchSize).map { chosenRewards[$0] - rejectedRewards[$0] }),
            chosenScores: Tensor.make([batchSize], chosenScores), rejectedScores: Tensor.make([batchSize], rejectedScores))
        for (values, name) in [(result.losses, "losses"), (Tensor(scalar: loss), "loss"),
                               (result.chosenRewards, "chosen_rewards"), (result.rejectedRewards, "rejected_rewards"),
                               (result.rewardMargin, "reward_margin")] {
            try M.noNonFinite(values, name, check)
        }

        // ---- the gradients: the mean's 1/B times each pair's collected derivative ----
        gradChosen = Tensor(shape: [batchSize], repeating: 0)
        gradRejected = Tensor(shape: [batchSize], repeating: 0)
        guard withGradients else { return }
        let share = T(1) / T(batchSize)
        for i in 0..<batchSize {
            gradChosen.scalars[i] = share * towardChosen[i]
            gradRejected.scalars[i] = share * towardRejected[i]
        }
        try M.noNonFinite(gradChosen, "grad_chosen_logps", check)
        try M.noNonFinite(gradRejected, "grad_rejected_logps", check)
    }
}

/// The small pieces `dpoVariants` and its backward share, in a namespace of their
/// own so their names stay out of the module's (other stages share PreferenceLosses).
@usableFromInline
enum DPOVariantsMath {
    /// u = f(h) and f'(h) for one log-ratio; `argument` names the input h comes from.
    @inlinable
    static func fScore<T: FloatScalar>(
        _ h: T, _ divergence: FDivergence, _ alpha: Double, _ argument: String, _ index: Int, _ check: InputCheck
    ) throws(StageError) -> (score: T, slope: T) {
        switch divergence {
        case .reverseKL:
            return (h, 1)
        case .forwardKL:
            let growth = T.exp(-h)
            guard growth.isFinite else {
                throw StageError(.nonFiniteResult, stage: check.stage, argument: argument,
                                 "forward_kl at index [\(index)]: exp(-h) = exp(\(-h)) overflows \(T.dtypeName)")
            }
            return (-growth, growth)
        case .jsDivergence:
            return (logSigmoid(h), logSigmoidSlope(h))
        case .alphaDivergence:
            if abs(alpha - 1) < 1e-6 { return (h, 1) }  // the limit a -> 1 is log t: reverse_kl
            // Why the clamp: exp((a-1)·h) overflows float32 for (a-1)·h > 88.7; TRL caps the exponent at 80
            // (e^80 = 5.5e34), so past it the score stops growing and passes no derivative.
            let inverse = T(1 / (alpha - 1)), exponent = T(alpha - 1) * h
            let growth = T.exp(min(exponent, 80))
            return (growth * inverse, exponent <= 80 ? inverse * growth * T(alpha - 1) : 0)
        }
    }

    /// d logσ(y)/dy = σ(-y), as torch's `log_sigmoid_backward` forms it: with
    /// e = exp(-|y|), `1 - e/(1+e)` for y < 0 and `e/(1+e)` otherwise.
    ///
    /// Why not 1 - σ(y): for y = 30 in float32, σ(y) rounds to 1 and 1 - σ(y) is 0,
    /// while the slope is e^-30 = 9e-14; e/(1+e) keeps it.
    @inlinable
    static func logSigmoidSlope<T: FloatScalar>(_ y: T) -> T {
        let e = T.exp(-abs(y))
        return y < 0 ? 1 - e / (1 + e) : e / (1 + e)
    }

    /// σ'(y) from s = σ(y), as torch's sigmoid backward forms it: (1 - s)·s.
    @inlinable
    static func sigmoidSlope<T: FloatScalar>(_ s: T) -> T {
        (1 - s) * s
    }

    /// The permutation that sorts `values` ascending; ties keep their batch order.
    @inlinable
    static func ascendingOrder<T: FloatScalar>(_ values: [T]) -> [Int] {
        values.indices.sorted { values[$0] < values[$1] || (values[$0] == values[$1] && $0 < $1) }
    }

    /// Throws `nonFiniteResult` at the first infinite or NaN element of a computed output.
    @inlinable
    static func noNonFinite<T: FloatScalar>(_ values: Tensor<T>, _ output: String, _ check: InputCheck) throws(StageError) {
        if let i = values.scalars.firstIndex(where: { !$0.isFinite }) {
            throw StageError(.nonFiniteResult, stage: check.stage, argument: output,
                             "\(output) is \(values.scalars[i]) at index \(describe(shape: values.index(ofFlat: i))) "
                             + "(infinite inputs, or a loss beyond the dtype's range)")
        }
    }
}
