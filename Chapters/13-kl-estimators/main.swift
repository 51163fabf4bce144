// Chapter 13 · KL estimators: k1, k2, k3, the clamp, and the adaptive controller.
//
// Reads top to bottom: the three estimators on single log-ratios, then on samples
// drawn from two Gaussians whose KL is known in closed form (bias and spread of
// each, written to kl-estimators.svg), the same on a five-token vocabulary where
// the expectation can be enumerated exactly, OpenRLHF's clamp to [-10, 10], the
// adaptive KL controller over a run, and the golden fixtures. The math is in
// Sources/KLControl (KLEstimators.swift, AdaptiveKLController.swift); this file
// draws samples, prints and checks. Run it with `make chapter N=13`.

import ChapterSupport
import Foundation
import Golden
import KLControl
import TensorCore

let chapter = Chapter(number: 13, title: "KL estimators: k1, k2, k3, the clamp, the controller")
chapter.say("""
RLHF keeps the policy π near the reference π_ref with a KL penalty, but nobody computes
KL(π‖π_ref) = E_π[log π − log π_ref] exactly: the sum runs over every possible answer. Each
sampled token gives one log-ratio r = log π(a) − log π_ref(a), and an estimator turns it into
one number whose average over samples should approach the KL. Schulman's note names three:
k1 = r, k2 = r²/2, k3 = (e^(−r) − 1) + r. OpenRLHF offers all three (`kl_estimator`), TRL k1 and
k3. This chapter measures their bias and spread where the exact KL is known.
""")

/// The mean and the unbiased standard deviation of `values`, and the standard error of the mean.
func statistics(_ values: [Double]) -> (mean: Double, std: Double, standardError: Double) {
    let n = Double(values.count)
    let mean = values.reduce(0, +) / n
    let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
    return (mean, variance.squareRoot(), (variance / n).squareRoot())
}

/// ln N(x; μ, 1), the log-density of a unit-variance Gaussian.
func gaussianLogDensity(_ x: Double, mean: Double) -> Double {
    -0.5 * (x - mean) * (x - mean) - 0.5 * log(2 * Double.pi)
}

// MARK: 1. Three estimators of one log-ratio

chapter.heading("1. Three estimators of one log-ratio")
chapter.say("""
`klEstimate(logRatio:estimator:)` on a few log-ratios. k1 is the log-ratio itself and is
negative whenever the sampled token is likelier under the reference. k2 and k3 are never
negative: r²/2 ≥ 0, and e^(−r) ≥ 1 − r. Near r = 0 both k2 and k3 are r²/2 to second order;
they part at the third (k3 − k2 = −r³/6 + ...), k3 growing fast for negative r (e^(−r)).
""")
var single = Table(["r = log π − log π_ref", "k1 = r", "k2 = r²/2", "k3 = e^(−r) − 1 + r"])
let ratios = [-3.0, -1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 3.0]
for r in ratios {
    single.add([fmt(r, 2)] + KLEstimator.allCases.map { fmt(klEstimate(logRatio: r, estimator: $0), 4) })
}
chapter.show(single)

// MARK: 2. Two Gaussians: bias and spread

