import TensorCore
import GatherLogProbs
import PairwiseRewardLoss
import ComputeRewards
import GAE
import ActorLoss
import CriticLoss
import DPOLoss
import PPOStep
import SFTLoss
import TinyLM

/// The stages of format `rlhf-golden-v1`, with the outputs each one produces
/// (gradients last; `gather_log_probs` gives `grad_logits` only when the fixture
/// has the input `grad_output`).
public let stageOutputs: [String: [String]] = [
    "gather_log_probs": ["log_probs", "grad_logits"],
    "reward_pairwise_loss": ["loss", "chosen_mean_scores", "rejected_mean_scores", "grad_rewards"],
    "reward_end_scores": ["end_scores"],
    "compute_rewards": ["rewards"],
    "gae": ["advantages", "returns"],
    "actor_loss": ["loss", "grad_log_probs"],
    "critic_loss": ["loss", "grad_values"],
    "dpo_loss": ["loss", "reward", "better_sample_reward", "worse_sample_reward", "reward_accuracy", "reward_margin",
                 "grad_better_log_probs", "grad_worse_log_probs"],
    "ppo_losses": ["rewards", "old_values", "advantages", "returns", "actor_loss", "critic_loss"],
    // Added after v1 (a new stage never changes an old one).
    "sft_loss": ["loss", "grad_logits"],
    "tiny_lm": ["logits", "values"] + TinyLMWeight.allCases.map { "grad_" + $0.rawValue },
]

/// Runs a fixture's stage on its inputs, in the precision of its float inputs, and
/// returns the outputs by their fixture names.
///
/// - Throws: ``FixtureProblem`` when the fixture cannot be run (unknown stage, a
///   missing input or param); ``StageError`` when the stage rejects the input.
public func runStage(_ fixture: Fixture) throws -> [String: FixtureTensor] {
    guard stageOutputs[fixture.stage] != nil else {
        throw FixtureProblem(field: "stage", "unknown stage \"\(fixture.stage)\"; known: \(stageOutputs.keys.sorted().joined(separator: ", "))")
    }
    if fixture.stage == "tiny_lm" {
        return try runTinyLM(fixture)
    }
    // Compute in float64 if any float input is float64 (PyTorch's type promotion),
    // else in float32.
    let floatDTypes = fixture.inputs.values.filter(\.isFloat).map(\.dtype)
    if floatDTypes.contains(.float32) && !floatDTypes.contains(.float64) {
        return try run(fixture, reader: InputReader<Float>(fixture: fixture))
    }
    return try run(fixture, reader: InputReader<Double>(fixture: fixture))
}

