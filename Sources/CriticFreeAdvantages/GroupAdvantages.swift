import TensorCore

/// Which group baseline TRL uses (`group_advantages`'s `estimator`), by the trainer's name.
public enum GroupAdvantageEstimator: String, Sendable, CaseIterable {
    /// `GRPOTrainer`: the group mean as baseline, optionally divided by a std.
    case grpo
    /// `RLOOTrainer`: the mean of the *other* completions of the group as baseline.
    case rloo

    /// The estimator called `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `estimator`) for any other name.
    @inlinable
    public init(named name: String, stage: String) throws(StageError) {
        self = try peerSwitch(name, argument: "estimator", stage: stage)
    }
}

/// GRPO's `scale_rewards`: what the centred reward is divided by (TRL's names).
public enum RewardScaling: String, Sendable, CaseIterable {
    /// The std of the completion's own group (the GRPO paper).
    case group
    /// The std of all N rewards of the batch (the "Lite PPO" suggestion).
    case batch
    /// No division at all: Dr. GRPO's fix for the difficulty bias of the group std.
    case none

    /// The scaling called `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `scale_rewards`) for any other name.
    @inlinable
    public init(named name: String, stage: String) throws(StageError) {
        self = try peerSwitch(name, argument: "scale_rewards", stage: stage)
    }
}

/// GRPO's `multi_objective_aggregation`: how K reward functions become one advantage (TRL's names).
public enum MultiObjectiveAggregation: String, Sendable, CaseIterable {
    /// Weighted sum of the K rewards first, then the group normalisation (TRL's default).
    case sumThenNormalize = "sum_then_normalize"
    /// GDPO: each reward normalised within its group, then the weighted sum, then a batch normalisation.
    case normalizeThenSum = "normalize_then_sum"

    /// The aggregation called `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `multi_objective_aggregation`) for any other name.
    @inlinable
    public init(named name: String, stage: String) throws(StageError) {
        self = try peerSwitch(name, argument: "multi_objective_aggregation", stage: stage)
    }
}

/// One scalar advantage per completion, with what it was made of.
public struct GroupAdvantagesResult<T: FloatScalar>: Sendable {
    /// A, the advantage of each completion. Shape [N].
    public var advantages: Tensor<T>
    /// r, the scalar reward the baseline is taken from. Shape [N]. grpo
    /// `sum_then_normalize`: Σ_k w_k·R[:,k]; grpo `normalize_then_sum`: Σ_k w_k·Z[:,k];
    /// rloo: the weighted sum after the clamp and the KL penalty.
    public var rewards: Tensor<T>
    /// What is subtracted from r, per completion. Shape [N]. grpo: the group mean
    /// (`normalize_then_sum`: the batch mean of r); rloo: the mean of the other G − 1
    /// rewards of the group (0 when G = 1, where A is 0 anyway).
    public var baselines: Tensor<T>
    /// The std A was divided by (before its + 1e-4), per completion. Shape [N]. grpo
    /// with `scale_rewards` `none` and rloo without `normalize_advantages` divide by
    /// nothing: then it is nil.
    public var scales: Tensor<T>?

    @inlinable
    public init(advantages: Tensor<T>, rewards: Tensor<T>, baselines: Tensor<T>, scales: Tensor<T>?) {
        self.advantages = advantages
        self.rewards = rewards
        self.baselines = baselines
        self.scales = scales
    }
}

