import TensorCore
import GatherLogProbs

/// `gather_log_probs`: the label's log-prob under log-softmax, and with the
/// optional `grad_output` its gradient with respect to the logits.
public enum GatherLogProbsStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "gather_log_probs", module: "GatherLogProbs",
        function: "gatherLogProbs(logits:labels:), gatherLogProbsGradLogits(logits:labels:gradOutput:)",
        peer: "DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: gather_log_probs",
        params: [],
        inputs: [.float("logits"), .ids("labels"), .float("grad_output", optional: true)],
        outputs: ["log_probs", "grad_logits"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let logits = try a.float("logits"), labels = try a.ids("labels")
        var outputs = ["log_probs": FixtureTensor(try gatherLogProbs(logits: logits, labels: labels))]
        if let gradOutput = try a.optionalFloat("grad_output") {
            outputs["grad_logits"] = FixtureTensor(
                try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: gradOutput))
        }
        return outputs
    }
}
