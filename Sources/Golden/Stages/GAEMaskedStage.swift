import TensorCore
import GAEMasked

/// `gae_masked`: align-anything's GAE on values and rewards multiplied by the mask.
public enum GAEMaskedStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "gae_masked", module: "GAEMasked",
        function: "gaeMasked(values:rewards:sequenceMask:start:gamma:gaeLambda:)",
        peer: "align-anything align_anything/trainers/text_to_text/ppo.py :: PPOTrainer.get_advantages_and_returns",
        params: [.int("start"), .real("gamma", default: 1.0), .real("gae_lambda", default: 0.95)],
        inputs: [.float("values"), .float("rewards"), .mask("sequence_mask")],
        outputs: ["advantages", "returns"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try gaeMasked(values: a.float("values"), rewards: a.float("rewards"),
                                   sequenceMask: a.mask("sequence_mask"), start: a.int("start"),
                                   gamma: a.real("gamma"), gaeLambda: a.real("gae_lambda"))
        return ["advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns)]
    }
}
