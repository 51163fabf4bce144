import TensorCore
import Golden
import GAEMasked

/// The well-known wrong align-anything GAE.
enum GAEMaskedMistakes {
    static let chapter = "Chapters/12-three-ppo-steps"

    static let entry = StageMistakes(stage: "gae_masked", mistakes: [maskIgnored])

    static let maskIgnored = Mistake(
        id: "gae_masked.mask-ignored", stage: "gae_masked", chapter: chapter,
        title: "values and rewards not multiplied by the mask before the recursion",
        explanation: "align-anything multiplies values and rewards by the sequence mask before GAE, so a pad's value is 0 and nothing past the answer leaks back. Unmasked, the critic's guess at a pad becomes the last answer token's bootstrap V_t+1.") { a in
        let values = try a.float("values")
        let ones = Tensor<Int64>(shape: values.shape, repeating: 1)
        let result = try gaeMasked(values: values, rewards: a.float("rewards"), sequenceMask: ones, start: a.int("start"),
                                   gamma: a.real("gamma"), gaeLambda: a.real("gae_lambda"))
        return ["advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns)]
    }
}
