import TensorCore

/// The reward model's score for each sequence: its value at the last answer token.
///
/// ```
/// c_end[b] = prompt_length + (first t >= prompt_length with input_ids[b, t] == pad_id)
///            or L if the answer has no pad
/// end_scores[b] = values[b, c_end[b] - 1]
/// ```
///
/// Shapes: `inputIds` [B, L] int64, `values` [B, L] float (the value head at every
/// token) -> `end_scores` [B].
///
/// The search for the pad starts at `promptLength`, so pads inside the prompt (left
/// padding) are ignored. A row with no pad after the prompt runs to full length
/// and is scored at L - 1.
///
/// Matches DeepSpeed-Chat `dschat/utils/model/reward_model.py :: RewardModel.forward_value`
/// (`chosen_end_scores`), which PPO uses as the reward model's score.
///
/// - Throws: ``StageError`` for shapes that do not agree, NaN in `values`,
///   `promptLength < 2` (DeepSpeed-Chat asserts `prompt_length > 1`), or a
///   `promptLength >= L` that leaves no answer position.
@inlinable
public func rewardEndScores<T: FloatScalar>(
    inputIds: Tensor<Int64>,
    values: Tensor<T>,
    padId: Int64,
    promptLength: Int
) throws(StageError) -> Tensor<T> {
    let check = InputCheck(stage: "reward_end_scores")
    try check.rank(inputIds, "input_ids", is: 2, legend: "[B, L]")
    let batchSize = inputIds.shape[0], length = inputIds.shape[1]
    try check.shape(values, "values", equals: inputIds.shape, sameAs: "same as input_ids")
    try check.parameter("prompt_length", promptLength, in: 2..<Int.max,
                        "DeepSpeed-Chat requires prompt_length > 1 to select the end score")
    try check.parameter("prompt_length", promptLength, in: 2..<length,
                        "prompt_length must leave at least one answer position in L = \(length)")
    try check.noNaN(values, "values")

    var endScores = [T]()
    for row in 0..<batchSize {
        var end = length
        for t in promptLength..<length where inputIds[row, t] == padId {
            end = t
            break
        }
        endScores.append(values[row, end - 1])
    }
    return Tensor.make([batchSize], endScores)
}
