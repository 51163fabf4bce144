// Chapter 14 · The DPO family: fifteen losses on one pair.
//
// Reads top to bottom: one chosen/rejected pair whose margin is moved from -10 to
// +10 nats, every loss type's loss and gradient weight along the way (tables and
// an SVG plot), what dividing by the answer length changes, the peers' quirks, and
// a few golden fixtures. The math is `dpoVariants(...)` and `dpoVariantsGradients(...)`
// in Sources/PreferenceLosses/DPOVariants.swift; this file only prints and checks.
// Run it with `make chapter N=14`.

import ChapterSupport
import Foundation
import Golden
import PreferenceLosses
import TensorCore

let chapter = Chapter(number: 14, title: "The DPO family: fifteen losses on one pair")
chapter.say("""
Chapter 08's DPO loss is one member of a family. TRL's DPOTrainer offers fourteen loss types on the
same four sequence log-probs (OpenRLHF adds IPO on summed log-ratios); each turns the policy's
log-ratios to the reference into a loss with a different shape, and so a different push.
""")

// MARK: 1. The pair and the path

chapter.heading("1. One pair, and a margin that moves")
let beta = 0.5
let pathRefChosen = -40.0, pathRefRejected = -45.0
let pathChosenLength: Int64 = 8, pathRejectedLength: Int64 = 20
chapter.say("""
The reference scores the chosen answer (8 tokens) at log pi_ref = \(fmt(pathRefChosen, 1)) and the rejected one
(20 tokens) at \(fmt(pathRefRejected, 1)). The policy moves both by half the margin delta, in opposite directions:
  chosen_logps = \(fmt(pathRefChosen, 1)) + delta/2       rejected_logps = \(fmt(pathRefRejected, 1)) - delta/2
  h_w = delta/2      h_l = -delta/2      delta = h_w - h_l          beta = \(fmt(beta, 1))
Most loss types read only delta; nca_pair, bco_pair, sppo_hard, apo_zero and apo_down read h_w
and h_l apart, so for them the split in halves is part of the setting. The gradient weight is
d loss / d delta along this path: (grad_chosen_logps - grad_rejected_logps) / 2.
""")

/// One configuration of the family: a loss type and the params it is shown with.
struct Member {
    let label: String
    let lossType: DPOLossType
    var epsilon = 0.0
    var f = FDivergence.reverseKL
}

let members: [Member] = [
    Member(label: "sigmoid", lossType: .sigmoid),
    Member(label: "sigmoid e=0.1", lossType: .sigmoid, epsilon: 0.1),
    Member(label: "robust e=0.1", lossType: .robust, epsilon: 0.1),
    Member(label: "exo_pair e=0.1", lossType: .exoPair, epsilon: 0.1),
    Member(label: "hinge", lossType: .hinge),
    Member(label: "discopop", lossType: .discopop),
    Member(label: "aot", lossType: .aot),
    Member(label: "aot_unpaired", lossType: .aotUnpaired),
    Member(label: "sigmoid_norm", lossType: .sigmoidNorm),
    Member(label: "ipo", lossType: .ipo),
    Member(label: "ipo_sum", lossType: .ipoSum),
    Member(label: "sppo_hard", lossType: .sppoHard),
    Member(label: "nca_pair", lossType: .ncaPair),
    Member(label: "bco_pair", lossType: .bcoPair),
    Member(label: "apo_zero", lossType: .apoZero),
    Member(label: "apo_down", lossType: .apoDown),
]

/// A batch of pairs as the stage takes them.
struct Batch {
    var chosen: [Double], rejected: [Double], refChosen: [Double], refRejected: [Double]
    var chosenLengths: [Int64], rejectedLengths: [Int64]

    /// The chapter's pair at margin delta.
    static func pair(_ delta: Double) -> Batch {
        Batch(chosen: [pathRefChosen + delta / 2], rejected: [pathRefRejected - delta / 2], refChosen: [pathRefChosen],
              refRejected: [pathRefRejected], chosenLengths: [pathChosenLength], rejectedLengths: [pathRejectedLength])
    }
}

/// Loss and gradients of one member on one batch.
struct Evaluation {
    let result: DPOVariantsResult<Double>
    let gradients: DPOVariantsGradients<Double>
    /// d loss / d delta along the chapter's path (one pair).
    var weight: Double { (gradients.gradChosenLogps.scalars[0] - gradients.gradRejectedLogps.scalars[0]) / 2 }
}

