// Chapter 16 · GRPO end to end: the toy pipeline of chapter 10, trained with GRPO
// (groups of answers, no critic) beside PPO, from the same SFT and reward models.
//
// Reads top to bottom: one group of answers through group_advantages, the prepared
// models, the two runs, their reward and KL side by side, the plot, the claims.
// Sources/EndToEnd has the loops (ProximalPolicyOptimization.swift,
// GroupRelativePolicyOptimization.swift). Options:
//   --seed N        every random number of the run (default 7)
//   --steps N       steps of both runs (default 100, at most 10000)
//   --beta X        GRPO's KL coefficient (default 0.4; TRL's default is 0)
//   --group-size G  answers per prompt (default 8; the prompts per step follow, 32 / G)
//   --epochs N      GRPO's passes over each batch (default 1, TRL's num_iterations)
//   --plot PATH     where to write the SVG plot of reward and KL
// Run it with `make chapter N=16` or `swift run -c release ch16-grpo-end-to-end`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import ChapterSupport
import CriticFreeAdvantages
import EndToEnd
import Golden
import PolicyLosses
import TensorCore
import TinyLM

// MARK: Options

var settings = PipelineSettings()
var grpo = GRPOSettings()
var plotPath: String?
let maximumSteps = 10_000
let usage = """
usage: ch16-grpo-end-to-end [--seed N] [--steps N] [--beta X] [--group-size G] [--epochs N]
       [--plot PATH]
"""
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
        grpo.steps = steps
    case "--beta":
        guard let beta = Double(value()), beta.isFinite, beta >= 0 else {
            print("--beta takes a finite number >= 0\n\(usage)"); exit(2)
        }
        grpo.beta = beta
    case "--group-size":
        guard let size = Int(value()), [2, 4, 8, 16, 32].contains(size) else {
            print("--group-size takes 2, 4, 8, 16 or 32 (it divides the 32 answers per step)\n\(usage)"); exit(2)
        }
        grpo.groupSize = size
        grpo.promptsPerStep = settings.ppo.batchSize / size
    case "--epochs":
        guard let epochs = Int(value()), epochs >= 1, epochs <= 16 else {
            print("--epochs takes a whole number from 1 to 16\n\(usage)"); exit(2)
        }
        grpo.epochs = epochs
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
    case "--help", "-h":
        print(usage); exit(0)
    default:
        print("unknown option \(option)\n\(usage)"); exit(2)
    }
}
let defaults = (pipeline: PipelineSettings(), grpo: GRPOSettings())
let isDefaultRun = settings.seed == defaults.pipeline.seed && settings.ppo.steps == defaults.pipeline.ppo.steps
    && grpo.beta == defaults.grpo.beta && grpo.groupSize == defaults.grpo.groupSize
    && grpo.epochs == defaults.grpo.epochs
let ppo = settings.ppo

let chapter = Chapter(number: 16, title: "GRPO end to end: groups of answers instead of a critic")
chapter.say("""
Chapter 10 trained the toy model with PPO: four models (actor, reference, reward model, critic),
and GAE to turn one score per answer into an advantage per token. GRPO (DeepSeekMath, 2024)
drops the critic and GAE: it samples a group of G answers to each prompt, and an answer's
advantage is how far its reward lies above its group's mean, in units of the group's standard
deviation. Here both start from the same SFT model and the same reward model.
""")

/// Elapsed seconds on a progress line, only when a person is watching: a pasted
/// or tested output must be the same on every run.
let started = Date()
@MainActor func progress(_ text: String) {
    let elapsed = isatty(STDOUT_FILENO) != 0 ? String(format: "  (t = %.1f s)", Date().timeIntervalSince(started)) : ""
    print(text + elapsed)
}

/// On a terminal, one line that each run rewrites at every step (nothing when piped).
@MainActor func stepLine(_ name: String, _ step: Int, _ reward: Double, _ kl: Double) {
    guard isatty(STDOUT_FILENO) != 0 else { return }
    let total = grpo.steps
    let line = String(format: "  %@ step %d/%d  reward %.3f  KL %.3f", name, step, total, reward, kl)
    print("\r" + line + (step == total ? "\n" : ""), terminator: "")
    fflush(nil)  // every stream: the line has no newline to flush it
}

