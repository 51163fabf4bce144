import TensorCore

/// OpenRLHF's `advantage_estimator`, by its names.
public enum TokenAdvantageEstimator: String, Sendable, CaseIterable {
    /// GAE with a critic's values, then whitened.
    case gae
    /// REINFORCE++: no baseline, the reward-to-go, then whitened over the batch.
    case reinforce
    /// Leave-one-out baseline over the n samples of a prompt (RLOO), γ forced to 1.
    case rloo
    /// The group mean as baseline, γ forced to 1, then whitened (REINFORCE++-baseline).
    case reinforceBaseline = "reinforce_baseline"
    /// GRPO's group normalisation (r − mean)/(std + 1e-9), γ forced to 1.
    case groupNorm = "group_norm"
    /// Dr. GRPO: the group mean as baseline, no std, γ forced to 1, no whitening.
    case drGrpo = "dr_grpo"

    /// The estimator called `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `estimator`) for any other name.
    @inlinable
    public init(named name: String, stage: String) throws(StageError) {
        self = try peerSwitch(name, argument: "estimator", stage: stage)
    }

    /// Whether the scalar rewards are shaped against the other samples of their prompt.
    @inlinable public var usesGroupBaseline: Bool { self != .gae && self != .reinforce }
    /// Whether the advantages are whitened over the batch afterwards (REINFORCE++'s step).
    @inlinable public var isWhitened: Bool { self == .gae || self == .reinforce || self == .reinforceBaseline }
}

/// Per-token advantages and returns, with every intermediate.
public struct TokenAdvantagesResult<T: FloatScalar>: Sendable {
    /// The scalar rewards after the group baseline (before the clamp). Shape [N].
    public var shapedRewards: Tensor<T>
    /// clamp(shaped reward) at each row's last action token, −c·kl everywhere. Shape [N, T].
    public var tokenRewards: Tensor<T>
    /// GAE: A + V·m; the others: the reward-to-go G. Never whitened. Shape [N, T].
    public var returns: Tensor<T>
    /// The advantages, whitened for gae, reinforce and reinforce_baseline. Shape [N, T].
    public var advantages: Tensor<T>
    /// The whitening's μ and 1/sqrt(max(v, 1e-8)) (1 with `no_std_norm`); nil when not whitened.
    public var whitening: (mean: T, inverseStd: T)?
    /// The discount the returns were computed with: `gamma`, or 1 for the baseline estimators.
    public var gammaUsed: Double

    @inlinable
    public init(shapedRewards: Tensor<T>, tokenRewards: Tensor<T>, returns: Tensor<T>, advantages: Tensor<T>,
                whitening: (mean: T, inverseStd: T)?, gammaUsed: Double) {
        self.shapedRewards = shapedRewards
        self.tokenRewards = tokenRewards
        self.returns = returns
        self.advantages = advantages
        self.whitening = whitening
        self.gammaUsed = gammaUsed
    }
}