@MainActor func evaluate(_ member: Member, _ batch: Batch, beta: Double = beta) -> Evaluation {
    func v(_ x: [Double]) -> Tensor<Double> { Tensor.make([x.count], x) }
    func n(_ x: [Int64]) -> Tensor<Int64> { Tensor.make([x.count], x) }
    return chapter.must {
        let result = try dpoVariants(
            chosenLogps: v(batch.chosen), rejectedLogps: v(batch.rejected), refChosenLogps: v(batch.refChosen),
            refRejectedLogps: v(batch.refRejected), chosenLengths: n(batch.chosenLengths),
            rejectedLengths: n(batch.rejectedLengths), lossType: member.lossType, beta: beta,
            labelSmoothing: member.epsilon, fDivergence: member.f)
        let gradients = try dpoVariantsGradients(
            chosenLogps: v(batch.chosen), rejectedLogps: v(batch.rejected), refChosenLogps: v(batch.refChosen),
            refRejectedLogps: v(batch.refRejected), chosenLengths: n(batch.chosenLengths),
            rejectedLengths: n(batch.rejectedLengths), lossType: member.lossType, beta: beta,
            labelSmoothing: member.epsilon, fDivergence: member.f)
        return Evaluation(result: result, gradients: gradients)
    }
}

// The path: delta = -10, -9.5, ..., 10 (41 points; point 21 is delta = 0).
let margins = (0...40).map { Double($0 - 20) / 2 }
var curves = [String: [Evaluation]]()
for member in members {
    curves[member.label] = margins.map { evaluate(member, .pair($0)) }
}
let shownMargins: [Double] = [-10, -4, -1, 0, 1, 2, 4, 10]
@MainActor func at(_ label: String, _ delta: Double) -> Evaluation {
    curves[label]![margins.firstIndex(of: delta)!]
}

// MARK: 2. The losses

chapter.heading("2. Every loss type as the margin moves")
chapter.say("""
x = beta * delta. e is label_smoothing (0 unless shown). With one pair, aot and aot_unpaired sort a
single number and are sigmoid (section 6 shows them on a batch).
""")
var lossTable = Table(["loss at delta ="] + shownMargins.map { fmt($0, 0) })
for member in members {
    lossTable.add([member.label] + shownMargins.map { fmt(at(member.label, $0).result.loss, 4) })
}
chapter.show(lossTable, maximumRows: 20)
chapter.say("""
Three shapes. The logistic ones fall as delta grows: sigmoid towards 0 without reaching it, hinge
to exactly 0 from x = 1 (delta = 2) on. Label smoothing bends them: cDPO and exo_pair bottom out
near delta = ln 9 / beta = 4.39 and rise again (they believe 10% of the labels are wrong), while
robust subtracts the flipped term and keeps falling below 0. discopop blends log sigma (0.693 at 0)
with exp(-x) (1 at 0) by sigma(x / 0.05), so it bumps up at delta = 0. The squared ones (ipo,
ipo_sum, sppo_hard) have a minimum at a target margin and rise beyond it. The anchored ones
(nca_pair, bco_pair, apo_zero, apo_down) score each answer against the reference on its own.
""")

// MARK: 3. The gradient weights

chapter.heading("3. The gradient weight d loss / d delta")
chapter.say("""
The weight is how hard one step of gradient descent pushes the margin: negative pushes it up,
positive pushes it down, 0 leaves the pair alone. For DPO it is -beta * sigma(-x): half of -beta
at delta = 0, fading as the pair gets ranked right.
""")
var weightTable = Table(["weight at delta ="] + shownMargins.map { fmt($0, 0) })
for member in members {
    weightTable.add([member.label] + shownMargins.map { fmt(at(member.label, $0).weight, 4) })
}
chapter.show(weightTable, maximumRows: 20)
chapter.say("""
Read down the last column (delta = 10): sigmoid still pushes a little and hinge has stopped.
ipo_sum and sppo_hard pull the margin back down (positive); ipo, whose target is per token, is
still short of it (10/16 + 10/40 = 0.875 < 1) and pushes. cDPO and exo_pair have passed their
optimum and pull back; robust keeps pushing at a steady -e*beta/(1-2e). nca_pair pulls back too:
its -1/2 log sigma(-beta u_w) term penalises a chosen answer far above the reference. discopop's
weight is positive at delta = 0, the bump of section 2.
""")

// MARK: 4. The plot