// MARK: 1. The models

chapter.heading("1. The same SFT model and reward model as chapter 10")
let prepared = chapter.must {
    try prepareModels(settings) { phase in
        progress(phase == "sft" ? "[1/3] SFT: \(settings.sftSteps) steps ..."
                                : "[1/3] reward model: \(settings.rewardSteps) steps ...")
    }
}
let baseline = prepared.sftReward
chapter.say("""
prepareModels with chapter 10's settings and seed \(settings.seed): SFT for \(settings.sftSteps) steps, then the reward model
from the SFT body for \(settings.rewardSteps) steps (held-out pair accuracy \(fmt(prepared.rewardAccuracy * 100, 1))%). The SFT model's
answers score mean \(fmt(baseline.mean, 3)), standard deviation \(fmt(baseline.standardDeviation, 3)) (\(baseline.count) samples): the
baseline both runs must beat.
""")

// MARK: 2. One group

chapter.heading("2. One group of answers, one baseline")
let G = grpo.groupSize
var groupRng = SplitMix64(seed: settings.seed &+ 100)
let shownPrompt = ToyLanguage.prompts[0]
let shownGroup = chapter.must {
    try prepared.sft.generate(prompts: Tensor.make([G, ToyLanguage.promptLength], (0..<G).flatMap { _ in shownPrompt }),
                              maxNewTokens: ToyLanguage.maxAnswerTokens, temperature: grpo.temperature,
                              endOfSequence: ToyLanguage.endOfSequence, padId: ToyLanguage.padId, rng: &groupRng)
}
let shownRewards = chapter.must { try rewardScores(prepared.rewardModel, sequences: shownGroup) }
let shownAdvantages = chapter.must {
    try grpoAdvantages(rewards: shownRewards, groupSize: G, scaleRewards: grpo.scaleRewards)
}
chapter.say("""
The SFT model answers the prompt "\(ToyLanguage.text(shownPrompt, answerFrom: 3).replacingOccurrences(of: " |", with: ""))" \(G) times (G = \(G), TRL's num_generations).
The reward model scores each answer; group_advantages (scale_rewards "\(grpo.scaleRewards.rawValue)", TRL's default)
subtracts the group mean and divides by the group's sample std + 1e-4:
""")
var groupTable = Table(["answer", "reward r", "r - mean", "advantage A"])
for i in 0..<G {
    groupTable.add([ToyLanguage.text(shownGroup.row(i), answerFrom: 3), fmt(shownRewards.scalars[i], 3),
                    fmt(shownRewards.scalars[i] - shownAdvantages.baselines.scalars[i], 3),
                    fmt(shownAdvantages.advantages.scalars[i], 3)])
}
chapter.show(groupTable)
let groupStd = shownAdvantages.scales?.scalars[0] ?? 0
let advantageSum = shownAdvantages.advantages.scalars.reduce(0, +)
chapter.say("""
  group mean \(fmt(shownAdvantages.baselines.scalars[0], 3)), group std \(fmt(groupStd, 3)); the advantages sum to \(fmt(advantageSum, 6)).

That is the whole of GRPO's credit assignment: no value head, no critic loss, no GAE. Every
token of an answer gets the answer's A, as PPO's token would get its GAE advantage, and the
clipped ratio and the KL term are PPO's machinery again (grpo_loss).
""")

// MARK: 3. The loss