chapter.heading("2. Two Gaussians: bias and spread against the exact KL")
let sampleCount = 10_000
let seed: UInt64 = 13
let separations = (1...10).map { 0.2 * Double($0) }
chapter.say("""
Policy π = N(0, 1), reference π_ref = N(μ, 1). Then r(x) = μ²/2 − μx, and in closed form
  KL(π‖π_ref) = μ²/2,   E[k1] = μ²/2 (std μ),   E[k3] = μ²/2 (std √(e^(μ²) − 1 − μ²)),
  E[k2] = μ²/2 + μ⁴/8 (biased upward by μ⁴/8).
For each μ, \(sampleCount) samples x ~ π (SplitMix64, seed \(seed)); each row of the batch is one
μ, the log-densities go to `klEstimators(logProbs:refLogProbs:mask:...)` with no clamp (TRL's
setting), and the all-ones mask makes `kl_mean` the sample mean. bias = mean − μ²/2; "se" is
the standard error of the mean; std is the spread of a single sample's estimate.
""")
var rng = SplitMix64(seed: seed)
var logProbRows = [Double](), refLogProbRows = [Double]()
for mu in separations {
    for _ in 0..<sampleCount {
        let x = rng.normal()
        logProbRows.append(gaussianLogDensity(x, mean: 0))
        refLogProbRows.append(gaussianLogDensity(x, mean: mu))
    }
}
let gaussianShape = [separations.count, sampleCount]
let allOnes = Tensor<Int64>(shape: gaussianShape, repeating: 1)
let gaussianLogProbs = Tensor.make(gaussianShape, logProbRows)
let gaussianRefLogProbs = Tensor.make(gaussianShape, refLogProbRows)
var gaussian = [KLEstimator: KLEstimatesResult<Double>]()
for estimator in KLEstimator.allCases {
    gaussian[estimator] = chapter.must {
        try klEstimators(logProbs: gaussianLogProbs, refLogProbs: gaussianRefLogProbs, mask: allOnes,
                         estimator: estimator, clipRange: nil)
    }
}

struct Measured {
    var mean: Double, bias: Double, std: Double, standardError: Double
}
var measured = [KLEstimator: [Measured]]()
for estimator in KLEstimator.allCases {
    let result = gaussian[estimator]!
    measured[estimator] = separations.indices.map { row in
        let stats = statistics(Array(result.kl.row(row)))
        let mean = result.klMean!.scalars[row]
        return Measured(mean: mean, bias: mean - separations[row] * separations[row] / 2, std: stats.std,
                        standardError: stats.standardError)
    }
}
var gaussianTable = Table(["μ", "KL", "bias k1 (se)", "bias k2 (se)", "μ⁴/8", "bias k3 (se)", "std k1", "std k2",
                           "std k3"])
for (row, mu) in separations.enumerated() {
    func biasCell(_ estimator: KLEstimator) -> String {
        let m = measured[estimator]![row]
        return "\(fmt(m.bias, 4)) (\(fmt(m.standardError, 4)))"
    }
    gaussianTable.add([fmt(mu, 1), fmt(mu * mu / 2, 2), biasCell(.k1), biasCell(.k2), fmt(pow(mu, 4) / 8, 4),
                       biasCell(.k3)] + KLEstimator.allCases.map { fmt(measured[$0]![row].std, 3) })
}
chapter.show(gaussianTable)
var exactSpread = Table(["μ", "std k1 exact = μ", "std k1 sampled", "std k3 exact", "std k3 sampled",
                         "std k1 / KL", "std k3 / KL"])
for (row, mu) in separations.enumerated() {
    let k3Exact = (exp(mu * mu) - 1 - mu * mu).squareRoot()
    exactSpread.add([fmt(mu, 1), fmt(mu, 3), fmt(measured[.k1]![row].std, 3), fmt(k3Exact, 3),
                     fmt(measured[.k3]![row].std, 3), fmt(mu / (mu * mu / 2), 2), fmt(k3Exact / (mu * mu / 2), 2)])
}
chapter.show(exactSpread)
chapter.say("""
Read the two tables together. k1 is unbiased but its spread is μ while the KL is μ²/2: relative
to what it estimates, k1 is noisiest exactly when the policies are close (std/KL = 2/μ, 10 at
μ = 0.2). k3 is unbiased as well (E_π[e^(−r)] = E_π[π_ref/π] = 1) and, for close policies, far
less noisy: its std is about μ²/√2, the same order as the KL itself. But e^(−r) is log-normal,
so k3's spread grows like e^(μ²/2) and overtakes k1's near μ = 1.12. k2 spreads about as little
as k3 for close policies, but its mean is the wrong number: it overshoots by μ⁴/8 here (in
general E[r²]/2 is not the KL; the two agree only to second order in r).
""")

let gaussianPlot = chapter.directory + "/kl-estimators.svg"
var plot = SVGPlot(title: "k1, k2, k3 on \(sampleCount) samples of N(0,1) against N(μ,1)",
                   xLabel: "μ / 0.2 (KL = μ²/2)")