/// GRPO's group-relative advantage: each completion's reward against the mean of
/// its group, optionally divided by a standard deviation.
///
/// `sum_then_normalize` (TRL's default):
/// ```
/// r_n  = Σ_k w_k·R[n,k]                        (K reward functions, weights w)
/// μ_n  = mean of r over n's group               (rows iG … iG+G−1 answer prompt i)
/// s_n  = group:  std of r over n's group        (0 when G = 1)
///        batch:  std of r over all N            (0 when N = 1)
///        none:   not used
/// A_n  = r_n − μ_n,     then, unless none:  A_n ← A_n / (s_n + 1e-4)
/// ```
/// `normalize_then_sum` (GDPO; `scale_rewards` is not read):
/// ```
/// Z[n,k] = (R[n,k] − μ_k) / (s_k + 1e-4)       group mean and group std of column k
/// r_n    = Σ_k w_k·Z[n,k]
/// A_n    = (r_n − mean(r)) / (std(r) + 1e-4)   over all N (std 0 when N = 1)
/// ```
///
/// Shapes: `rewards` [N] (one reward function, K = 1) or [N, K] float,
/// `rewardWeights` K numbers (nil: all 1) -> `advantages` [N].
///
/// "std" is the unbiased sample std, computed as TRL's `nanstd` does:
/// `sqrt(mean((x − μ)²) · n/(n − 1))`. The 1e-4 keeps a group of equal rewards
/// finite: its advantages are (r − μ)/1e-4 = 0, but any rounding noise in μ is
/// multiplied by 1e4, so only a group whose mean is exact gives exact zeros.
///
/// Quirks kept from the peer: the mean is always the group's, even with
/// `scale_rewards = batch` (only the std is the batch's); `normalize_then_sum`
/// ignores `scale_rewards`. TRL keeps its reward weights in float32; here they are
/// rounded to T, which is the same thing for float32 inputs and removes the cast
/// for float64 ones (the spec's precision rule).
///
/// Matches TRL `trl/trainer/grpo_trainer.py :: GRPOTrainer._generate_and_score_completions`
/// (the advantage lines), with `nanstd` from `trl/trainer/utils.py`. TRL's NaN
/// rewards ("unscorable" completions) are not represented: NaN is an error here.
///
/// - Throws: ``StageError`` for `rewards` of rank other than 1 or 2, an empty batch
///   or K = 0, NaN in `rewards`, `groupSize` below 1 or not dividing N, a weight
///   list whose length is not K, a non-finite weight, or a non-finite advantage
///   (`nonFiniteResult`, from infinite rewards).
@inlinable
public func grpoAdvantages<T: FloatScalar>(
    rewards: Tensor<T>,
    groupSize: Int,
    rewardWeights: [Double]? = nil,
    scaleRewards: RewardScaling = .group,
    multiObjectiveAggregation: MultiObjectiveAggregation = .sumThenNormalize
) throws(StageError) -> GroupAdvantagesResult<T> {
    let check = InputCheck(stage: "group_advantages")
    let table = try rewardTable(rewards, groupSize: groupSize, weights: rewardWeights, check: check)
    let n = table.count, g = groupSize, k = table.functions
    let eps = T(1e-4)

    var combined = [T](repeating: 0, count: n)
    var baselines = [T](repeating: 0, count: n)
    var scales: [T]? = nil
    var advantages = [T](repeating: 0, count: n)
    switch multiObjectiveAggregation {
    case .sumThenNormalize:
        combined = weightedSum(table.values, weights: table.weights, rows: n, columns: k)
        var std = [T](repeating: 0, count: n)
        for start in stride(from: 0, to: n, by: g) {
            let group = Array(combined[start..<start + g])
            let mean = average(group)
            for i in start..<start + g { baselines[i] = mean }
            if scaleRewards == .group || scaleRewards == .none {
                let s: T = g > 1 ? unbiasedStd(group, mean: mean) : 0
                for i in start..<start + g { std[i] = s }
            }
        }
        if scaleRewards == .batch {
            let s: T = n > 1 ? unbiasedStd(combined, mean: average(combined)) : 0
            std = [T](repeating: s, count: n)
        }
        for i in 0..<n {
            advantages[i] = combined[i] - baselines[i]
            if scaleRewards != .none {
                advantages[i] = advantages[i] / (std[i] + eps)
            }
        }
        scales = scaleRewards == .none ? nil : std
    case .normalizeThenSum:
        // Z[n,k]: each reward function normalised within each group.
        var normalized = [T](repeating: 0, count: n * k)
        for start in stride(from: 0, to: n, by: g) {
            for column in 0..<k {
                let group = (start..<start + g).map { table.values[$0 * k + column] }
                let mean = average(group)
                let s: T = g > 1 ? unbiasedStd(group, mean: mean) : 0
                for i in start..<start + g {
                    normalized[i * k + column] = (table.values[i * k + column] - mean) / (s + eps)
                }
            }
        }
        combined = weightedSum(normalized, weights: table.weights, rows: n, columns: k)
        let mean = average(combined)
        let s: T = n > 1 ? unbiasedStd(combined, mean: mean) : 0
        for i in 0..<n {
            baselines[i] = mean
            advantages[i] = (combined[i] - mean) / (s + eps)
        }
        scales = [T](repeating: s, count: n)
    }
    let result = Tensor.make([n], advantages)
    try check.allFinite(result, "advantages")
    return GroupAdvantagesResult(advantages: result, rewards: Tensor.make([n], combined),
                                 baselines: Tensor.make([n], baselines), scales: scales.map { Tensor.make([n], $0) })
}

