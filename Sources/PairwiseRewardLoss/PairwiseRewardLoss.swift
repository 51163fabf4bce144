import TensorCore

/// The reward model's training loss and the end scores it reports, for a
/// chosen/rejected batch.
public struct PairwiseRewardLossResult<T: FloatScalar>: Sendable {
    /// The loss, `(1/B) Σ_i loss_i`. Shape [].
    public var loss: T
    /// The chosen rows' end scores (DeepSpeed-Chat calls them "mean" scores,
    /// but they are the value at one end token). Shape [B].
    public var chosenMeanScores: Tensor<T>
    /// The rejected rows' end scores. Shape [B].
    public var rejectedMeanScores: Tensor<T>
    /// Where each pair's loss window starts (the first position where the ids
    /// differ). Shape [B]; for a reader, not a fixture output.
    public var divergenceIndices: [Int]
    /// Where each pair's loss window ends (exclusive). Shape [B].
    public var endIndices: [Int]
    /// Each pair's loss, before the mean over the batch. Shape [B].
    public var pairLosses: [T]

    @inlinable
    public init(loss: T, chosenMeanScores: Tensor<T>, rejectedMeanScores: Tensor<T>, divergenceIndices: [Int], endIndices: [Int], pairLosses: [T]) {
        self.loss = loss
        self.chosenMeanScores = chosenMeanScores
        self.rejectedMeanScores = rejectedMeanScores
        self.divergenceIndices = divergenceIndices
        self.endIndices = endIndices
        self.pairLosses = pairLosses
    }
}

/// DeepSpeed-Chat's pairwise reward loss: per token, over the span where the two
/// answers differ.
///
/// ```
/// for each pair i (chosen row i, rejected row B + i):
///   c_end = index of the (k+1)-th pad in chosen ids, or L if there are fewer
///   r_end = the same for the rejected ids          (k = numPaddingAtBeginning)
///   if the two rows are identical:  div = L - 1, end = L, r_end = c_end
///   else:                           div = first t with chosen[t] != rejected[t]
///                                   end = max(c_end, r_end)
///   loss_i = mean_{t in [div, end)} -log σ(r_chosen[t] - r_rejected[t])
/// loss = (1/B) Σ_i loss_i
/// chosen_mean_scores[i]   = r_chosen[c_end - 1]
/// rejected_mean_scores[i] = r_rejected[r_end - 1]
/// ```
///
/// Shapes: `inputIds` [2B, L] int64 (the first B rows chosen, the last B rejected,
/// as `DataCollatorReward` stacks them), `rewards` [2B, L] float (the value head's
/// output at every token) -> `loss` [], `chosen_mean_scores` [B],
/// `rejected_mean_scores` [B].
///
/// The mean runs over the token positions of one pair's window, then over pairs.
/// The window includes positions where the shorter answer is already padding
/// (DeepSpeedExamples issue #316): that is the reference behaviour, kept here.
///
/// Quirks kept from the reference:
/// - `numPaddingAtBeginning` (1 in DeepSpeed-Chat's step 2 and 3 scripts) skips
///   that many pad ids before the one that ends a row: OPT's BOS token has the
///   same id as its pad token, so the first "pad" is really the BOS.
/// - With `numPaddingAtBeginning = 0` and a pad id at position 0, `c_end = 0` and
///   the score index `c_end - 1` is -1, which Python reads as the last position.
///   So does this function.
/// - An identical pair scores one position, the last: its loss is ln 2 exactly
///   when both rows carry the same rewards.
///
/// Matches DeepSpeed-Chat `dschat/utils/model/reward_model.py :: RewardModel.forward`.
///
/// Infinite rewards give what PyTorch gives: a chosen reward of +inf against a
/// finite rejected one adds 0 to its pair's loss, -inf adds +inf; rewards outside
/// every window are never read, and an end score is copied as it is. A window
/// position where the chosen and rejected rewards are the same infinity has a
/// gap of inf - inf = NaN, so the loss is NaN, in PyTorch too: the stage throws.
///
/// - Throws: ``StageError`` for an odd number of rows, shapes that do not agree,
///   NaN in `rewards`, a pair that differs at position 0 (DeepSpeed-Chat asserts
///   `divergence_ind > 0`), a pair whose window `[div, end)` is empty
///   (PyTorch's mean of nothing is NaN), or a loss that would be NaN
///   (`nonFiniteResult` naming `loss`).
@inlinable
public func pairwiseRewardLoss<T: FloatScalar>(
    inputIds: Tensor<Int64>,
    rewards: Tensor<T>,
    padId: Int64,
    numPaddingAtBeginning: Int
) throws(StageError) -> PairwiseRewardLossResult<T> {
    let check = InputCheck(stage: "reward_pairwise_loss")
    try check.rank(inputIds, "input_ids", is: 2, legend: "[2B, L]")
    let rowCount = inputIds.shape[0], length = inputIds.shape[1]
    guard rowCount % 2 == 0 else {
        throw StageError(.invalidPair, stage: check.stage, argument: "input_ids",
                         "expected an even number of rows (B chosen over B rejected), got shape \(describe(shape: inputIds.shape))")
    }
    guard rowCount > 0 else {
        throw StageError(.shapeMismatch, stage: check.stage, argument: "input_ids",
                         "expected at least one chosen/rejected pair, got shape \(describe(shape: inputIds.shape))")
    }
    try check.shape(rewards, "rewards", equals: inputIds.shape, sameAs: "same as input_ids")
    try check.parameter("num_padding_at_beginning", numPaddingAtBeginning, in: 0..<Int.max, "a count of pads to skip")
    try check.noNaN(rewards, "rewards")

    let batchSize = rowCount / 2

    /// Index of the (k+1)-th pad in a row, or L when the row has no more than k pads.
    func endIndex(ofRow row: Int) -> Int {
        var padsSeen = 0
        for t in 0..<length where inputIds[row, t] == padId {
            if padsSeen == numPaddingAtBeginning { return t }
            padsSeen += 1
        }
        return length
    }

    /// Python's `x[i]` for i in [-L, L): a negative index counts from the end.
    func pythonIndex(_ i: Int) -> Int { i < 0 ? i + length : i }

    var pairLosses = [T](), divergenceIndices = [Int](), endIndices = [Int]()
    var chosenScores = [T](), rejectedScores = [T]()
    var loss: T = 0
    for pair in 0..<batchSize {
        let chosenRow = pair, rejectedRow = batchSize + pair
        let chosenEnd = endIndex(ofRow: chosenRow)
        var rejectedEnd: Int
        let divergence: Int, end: Int
        if let firstDifference = (0..<length).first(where: { inputIds[chosenRow, $0] != inputIds[rejectedRow, $0] }) {
            rejectedEnd = endIndex(ofRow: rejectedRow)
            end = max(chosenEnd, rejectedEnd)
            divergence = firstDifference
        } else {
            // Identical ids: score only the last position.
            end = length
            divergence = length - 1
            rejectedEnd = chosenEnd
        }
        guard divergence > 0 else {
            throw StageError(.invalidPair, stage: check.stage, argument: "input_ids",
                             "pair \(pair) (rows \(chosenRow) and \(rejectedRow)) differs at position 0; the chosen and rejected answers must share a prompt")
        }
        guard divergence < end else {
            throw StageError(.invalidPair, stage: check.stage, argument: "input_ids",
                             "pair \(pair) has an empty loss window [\(divergence), \(end)): both rows reach padding (ends \(chosenEnd), \(rejectedEnd)) before they differ")
        }
        // loss_i = mean over the window of -log σ(chosen - rejected)
        var windowSum = 0.0
        for t in divergence..<end {
            windowSum += Double(-logSigmoid(rewards[chosenRow, t] - rewards[rejectedRow, t]))
        }
        let pairLoss = T(windowSum) / T(end - divergence)
        loss += pairLoss
        pairLosses.append(pairLoss)
        divergenceIndices.append(divergence)
        endIndices.append(end)
        chosenScores.append(rewards[chosenRow, pythonIndex(chosenEnd - 1)])
        rejectedScores.append(rewards[rejectedRow, pythonIndex(rejectedEnd - 1)])
    }
    loss = loss / T(batchSize)
    let result = PairwiseRewardLossResult(
        loss: loss,
        chosenMeanScores: Tensor.make([batchSize], chosenScores),
        rejectedMeanScores: Tensor.make([batchSize], rejectedScores),
        divergenceIndices: divergenceIndices,
        endIndices: endIndices,
        pairLosses: pairLosses
    )
    // The end scores are copies of NaN-free rewards; only the loss can be NaN.
    try check.noNaNInResult(loss, "loss", terms: Tensor.make([batchSize], pairLosses), "the pair loss")
    return result
}