chapter.heading("3. The loss: grpo_loss, checked against PyTorch")
chapter.say("""
Each token of answer b gets its answer's advantage A_b. grpo_loss (TRL's
GRPOTrainer._compute_loss) takes PPO's clipped surrogate per token, with
rho = exp(log pi - log pi_old), and adds TRL's k3 estimate of the KL to the reference,
k3 = exp(ref - lp) - (ref - lp) - 1, times beta:
  q = -min(rho * A, clamp(rho, 1 - eps, 1 + eps) * A) + beta * k3
loss_type "dapo" (TRL's default) sums q over every answer token of the batch and divides by
their number: the token mean of DeepSpeed-Chat's actor_loss. On a fixture of TRL's code (the
loss, the logged KL, and the gradient the loop sends back through the model):
""")
let lossFixture = chapter.fixture("grpo_loss/dapo-kl-f64")
let lossArguments = chapter.arguments(lossFixture)
let fixtureConfig = chapter.must { try GRPOLossStage.config(lossArguments) }
let fixtureLoss = chapter.must {
    try grpoLoss(logProbs: lossArguments.float("log_probs"), oldLogProbs: lossArguments.float("old_log_probs"),
                 advantages: lossArguments.float("advantages"), mask: lossArguments.mask("mask"),
                 refLogProbs: lossArguments.float("ref_log_probs"), config: fixtureConfig)
}
let fixtureGradient = chapter.must {
    try grpoLossGradLogProbs(logProbs: lossArguments.float("log_probs"),
                             oldLogProbs: lossArguments.float("old_log_probs"),
                             advantages: lossArguments.float("advantages"), mask: lossArguments.mask("mask"),
                             refLogProbs: lossArguments.float("ref_log_probs"), config: fixtureConfig)
}
chapter.check("loss", ours: fixtureLoss.loss, against: lossFixture)
chapter.check("kl", ours: fixtureLoss.kl ?? .nan, against: lossFixture)
chapter.check("grad_log_probs", ours: fixtureGradient, against: lossFixture)
chapter.say("""

(that fixture also sets use_bias_correction_kl and num_items_in_batch; the run below keeps TRL's
defaults for both. golden-verify checks every grpo_loss fixture: eight loss types, both levels.)
""")

// MARK: 4. The runs

chapter.heading("4. PPO and GRPO, the same budget of answers")
let forwardPasses = 4 + 2 * ppo.epochs
chapter.say("""
PPO: chapter 10's run, DeepSpeed-Chat's recipe, kl_ctl = \(fmt(ppo.klCtl, 2)): \(ppo.batchSize) prompts, one answer each,
\(ppo.epochs) epochs of ppo_losses per batch.
GRPO: \(grpo.promptsPerStep) prompts x G = \(G) answers, group_advantages, then \(grpo.epochs) pass\(grpo.epochs == 1 ? "" : "es") of grpo_loss
(loss_type "\(grpo.lossType.rawValue)", epsilon \(fmt(grpo.epsilon, 2)), beta \(fmt(grpo.beta, 2))) and grpoLossGradLogProbs through the same
backward and Adam (learning rate \(fmt(grpo.learningRate, 4)), PPO's actor's).
""")
var budget = Table(["per step", "PPO", "GRPO"])
budget.add(["answers sampled and scored", String(ppo.batchSize), String(grpo.answersPerStep)])
budget.add(["models held (trained)", "4 (2)", "3 (1)"])
budget.add(["forward passes over the batch", String(forwardPasses), String(2 + grpo.epochs)])
budget.add(["Adam steps", "\(ppo.epochs) + \(ppo.epochs) (critic)", String(grpo.epochs)])
chapter.show(budget)
chapter.say("""

(forward passes after sampling: PPO the actor, reference, reward model and critic, then actor and
critic each epoch; GRPO the policy, reference and reward model, the first epoch reusing the
policy's pass, one more per further epoch.)
""")

progress("[2/3] PPO: \(ppo.steps) steps ...")
let ppoRun = chapter.must {
    try runPPO(prepared, settings: ppo, seed: settings.seed &+ 2) { stepLine("PPO", $0.step, $0.meanReward, $0.meanKL) }
}
progress("[3/3] GRPO: \(grpo.steps) steps ...")
let grpoRun = chapter.must {
    try runGRPO(prepared, settings: grpo, seed: settings.seed &+ 5) { stepLine("GRPO", $0.step, $0.meanReward, $0.meanKL) }
}
let ppoRecords = ppoRun.records, grpoRecords = grpoRun.records

chapter.say("""

Reward is the mean score of the step's sampled answers; KL is the mean over the batch of the
sum over answer tokens of log pi - log pi_ref at sampling, measured the same way for both.
""")
var sideBySide = Table(["step", "PPO reward", "PPO KL", "GRPO reward", "GRPO KL", "GRPO loss", "group std",
                        "flat groups"])
