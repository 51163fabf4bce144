import TensorCore
import TinyLM

/// `tiny_lm`: chapter 10's model, its forward on given weights and its backward
/// for the upstream gradients `grad_logits` and `grad_values`. Float64 only, as
/// the model is written in `Double`.
public enum TinyLMStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "tiny_lm", module: "TinyLM",
        function: "TinyLM.forward(_:), TinyLM.backward(_:gradLogits:gradValues:)",
        peer: "PyTorch autograd on the same formulas; the value head is DeepSpeed-Chat's RewardModel.v_head",
        params: [],
        inputs: [.ids("input_ids"), .float("grad_logits"), .float("grad_values")]
            + TinyLMWeight.allCases.map { .float($0.rawValue) },
        outputs: ["logits", "values"] + TinyLMWeight.allCases.map { "grad_" + $0.rawValue },
        precisions: [.float64])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        // The weights must be float64 themselves: a float32 weight in a float64
        // fixture would otherwise be widened without a word.
        var named = [String: Tensor<Double>]()
        for weight in TinyLMWeight.allCases {
            let name = weight.rawValue
            guard case .float64(let t) = a.fixture.inputs[name] else {
                throw StageError(.wrongDType, stage: a.fixture.stage, argument: name,
                                 "the tiny_lm stage computes in float64, got \(a.fixture.inputs[name]?.dtype.rawValue ?? "nothing")")
            }
            named[name] = t
        }
        let model = TinyLM(parameters: try TinyLMParameters(named: named))
        let activations = try model.forward(a.ids("input_ids"))
        let gradient = try model.backward(activations, gradLogits: a.float("grad_logits").converted(to: Double.self),
                                          gradValues: a.float("grad_values").converted(to: Double.self))
        var outputs = ["logits": FixtureTensor(activations.logits), "values": FixtureTensor(activations.values)]
        for weight in TinyLMWeight.allCases {
            outputs["grad_" + weight.rawValue] = FixtureTensor(gradient.tensor(weight))
        }
        return outputs
    }
}