/// OpenRLHF's critic-free (and GAE) advantages: one scalar reward per completion
/// becomes a per-token reward, then returns and advantages.
///
/// ```
/// 1. group baseline, rewards viewed as [N/n, n] (n = n_samples_per_prompt):
///      rloo:                       s_b = r_b − (Σ_group r − r_b)/(n − 1)
///      reinforce_baseline, dr_grpo: s_b = r_b − mean_group
///      group_norm:                 s_b = (r_b − mean_group)/(std_group + 1e-9)   (unbiased std)
///      gae, reinforce:             s_b = r_b                                       -> shaped_rewards
/// 2. c = max(kl_coef, 0);  e_b = last column with action_mask = 1 (T − 1 for a row with none)
///      token_rewards[b,t] = (clamp(s_b, lo, hi) if t = e_b else 0) + (−c·kl[b,t])   (every t)
/// 3. gae:    V' = values·m, r' = token_rewards·m, backwards from V'_T = A_T = 0:
///              δ_t = r'_t + γ·V'_{t+1} − V'_t,   A_t = δ_t + (γ·λ)·A_{t+1},   returns = A + V'
///    others: G_t = r'_t + γ_e·G_{t+1}, G_T = 0,   returns = advantages = G
///              γ_e = gamma for reinforce, 1 for rloo, reinforce_baseline, group_norm, dr_grpo
/// 4. whitening (gae, reinforce, reinforce_baseline), over the whole batch:
///      μ = Σ A·m / Σ m;   no_std_norm: A ← A − μ
///      else: v = Σ (A − μ)²·m / Σ m  (biased),  A ← (A − μ)·(1/sqrt(max(v, 1e-8)))
/// ```
///
/// Shapes: `rewards` [N], `kl` [N, T] float, `actionMask` [N, T] 0/1, `values`
/// [N, T] float (gae only) -> `shapedRewards` [N], `tokenRewards`, `returns`,
/// `advantages` [N, T].
///
/// What is masked: the returns recursion reads `token_rewards·m` (and `values·m`),
/// so a masked position adds nothing, but the recursion still runs over it (a hole in
/// a mask passes G on unchanged). `token_rewards` itself keeps −c·kl at masked
/// positions. The whitening's mean and variance run over the unmasked positions of
/// the whole batch, and the transform is applied at *every* position without
/// re-zeroing: a position past a row's end, where A was 0, ends at −μ/sqrt(max(v, 1e-8)).
///
/// Quirks kept from the peer (each is OpenRLHF's, named in its docs):
/// - γ is forced to 1 for the baseline estimators, whatever `gamma` says;
/// - a row with no action token gets its reward written to column T − 1 (OpenRLHF
///   finds the end with an argmax over the flipped mask row, which is 0 for an
///   all-zero row), and the mask then removes it: the row's returns are all 0;
/// - the clamp applies to the *shaped* reward, after the baseline;
/// - `group_norm`'s epsilon is 1e-9 (TRL's GRPO uses 1e-4), so a group of equal
///   rewards gives (r − μ)·1e9: exact zeros only when μ is exact;
/// - OpenRLHF whitens in float32 whatever the dtype. Here the whitening runs in T,
///   which is the peer's arithmetic for float32 and, for float64, the spec's rule of
///   removing the incidental cast.
///
/// Matches OpenRLHF `openrlhf/trainer/ppo_utils/experience_maker.py ::
/// RemoteExperienceMaker.compute_advantages_and_returns` (with `get_advantages_and_returns`
/// and `get_cumulative_returns`) and `openrlhf/models/utils.py :: compute_reward`, for one
/// rollout batch on one rank, length penalties off.
///
/// - Throws: ``StageError`` for shapes that do not agree (or T = 0), an empty batch, NaN
///   in an input, a mask that is not 0/1, `nSamplesPerPrompt` below 1 or not dividing
///   N, `nSamplesPerPrompt = 1` with a baseline estimator, gae without `values`, a
///   whitened estimator whose mask holds no 1 (`emptyMask`), a clip range with
///   lo > hi, non-finite `kl_coef`, `gamma` or `lambd`, or a non-finite output.
@inlinable
public func tokenAdvantages<T: FloatScalar>(
    rewards: Tensor<T>,
    kl: Tensor<T>,
    actionMask: Tensor<Int64>,
    values: Tensor<T>? = nil,
    estimator: TokenAdvantageEstimator = .gae,
    nSamplesPerPrompt: Int = 1,
    klCoef: Double = 0.01,
    rewardClipRange: (lo: Double, hi: Double)? = (lo: -10, hi: 10),
    gamma: Double = 1.0,
    lambd: Double = 1.0,
    noStdNorm: Bool = false
) throws(StageError) -> TokenAdvantagesResult<T> {
    let check = InputCheck(stage: "token_advantages")
    try check.rank(rewards, "rewards", is: 1, legend: "[N]")
    try check.rank(kl, "kl", is: 2, legend: "[N, T]")
    let n = rewards.shape[0]
    guard n > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "rewards",
                         "an empty batch: rewards has shape \(describe(shape: rewards.shape))")
    }
    try check.shape(kl, "kl", equals: [n, kl.shape[1]], sameAs: "[N, T], N = \(n) from rewards")
    let width = kl.shape[1]
    guard width > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "kl",
                         "kl has shape \(describe(shape: kl.shape)): T must be at least 1")
    }
    try check.shape(actionMask, "action_mask", equals: kl.shape, sameAs: "same as kl")
    if let values {
        try check.shape(values, "values", equals: kl.shape, sameAs: "same as kl")
    }
    try check.binaryMask(actionMask, "action_mask")
    try check.noNaN(rewards, "rewards")
    try check.noNaN(kl, "kl")
    if let values { try check.noNaN(values, "values") }
    try check.groupSize(nSamplesPerPrompt, "n_samples_per_prompt", count: n)
    if estimator.usesGroupBaseline && nSamplesPerPrompt == 1 {
        throw StageError(.parameterOutOfRange, stage: check.stage, argument: "n_samples_per_prompt",
                         "\(estimator.rawValue) compares the samples of a prompt with each other and needs "
                         + "n_samples_per_prompt >= 2, got 1 (OpenRLHF's CLI asserts it)")
    }
    if estimator == .gae && values == nil {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "values",
                         "gae needs values [N, T] = \(describe(shape: kl.shape)) from a critic; none given")
    }
    if let range = rewardClipRange { try check.clipRange(range, "reward_clip_range") }
    try check.finite("kl_coef", klCoef)
    try check.finite("gamma", gamma)
    try check.finite("lambd", lambd)
    let mask = actionMask.scalars
    let actionCount = mask.reduce(0) { $0 + Int($1) }
    if estimator.isWhitened && actionCount == 0 {
        throw StageError(.emptyMask, stage: check.stage, argument: "action_mask",
                         "\(estimator.rawValue) whitens over the action tokens, and action_mask "
                         + "\(describe(shape: actionMask.shape)) holds no 1 (OpenRLHF divides 0 by 0)")
    }

    // 1. The group baseline on the scalar rewards.
    let g = nSamplesPerPrompt
    var shaped = rewards.scalars
    if estimator.usesGroupBaseline {
        for start in stride(from: 0, to: n, by: g) {
            let group = Array(rewards.scalars[start..<start + g])
            let groupSum = T(group.reduce(0.0) { $0 + Double($1) })
            let mean = groupSum / T(g)
            var std: T = 0
            if estimator == .groupNorm {
                // torch.std: Σ (x − μ)² / (n − 1), unbiased.
                let squares = group.reduce(0.0) { $0 + Double(($1 - mean) * ($1 - mean)) }
                std = (T(squares) / T(g - 1)).squareRoot()
            }
            for i in start..<start + g {
                let r = rewards.scalars[i]
                switch estimator {
                case .rloo: shaped[i] = r - (groupSum - r) / T(g - 1)
                case .reinforceBaseline, .drGrpo: shaped[i] = r - mean
                case .groupNorm: shaped[i] = (r - mean) / (std + T(1e-9))
                case .gae, .reinforce: shaped[i] = r
                }
            }
        }
    }

    // 2. Token rewards: the clamped score at each row's last action token, −c·kl everywhere.
    let c = T(klCoef > 0 ? klCoef : 0)
    var tokenRewards = Tensor<T>(shape: kl.shape, repeating: 0)
    for row in 0..<n {
        var score = shaped[row]
        if let range = rewardClipRange { score = min(max(score, T(range.lo)), T(range.hi)) }
        var end = width - 1  // a row with no 1: OpenRLHF's argmax lands on column T − 1
        for t in stride(from: width - 1, through: 0, by: -1) where actionMask[row, t] == 1 {
            end = t
            break
        }
        for t in 0..<width {
            tokenRewards[row, t] = (t == end ? score : 0) + (-c * kl[row, t])
        }
    }

    // 3. Returns and advantages, backwards over every column.
    var returns = Tensor<T>(shape: kl.shape, repeating: 0)
    var advantages = Tensor<T>(shape: kl.shape, repeating: 0)
    let gammaUsed = estimator.usesGroupBaseline ? 1.0 : gamma
    let discount = T(gammaUsed)
    for row in 0..<n {
        if estimator == .gae, let values {
            let discountTimesLambda = T(gamma * lambd)
            var lastAdvantage: T = 0
            for t in stride(from: width - 1, through: 0, by: -1) {
                let m = T(actionMask[row, t])
                let value = values[row, t] * m
                let nextValue: T = t < width - 1 ? values[row, t + 1] * T(actionMask[row, t + 1]) : 0
                let delta = tokenRewards[row, t] * m + discount * nextValue - value
                lastAdvantage = delta + discountTimesLambda * lastAdvantage
                advantages[row, t] = lastAdvantage
                returns[row, t] = lastAdvantage + value
            }
        } else {
            var cumulative: T = 0
            for t in stride(from: width - 1, through: 0, by: -1) {
                cumulative = tokenRewards[row, t] * T(actionMask[row, t]) + discount * cumulative
                returns[row, t] = cumulative
                advantages[row, t] = cumulative
            }
        }
    }

    // 4. Whitening over the batch's action tokens, applied at every position.
    var whitening: (mean: T, inverseStd: T)? = nil
    if estimator.isWhitened {
        let count = T(actionCount)
        var sum = 0.0
        for i in advantages.scalars.indices { sum += Double(advantages.scalars[i] * T(mask[i])) }
        let mean = T(sum) / count
        var inverseStd: T = 1
        if !noStdNorm {
            var squares = 0.0
            for i in advantages.scalars.indices {
                let d = advantages.scalars[i] - mean
                squares += Double(d * d * T(mask[i]))
            }
            let variance = T(squares) / count
            // max(v, 1e-8): a batch of equal advantages has v = 0, and 1/sqrt(0) = inf would
            // turn (A − μ) = 0 into 0·inf = NaN; clamped, the selected positions become 0.
            inverseStd = 1 / max(variance, T(1e-8)).squareRoot()
        }
        for i in advantages.scalars.indices {
            advantages.scalars[i] = (advantages.scalars[i] - mean) * inverseStd
        }
        whitening = (mean, inverseStd)
    }

    let shapedRewards = Tensor.make([n], shaped)
    try check.allFinite(shapedRewards, "shaped_rewards")
    try check.allFinite(tokenRewards, "token_rewards")
    try check.allFinite(returns, "returns")
    try check.allFinite(advantages, "advantages")
    return TokenAdvantagesResult(shapedRewards: shapedRewards, tokenRewards: tokenRewards, returns: returns,
                                 advantages: advantages, whitening: whitening, gammaUsed: gammaUsed)
}