/// RLOO's leave-one-out advantage: each completion's reward against the mean
/// reward of the *other* completions of its group, with the KL penalty inside the
/// reward.
///
/// ```
/// r_n = clamp(Σ_k w_k·R[n,k], lo, hi)                  (no clamp when the range is nil)
/// β ≠ 0:  r_n ← r_n − β·Σ_t (old_log_probs − ref_log_probs)[n,t]·completion_mask[n,t]
/// G > 1:  A_n = r_n − (Σ_group r − r_n)/(G − 1)        G = 1:  A_n = 0
/// normalize_advantages:  A ← (A − mean(A)) / (std(A) + 1e-4)   over all N
///                        (N = 1: TRL's std is NaN and nan_to_num makes A = 0)
/// ```
///
/// Shapes: `rewards` [N] or [N, K] float; with β ≠ 0, `oldLogProbs`, `refLogProbs`
/// [N, T] float and `completionMask` [N, T] 0/1 -> `advantages` [N].
///
/// The KL term is the k1 estimate summed (not averaged) over the completion's
/// tokens, with the *sampling* log-probs: a sequence-level penalty, which TRL
/// subtracts before the baseline (so the baseline also sees the siblings' KL).
/// Leave-one-out makes the advantages of a group sum to 0 exactly in real
/// arithmetic: Σ_n A_n = Σ r − (G·Σ r − Σ r)/(G − 1) = 0. With β = 0 the three
/// log-prob inputs are not read (TRL does not compute them).
///
/// Matches TRL `trl/trainer/rloo_trainer.py :: RLOOTrainer._generate_and_score_completions`
/// (the reward, KL and advantage lines).
///
/// - Throws: ``StageError`` for `rewards` of rank other than 1 or 2, an empty batch
///   or K = 0, NaN in an input it reads, `groupSize` below 1 or not dividing N, a
///   weight list whose length is not K, a clip range with lo > hi, β ≠ 0 without the
///   three log-prob inputs or with them in shapes other than [N, T], a mask that is
///   not 0/1, or a non-finite advantage (`nonFiniteResult`).
@inlinable
public func rlooAdvantages<T: FloatScalar>(
    rewards: Tensor<T>,
    groupSize: Int,
    rewardWeights: [Double]? = nil,
    beta: Double = 0.05,
    rewardClipRange: (lo: Double, hi: Double)? = nil,
    normalizeAdvantages: Bool = false,
    oldLogProbs: Tensor<T>? = nil,
    refLogProbs: Tensor<T>? = nil,
    completionMask: Tensor<Int64>? = nil
) throws(StageError) -> GroupAdvantagesResult<T> {
    let check = InputCheck(stage: "group_advantages")
    let table = try rewardTable(rewards, groupSize: groupSize, weights: rewardWeights, check: check)
    let n = table.count, g = groupSize, k = table.functions
    try check.finite("beta", beta)
    if let range = rewardClipRange {
        try check.clipRange(range, "reward_clip_range")
    }
    var r = weightedSum(table.values, weights: table.weights, rows: n, columns: k)
    if let range = rewardClipRange {
        let lo = T(range.lo), hi = T(range.hi)
        r = r.map { min(max($0, lo), hi) }
    }
    if beta != 0 {
        guard let old = oldLogProbs, let ref = refLogProbs, let mask = completionMask else {
            let missing = [("old_log_probs", oldLogProbs == nil), ("ref_log_probs", refLogProbs == nil),
                           ("completion_mask", completionMask == nil)].filter(\.1).map(\.0)
            throw StageError(.shapeMismatch, stage: check.stage, argument: missing[0],
                             "rloo with beta = \(beta) needs old_log_probs, ref_log_probs and completion_mask [N, T]; "
                             + "missing: \(missing.joined(separator: ", "))")
        }
        try check.rank(old, "old_log_probs", is: 2, legend: "[N, T]")
        try check.shape(old, "old_log_probs", equals: [n, old.shape[1]], sameAs: "[N, T], N = \(n) from rewards")
        try check.shape(ref, "ref_log_probs", equals: old.shape, sameAs: "same as old_log_probs")
        try check.shape(mask, "completion_mask", equals: old.shape, sameAs: "same as old_log_probs")
        try check.binaryMask(mask, "completion_mask")
        try check.noNaN(old, "old_log_probs")
        try check.noNaN(ref, "ref_log_probs")
        let t = old.shape[1], coefficient = T(beta)
        for row in 0..<n {
            // Σ_t (old − ref)·mask: each product formed in T (as torch does), summed in Double.
            var kl = 0.0
            for col in 0..<t {
                let i = row * t + col
                kl += Double((old.scalars[i] - ref.scalars[i]) * T(mask.scalars[i]))
            }
            r[row] = r[row] - coefficient * T(kl)
        }
    }

    var baselines = [T](repeating: 0, count: n)
    var advantages = [T](repeating: 0, count: n)
    if g > 1 {
        for start in stride(from: 0, to: n, by: g) {
            let groupSum = T(r[start..<start + g].reduce(0.0) { $0 + Double($1) })
            for i in start..<start + g {
                baselines[i] = (groupSum - r[i]) / T(g - 1)
                advantages[i] = r[i] - baselines[i]
            }
        }
    }
    var scales: [T]? = nil
    if normalizeAdvantages {
        if n > 1 {
            let mean = average(advantages)
            let s = unbiasedStd(advantages, mean: mean)
            advantages = advantages.map { ($0 - mean) / (s + T(1e-4)) }
            scales = [T](repeating: s, count: n)
        } else {
            // TRL: std of one number is NaN, (A − mean)/NaN is NaN, nan_to_num makes it 0.
            advantages = [0]
        }
    }
    let result = Tensor.make([n], advantages)
    try check.allFinite(result, "advantages")
    return GroupAdvantagesResult(advantages: result, rewards: Tensor.make([n], r),
                                 baselines: Tensor.make([n], baselines), scales: scales.map { Tensor.make([n], $0) })
}

