import TensorCore

/// `actorLoss` for float32, at memory speed: the same loop over flat arrays,
/// with no generic dispatch per element.
///
/// ```
/// ratio_t = exp((log_probs_t - old_log_probs_t) · m_t)
/// loss_t  = max(-A_t · ratio_t, -A_t · clamp(ratio_t, 1 - ε, 1 + ε))
/// loss    = Σ_{b,t} loss_t · m_t / Σ_{b,t} m_t
/// ```
///
/// Shapes: `logProbs`, `oldLogProbs`, `advantages` [B, M] float32, `mask` [B, M]
/// int64 -> `loss` []. B batch, M the answer positions.
///
/// Equals the plain `actorLoss(logProbs:oldLogProbs:advantages:mask:cliprange:)`
/// bit for bit (the same float32 operations in the same order, libm's expf), and
/// through it DeepSpeed-Chat `ppo_trainer.py :: actor_loss_fn`. The plain one is
/// generic and runs unspecialised when called from another module; this one
/// does not. One thread; allocates its two [B, M] outputs only.
///
/// - Throws: the same ``StageError``s as `actorLoss`, in the same order.
public func actorLossFast(
    logProbs: Tensor<Float>,
    oldLogProbs: Tensor<Float>,
    advantages: Tensor<Float>,
    mask: Tensor<Int64>,
    cliprange: Double
) throws(StageError) -> ActorLossResult<Float> {
    let check = InputCheck(stage: "actor_loss")
    try checkActorLossInputs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                             cliprange: cliprange, check)
    // A concrete scan first; the generic check runs only to name the NaN.
    for (name, tensor) in [("log_probs", logProbs), ("old_log_probs", oldLogProbs), ("advantages", advantages)]
    where containsNaN(tensor.scalars) {
        try check.noNaN(tensor, name)
    }

    let lowerBound = Float(1.0 - cliprange), upperBound = Float(1.0 + cliprange)
    let count = logProbs.count
    var ratios = [Float](repeating: 0, count: count)
    var tokenLosses = [Float](repeating: 0, count: count)
    for i in 0..<count {
        let logRatio = (logProbs.scalars[i] - oldLogProbs.scalars[i]) * Float(mask.scalars[i])
        let ratio = Float.exp(logRatio)
        let clippedRatio = min(max(ratio, lowerBound), upperBound)
        let advantage = advantages.scalars[i]
        ratios[i] = ratio
        tokenLosses[i] = max(-advantage * ratio, -advantage * clippedRatio)
    }
    let (sum, kept) = maskedSum(tokenLosses, mask: mask.scalars)
    let loss = try actorTokenMean(sum: sum, count: kept, mask: mask, check)
    return ActorLossResult(loss: loss, ratios: Tensor.make(logProbs.shape, ratios),
                           tokenLosses: Tensor.make(logProbs.shape, tokenLosses), tokenCount: kept)
}
