import Foundation
import Testing
import TensorCore
import Golden
import TestSupport
import Workshop
import GatherLogProbs
import PairwiseRewardLoss
import ComputeRewards
import GAE
import ActorLoss
import CriticLoss
import PPOStep
import DPOLoss
import RewardEndScoresAttn
import MaskedWhiten
import KLControl
import PreferenceLosses
import CriticFreeAdvantages

/// The repository root, from this file's path.
let repositoryRoot: String = {
    var components = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(3)  // Tests/WorkshopTests/ExerciseTests.swift
    return components.joined(separator: "/")
}()

/// A product built beside this test binary (`golden-verify`, `ex04-gae`, ...).
func builtExecutable(_ name: String) -> String? {
    var candidates = [String]()
    if let me = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append((me as NSString).deletingLastPathComponent)
    }
    candidates.append((CommandLine.arguments[0] as NSString).deletingLastPathComponent)
    candidates.append(repositoryRoot + "/.build/debug")
    for directory in candidates {
        var path = directory
        // On macOS the test binary sits inside a bundle: .../debug/X.xctest/Contents/MacOS
        while !path.isEmpty && path != "/" {
            if FileManager.default.isExecutableFile(atPath: path + "/" + name) { return path + "/" + name }
            if !path.contains(".xctest") { break }
            path = (path as NSString).deletingLastPathComponent
        }
    }
    return nil
}

/// Runs an executable from `directory` and returns its exit status and output.
func run(_ path: String, _ arguments: [String] = [], in directory: String = NSTemporaryDirectory()) throws
    -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("the exercises")
struct ExerciseTests {
    let goldenData = goldenDataDirectory

    /// Checks that a report passed every fixture of its stage.
    func expectPassed(_ report: ExerciseReport, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(report.passed, "\(report.lines.joined(separator: "\n"))", sourceLocation: sourceLocation)
        #expect(report.outcomes.count >= 8, "only \(report.outcomes.count) fixtures graded", sourceLocation: sourceLocation)
        #expect(report.lines.last?.contains("passed:") == true, sourceLocation: sourceLocation)
    }