// MARK: - Shared by the module's stages

/// The checked reward table: N rows of K reward functions, and the weights in T.
@usableFromInline
struct RewardTable<T: FloatScalar>: Sendable {
    @usableFromInline let values: [T]
    @usableFromInline let count: Int
    @usableFromInline let functions: Int
    @usableFromInline let weights: [T]

    @inlinable
    init(values: [T], count: Int, functions: Int, weights: [T]) {
        self.values = values
        self.count = count
        self.functions = functions
        self.weights = weights
    }
}

/// Checks `rewards` ([N] or [N, K]), the group size and the weights.
@inlinable
func rewardTable<T: FloatScalar>(
    _ rewards: Tensor<T>, groupSize: Int, weights: [Double]?, check: InputCheck
) throws(StageError) -> RewardTable<T> {
    if rewards.rank == 1 {
        try check.rank(rewards, "rewards", is: 1, legend: "[N]")
    } else {
        try check.rank(rewards, "rewards", is: 2, legend: "[N] or [N, K]")
    }
    let n = rewards.shape[0], k = rewards.rank == 2 ? rewards.shape[1] : 1
    guard n > 0, k > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "rewards",
                         "an empty batch: rewards has shape \(describe(shape: rewards.shape)), N and K must be at least 1")
    }
    try check.noNaN(rewards, "rewards")
    try check.groupSize(groupSize, "group_size", count: n)
    let w = weights ?? [Double](repeating: 1, count: k)
    guard w.count == k else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "reward_weights",
                         "\(w.count) weight(s) for K = \(k) reward function(s) (rewards \(describe(shape: rewards.shape)))")
    }
    for (i, x) in w.enumerated() {
        try check.finite("reward_weights[\(i)]", x)
    }
    return RewardTable(values: rewards.scalars, count: n, functions: k, weights: w.map { T($0) })
}