chapter.heading("4. The plot")
let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
let families: [(title: String, labels: [String])] = [
    ("logistic family", ["sigmoid", "sigmoid e=0.1", "robust e=0.1", "exo_pair e=0.1", "hinge", "discopop",
                         "sigmoid_norm"]),
    ("squared family", ["ipo", "ipo_sum", "sppo_hard"]),
    ("anchored family", ["nca_pair", "bco_pair", "apo_zero", "apo_down"]),
]
var plot = SVGPlot(title: "The DPO family on one pair (beta 0.5; aot = sigmoid for one pair)",
                   xLabel: "point k: delta = (k - 21)/2 nats; k = 1, 11, 21, 31, 41 is delta = -10, -5, 0, 5, 10")
for family in families {
    let views: [(title: String, value: (Evaluation) -> Double)] = [("loss", { $0.result.loss }),
                                                                    ("d loss / d delta", { $0.weight })]
    for (title, value) in views {
        plot.addPanel(title: "\(family.title): \(title)", series: family.labels.enumerated().map { index, label in
            SVGPlot.Series(name: label, values: curves[label]!.map(value), color: palette[index % palette.count],
                           dashed: index >= palette.count)
        })
    }
}
let plotFile = chapter.directory + "/dpo-family.svg"
do {
    try plot.write(to: plotFile)
} catch {
    print("cannot write the plot to \(plotFile): \(error)"); exit(1)
}
chapter.say("Loss and weight of each family over the 41 margins: Chapters/14-dpo-family/dpo-family.svg")

// MARK: 5. Length normalisation

chapter.heading("5. What dividing by the length changes: ipo vs ipo_sum, sigmoid_norm")
chapter.say("""
The same log-ratios h_w = 4, h_l = -2 (delta = 6), once on a 2-token pair and once on a 200-token
pair. TRL's ipo and sigmoid_norm divide each score by its answer's token count; OpenRLHF's IPO
(ipo_sum) and sigmoid read the sums.
  ipo       (h_w/n_w - h_l/n_l - 1/(2 beta))^2        ipo_sum   (h_w - h_l - 1/(2 beta))^2
""")
@MainActor func lengthPair(_ tokens: Int64) -> Batch {
    Batch(chosen: [-20], rejected: [-30], refChosen: [-24], refRejected: [-28], chosenLengths: [tokens],
          rejectedLengths: [tokens])
}
let lengthMembers = [Member(label: "ipo", lossType: .ipo), Member(label: "ipo_sum", lossType: .ipoSum),
                     Member(label: "sigmoid_norm", lossType: .sigmoidNorm), Member(label: "sigmoid", lossType: .sigmoid)]
var lengthTable = Table(["loss type", "loss, 2 tokens", "loss, 200 tokens", "grad chosen, 2", "grad chosen, 200"])
var lengthRuns = [String: (short: Evaluation, long: Evaluation)]()
for member in lengthMembers {
    let short = evaluate(member, lengthPair(2)), long = evaluate(member, lengthPair(200))
    lengthRuns[member.label] = (short, long)
    lengthTable.add([member.label, fmt(short.result.loss, 4), fmt(long.result.loss, 4),
                     fmt(short.gradients.gradChosenLogps.scalars[0], 4), fmt(long.gradients.gradChosenLogps.scalars[0], 6)])
}
chapter.show(lengthTable)
chapter.say("""
ipo on 2 tokens: per-token margin 4/2 + 2/2 = 3, past the target 1, so it pulls the chosen
log-prob down (gradient +2). On 200 tokens the per-token margin is 0.03, short of 1, so the same
log-ratios push it up, 200 times more gently. ipo_sum sees delta = 6 both times and pulls both
down. sigmoid_norm is nearly flat on long answers: -log sigma(0.5 * 0.03) is close to ln 2.
""")

// MARK: 6. The quirks

chapter.heading("6. The peers' quirks, on numbers")
chapter.say("""
a) TRL's sigmoid ignores label_smoothing (since its PR #3906); OpenRLHF, DeepSpeed-Chat and TRL's
   own CPO read it as cDPO, -(1-e) log sigma(x) - e log sigma(-x). This stage follows cDPO, so a
   TRL user compares at e = 0. At delta = 4 (x = 2):
""")
let plainAt4 = at("sigmoid", 4).result.loss, cdpoAt4 = at("sigmoid e=0.1", 4).result.loss
var smoothing = Table(["reading", "loss at delta = 4"])
smoothing.add(["TRL sigmoid, any e (= e = 0)", fmt(plainAt4, 6)])
smoothing.add(["cDPO, e = 0.1 (this stage)", fmt(cdpoAt4, 6)])
chapter.show(smoothing)