let colors: [KLEstimator: String] = [.k1: "#1f77b4", .k2: "#d62728", .k3: "#2ca02c"]
plot.addPanel(title: "bias: sample mean − exact KL", series: KLEstimator.allCases.map { estimator in
    .init(name: estimator.rawValue, values: measured[estimator]!.map(\.bias), color: colors[estimator]!,
          dashed: estimator == .k2)
})
plot.addPanel(title: "spread: standard deviation of one sample's estimate", series: KLEstimator.allCases.map { estimator in
    .init(name: estimator.rawValue, values: measured[estimator]!.map(\.std), color: colors[estimator]!,
          dashed: estimator == .k2)
} + [.init(name: "exact KL", values: separations.map { $0 * $0 / 2 }, color: "#7f7f7f", dashed: true)])
do {
    try plot.write(to: gaussianPlot)
} catch {
    print("cannot write the plot to \(gaussianPlot): \(error)"); exit(1)
}
chapter.say("Bias and spread per μ: Chapters/13-kl-estimators/kl-estimators.svg")

// MARK: 3. A five-token vocabulary: the expectation enumerated

chapter.heading("3. Five tokens: the expectation enumerated exactly")
let policy = [0.4, 0.3, 0.15, 0.1, 0.05]
let reference = [0.3, 0.3, 0.2, 0.1, 0.1]
chapter.say("""
Tokens as an LLM samples them: π = \(list(policy, 2)),
π_ref = \(list(reference, 2)), and 4000 tokens drawn from π (seed \(seed)) as a [40, 100] batch.
With five outcomes the expectation is a finite sum, E_π[k] = Σ_a π(a)·k(a), so unbiasedness
is an identity, not a statistical statement: the k1 and k3 rows equal Σ π·ln(π/π_ref).
""")
let vocabularySize = policy.count
let tokenLogProbs = Tensor.make([1, vocabularySize], policy.map { log($0) })
let tokenRefLogProbs = Tensor.make([1, vocabularySize], reference.map { log($0) })
let exactKL = zip(policy, reference).reduce(0) { $0 + $1.0 * log($1.0 / $1.1) }
var perToken = [KLEstimator: [Double]]()
for estimator in KLEstimator.allCases {
    perToken[estimator] = chapter.must {
        try klEstimate(logProbs: tokenLogProbs, refLogProbs: tokenRefLogProbs, estimator: estimator, clipRange: nil)
    }.scalars
}
var tokenTable = Table(["estimator"] + (0..<vocabularySize).map { "k(a=\($0))" } + ["Σ π·k", "KL", "sampled mean"])
// 4000 sampled tokens as a [40, 100] batch; the all-ones mask makes kl_mean a row mean.
let tokenBatch = [40, 100]
var tokenRng = SplitMix64(seed: seed)
let sampledTokens = (0..<(tokenBatch[0] * tokenBatch[1])).map { _ in tokenRng.categorical(policy) }
var exactTokenMean = [KLEstimator: Double]()
var sampledTokenMean = [KLEstimator: Double]()
for estimator in KLEstimator.allCases {
    let k = perToken[estimator]!
    exactTokenMean[estimator] = zip(policy, k).reduce(0) { $0 + $1.0 * $1.1 }
    let batch = chapter.must {
        try klEstimators(logProbs: Tensor.make(tokenBatch, sampledTokens.map { log(policy[$0]) }),
                         refLogProbs: Tensor.make(tokenBatch, sampledTokens.map { log(reference[$0]) }),
                         mask: Tensor(shape: tokenBatch, repeating: 1), estimator: estimator, clipRange: nil)
    }
    sampledTokenMean[estimator] = batch.klMean!.scalars.reduce(0, +) / Double(tokenBatch[0])
    tokenTable.add([estimator.rawValue] + k.map { fmt($0, 4) }
                   + [fmt(exactTokenMean[estimator]!, 6), fmt(exactKL, 6), fmt(sampledTokenMean[estimator]!, 4)])
}
chapter.show(tokenTable)
let negativeTokens = perToken[.k1]!.indices.filter { perToken[.k1]![$0] < 0 }
chapter.say("""
k1 is negative on tokens \(list(negativeTokens)), the ones the reference prefers; the average over π
still comes out at the KL. k2's sum is off by \(fmt(exactTokenMean[.k2]! - exactKL, 6)).
""")

