import TensorCore
import SFTLoss

/// `sft_loss`: the causal-LM cross-entropy with its one-token shift and
/// `ignore_index`, and its gradient with respect to the logits.
public enum SFTLossStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "sft_loss", module: "SFTLoss",
        function: "sftLoss(logits:labels:ignoreIndex:), sftLossGradLogits(...)",
        peer: "Hugging Face causal-LM loss, as DeepSpeed-Chat step1_supervised_finetuning trains with it",
        params: [.int("ignore_index", default: -100)],
        inputs: [.float("logits"), .ids("labels")],
        outputs: ["loss", "grad_logits"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let logits = try a.float("logits"), labels = try a.ids("labels")
        let ignoreIndex = Int64(try a.int("ignore_index"))
        let result = try sftLoss(logits: logits, labels: labels, ignoreIndex: ignoreIndex)
        let grad = try sftLossGradLogits(logits: logits, labels: labels, ignoreIndex: ignoreIndex)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_logits": FixtureTensor(grad)]
    }
}