chapter.say("""

b) The f-divergence turns each h into a score u before the losses compare them, but aot,
   aot_unpaired and apo_zero read the raw log-probs or h, and apo_down mixes the plain h_w with the
   f-aware x. With js_divergence (u = log sigma(h)), on a pair with h_w = 3, h_l = -1:
""")
let fPair = Batch(chosen: [-37], rejected: [-46], refChosen: [-40], refRejected: [-45], chosenLengths: [8],
                  rejectedLengths: [20])
var fTable = Table(["loss type", "reverse_kl", "js_divergence", "changed"])
var fBlind = [String: Bool]()
for lossType in [DPOLossType.sigmoid, .aot, .apoZero, .apoDown] {
    let plain = evaluate(Member(label: lossType.rawValue, lossType: lossType), fPair).result.loss
    let js = evaluate(Member(label: lossType.rawValue, lossType: lossType, f: .jsDivergence), fPair).result.loss
    fBlind[lossType.rawValue] = plain == js
    fTable.add([lossType.rawValue, fmt(plain, 6), fmt(js, 6), plain == js ? "no" : "yes"])
}
chapter.show(fTable)
let apoDownAtZero = at("apo_down", 0).gradients
chapter.say("""
   apo_down's mixture shows at delta = 0: sigma(beta h_w) pulls the chosen log-prob down and
   1 - sigma(x) pushes it up by exactly as much, so only the rejected answer moves:
   grad_chosen_logps = \(fmt(apoDownAtZero.gradChosenLogps.scalars[0], 6)), grad_rejected_logps = \(fmt(apoDownAtZero.gradRejectedLogps.scalars[0], 6)).

c) aot sorts: the policy's chosen - rejected over the batch, and the reference's, separately;
   rank i is paired with rank i, so losses[i] belongs to a rank, not to pair i. Three pairs, beta 1:
""")
let aotBatch = Batch(chosen: [-10, -11, -9], rejected: [-13, -12, -12.5], refChosen: [-20, -18, -16.5],
                     refRejected: [-20, -20, -19], chosenLengths: [5, 5, 5], rejectedLengths: [5, 5, 5])
let aot = evaluate(Member(label: "aot", lossType: .aot), aotBatch, beta: 1)
let paired = evaluate(Member(label: "sigmoid", lossType: .sigmoid), aotBatch, beta: 1)
let policyDiff = (0..<3).map { aotBatch.chosen[$0] - aotBatch.rejected[$0] }
let refDiff = (0..<3).map { aotBatch.refChosen[$0] - aotBatch.refRejected[$0] }
let sortedPolicy = policyDiff.sorted(), sortedRef = refDiff.sorted()
var aotTable = Table(["pair i", "w - l", "ref w - l", "delta", "sigmoid", "rank i: sorted", "sorted ref", "aot delta",
                      "aot loss"])