private func run<T: FloatScalar>(_ fixture: Fixture, reader r: InputReader<T>) throws -> [String: FixtureTensor] {
    switch fixture.stage {
    case "gather_log_probs":
        let logits = try r.float("logits"), labels = try r.ids("labels")
        var outputs = ["log_probs": FixtureTensor(try gatherLogProbs(logits: logits, labels: labels))]
        if fixture.inputs["grad_output"] != nil {
            outputs["grad_logits"] = FixtureTensor(
                try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: r.float("grad_output")))
        }
        return outputs

    case "reward_pairwise_loss":
        let inputIds = try r.ids("input_ids"), rewards = try r.float("rewards")
        let padId = Int64(try r.int("pad_id")), skipped = try r.int("num_padding_at_beginning")
        let result = try pairwiseRewardLoss(inputIds: inputIds, rewards: rewards, padId: padId,
                                            numPaddingAtBeginning: skipped)
        let grad = try pairwiseRewardLossGradRewards(inputIds: inputIds, rewards: rewards, padId: padId,
                                                     numPaddingAtBeginning: skipped)
        return ["loss": FixtureTensor(scalar: result.loss),
                "chosen_mean_scores": FixtureTensor(result.chosenMeanScores),
                "rejected_mean_scores": FixtureTensor(result.rejectedMeanScores),
                "grad_rewards": FixtureTensor(grad)]

    case "reward_end_scores":
        let endScores = try rewardEndScores(inputIds: r.ids("input_ids"), values: r.float("values"),
                                            padId: Int64(r.int("pad_id")), promptLength: r.int("prompt_length"))
        return ["end_scores": FixtureTensor(endScores)]

    case "compute_rewards":
        let rewards = try computeRewards(logProbs: r.float("log_probs"), refLogProbs: r.float("ref_log_probs"),
                                         rewardScore: r.float("reward_score"), actionMask: r.mask("action_mask"),
                                         promptLength: r.int("prompt_length"), klCtl: r.real("kl_ctl"),
                                         clipRewardValue: r.real("clip_reward_value"))
        return ["rewards": FixtureTensor(rewards)]

    case "gae":
        let result = try gae(values: r.float("values"), rewards: r.float("rewards"), start: r.int("start"),
                             gamma: r.real("gamma"), lambda: r.real("lambda"))
        return ["advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns)]

    case "actor_loss":
        let logProbs = try r.float("log_probs"), oldLogProbs = try r.float("old_log_probs")
        let advantages = try r.float("advantages"), mask = try r.mask("mask"), cliprange = try r.real("cliprange")
        let result = try actorLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                                   cliprange: cliprange)
        let grad = try actorLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                             mask: mask, cliprange: cliprange)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_log_probs": FixtureTensor(grad)]

    case "critic_loss":
        let values = try r.float("values"), oldValues = try r.float("old_values"), returns = try r.float("returns")
        let mask = try r.mask("mask"), cliprangeValue = try r.real("cliprange_value")
        let result = try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                    cliprangeValue: cliprangeValue)
        let grad = try criticLossGradValues(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                            cliprangeValue: cliprangeValue)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_values": FixtureTensor(grad)]

    case "dpo_loss":
        let better = try r.float("better_log_probs"), worse = try r.float("worse_log_probs")
        let refBetter = try r.float("ref_better_log_probs"), refWorse = try r.float("ref_worse_log_probs")
        let beta = try r.real("beta")
        let result = try dpoLoss(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: refBetter,
                                 refWorseLogProbs: refWorse, beta: beta)
        let grads = try dpoLossGradLogProbs(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: refBetter,
                                            refWorseLogProbs: refWorse, beta: beta)
        return ["loss": FixtureTensor(scalar: result.loss),
                "grad_better_log_probs": FixtureTensor(grads.gradBetterLogProbs),
                "grad_worse_log_probs": FixtureTensor(grads.gradWorseLogProbs),
                "reward": FixtureTensor(result.reward),
                "better_sample_reward": FixtureTensor(result.betterSampleReward),
                "worse_sample_reward": FixtureTensor(result.worseSampleReward),
                "reward_accuracy": FixtureTensor(scalar: result.rewardAccuracy),
                "reward_margin": FixtureTensor(result.rewardMargin)]

    case "ppo_losses":
        let result = try ppoLosses(
            attentionMask: r.mask("attention_mask"), logProbs: r.float("log_probs"),
            refLogProbs: r.float("ref_log_probs"), values: r.float("values"),
            newLogProbs: r.float("new_log_probs"), newValues: r.float("new_values"),
            rewardScore: r.float("reward_score"), promptLength: r.int("prompt_length"),
            klCtl: r.real("kl_ctl"), clipRewardValue: r.real("clip_reward_value"),
            cliprange: r.real("cliprange"), cliprangeValue: r.real("cliprange_value"),
            gamma: r.real("gamma"), lambda: r.real("lambda"))
        return ["rewards": FixtureTensor(result.rewards), "old_values": FixtureTensor(result.oldValues),
                "advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns),
                "actor_loss": FixtureTensor(scalar: result.actor.loss),
                "critic_loss": FixtureTensor(scalar: result.critic.loss)]

    case "sft_loss":
        let logits = try r.float("logits"), labels = try r.ids("labels")
        let ignoreIndex = Int64(fixture.params["ignore_index"] == nil ? -100 : try r.int("ignore_index"))
        let result = try sftLoss(logits: logits, labels: labels, ignoreIndex: ignoreIndex)
        let grad = try sftLossGradLogits(logits: logits, labels: labels, ignoreIndex: ignoreIndex)
        return ["loss": FixtureTensor(scalar: result.loss), "grad_logits": FixtureTensor(grad)]

    default:
        throw FixtureProblem(field: "stage", "unknown stage \"\(fixture.stage)\"")
    }
}

