import TensorCore

/// TRL KTO's `loss_type`, by TRL's names.
public enum KTOLossType: String, Sendable, CaseIterable {
    /// Kahneman-Tversky optimization: value relative to a KL reference point z.
    case kto
    /// APO-zero for unpaired data: the reference point is 0.
    case apoZeroUnpaired = "apo_zero_unpaired"

    /// The loss type TRL calls `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `loss_type`,
    ///   under `stage`) for any other name.
    @inlinable
    public init(named name: String, stage: String) throws(StageError) {
        self = try peerSwitch(name, argument: "loss_type", stage: stage)
    }
}

/// The outputs of ``ktoLoss(policyLogps:refLogps:labels:klLogps:refKLLogps:lossType:beta:desirableWeight:undesirableWeight:)``.
public struct KTOLossResult<T: FloatScalar>: Sendable {
    /// The weighted per-example losses, desirable examples first (in input
    /// order), then undesirable ones (in input order). Shape [B].
    public var losses: Tensor<T>
    /// The reference point z: max(0, mean(kl_logps - ref_kl_logps)) for kto, 0
    /// for apo_zero_unpaired; detached. Shape [].
    public var kl: T
    /// β·h of the desirable examples, in input order. Shape [N_D], possibly [0].
    public var chosenRewards: Tensor<T>
    /// β·h of the undesirable examples, in input order. Shape [N_U], possibly [0].
    public var rejectedRewards: Tensor<T>
    /// mean(losses) over all B entries. Shape [].
    public var loss: T

    @inlinable
    public init(losses: Tensor<T>, kl: T, chosenRewards: Tensor<T>, rejectedRewards: Tensor<T>, loss: T) {
        self.losses = losses
        self.kl = kl
        self.chosenRewards = chosenRewards
        self.rejectedRewards = rejectedRewards
        self.loss = loss
    }
}

/// Kahneman-Tversky optimization (KTO) on unpaired examples, each labelled
/// desirable or undesirable, and TRL's APO-zero variant of it.
///
/// ```
/// h = policy_logps - ref_logps                              (per example: the implicit reward / β)
/// kto:               z = max(0, mean_b(kl_logps - ref_kl_logps))     (detached)
/// apo_zero_unpaired: z = 0
///
///                      desirable (label 1)          undesirable (label 0)
/// kto:                 1 - σ(β·(h - z))             1 - σ(β·(z - h))
/// apo_zero_unpaired:   1 - σ(β·h)                   σ(β·h)
///
/// losses = [desirable_weight × desirable losses..., undesirable_weight × undesirable losses...]
/// loss   = mean(losses)                                     (over all B)
/// chosen_rewards = β·h of the desirable,  rejected_rewards = β·h of the undesirable
/// kl = z
/// ```
///
/// Shapes: `policy_logps`, `ref_logps`, `labels`, `kl_logps`, `ref_kl_logps` [B]
/// -> `losses` [B], `kl` [], `chosen_rewards` [N_D], `rejected_rewards` [N_U],
/// `loss` [], with N_D + N_U = B; either count may be 0.
///
/// The inputs are sequence log-probs (sums over each completion). `kl_logps` and
/// `ref_kl_logps` score the batch's mismatched "KL completions" (TRL pairs each
/// prompt with another example's completion); only `kto` reads them, so they may
/// be left out (nil) for `apo_zero_unpaired`. The mean for z runs over the B KL
/// completions, the loss mean over all B examples whatever their label.
///
/// Matches TRL `trl/trainer/kto_trainer.py :: KTOTrainer._compute_loss` with
/// precomputed reference log-probs, and its `__init__` check that refuses a batch
/// of one for `kto`. Quirks: z is a batch statistic, clamped at 0 and detached,
/// so one example's loss depends on the rest of the batch; `losses` come out
/// reordered, desirable first, not in input order.
///
/// - Throws: ``StageError`` for shapes that do not agree or an empty batch, NaN
///   in an input, a label that is not 0/1, `kto` with B < 2 or without
///   `kl_logps`/`ref_kl_logps`, or any output that comes out NaN or ±inf.
@inlinable
public func ktoLoss<T: FloatScalar>(
    policyLogps: Tensor<T>, refLogps: Tensor<T>, labels: Tensor<Int64>, klLogps: Tensor<T>?, refKLLogps: Tensor<T>?,
    lossType: KTOLossType = .kto, beta: Double = 0.1, desirableWeight: Double = 1, undesirableWeight: Double = 1
) throws(StageError) -> KTOLossResult<T> {
    let check = InputCheck(stage: "kto_loss")
    let z = try ktoReferencePoint(check, policyLogps, refLogps, labels, klLogps, refKLLogps, lossType, beta,
                                  desirableWeight, undesirableWeight)
    let batchSize = policyLogps.shape[0]
    let scale = T(beta)
    var desirableLosses = [T](), undesirableLosses = [T](), chosenRewards = [T](), rejectedRewards = [T]()
    for i in 0..<batchSize {
        let h = policyLogps.scalars[i] - refLogps.scalars[i]
        if labels.scalars[i] == 1 {
            let perExample: T = lossType == .kto ? 1 - sigmoid(scale * (h - z)) : 1 - sigmoid(scale * h)
            desirableLosses.append(T(desirableWeight) * perExample)
            chosenRewards.append(scale * h)
        } else {
            let perExample: T = lossType == .kto ? 1 - sigmoid(scale * (z - h)) : sigmoid(scale * h)
            undesirableLosses.append(T(undesirableWeight) * perExample)
            rejectedRewards.append(scale * h)
        }
    }
    let losses = desirableLosses + undesirableLosses
    let result = KTOLossResult(
        losses: Tensor.make([batchSize], losses), kl: z,
        chosenRewards: Tensor.make([chosenRewards.count], chosenRewards),
        rejectedRewards: Tensor.make([rejectedRewards.count], rejectedRewards),
        loss: T(losses.reduce(0.0) { $0 + Double($1) }) / T(batchSize))
    try check.finiteOutput(result.losses, "losses")
    try check.finiteOutput(Tensor(scalar: result.kl), "kl")
    try check.finiteOutput(result.chosenRewards, "chosen_rewards")
    try check.finiteOutput(result.rejectedRewards, "rejected_rewards")
    try check.finiteOutput(Tensor(scalar: result.loss), "loss")
    return result
}