for i in 0..<3 {
    aotTable.add(["\(i)", fmt(policyDiff[i], 2), fmt(refDiff[i], 2), fmt(policyDiff[i] - refDiff[i], 2),
                  fmt(paired.result.losses.scalars[i], 4), fmt(sortedPolicy[i], 2), fmt(sortedRef[i], 2),
                  fmt(sortedPolicy[i] - sortedRef[i], 2), fmt(aot.result.losses.scalars[i], 4)])
}
chapter.show(aotTable)
let pairedSum = (0..<3).reduce(0.0) { $0 + policyDiff[$1] - refDiff[$1] }
let aotDeltas = (0..<3).map { sortedPolicy[$0] - sortedRef[$0] }
let aotSum = aotDeltas.reduce(0, +)
chapter.say("""
   Sorting moves margins between pairs but keeps their sum (\(fmt(pairedSum, 2)) both ways): pair 1's own
   margin is \(fmt(policyDiff[1] - refDiff[1], 2)), yet every aot margin is \(fmt(aotDeltas.min()!, 2)) or more. Each rank's derivative goes back to
   the pair whose policy difference landed there (grad_chosen_logps \(list(aot.gradients.gradChosenLogps.scalars, 4))).

d) TRL clamps the alpha-divergence exponent (a-1)h at 80 in float32 (its table has no float64
   entry; this stage uses 80 in both). Past the clamp the score is the constant -2 e^80 (a = 0.5)
   and passes no gradient. bco_pair, beta 1e-33, float32, h_w = -150 (inside) and -170 (past):
""")
@MainActor func alphaPoint(_ hw: Float) -> (score: Float, grad: Float) {
    func v(_ x: Float) -> Tensor<Float> { Tensor.make([1], [x]) }
    return chapter.must {
        let args = (chosen: v(-10 + hw), rejected: v(-12), refChosen: v(-10), refRejected: v(-12))
        let result: DPOVariantsResult<Float> = try dpoVariants(
            chosenLogps: args.chosen, rejectedLogps: args.rejected, refChosenLogps: args.refChosen,
            refRejectedLogps: args.refRejected, chosenLengths: Tensor.make([1], [4]), rejectedLengths: Tensor.make([1], [4]),
            lossType: .bcoPair, beta: 1e-33, fDivergence: .alphaDivergence)
        let grads: DPOVariantsGradients<Float> = try dpoVariantsGradients(
            chosenLogps: args.chosen, rejectedLogps: args.rejected, refChosenLogps: args.refChosen,
            refRejectedLogps: args.refRejected, chosenLengths: Tensor.make([1], [4]), rejectedLengths: Tensor.make([1], [4]),
            lossType: .bcoPair, beta: 1e-33, fDivergence: .alphaDivergence)
        return (result.chosenScores.scalars[0], grads.gradChosenLogps.scalars[0])
    }
}
let inside = alphaPoint(-150), past = alphaPoint(-170)
var alphaTable = Table(["h_w", "(a-1) h_w", "u_w (float32)", "grad_chosen_logps"])
alphaTable.add(["-150", "75", sci(Double(inside.score), 4), sci(Double(inside.grad), 4)])
alphaTable.add(["-170", "85 -> 80", sci(Double(past.score), 4), sci(Double(past.grad), 4)])
chapter.show(alphaTable)

// MARK: 7. Golden fixtures

chapter.heading("7. Against PyTorch")
chapter.say("The stage on four fixtures that TRL's formulas produced under torch autograd (float64).")
@MainActor func runFixture(_ name: String) -> (fixture: Fixture, run: Evaluation) {
    let fixture = chapter.fixture("dpo_variants/" + name)
    let arguments = chapter.arguments(fixture)
    let member = chapter.must {
        Member(label: name, lossType: try DPOLossType(named: arguments.string("loss_type")),
               epsilon: try arguments.real("label_smoothing"), f: try FDivergence(named: arguments.string("f_divergence")))
    }
    let batch = Batch(chosen: chapter.floatInput(fixture, "chosen_logps").scalars,
                      rejected: chapter.floatInput(fixture, "rejected_logps").scalars,
                      refChosen: chapter.floatInput(fixture, "ref_chosen_logps").scalars,
                      refRejected: chapter.floatInput(fixture, "ref_rejected_logps").scalars,
                      chosenLengths: chapter.intInput(fixture, "chosen_lengths").scalars,
                      rejectedLengths: chapter.intInput(fixture, "rejected_lengths").scalars)
    return (fixture, evaluate(member, batch, beta: chapter.realParam(fixture, "beta")))
}
let zero = runFixture("margin-zero-log2-f64")
chapter.check("losses", ours: zero.run.result.losses, against: zero.fixture)
let lengths = runFixture("ipo-long-vs-short-f64")
chapter.check("losses", ours: lengths.run.result.losses, against: lengths.fixture)
chapter.check("grad_chosen_logps", ours: lengths.run.gradients.gradChosenLogps, against: lengths.fixture)
let ties = runFixture("aot-sort-ties-f64")
chapter.check("losses", ours: ties.run.result.losses, against: ties.fixture)
let kink = runFixture("hinge-kink-f64")
chapter.check("grad_chosen_logps", ours: kink.run.gradients.gradChosenLogps, against: kink.fixture)
chapter.say("")
let exoZero = chapter.fixture("dpo_variants/error-exo-eps-0")
chapter.checkRejects(exoZero) {
    try dpoVariants(chosenLogps: chapter.floatInput(exoZero, "chosen_logps"),
                    rejectedLogps: chapter.floatInput(exoZero, "rejected_logps"),
                    refChosenLogps: chapter.floatInput(exoZero, "ref_chosen_logps"),
                    refRejectedLogps: chapter.floatInput(exoZero, "ref_rejected_logps"),
                    chosenLengths: chapter.intInput(exoZero, "chosen_lengths"),
                    rejectedLengths: chapter.intInput(exoZero, "rejected_lengths"), lossType: .exoPair)
}

// MARK: 8. Claims

