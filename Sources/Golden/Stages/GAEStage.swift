import TensorCore
import GAE

/// `gae`: generalized advantage estimation from `start`.
public enum GAEStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "gae", module: "GAE",
        function: "gae(values:rewards:start:gamma:lambda:)",
        peer: "DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.get_advantages_and_returns",
        params: [.int("start"), .real("gamma"), .real("lambda")],
        inputs: [.float("values"), .float("rewards")],
        outputs: ["advantages", "returns"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try gae(values: a.float("values"), rewards: a.float("rewards"), start: a.int("start"),
                             gamma: a.real("gamma"), lambda: a.real("lambda"))
        return ["advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns)]
    }
}