// MARK: 4. OpenRLHF's clamp

chapter.heading("4. The clamp: OpenRLHF cuts every estimate to [-10, 10]")
let farSeparation = 3.0
chapter.say("""
OpenRLHF clamps each estimate to [-10, 10] (`compute_approx_kl`); TRL does not. Here the
Gaussians are far apart, μ = \(fmt(farSeparation, 1)) (KL = \(fmt(farSeparation * farSeparation / 2, 2))), and the same \(sampleCount) draws
go through each estimator with and without the clamp. A clamp is 1-Lipschitz, so it can only
shrink the spread; it pays in bias, since every cut moves an estimate toward the interval.
""")
var farRng = SplitMix64(seed: seed)
var farX = [Double]()
for _ in 0..<sampleCount { farX.append(farRng.normal()) }
let farLogProbs = Tensor.make([1, sampleCount], farX.map { gaussianLogDensity($0, mean: 0) })
let farRefLogProbs = Tensor.make([1, sampleCount], farX.map { gaussianLogDensity($0, mean: farSeparation) })
var clampTable = Table(["estimator", "clamp", "mean", "bias", "std", "clamped"])
struct ClampRow { var unclamped: (mean: Double, std: Double, standardError: Double); var clamped: (mean: Double, std: Double, standardError: Double); var share: Double }
var clampRows = [KLEstimator: ClampRow]()
let farKL = farSeparation * farSeparation / 2
for estimator in KLEstimator.allCases {
    let free = chapter.must {
        try klEstimate(logProbs: farLogProbs, refLogProbs: farRefLogProbs, estimator: estimator, clipRange: nil)
    }
    let cut = chapter.must {
        try klEstimate(logProbs: farLogProbs, refLogProbs: farRefLogProbs, estimator: estimator,
                       clipRange: openRLHFKLClipRange)
    }
    let share = Double(zip(free.scalars, cut.scalars).filter { $0.0 != $0.1 }.count) / Double(sampleCount)
    let row = ClampRow(unclamped: statistics(free.scalars), clamped: statistics(cut.scalars), share: share)
    clampRows[estimator] = row
    clampTable.add([estimator.rawValue, "none (TRL)", fmt(row.unclamped.mean, 3), fmt(row.unclamped.mean - farKL, 3),
                    fmt(row.unclamped.std, 3), "-"])
    clampTable.add([estimator.rawValue, "[-10, 10]", fmt(row.clamped.mean, 3), fmt(row.clamped.mean - farKL, 3),
                    fmt(row.clamped.std, 3), "\(fmt(share * 100, 1))%"])
}
chapter.show(clampTable)
chapter.say("""
The clamp is a guard against one runaway token (a log-ratio of −900 makes k3 = e^900 = inf in
float64, and OpenRLHF's float32 overflows already at −88.7; clamped, it is 10), not a way to
estimate a large KL: at this distance every estimator's single-sample spread is larger than
the KL, and the clamp trades it for a bias.
""")

// MARK: 5. The adaptive KL controller over a run