/// r_n = Σ_k w_k·R[n,k]: each product in T, summed left to right in T (K is a handful).
@inlinable
func weightedSum<T: FloatScalar>(_ values: [T], weights: [T], rows: Int, columns: Int) -> [T] {
    (0..<rows).map { row in
        var sum: T = 0
        for column in 0..<columns {
            sum += values[row * columns + column] * weights[column]
        }
        return sum
    }
}

/// The mean: the sum accumulated in Double, rounded once to T, divided by n in T.
@inlinable
func average<T: FloatScalar>(_ values: [T]) -> T {
    T(values.reduce(0.0) { $0 + Double($1) }) / T(values.count)
}

/// TRL's `nanstd` (no NaNs here): sqrt(mean((x − μ)²) · n/(n − 1)), n ≥ 2.
///
/// The Bessel factor n/(n − 1) is formed in T: TRL's is a float32 quotient of two
/// integer counts, which is T for float32 inputs; for float64 inputs the spec removes
/// that cast. The spec's list of the peers' float32 casts does not name this one, so
/// TRL run as it stands in float64 differs from a float64 fixture here by about
/// 1.5e-8 relative (4/3 becomes 1.3333334); checked by running TRL's own lines.
@inlinable
func unbiasedStd<T: FloatScalar>(_ values: [T], mean: T) -> T {
    let squares = values.map { ($0 - mean) * ($0 - mean) }
    let variance = average(squares) * (T(values.count) / T(values.count - 1))
    return variance.squareRoot()
}

extension InputCheck {
    /// Throws unless `size` is at least 1 and divides `count` (N rows in groups of `size`).
    @inlinable
    func groupSize(_ size: Int, _ argument: String, count: Int) throws(StageError) {
        guard size >= 1 else {
            throw StageError(.parameterOutOfRange, stage: stage, argument: argument, "\(argument) = \(size) is below 1")
        }
        guard count % size == 0 else {
            throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                             "\(argument) = \(size) does not divide N = \(count)")
        }
    }

    /// Throws unless `range` is `[lo, hi]` with finite-or-infinite, non-NaN ends and lo <= hi.
    @inlinable
    func clipRange(_ range: (lo: Double, hi: Double), _ argument: String) throws(StageError) {
        guard !range.lo.isNaN, !range.hi.isNaN, range.lo <= range.hi else {
            throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                             "\(argument) = [\(range.lo), \(range.hi)] must have lo <= hi")
        }
    }

    /// Throws at the first element of an output that is NaN or infinite (the zoo's
    /// catch-all: no forward output may come out non-finite).
    @inlinable
    func allFinite<T: FloatScalar>(_ tensor: Tensor<T>, _ output: String) throws(StageError) {
        if let flat = tensor.scalars.firstIndex(where: { !$0.isFinite }) {
            throw StageError(.nonFiniteResult, stage: stage, argument: output,
                             "the result is \(tensor.scalars[flat]) at index \(describe(shape: tensor.index(ofFlat: flat))) "
                             + "(infinite inputs?)")
        }
    }
}