chapter.heading("8. What these numbers must show")
let sigmoidCurve = curves["sigmoid"]!
chapter.claim(abs(at("sigmoid", 0).result.loss - log(2)) < 1e-12, "sigmoid at delta = 0 is ln 2 = 0.693147")
chapter.claim(abs(at("sigmoid", 0).weight + beta / 2) < 1e-12, "sigmoid's weight at delta = 0 is -beta/2 = -0.25")
chapter.claim(zip(sigmoidCurve, sigmoidCurve.dropFirst()).allSatisfy { $1.result.loss < $0.result.loss }
              && sigmoidCurve.allSatisfy { $0.weight < 0 && $0.weight > -beta },
              "sigmoid falls along the whole path, its weight always in (-beta, 0)")
chapter.claim(margins.indices.filter { margins[$0] >= 2 }.allSatisfy {
                  curves["hinge"]![$0].result.loss == 0 && curves["hinge"]![$0].weight == 0 },
              "hinge is 0 with weight 0 from delta = 1/beta = 2 on (relu passes nothing at 0)")
chapter.claim(at("ipo_sum", 1).result.loss == 0 && at("ipo_sum", 0.5).weight < 0 && at("ipo_sum", 1.5).weight > 0,
              "ipo_sum is 0 at delta = 1/(2 beta) = 1, pushing up below it and down above it")
let optimum = log(0.9 / 0.1) / beta
chapter.claim(at("sigmoid e=0.1", 4).weight < 0 && at("sigmoid e=0.1", 4.5).weight > 0
              && at("exo_pair e=0.1", 4).weight < 0 && at("exo_pair e=0.1", 4.5).weight > 0,
              "cDPO and exo_pair (e = 0.1) turn round at delta = ln 9 / beta = \(fmt(optimum, 3))")
chapter.claim(at("discopop", 0).weight > 0 && at("discopop", 0).result.loss > at("sigmoid", 0).result.loss,
              "discopop bumps up at delta = 0: its weight there is positive")
chapter.claim(at("ipo", 10).weight < 0 && at("ipo_sum", 10).weight > 0 && at("sppo_hard", 10).weight > 0
              && at("nca_pair", 10).weight > 0,
              "at delta = 10 ipo still pushes; ipo_sum, sppo_hard and nca_pair pull back")
chapter.claim(curves["exo_pair e=0.1"]!.allSatisfy { $0.result.loss >= 0 },
              "exo_pair is a KL divergence: never negative")
chapter.claim(at("robust e=0.1", 10).weight < -0.06,
              "robust (e = 0.1) still pushes at delta = 10 (weight -> -e*beta/(1-2e) = -0.0625)")
chapter.claim(apoDownAtZero.gradChosenLogps.scalars[0] == 0 && apoDownAtZero.gradRejectedLogps.scalars[0] > 0,
              "apo_down at the reference moves only the rejected answer")
let ipoRuns = lengthRuns["ipo"]!, ipoSumRuns = lengthRuns["ipo_sum"]!, sigmoidRuns = lengthRuns["sigmoid"]!
chapter.claim(ipoSumRuns.short.result.loss == ipoSumRuns.long.result.loss
              && sigmoidRuns.short.result.loss == sigmoidRuns.long.result.loss
              && abs(ipoRuns.short.result.loss - 4) < 1e-12 && abs(ipoRuns.long.result.loss - 0.9409) < 1e-12,
              "the lengths change ipo (4 vs 0.9409) and leave ipo_sum and sigmoid as they are")
chapter.claim(ipoRuns.short.gradients.gradChosenLogps.scalars[0] > 0 && ipoRuns.long.gradients.gradChosenLogps.scalars[0] < 0,
              "the same log-ratios make ipo pull the short chosen answer down and push the long one up")
chapter.claim(abs(cdpoAt4 - plainAt4) > 1e-3, "label smoothing changes cDPO, which TRL's sigmoid would ignore")
chapter.claim(fBlind["aot"]! && fBlind["apo_zero"]! && !fBlind["apo_down"]! && !fBlind["sigmoid"]!,
              "aot and apo_zero ignore f_divergence; apo_down and sigmoid do not")
chapter.claim(abs(aotSum - pairedSum) < 1e-12 && aot.result.losses.scalars != paired.result.losses.scalars,
              "aot keeps the sum of the margins but not the pairs' losses")
chapter.claim(past.grad == 0 && inside.grad != 0 && abs(Double(past.score) / (-2 * exp(80.0)) - 1) < 1e-6,
              "past the alpha clamp the score is -2 e^80 and passes no gradient")
chapter.finish()
