// Chapter 10 · End to end: a tiny model taught by SFT, judged by a reward model,
// moved by PPO and by DPO.
//
// Reads top to bottom: the model checked against PyTorch, the toy language, then
// the four phases of the articles in order, each one calling the library's
// stages (Sources/EndToEnd has the loops, Sources/TinyLM the model). Options:
//   --seed N      every random number of the run (default 7)
//   --steps N     PPO steps (default 100, at most 10000)
//   --kl-ctl X    the KL penalty's coefficient (default 0.8; DeepSpeed-Chat's is 0.1,
//                 see the README for why this toy needs a tighter leash)
//   --plot PATH   where to write the SVG plot of reward and KL
//   --recipe R    whose PPO step: deepspeed-chat (default), align-anything or trl
// Run it with `make chapter N=10` or `swift run -c release ch10-end-to-end`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import ChapterSupport
import EndToEnd
import TensorCore
import TinyLM

// MARK: Options

var settings = PipelineSettings()
var plotPath: String?
/// 100 times the default: the chapter runs PPO twice, and a longer run is a long wait.
let maximumSteps = 10_000
let usage = "usage: ch10-end-to-end [--seed N] [--steps N] [--kl-ctl X] [--plot PATH]\n       [--recipe deepspeed-chat|align-anything|trl]"
var arguments = CommandLine.arguments.dropFirst()
while let option = arguments.popFirst() {
    func value() -> String {
        guard let next = arguments.popFirst() else { print("\(option) needs a value\n\(usage)"); exit(2) }
        return next
    }
    switch option {
    case "--seed":
        guard let seed = UInt64(value()) else { print("--seed takes a whole number >= 0\n\(usage)"); exit(2) }
        settings.seed = seed
    case "--steps":
        guard let steps = Int(value()), steps >= 1, steps <= maximumSteps else {
            print("--steps takes a whole number from 1 to \(maximumSteps)\n\(usage)"); exit(2)
        }
        settings.ppo.steps = steps
    case "--kl-ctl":
        guard let klCtl = Double(value()), klCtl.isFinite, klCtl >= 0 else {
            print("--kl-ctl takes a finite number >= 0\n\(usage)"); exit(2)
        }
        settings.ppo.klCtl = klCtl
    case "--plot":
        // Checked now, not after a run of minutes: a file path whose directory exists.
        let path = value()
        let directory = (path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        let namesDirectory = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        guard !path.isEmpty, !namesDirectory, FileManager.default.isWritableFile(atPath: directory.isEmpty ? "." : directory)
        else {
            print("--plot takes the path of a file in an existing, writable directory, got '\(path)'\n\(usage)"); exit(2)
        }
        plotPath = path
    case "--recipe":
        guard let recipe = PPORecipe(rawValue: value()) else {
            print("--recipe takes deepspeed-chat, align-anything or trl\n\(usage)"); exit(2)
        }
        settings.ppo.recipe = recipe
    case "--help", "-h":
        print(usage); exit(0)
    default:
        print("unknown option \(option)\n\(usage)"); exit(2)
    }
}
let defaults = PipelineSettings()
let isDefaultRun = settings.seed == defaults.seed && settings.ppo.steps == defaults.ppo.steps
    && settings.ppo.klCtl == defaults.ppo.klCtl && settings.ppo.recipe == defaults.ppo.recipe

let chapter = Chapter(number: 10, title: "End to end: SFT, a reward model, PPO and DPO on a tiny model")
chapter.say("""
The chapters so far computed each stage on given tensors. Here a real (tiny) language model goes
through the whole pipeline of the articles: supervised fine-tuning, a reward model, PPO with four
models, and DPO. Every loss and every gradient is the library's; only the model is new.
""")

/// Elapsed seconds on a progress line, only when a person is watching: a pasted
/// or tested output must be the same on every run.
let started = Date()
@MainActor func progress(_ text: String) {
    let elapsed = isatty(STDOUT_FILENO) != 0 ? String(format: "  (t = %.1f s)", Date().timeIntervalSince(started)) : ""
    print(text + elapsed)
}

/// On a terminal, one line that PPO rewrites at every step (nothing when piped).
@MainActor func stepLine(_ record: PPOStepRecord) {
    guard isatty(STDOUT_FILENO) != 0 else { return }
    let total = settings.ppo.steps
    let line = String(format: "  step %d/%d  reward %.3f  KL %.3f", record.step, total, record.meanReward, record.meanKL)
    print("\r" + line + (record.step == total ? "\n" : ""), terminator: "")
    fflush(nil)  // every stream: the line has no newline to flush it
}

// MARK: 1. The model

chapter.heading("1. The model, checked against PyTorch")
let config = settings.model
chapter.say("""
TinyLM (Sources/TinyLM/TinyLM.swift): token and position embeddings, one causal self-attention
block and a tanh MLP, both residual, an LM head, and a value head on the same body, which turns it
into a reward model or a critic as DeepSpeed-Chat's RewardModel does with its v_head.
Here V = \(config.vocabularySize), C = \(config.width), H = \(config.hidden), context \(config.contextLength): \
\(TinyLMParameters.count(config)) weights.
Its forward and backward, on the weights of a PyTorch run (GoldenData/tiny_lm/random-1-f64.json):
""")
let fixture = chapter.fixture("tiny_lm/random-1-f64")
var fixtureWeights = [String: Tensor<Double>]()
for weight in TinyLMWeight.allCases {
    fixtureWeights[weight.rawValue] = chapter.floatInput(fixture, weight.rawValue)
}
let fixtureModel = TinyLM(parameters: chapter.must { try TinyLMParameters(named: fixtureWeights) })
let fixturePass = chapter.must { try fixtureModel.forward(chapter.intInput(fixture, "input_ids")) }
let fixtureGradient = chapter.must {
    try fixtureModel.backward(fixturePass, gradLogits: chapter.floatInput(fixture, "grad_logits"),
                              gradValues: chapter.floatInput(fixture, "grad_values"))
}
chapter.check("values", ours: fixturePass.values, against: fixture)
chapter.check("grad_value_head", ours: fixtureGradient.tensor(.valueHead), against: fixture)
chapter.check("grad_attention_query", ours: fixtureGradient.tensor(.attentionQuery), against: fixture)
chapter.say("""

(golden-verify checks all 15 outputs of all tiny_lm fixtures: logits, values, every weight's
gradient.)
""")

// MARK: 2. The language

chapter.heading("2. A toy movie-review language")
let data = ToyData(seed: settings.dataSeed)
chapter.say("""
\(ToyLanguage.vocabularySize) words: \(ToyLanguage.words.prefix(10).joined(separator: " "))
  \(ToyLanguage.words.dropFirst(10).prefix(12).joined(separator: " "))
  \(ToyLanguage.words.dropFirst(22).joined(separator: " "))
Prompts are "the SUBJECT was/is" (\(ToyLanguage.prompts.count) of them, 3 tokens); answers are up to 4 words and <eos>,
right-padded with <pad> to L = \(ToyLanguage.sequenceLength). Positive answers use positive words, negative
ones negative words, mixed ones one of each with "but". Preference: positive > mixed > negative.
""")
var examples = Table(["data", "count", "example"])
examples.add(["SFT demonstrations (1/3 each kind)", String(data.demonstrations.count),
              ToyLanguage.text(data.demonstrations[0].inputIds, answerFrom: 3)])
examples.add(["preference pairs: chosen", String(data.trainingPairs.count),
              ToyLanguage.text(data.trainingPairs[0].chosen.inputIds, answerFrom: 3)])
examples.add(["                  rejected", "", ToyLanguage.text(data.trainingPairs[0].rejected.inputIds, answerFrom: 3)])
examples.add(["held-out pairs", String(data.heldOutPairs.count), "for the accuracies below"])
chapter.show(examples)

/// The same four prompts, answered by a model; the same draw for every model.
let shownPrompts = [ToyLanguage.prompts[0], ToyLanguage.prompts[3], ToyLanguage.prompts[5], ToyLanguage.prompts[8]]
@MainActor func answers(of model: TinyLM) -> [(text: String, score: Double)] {
    var rng = SplitMix64(seed: settings.seed &+ 100)
    return chapter.must {
        let prompts = Tensor.make([shownPrompts.count * 2, 3], (shownPrompts + shownPrompts).flatMap { $0 })
        let sequences = try model.generate(prompts: prompts, maxNewTokens: ToyLanguage.maxAnswerTokens,
                                           temperature: 1, endOfSequence: ToyLanguage.endOfSequence,
                                           padId: ToyLanguage.padId, rng: &rng)
        let scores = try rewardScores(prepared.rewardModel, sequences: sequences)
        return (0..<prompts.shape[0]).map { (ToyLanguage.text(sequences.row($0), answerFrom: 3), scores.scalars[$0]) }
    }
}
@MainActor func showAnswers(_ title: String, of model: TinyLM) {
    var table = Table(["\(title): two samples per prompt", "reward"])
    for (text, score) in answers(of: model) { table.add([text, fmt(score, 2)]) }
    chapter.show(table)
}

// MARK: 3. SFT

chapter.heading("3. Phase 1, SFT: learn to talk like the demonstrations")
let prepared = chapter.must {
    try prepareModels(settings) { phase in
        progress(phase == "sft" ? "[1/4] SFT: \(settings.sftSteps) steps ..."
                                : "[2/4] reward model: \(settings.rewardSteps) steps ...")
    }
}
let sftLosses = prepared.sftLosses
chapter.say("""
\(settings.sftSteps) Adam steps of \(settings.sftBatchSize) demonstrations, sft_loss and sftLossGradLogits (the prompt is
trained on too, as DeepSpeed-Chat's step 1 does). The loss, step by step:
  \(sparkline(sftLosses, width: 50))   \(fmt(sftLosses.first!, 3)) -> \(fmt(mean(sftLosses.suffix(20)), 3)) (mean of the last 20)
""")
showAnswers("SFT model", of: prepared.sft)

// MARK: 4. Reward model

chapter.heading("4. Phase 2, the reward model: the SFT body with a value head")
let rewardLosses = prepared.rewardLosses
let baseline = prepared.sftReward
chapter.say("""
Initialised from the SFT model, trained \(settings.rewardSteps) steps on \(settings.rewardBatchSize) pairs at a time with
reward_pairwise_loss (chosen rows first, then rejected, as DataCollatorReward stacks them):
  \(sparkline(rewardLosses, width: 50))   \(fmt(rewardLosses.first!, 3)) -> \(fmt(mean(rewardLosses.suffix(20)), 3))
Held-out pair accuracy (chosen_mean_scores > rejected_mean_scores): \(fmt(prepared.rewardAccuracy * 100, 1))%.
Its score of \(baseline.count) answers sampled from the SFT model (reward_end_scores, read at <eos>):
  mean \(fmt(baseline.mean, 3)), standard deviation \(fmt(baseline.standardDeviation, 3)). PPO has to beat this mean.
""")

// MARK: 5. PPO

chapter.heading("5. Phase 3, PPO: actor, reference, reward model and critic")
let ppo = settings.ppo
chapter.say("""
Actor and reference from SFT, critic from the reward model. Each step samples one answer to each
of \(ppo.batchSize) prompts, scores it, and runs \(ppo.epochs) epochs of ppo_losses (compute_rewards, gae, actor_loss,
critic_loss) with their backward passes. kl_ctl = \(fmt(ppo.klCtl, 2)), clip_reward_value = \(fmt(ppo.clipRewardValue, 1)), \
cliprange = \(fmt(ppo.cliprange, 2)),
gamma = \(fmt(ppo.gamma, 2)), lambda = \(fmt(ppo.lambda, 2)). KL is the mean over the batch of the sum over answer tokens of
log pi - log pi_ref: how far, in nats, the actor has moved from the SFT model.
""")
if ppo.recipe != defaults.ppo.recipe {
    let step = ppo.recipe == .trl ? "TRL's ppo_losses_joint_whitened" : "align-anything's ppo_losses_seq_mean"
    chapter.say("""
    Recipe \(ppo.recipe.rawValue): the losses and gradients of each epoch are \(step) with that peer's
    defaults (Sources/EndToEnd/ProximalPolicyOptimization.swift, PPORecipe), kl_ctl kept at \(fmt(ppo.klCtl, 2)).
    """)
}
progress("[3/4] PPO: \(ppo.steps) steps ...")
let ppoRun = chapter.must { try runPPO(prepared, settings: ppo, seed: settings.seed &+ 2, progress: stepLine) }
let records = ppoRun.records
var ppoTable = Table(["step", "reward", "KL", "actor loss", "critic loss", "answer length"])
for record in records where record.step == 1 || record.step % 10 == 0 {
    ppoTable.add([String(record.step), fmt(record.meanReward, 3), fmt(record.meanKL, 3), fmt(record.actorLoss, 4),
                  fmt(record.criticLoss, 4), fmt(record.meanAnswerLength, 2)])
}
chapter.show(ppoTable, maximumRows: 16)
chapter.say("\n  (every 10th step above; the sparklines below and the plot show every step)\n")
for (name, series) in [("reward", records.map(\.meanReward)), ("KL", records.map(\.meanKL)),
                       ("actor loss", records.map(\.actorLoss)), ("critic loss", records.map(\.criticLoss))] {
    chapter.say("  \(padded(name, 12)) \(sparkline(series, width: 50))  \(fmt(series.min()!, 2)) .. \(fmt(series.max()!, 2))")
}
var evaluationRng = SplitMix64(seed: settings.seed &+ 4)
let afterPPO = chapter.must {
    try rewardStatistics(of: ppoRun.actor, rewardModel: prepared.rewardModel, count: settings.evaluationSamples,
                         rng: &evaluationRng)
}
let rise = afterPPO.mean - baseline.mean
chapter.say("""

The actor's answers now score \(fmt(afterPPO.mean, 3)) on average (\(afterPPO.count) samples), against \(fmt(baseline.mean, 3)) for SFT:
a rise of \(fmt(rise, 3)), or \(fmt(rise / baseline.standardDeviation, 2)) of the SFT answers' standard deviations.
""")
showAnswers("after PPO", of: ppoRun.actor)

// MARK: 6. The leash

chapter.heading("6. The leash: the same PPO without the KL penalty")
var unleashed = ppo
unleashed.klCtl = ppo.klCtl > 0 ? 0 : defaults.ppo.klCtl
let leashed = ppo.klCtl > 0 ? records : []
progress("[3/4] PPO again with kl_ctl = \(fmt(unleashed.klCtl, 2)) ...")
let comparisonRun = chapter.must {
    try runPPO(prepared, settings: unleashed, seed: settings.seed &+ 2, progress: stepLine)
}
let comparison = comparisonRun.records
let (withPenalty, withoutPenalty) = ppo.klCtl > 0 ? (leashed, comparison) : (comparison, records)
let unleashedActor = ppo.klCtl > 0 ? comparisonRun.actor : ppoRun.actor
let penaltyKL = mean(withPenalty.suffix(10).map(\.meanKL)), freeKL = mean(withoutPenalty.suffix(10).map(\.meanKL))
let klScale = 0...max(withPenalty.map(\.meanKL).max()!, withoutPenalty.map(\.meanKL).max()!)
let penaltyCoefficient = ppo.klCtl > 0 ? ppo.klCtl : unleashed.klCtl
chapter.say("""
compute_rewards charges -kl_ctl * (log pi - log pi_ref) on every token. Without it, nothing
stops the actor from collapsing onto whatever the reward model likes best, however unlike the
SFT model:
  KL, kl_ctl = \(padded(fmt(penaltyCoefficient, 2), 4)) \(sparkline(withPenalty.map(\.meanKL), width: 50, range: klScale))  \
last 10 steps: \(fmt(penaltyKL, 2))
  KL, kl_ctl = 0    \(sparkline(withoutPenalty.map(\.meanKL), width: 50, range: klScale))  last 10 steps: \(fmt(freeKL, 2))
(one scale for both). Without the penalty the KL ends \(fmt(freeKL / penaltyKL, 1)) times larger; the reward
it buys is \(fmt(mean(withoutPenalty.suffix(10).map(\.meanReward)), 2)) against \(fmt(mean(withPenalty.suffix(10).map(\.meanReward)), 2)). What the actor says without it:
""")
showAnswers("kl_ctl = 0", of: unleashedActor)

// MARK: 7. DPO

chapter.heading("7. Phase 4, DPO: the same pairs, no reward model, no sampling")
progress("[4/4] DPO ...")
let dpoRun = chapter.must { try runDPO(prepared, settings, seed: settings.seed &+ 3) }
let sftAccuracy = chapter.must { try preferenceAccuracy(prepared.sft, pairs: data.heldOutPairs) }
let dpoAccuracy = chapter.must { try preferenceAccuracy(dpoRun.policy, pairs: data.heldOutPairs) }
chapter.say("""
From the SFT model, with the SFT model as the frozen reference: \(settings.dpoSteps) steps of \(settings.dpoBatchSize) pairs,
dpo_loss (beta = \(fmt(settings.dpoBeta, 2))) and dpoLossGradLogProbs through the per-token log-probs:
  \(sparkline(dpoRun.losses, width: 50))   \(fmt(dpoRun.losses.first!, 3)) (ln 2) -> \(fmt(mean(dpoRun.losses.suffix(20)), 3))
Held-out preference accuracy, the share of pairs whose chosen answer the model finds more likely
(sum of answer log-probs): SFT \(fmt(sftAccuracy * 100, 1))%, DPO \(fmt(dpoAccuracy * 100, 1))%.
""")
showAnswers("after DPO", of: dpoRun.policy)

// MARK: 8. The plot

chapter.heading("8. The plot")
let defaultPlot = isDefaultRun ? chapter.directory + "/reward-kl.svg" : NSTemporaryDirectory() + "ch10-end-to-end.svg"
let plotFile = plotPath ?? defaultPlot
var plot = SVGPlot(title: "PPO on the toy language (seed \(settings.seed))", xLabel: "PPO step")
plot.addPanel(title: "mean reward of the actor's answers", series: [
    .init(name: "kl_ctl \(fmt(penaltyCoefficient, 2))", values: withPenalty.map(\.meanReward), color: "#1f77b4"),
    .init(name: "kl_ctl 0", values: withoutPenalty.map(\.meanReward), color: "#d62728", dashed: true),
    .init(name: "SFT baseline", values: [Double](repeating: baseline.mean, count: records.count), color: "#7f7f7f",
          dashed: true),
])
plot.addPanel(title: "KL to the reference (nats per answer)", series: [
    .init(name: "kl_ctl \(fmt(penaltyCoefficient, 2))", values: withPenalty.map(\.meanKL), color: "#1f77b4"),
    .init(name: "kl_ctl 0", values: withoutPenalty.map(\.meanKL), color: "#d62728", dashed: true),
])
do {
    try plot.write(to: plotFile)
} catch {
    print("cannot write the plot to \(plotFile): \(error)"); exit(1)
}
let repository = (chapter.directory as NSString).deletingLastPathComponent + "/"
let shownPlot = plotFile.hasPrefix(repository) ? String(plotFile.dropFirst(repository.count - "Chapters/".count)) : plotFile
chapter.say("Reward and KL per step, with and without the penalty: \(shownPlot)")

// MARK: 9. Claims

chapter.heading("9. What this run must show")
chapter.say("""
Checked on this run, seed \(settings.seed): the claims are about this seed's numbers, not every seed's
(the chapter's README says how they fare over seeds 1-8).

""")
chapter.claim(rise >= baseline.standardDeviation,
              "PPO lifts the mean reward by at least one SFT standard deviation (\(fmt(rise, 2)) >= \(fmt(baseline.standardDeviation, 2)))")
chapter.claim(penaltyKL <= 3,
              "with kl_ctl = \(fmt(penaltyCoefficient, 2)) the KL stays bounded (last 10 steps \(fmt(penaltyKL, 2)) <= 3 nats)")
chapter.claim(freeKL >= 3 * penaltyKL,
              "without the penalty the KL is several times larger (\(fmt(freeKL, 2)) >= 3 x \(fmt(penaltyKL, 2)))")
chapter.claim(dpoAccuracy > sftAccuracy,
              "DPO's held-out preference accuracy beats SFT's (\(fmt(dpoAccuracy * 100, 1))% > \(fmt(sftAccuracy * 100, 1))%)")
chapter.claim(prepared.rewardAccuracy >= 0.9,
              "the reward model ranks held-out pairs right (\(fmt(prepared.rewardAccuracy * 100, 1))% >= 90%)")
chapter.say("""

Run fingerprint (the actor's weights after PPO): \(ppoRun.actor.parameters.fingerprint). The same seed
gives the same fingerprint and every number above, on every run.
""")
chapter.finish()