for (p, g) in zip(ppoRecords, grpoRecords) where p.step == 1 || p.step % 10 == 0 {
    sideBySide.add([String(p.step), fmt(p.meanReward, 3), fmt(p.meanKL, 3), fmt(g.meanReward, 3), fmt(g.meanKL, 3),
                    fmt(g.loss, 4), fmt(g.meanGroupStd, 3), "\(g.flatGroups)/\(grpo.promptsPerStep)"])
}
chapter.show(sideBySide, maximumRows: 16)
chapter.say("""

  (every 10th step above; the sparklines below and the plot show every step. "group std" is the
  mean std the step's advantages were divided by; a flat group has G equal rewards, all A = 0)

""")
let allRewards = ppoRecords.map(\.meanReward) + grpoRecords.map(\.meanReward)
let allKLs = ppoRecords.map(\.meanKL) + grpoRecords.map(\.meanKL)
let rewardScale = allRewards.min()!...allRewards.max()!
let klScale = min(0, allKLs.min()!)...allKLs.max()!
let sparklines: [(String, [Double], ClosedRange<Double>)] = [("PPO reward", ppoRecords.map(\.meanReward), rewardScale),
                                                             ("GRPO reward", grpoRecords.map(\.meanReward), rewardScale),
                                                             ("PPO KL", ppoRecords.map(\.meanKL), klScale),
                                                             ("GRPO KL", grpoRecords.map(\.meanKL), klScale)]
for (name, series, range) in sparklines {
    chapter.say("  \(padded(name, 12)) \(sparkline(series, width: 50, range: range))  \(fmt(series.min()!, 2)) .. \(fmt(series.max()!, 2))")
}
chapter.say("  (one scale per quantity for both runs)")

// MARK: 5. Evaluation

chapter.heading("5. The trained policies, on fresh prompts")
var evaluationRng = SplitMix64(seed: settings.seed &+ 4)
let afterPPO = chapter.must {
    try rewardStatistics(of: ppoRun.actor, rewardModel: prepared.rewardModel, count: settings.evaluationSamples,
                         rng: &evaluationRng)
}
evaluationRng = SplitMix64(seed: settings.seed &+ 4)
let afterGRPO = chapter.must {
    try rewardStatistics(of: grpoRun.policy, rewardModel: prepared.rewardModel, count: settings.evaluationSamples,
                         rng: &evaluationRng)
}
let ppoRise = afterPPO.mean - baseline.mean, grpoRise = afterGRPO.mean - baseline.mean
let ppoLateKL = mean(ppoRecords.suffix(10).map(\.meanKL)), grpoLateKL = mean(grpoRecords.suffix(10).map(\.meanKL))
var evaluation = Table(["policy", "mean reward", "std", "rise / SFT std", "KL, last 10 steps"])
evaluation.add(["SFT", fmt(baseline.mean, 3), fmt(baseline.standardDeviation, 3), "", "0"])
evaluation.add(["PPO", fmt(afterPPO.mean, 3), fmt(afterPPO.standardDeviation, 3),
                fmt(ppoRise / baseline.standardDeviation, 2), fmt(ppoLateKL, 3)])
evaluation.add(["GRPO", fmt(afterGRPO.mean, 3), fmt(afterGRPO.standardDeviation, 3),
                fmt(grpoRise / baseline.standardDeviation, 2), fmt(grpoLateKL, 3)])
chapter.say("""
\(settings.evaluationSamples) answers of each policy to random prompts (the same prompts and the same random stream for
both), scored by the reward model:
""")
chapter.show(evaluation)