/// The backward pass of `ktoLoss`: d(loss) / d(policy_logps), in input order.
///
/// ```
/// σ'(x) = σ(x)·(1 - σ(x))
/// kto, desirable:      -(w_D·β/B)·σ'(β·(h - z))       kto, undesirable:      (w_U·β/B)·σ'(β·(z - h))
/// apo, desirable:      -(w_D·β/B)·σ'(β·h)             apo, undesirable:      (w_U·β/B)·σ'(β·h)
/// ```
///
/// z is detached: the KL completions pass nothing, even though z depends on the
/// policy. The reordering of `losses` does not matter to the gradient, which
/// goes back to each example's own position.
///
/// - Throws: ``StageError`` as `ktoLoss` does, and `nonFiniteResult` if the
///   gradient comes out NaN or ±inf.
@inlinable
public func ktoLossGradPolicyLogps<T: FloatScalar>(
    policyLogps: Tensor<T>, refLogps: Tensor<T>, labels: Tensor<Int64>, klLogps: Tensor<T>?, refKLLogps: Tensor<T>?,
    lossType: KTOLossType = .kto, beta: Double = 0.1, desirableWeight: Double = 1, undesirableWeight: Double = 1
) throws(StageError) -> Tensor<T> {
    let forward = try ktoLoss(policyLogps: policyLogps, refLogps: refLogps, labels: labels, klLogps: klLogps,
                              refKLLogps: refKLLogps, lossType: lossType, beta: beta, desirableWeight: desirableWeight,
                              undesirableWeight: undesirableWeight)  // the checks and z
    let batchSize = policyLogps.shape[0]
    let scale = T(beta), z = forward.kl
    var grad = [T]()
    for i in 0..<batchSize {
        let h = policyLogps.scalars[i] - refLogps.scalars[i]
        let desirable = labels.scalars[i] == 1
        // The argument of σ in this example's loss, and the sign its slope enters with.
        let x: T = lossType == .kto ? (desirable ? scale * (h - z) : scale * (z - h)) : scale * h
        let s = sigmoid(x)
        let slope = s * (1 - s)
        let weight = T(desirable ? desirableWeight : undesirableWeight)
        grad.append((desirable ? -1 : 1) * weight * scale * slope / T(batchSize))
    }
    let result = Tensor.make([batchSize], grad)
    try InputCheck(stage: "kto_loss").finiteOutput(result, "grad_policy_logps")
    return result
}

/// The input checks of kto_loss, and its reference point z.
@inlinable
func ktoReferencePoint<T: FloatScalar>(
    _ check: InputCheck, _ policyLogps: Tensor<T>, _ refLogps: Tensor<T>, _ labels: Tensor<Int64>, _ klLogps: Tensor<T>?,
    _ refKLLogps: Tensor<T>?, _ lossType: KTOLossType, _ beta: Double, _ desirableWeight: Double,
    _ undesirableWeight: Double
) throws(StageError) -> T {
    try check.rank(policyLogps, "policy_logps", is: 1, legend: "[B]")
    let batchSize = policyLogps.shape[0]
    try check.shape(refLogps, "ref_logps", equals: policyLogps.shape, sameAs: "policy_logps")
    try check.shape(labels, "labels", equals: policyLogps.shape, sameAs: "policy_logps")
    for (name, tensor) in [("kl_logps", klLogps), ("ref_kl_logps", refKLLogps)] {
        if let tensor { try check.shape(tensor, name, equals: policyLogps.shape, sameAs: "policy_logps") }
    }
    guard batchSize > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "policy_logps",
                         "expected at least one example, got shape \(describe(shape: policyLogps.shape))")
    }
    try check.noNaN(policyLogps, "policy_logps")
    try check.noNaN(refLogps, "ref_logps")
    for (name, tensor) in [("kl_logps", klLogps), ("ref_kl_logps", refKLLogps)] {
        if let tensor { try check.noNaN(tensor, name) }
    }
    try check.binaryMask(labels, "labels")
    for (name, value) in [("beta", beta), ("desirable_weight", desirableWeight), ("undesirable_weight", undesirableWeight)] {
        try check.finite(name, value)
    }
    guard lossType == .kto else { return 0 }
    guard batchSize >= 2 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "policy_logps",
                         "loss_type \"kto\" needs a batch of at least 2, got \(batchSize): with one example the KL "
                         + "reference point is that example's own log-ratio (TRL refuses per_device_train_batch_size 1)")
    }
    guard let klLogps, let refKLLogps else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: klLogps == nil ? "kl_logps" : "ref_kl_logps",
                         "loss_type \"kto\" needs kl_logps and ref_kl_logps for its reference point")
    }
    var sum = 0.0
    for i in 0..<batchSize {
        sum += Double(klLogps.scalars[i] - refKLLogps.scalars[i])
    }
    let mean = T(sum) / T(batchSize)
    return maximumPropagatingNaN(mean, 0)
}