chapter.heading("5. The adaptive KL controller over a run")
let target = 0.1, horizon = 10_000.0, initCoefficient = 0.05
let observed: [Double] = [0.02, 0.04, 0.07, 0.1, 0.13, 0.18, 0.25, 0.3, 0.3, 0.28, 0.22, 0.15, 0.11, 0.1, 0.08, 0.06]
let stepsPerUpdate = [Int64](repeating: 1024, count: observed.count)
chapter.say("""
Ziegler et al. (2019) steer the coefficient β instead of fixing it: after each batch of n samples
with mean KL `current_kl`, e = clip(current_kl/target − 1, ±0.2) and β ← β·(1 + e·n/horizon).
OpenRLHF's `AdaptiveKLController` (target \(fmt(target, 2)), horizon \(Int(horizon)), n = rollout batch
1024); the KL column is a given sequence that rises past the target and falls back.
""")
let coefficients = chapter.must {
    try adaptiveKLCoefficients(currentKL: Tensor.make([observed.count], observed), nSteps: Tensor.make([observed.count], stepsPerUpdate),
                               initKLCoef: initCoefficient, target: target, horizon: horizon)
}
var controllerTable = Table(["step", "current_kl", "e (clipped)", "multiplier", "kl_coef"])
for (s, kl) in observed.enumerated() {
    let error = min(max(kl / target - 1, -0.2), 0.2)
    let before = s == 0 ? initCoefficient : coefficients.scalars[s - 1]
    controllerTable.add(["\(s + 1)", fmt(kl, 2), fmt(error, 3), fmt(coefficients.scalars[s] / before, 5),
                         fmt(coefficients.scalars[s], 5)])
}
chapter.show(controllerTable, maximumRows: 20)
let fixed = chapter.must {
    try adaptiveKLCoefficients(currentKL: Tensor.make([observed.count], observed), nSteps: Tensor.make([observed.count], stepsPerUpdate),
                               initKLCoef: initCoefficient, target: 0, horizon: horizon)
}
let flip = chapter.must {
    try adaptiveKLCoefficients(currentKL: Tensor.make([2], [0.0, 0.0]), nSteps: Tensor.make([2], [600, 500]),
                               initKLCoef: 0.01, target: 6, horizon: 100)
}
chapter.say("""
The multiplier moves at most 0.2·n/horizon = \(fmt(0.2 * 1024 / horizon, 4)) per update, so β reacts slowly, by
design. Target 0 (or none) selects the fixed controller: every kl_coef stays \(fmt(fixed.scalars[0], 4)).
Nothing bounds the multiplier: with a horizon of 100, two updates (n = 600, then 500) with KL 0
against a target of 6 give \(list(flip.scalars, 4)): the penalty turns into a bonus, then vanishes.
""")

// MARK: 6. Golden fixtures

chapter.heading("6. The library against PyTorch")
let extreme = chapter.fixture("kl_estimators/k3-extreme-ratios-clamped-f64")
let extremeArguments = chapter.arguments(extreme)
let extremeResult = chapter.must {
    try klEstimators(logProbs: extremeArguments.float("log_probs"), refLogProbs: extremeArguments.float("ref_log_probs"),
                     mask: extremeArguments.optionalMask("mask"), estimator: .k3, clipRange: openRLHFKLClipRange)
}
chapter.check("kl", ours: extremeResult.kl, against: extreme)
chapter.check("kl_mean", ours: extremeResult.klMean!, against: extreme)
let flipFixture = chapter.fixture("adaptive_kl_controller/ho-short-horizon-sign-flip")
let flipArguments = chapter.arguments(flipFixture)
let flipOurs = chapter.must {
    try adaptiveKLCoefficients(currentKL: flipArguments.float("current_kl"), nSteps: flipArguments.ids("n_steps"),
                               initKLCoef: flipArguments.real("init_kl_coef"), target: flipArguments.optionalReal("target"),
                               horizon: flipArguments.real("horizon"))
}
chapter.check("kl_coef", ours: flipOurs, against: flipFixture, digits: 7)
let emptyRow = chapter.fixture("kl_estimators/error-mask-row-empty")
let emptyRowArguments = chapter.arguments(emptyRow)
chapter.checkRejects(emptyRow) {
    try klEstimators(logProbs: emptyRowArguments.float("log_probs"), refLogProbs: emptyRowArguments.float("ref_log_probs"),
                     mask: emptyRowArguments.optionalMask("mask"), estimator: .k3, clipRange: openRLHFKLClipRange)
}

// MARK: 7. Claims