    @Test("every harness passes with the library's own function in place of the attendee's")
    func libraryFunctionsPass() {
        expectPassed(grade(Exercises.gatherLogProbs, { try GatherLogProbs.gatherLogProbs(logits: $0, labels: $1) },
                           goldenData: goldenData))
        expectPassed(grade(Exercises.pairwiseRewardLoss, { ids, rewards, pad, skipped in
            let r = try PairwiseRewardLoss.pairwiseRewardLoss(inputIds: ids, rewards: rewards, padId: pad,
                                                               numPaddingAtBeginning: skipped)
            return (r.loss, r.chosenMeanScores, r.rejectedMeanScores)
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.computeRewards, {
            try ComputeRewards.computeRewards(logProbs: $0, refLogProbs: $1, rewardScore: $2, actionMask: $3,
                                              promptLength: $4, klCtl: $5, clipRewardValue: $6)
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.gae, {
            let r = try GAE.gae(values: $0, rewards: $1, start: $2, gamma: $3, lambda: $4)
            return (r.advantages, r.returns)
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.actorLoss, {
            try ActorLoss.actorLoss(logProbs: $0, oldLogProbs: $1, advantages: $2, mask: $3, cliprange: $4).loss
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.criticLoss, {
            try CriticLoss.criticLoss(values: $0, oldValues: $1, returns: $2, mask: $3, cliprangeValue: $4).loss
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.ppoStep, { x in
            let r = try ppoLosses(attentionMask: x.attentionMask, logProbs: x.logProbs, refLogProbs: x.refLogProbs,
                                  values: x.values, newLogProbs: x.newLogProbs, newValues: x.newValues,
                                  rewardScore: x.rewardScore, promptLength: x.promptLength, klCtl: x.klCtl,
                                  clipRewardValue: x.clipRewardValue, cliprange: x.cliprange,
                                  cliprangeValue: x.cliprangeValue, gamma: x.gamma, lambda: x.lambda)
            return PPOStepOutputs(rewards: r.rewards, oldValues: r.oldValues, advantages: r.advantages, returns: r.returns,
                                  actorLoss: r.actor.loss, criticLoss: r.critic.loss)
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.dpoLoss, {
            let r = try DPOLoss.dpoLoss(betterLogProbs: $0, worseLogProbs: $1, refBetterLogProbs: $2, refWorseLogProbs: $3,
                                        beta: $4)
            return (r.loss, r.betterSampleReward, r.worseSampleReward)
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.rewardEndScoresAttn, {
            let r = try RewardEndScoresAttn.rewardEndScoresAttn(scores: $0, attentionMask: $1)
            return (r.endIndex.scalars.map { Int($0) }, r.endScores)
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.maskedWhiten, {
            try MaskedWhiten.maskedWhiten(values: $0, mask: $1, shiftMean: $2).whitened
        }, goldenData: goldenData))
        expectPassed(grade(Exercises.klEstimators, libraryKLEstimators, goldenData: goldenData))
        expectPassed(grade(Exercises.dpoVariants, libraryDPOVariants, goldenData: goldenData))
        expectPassed(grade(Exercises.groupAdvantages, libraryGroupAdvantages, goldenData: goldenData))
    }

    // The library's zoo stages in the exercises' signatures.
    func libraryKLEstimators(_ logProbs: Tensor<Double>, _ ref: Tensor<Double>, _ mask: Tensor<Int64>?, _ estimator: String,
                             _ range: (lo: Double, hi: Double)?) throws -> (kl: Tensor<Double>, klMean: Tensor<Double>?) {
        let r = try KLControl.klEstimators(logProbs: logProbs, refLogProbs: ref, mask: mask,
                                           estimator: KLEstimator(named: estimator, stage: "kl_estimators"),
                                           clipRange: range.map { $0.lo...$0.hi })
        return (r.kl, r.klMean)
    }

    func libraryDPOVariants(_ chosen: Tensor<Double>, _ rejected: Tensor<Double>, _ refChosen: Tensor<Double>,
                            _ refRejected: Tensor<Double>, _ chosenLengths: Tensor<Int64>, _ rejectedLengths: Tensor<Int64>,
                            _ lossType: String, _ beta: Double, _ epsilon: Double) throws
        -> (losses: Tensor<Double>, loss: Double, chosenRewards: Tensor<Double>, rejectedRewards: Tensor<Double>,
            rewardAccuracy: Double, rewardMargin: Tensor<Double>) {
        let r = try PreferenceLosses.dpoVariants(
            chosenLogps: chosen, rejectedLogps: rejected, refChosenLogps: refChosen, refRejectedLogps: refRejected,
            chosenLengths: chosenLengths, rejectedLengths: rejectedLengths,
            lossType: DPOLossType(named: lossType, stage: "dpo_variants"), beta: beta, labelSmoothing: epsilon)
        return (r.losses, r.loss, r.chosenRewards, r.rejectedRewards, r.rewardAccuracy, r.rewardMargin)
    }

    func libraryGroupAdvantages(_ rewards: Tensor<Double>, _ groupSize: Int, _ estimator: String, _ scale: String) throws
        -> Tensor<Double> {
        if estimator == "rloo" {
            return try rlooAdvantages(rewards: rewards, groupSize: groupSize, beta: 0).advantages
        }
        return try grpoAdvantages(rewards: rewards, groupSize: groupSize,
                                  scaleRewards: RewardScaling(named: scale, stage: "group_advantages")).advantages
    }

    @Test("the zoo exercises: k1 for k3, IPO on sums, a biased GRPO std: each harness names the mistake; the partial exercises say what they skip")
    func zooMistakesNamed() {
        let k1ForK3 = grade(Exercises.klEstimators, { logProbs, ref, mask, estimator, range in
            try libraryKLEstimators(logProbs, ref, mask, estimator == "k3" ? "k1" : estimator, range)
        }, goldenData: goldenData)
        #expect(!k1ForK3.passed)
        #expect(k1ForK3.namedMistakes == ["kl_estimators.k1-for-k3"], "\(k1ForK3.namedMistakes)")

        let ipoSummed = grade(Exercises.dpoVariants, { c, r, rc, rr, cl, rl, lossType, beta, epsilon in
            try libraryDPOVariants(c, r, rc, rr, cl, rl, lossType == "ipo" ? "ipo_sum" : lossType, beta, epsilon)
        }, goldenData: goldenData)
        #expect(!ipoSummed.passed)
        #expect(ipoSummed.namedMistakes == ["dpo_variants.ipo-summed"], "\(ipoSummed.namedMistakes)")
        #expect(ipoSummed.skippedOutOfScope > 0)
        #expect(ipoSummed.lines.contains { $0.contains("fixtures of the other loss types") && $0.contains("skipped") })

        let biasedStd = grade(Exercises.groupAdvantages, { rewards, g, estimator, scale in
            guard estimator == "grpo", scale != "none" else { return try libraryGroupAdvantages(rewards, g, estimator, scale) }
            let n = rewards.count, length = scale == "group" ? g : n
            return Tensor.make([n], (0..<n).map { i in
                let start = i / g * g, mean = (start..<start + g).reduce(0.0) { $0 + rewards.scalars[$1] } / Double(g)
                let from = scale == "group" ? start : 0
                let mu = scale == "group" ? mean : (0..<n).reduce(0.0) { $0 + rewards.scalars[$1] } / Double(n)
                let biased = ((from..<from + length).reduce(0.0) { $0 + (rewards.scalars[$1] - mu) * (rewards.scalars[$1] - mu) }
                              / Double(length)).squareRoot()
                return (rewards.scalars[i] - mean) / (biased + 1e-4)
            })
        }, goldenData: goldenData)
        #expect(!biasedStd.passed)
        #expect(biasedStd.namedMistakes == ["group_advantages.grpo-biased-std"], "\(biasedStd.namedMistakes)")
    }

    @Test("an exercise folder and a Package.swift product for every harness, and a harness for every folder")
    func folders() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/Chapters/exercises")
            .filter { $0.first?.isNumber == true }.sorted()
        #expect(folders == Exercises.slugs)
        for slug in Exercises.slugs {
            let exercise = try String(contentsOfFile: repositoryRoot + "/Chapters/exercises/\(slug)/Exercise.swift", encoding: .utf8)
            #expect(exercise.contains("throw ExerciseNotImplemented()"), "\(slug)/Exercise.swift is not the untouched exercise")
            #expect(exercise.contains("make exercise N=\(Int(slug.prefix(2))!)"))
            #expect(FileManager.default.fileExists(atPath: repositoryRoot + "/Chapters/\(slug)/README.md"), "no chapter \(slug)")
        }
    }

    @Test("a GAE without λ in the recursion: the harness fails it and names gae.no-lambda")
    func gaeMistakeNamed() {
        // A_t = delta_t + γ·A_t+1: the attendee forgot λ.
        func gaeWithoutLambda(values: Tensor<Double>, rewards: Tensor<Double>, start: Int, gamma: Double, lambda: Double)
            -> (advantages: Tensor<Double>, returns: Tensor<Double>) {
            let (batch, n) = (values.shape[0], values.shape[1])
            var advantages = Tensor<Double>(shape: [batch, n - start], repeating: 0), returns = advantages
            for b in 0..<batch {
                var last = 0.0
                for t in stride(from: n - 1, through: start, by: -1) {
                    let next = t + 1 < n ? values[b, t + 1] : 0
                    last = rewards[b, t] + gamma * next - values[b, t] + gamma * last
                    advantages[b, t - start] = last
                    returns[b, t - start] = last + values[b, t]
                }
            }
            return (advantages, returns)
        }
        let report = grade(Exercises.gae, gaeWithoutLambda, goldenData: goldenData)
        #expect(!report.passed)
        #expect(report.namedMistakes == ["gae.no-lambda"], "\(report.namedMistakes)")
        // Every failed row carries the diagnosis; the λ = 1 fixtures pass.
        #expect(report.outcomes.filter { !$0.passed }.allSatisfy { $0.diagnosis?.named.first?.id == "gae.no-lambda" })
        #expect(report.outcomes.contains { $0.passed && $0.name.hasPrefix("lambda-1") })
        let text = report.lines.joined(separator: "\n")
        #expect(text.contains("known mistake gae.no-lambda") && text.contains("read: Chapters/04-gae/README.md"))
    }

    @Test("an actor loss with min for max, and end scores at mask.sum() - 1: each harness names the mistake")
    func otherMistakesNamed() {
        let minForMax = grade(Exercises.actorLoss, { logProbs, old, advantages, mask, clip in
            var sum = 0.0, count = 0.0
            for i in mask.scalars.indices where mask.scalars[i] == 1 {
                let ratio = Double.exp(logProbs.scalars[i] - old.scalars[i]), a = advantages.scalars[i]
                sum += min(-a * ratio, -a * min(max(ratio, 1 - clip), 1 + clip))
                count += 1
            }
            return sum / count
        }, goldenData: goldenData)
        // Where no token's ratio leaves [1 - ε, 1 + ε] the optimistic bound equals the
        // unclipped loss: those rows name both, honestly.
        #expect(minForMax.namedMistakes.first == "actor_loss.min-for-max", "\(minForMax.namedMistakes)")
        #expect(Set(minForMax.namedMistakes).isSubset(of: ["actor_loss.min-for-max", "actor_loss.no-clip"]))
        #expect(minForMax.outcomes.contains { $0.diagnosis?.named.map(\.id) == ["actor_loss.min-for-max"] })

        let sumMinusOne = grade(Exercises.rewardEndScoresAttn, { scores, mask in
            let (batch, length) = (scores.shape[0], scores.shape[1])
            let ends = (0..<batch).map { b in mask.map { m in (0..<length).reduce(0) { $0 + Int(m[b, $1]) } - 1 } ?? (length - 1) }
            return (ends, Tensor.make([batch], (0..<batch).map { scores[$0, ends[$0]] }))
        }, goldenData: goldenData)
        #expect(sumMinusOne.namedMistakes == ["reward_end_scores_attn.mask-sum-minus-one"], "\(sumMinusOne.namedMistakes)")
    }

    @Test("each untouched exercise, built as on a fresh clone, fails with a clear message and exit status 1, not a crash",
          arguments: Exercises.slugs)
    func untouchedExerciseFails(slug: String) throws {
        let path = try #require(builtExecutable("ex" + slug), "ex\(slug) is not built; run `swift build` first")
        let (status, output) = try run(path)
        #expect(status == 1, "exit status \(status):\n\(output)")
        #expect(output.contains("is not implemented yet"), "\(output)")
        #expect(output.contains("make exercise N=\(Int(slug.prefix(2))!)"), "\(output)")
        #expect(!output.contains("Fatal error") && !output.contains("crashed"), "\(output)")
    }
}