/// Two answers to each of four prompts; the same draw for every model.
@MainActor func showAnswers(_ title: String, of model: TinyLM) {
    var rng = SplitMix64(seed: settings.seed &+ 100)
    let shown = [ToyLanguage.prompts[0], ToyLanguage.prompts[3], ToyLanguage.prompts[5], ToyLanguage.prompts[8]]
    let rows = chapter.must {
        let prompts = Tensor.make([shown.count * 2, 3], (shown + shown).flatMap { $0 })
        let sequences = try model.generate(prompts: prompts, maxNewTokens: ToyLanguage.maxAnswerTokens,
                                           temperature: 1, endOfSequence: ToyLanguage.endOfSequence,
                                           padId: ToyLanguage.padId, rng: &rng)
        let scores = try rewardScores(prepared.rewardModel, sequences: sequences)
        return (0..<prompts.shape[0]).map { (ToyLanguage.text(sequences.row($0), answerFrom: 3), scores.scalars[$0]) }
    }
    var table = Table(["\(title): two samples per prompt", "reward"])
    for (text, score) in rows { table.add([text, fmt(score, 2)]) }
    chapter.show(table)
}
showAnswers("after GRPO", of: grpoRun.policy)

// MARK: 6. The plot

chapter.heading("6. The plot")
let defaultPlot = isDefaultRun ? chapter.directory + "/reward-kl.svg" : NSTemporaryDirectory() + "ch16-grpo-end-to-end.svg"
let plotFile = plotPath ?? defaultPlot
var plot = SVGPlot(title: "PPO and GRPO on the toy language (seed \(settings.seed))", xLabel: "step")
plot.addPanel(title: "mean reward of the sampled answers", series: [
    .init(name: "PPO, kl_ctl \(fmt(ppo.klCtl, 2))", values: ppoRecords.map(\.meanReward), color: "#1f77b4"),
    .init(name: "GRPO, β \(fmt(grpo.beta, 2)), G \(G)", values: grpoRecords.map(\.meanReward), color: "#2ca02c"),
    .init(name: "SFT baseline", values: [Double](repeating: baseline.mean, count: ppoRecords.count), color: "#7f7f7f",
          dashed: true),
])
plot.addPanel(title: "KL to the reference (nats per answer)", series: [
    .init(name: "PPO", values: ppoRecords.map(\.meanKL), color: "#1f77b4"),
    .init(name: "GRPO", values: grpoRecords.map(\.meanKL), color: "#2ca02c"),
])
do {
    try plot.write(to: plotFile)
} catch {
    print("cannot write the plot to \(plotFile): \(error)"); exit(1)
}
let repository = (chapter.directory as NSString).deletingLastPathComponent + "/"
let shownPlot = plotFile.hasPrefix(repository) ? String(plotFile.dropFirst(repository.count - "Chapters/".count)) : plotFile
chapter.say("Reward and KL per step, PPO and GRPO: \(shownPlot)")

// MARK: 7. Claims

chapter.heading("7. What this run must show")
chapter.say("""
Checked on this run, seed \(settings.seed): the claims are about this seed's numbers, not every seed's
(the chapter's README says how they fare over other seeds).

""")
chapter.claim(grpoRise >= baseline.standardDeviation,
              "GRPO lifts the mean reward by at least one SFT standard deviation (\(fmt(grpoRise, 2)) >= \(fmt(baseline.standardDeviation, 2)))")
chapter.claim(afterGRPO.mean >= afterPPO.mean - 0.5 * baseline.standardDeviation,
              "without a critic GRPO gets within half an SFT std of PPO (\(fmt(afterGRPO.mean, 2)) >= \(fmt(afterPPO.mean, 2)) - \(fmt(0.5 * baseline.standardDeviation, 2)))")
chapter.claim(grpoLateKL <= 3,
              "with beta = \(fmt(grpo.beta, 2)) GRPO's KL stays bounded (last 10 steps \(fmt(grpoLateKL, 2)) <= 3 nats)")
chapter.claim(grpoRecords[0].meanKL == 0 && ppoRecords[0].meanKL == 0,
              "both runs sample their first batch from the SFT model itself (KL 0 at step 1)")
chapter.claim(abs(advantageSum) <= 1e-9,
              "a group's advantages sum to 0: the group mean is the baseline (|\(sci(advantageSum, 2))| <= 1e-9)")
chapter.say("""

Run fingerprint (the policy's weights after GRPO): \(grpoRun.policy.parameters.fingerprint). The same seed
gives the same fingerprint and every number above, on every run.
""")
chapter.finish()