/// The gradient of `pairwiseRewardLoss` with respect to the per-token rewards.
///
/// ```
/// loss = (1/B) Σ_i (1/|W_i|) Σ_{t in W_i} -log σ(c_t - r_t)      W_i = [div_i, end_i)
/// d/dx (-log σ(x)) = -σ(-x)
/// grad_rewards[chosen row i, t]   = -σ(r_t - c_t) / (B · |W_i|)   for t in W_i
/// grad_rewards[rejected row i, t] = +σ(r_t - c_t) / (B · |W_i|)   for t in W_i
/// ```
///
/// Shapes: as `pairwiseRewardLoss`; `grad_rewards` [2B, L], zero outside each
/// pair's window (the prompt, and padding past the later end). The end scores are
/// reported, not trained: they carry no gradient.
///
/// Each pair's gradient pushes chosen rewards up and rejected ones down by the same
/// amount, so a chosen and rejected row sum to zero. With equal rewards the
/// gradient is ±1/(2·B·|W|), not zero: the loss ln 2 still asks for a margin.
///
/// An infinite gap c_t - r_t gives σ = 0 or 1, a finite gradient (0 or
/// ∓1/(B·|W|)), as autograd does; a NaN gap is already a NaN loss.
///
/// - Throws: ``StageError`` as `pairwiseRewardLoss` does, and `nonFiniteResult`
///   naming `grad_rewards` where the gradient would be NaN.
@inlinable
public func pairwiseRewardLossGradRewards<T: FloatScalar>(
    inputIds: Tensor<Int64>, rewards: Tensor<T>, padId: Int64, numPaddingAtBeginning: Int
) throws(StageError) -> Tensor<T> {
    let forward = try pairwiseRewardLoss(inputIds: inputIds, rewards: rewards, padId: padId,
                                         numPaddingAtBeginning: numPaddingAtBeginning)
    let batchSize = inputIds.shape[0] / 2
    var gradRewards = Tensor<T>(shape: rewards.shape, repeating: 0)
    for pair in 0..<batchSize {
        let chosenRow = pair, rejectedRow = batchSize + pair
        let window = forward.divergenceIndices[pair]..<forward.endIndices[pair]
        let weight = (T(1) / T(batchSize)) / T(window.count)
        for t in window {
            let gradChosen = -weight * sigmoid(rewards[rejectedRow, t] - rewards[chosenRow, t])
            gradRewards[chosenRow, t] = gradChosen
            gradRewards[rejectedRow, t] = -gradChosen
        }
    }
    try InputCheck(stage: "reward_pairwise_loss").noNaNInResult(gradRewards, "grad_rewards")
    return gradRewards
}