/// The `tiny_lm` stage: the model's forward on given weights, and its backward for
/// the upstream gradients `grad_logits` and `grad_values`. Float64 only, as the
/// model is written in `Double`.
private func runTinyLM(_ fixture: Fixture) throws -> [String: FixtureTensor] {
    var named = [String: Tensor<Double>]()
    for (name, tensor) in fixture.inputs where name != "input_ids" {
        guard case .float64(let t) = tensor else {
            throw StageError(.wrongDType, stage: fixture.stage, argument: name,
                             "the tiny_lm stage computes in float64, got \(tensor.dtype.rawValue)")
        }
        named[name] = t
    }
    let reader = InputReader<Double>(fixture: fixture)
    let model = TinyLM(parameters: try TinyLMParameters(named: named))
    let activations = try model.forward(reader.ids("input_ids"))
    let gradient = try model.backward(activations, gradLogits: reader.float("grad_logits"),
                                      gradValues: reader.float("grad_values"))
    var outputs = ["logits": FixtureTensor(activations.logits), "values": FixtureTensor(activations.values)]
    for weight in TinyLMWeight.allCases {
        outputs["grad_" + weight.rawValue] = FixtureTensor(gradient.tensor(weight))
    }
    return outputs
}

/// Turns a fixture's named inputs and params into the typed arguments of a stage.
private struct InputReader<T: FloatScalar> {
    let fixture: Fixture

    func tensor(_ name: String) throws(FixtureProblem) -> FixtureTensor {
        guard let tensor = fixture.inputs[name] else {
            throw FixtureProblem(field: "inputs.\(name)", "missing input for stage \(fixture.stage)")
        }
        return tensor
    }

    /// A float input in the stage's precision (int64 data are promoted, as PyTorch would).
    func float(_ name: String) throws -> Tensor<T> {
        switch try tensor(name) {
        case .float64(let t): return t.converted(to: T.self)
        case .float32(let t): return t.converted(to: T.self)
        case .int64(let t): return Tensor.make(t.shape, t.scalars.map { T($0) })
        case .bool:
            throw StageError(.wrongDType, stage: fixture.stage, argument: name, "expected a float tensor, got bool")
        }
    }

    /// Token ids or labels: int64 only.
    func ids(_ name: String) throws -> Tensor<Int64> {
        let input = try tensor(name)
        guard case .int64(let t) = input else {
            throw StageError(.wrongDType, stage: fixture.stage, argument: name, "token ids and labels are int64, got \(input.dtype.rawValue)")
        }
        return t
    }

    /// A 0/1 mask: int64 or bool (float 0/1 is accepted too).
    func mask(_ name: String) throws -> Tensor<Int64> {
        switch try tensor(name) {
        case .int64(let t): return t
        case .bool(let t): return Tensor.make(t.shape, t.scalars.map { $0 ? 1 : 0 })
        case .float64(let t): return try floatMask(t, name)
        case .float32(let t): return try floatMask(t.converted(to: Double.self), name)
        }
    }

    private func floatMask(_ t: Tensor<Double>, _ name: String) throws -> Tensor<Int64> {
        if let bad = t.scalars.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw StageError(.invalidMask, stage: fixture.stage, argument: name,
                             "masks hold 0/1, got \(t.scalars[bad]) at index \(describe(shape: t.index(ofFlat: bad)))")
        }
        return Tensor.make(t.shape, t.scalars.map { Int64($0) })
    }

    func param(_ name: String) throws(FixtureProblem) -> String {
        guard let value = fixture.params[name] else {
            throw FixtureProblem(field: "params.\(name)", "missing param for stage \(fixture.stage)")
        }
        guard case .number(let text) = value else {
            throw FixtureProblem(field: "params.\(name)", "expected a number, got \(value.kindName)")
        }
        return text
    }

    /// A whole-number param (`start`, `prompt_length`, `pad_id`, ...).
    func int(_ name: String) throws(FixtureProblem) -> Int {
        let text = try param(name)
        if let n = Int(text) { return n }
        if let d = Double(text), d == d.rounded(), abs(d) < 1e15 { return Int(d) }
        throw FixtureProblem(field: "params.\(name)", "expected a whole number, got \(text)")
    }

    /// A real param (`gamma`, `beta`, `cliprange`, ...), kept in Double as Python keeps it.
    func real(_ name: String) throws(FixtureProblem) -> Double {
        let text = try param(name)
        guard let x = Double(text) else { throw FixtureProblem(field: "params.\(name)", "expected a number, got \(text)") }
        return x
    }
}