chapter.heading("7. What this run must show")
chapter.say("Checked on this run's draws (seed \(seed)); \"within 3 se\" is a 3-standard-error band.\n")
let k1 = measured[.k1]!, k2 = measured[.k2]!, k3 = measured[.k3]!
let closeRows = separations.indices.filter { separations[$0] <= 1.0 + 1e-9 }
chapter.claim(k1.allSatisfy { abs($0.bias) <= 3 * $0.standardError },
              "k1 is unbiased: its bias is within 3 se of 0 at every μ")
chapter.claim(closeRows.allSatisfy { abs(k3[$0].bias) <= 3 * k3[$0].standardError },
              "k3 is unbiased: its bias is within 3 se of 0 at every μ ≤ 1")
chapter.claim(separations.indices.filter { separations[$0] >= 1.0 - 1e-9 }.allSatisfy { k2[$0].bias > 3 * k2[$0].standardError },
              "k2 is biased: its mean exceeds the KL by more than 3 se at every μ ≥ 1")
chapter.claim(separations.indices.allSatisfy { abs(k2[$0].bias - pow(separations[$0], 4) / 8) <= 3 * k2[$0].standardError },
              "k2's bias is μ⁴/8 within 3 se at every μ")
chapter.claim(k1[0].std / (separations[0] * separations[0] / 2) > 9,
              "k1 has high variance for close policies: std/KL > 9 at μ = 0.2 (exact: 2/μ = 10)")
chapter.claim(closeRows.allSatisfy { k3[$0].std < k1[$0].std },
              "k3 has lower variance than k1 at every μ ≤ 1")
chapter.claim(k3.last!.std > k1.last!.std,
              "but not far apart: at μ = 2 k3's std (\(fmt(k3.last!.std, 2))) exceeds k1's (\(fmt(k1.last!.std, 2)))")
chapter.claim(gaussian[.k3]!.kl.scalars.allSatisfy { $0 >= 0 } && gaussian[.k2]!.kl.scalars.allSatisfy { $0 >= 0 },
              "k2 and k3 are never negative, on all \(separations.count * sampleCount) draws")
chapter.claim(gaussian[.k1]!.kl.scalars.contains { $0 < 0 }, "single k1 estimates are negative on some draws")
chapter.claim(abs(exactTokenMean[.k1]! - exactKL) < 1e-15 && abs(exactTokenMean[.k3]! - exactKL) < 1e-15,
              "five tokens: Σ π·k1 and Σ π·k3 equal the KL to 1e-15; Σ π·k2 does not")
chapter.claim(abs(exactTokenMean[.k2]! - exactKL) > 1e-3, "five tokens: k2's expectation misses the KL by more than 1e-3")
chapter.claim(KLEstimator.allCases.allSatisfy { clampRows[$0]!.clamped.std <= clampRows[$0]!.unclamped.std },
              "the clamp never widens the spread (μ = 3, every estimator)")
chapter.claim(clampRows[.k2]!.clamped.mean < clampRows[.k2]!.unclamped.mean - 3 * clampRows[.k2]!.unclamped.standardError,
              "the clamp pulls k2's mean down by more than 3 se at μ = 3 (half its draws exceed 10)")
chapter.claim(clampRows[.k3]!.clamped.mean < farKL - 3 * clampRows[.k3]!.clamped.standardError,
              "the clamp biases k3 below the KL by more than 3 se at μ = 3 (its tail above 10 is cut)")
chapter.claim(zip(observed, coefficients.scalars.indices).allSatisfy { kl, s in
    let before = s == 0 ? initCoefficient : coefficients.scalars[s - 1]
    return kl > target ? coefficients.scalars[s] > before : (kl < target ? coefficients.scalars[s] < before : coefficients.scalars[s] == before)
}, "the adaptive coefficient rises while the KL is above target, falls below it, holds at it")
chapter.claim(fixed.scalars.allSatisfy { $0 == initCoefficient }, "target 0 keeps the coefficient fixed")
chapter.claim(flip.scalars[0] < 0 && flip.scalars[1] == 0, "a short horizon flips the coefficient's sign, then zeroes it")
chapter.finish()
