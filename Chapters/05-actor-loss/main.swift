// Chapter 05 · The actor loss: PPO's clipped surrogate.
//
// Reads top to bottom: the ratio on a batch that barely moved, the clip truth
// table (both signs of the advantage, ratios inside and outside 1 ± ε), a batch
// mostly outside the clip, the masked token-mean against a per-sequence mean,
// what the mask inside exp is for, and an input the stage refuses. The math is
// `actorLoss(...)` and `actorLossGradLogProbs(...)` in Sources/ActorLoss; this
// file only prints and checks. Run it with `make chapter N=5`.

import ActorLoss
import ChapterSupport
import Foundation
import Golden
import TensorCore

let chapter = Chapter(number: 5, title: "The actor loss: PPO's clipped surrogate")
chapter.say("""
The actor learns from answers it sampled a moment ago, with the weights it had then (pi_old).
The loss reweights each answer token by how much more likely the current actor makes it, the
ratio, pushes along the token's advantage, and clips the ratio so one batch cannot move the
policy far.
""")

/// One actor_loss fixture, read into the library's argument types.
struct ActorInputs {
    let fixture: Fixture
    let logProbs: Tensor<Double>
    let oldLogProbs: Tensor<Double>
    let advantages: Tensor<Double>
    let mask: Tensor<Int64>
    let cliprange: Double
    var count: Int { logProbs.count }
    func label(_ i: Int) -> String { "\(i / logProbs.shape[1]), \(i % logProbs.shape[1])" }
    func logRatio(_ i: Int) -> Double { logProbs.scalars[i] - oldLogProbs.scalars[i] }
}

@MainActor func load(_ path: String) -> ActorInputs {
    let fixture = chapter.fixture(path)
    return ActorInputs(fixture: fixture, logProbs: chapter.floatInput(fixture, "log_probs"),
                       oldLogProbs: chapter.floatInput(fixture, "old_log_probs"),
                       advantages: chapter.floatInput(fixture, "advantages"),
                       mask: chapter.intInput(fixture, "mask"), cliprange: chapter.realParam(fixture, "cliprange"))
}

@MainActor func loss(_ inputs: ActorInputs) -> ActorLossResult<Double> {
    chapter.must {
        try actorLoss(logProbs: inputs.logProbs, oldLogProbs: inputs.oldLogProbs, advantages: inputs.advantages,
                      mask: inputs.mask, cliprange: inputs.cliprange)
    }
}

@MainActor func gradient(_ inputs: ActorInputs) -> Tensor<Double> {
    chapter.must {
        try actorLossGradLogProbs(logProbs: inputs.logProbs, oldLogProbs: inputs.oldLogProbs,
                                  advantages: inputs.advantages, mask: inputs.mask, cliprange: inputs.cliprange)
    }
}

/// Where a ratio sits against the band [1 - ε, 1 + ε].
func band(_ ratio: Double, _ cliprange: Double) -> String {
    ratio < 1 - cliprange ? "below" : (ratio > 1 + cliprange ? "above" : "inside")
}

/// Which side of max(-A·ratio, -A·clip(ratio)) the library's token loss came from.
/// The two candidates are recomputed here for display only.
func winner(advantage: Double, ratio: Double, cliprange: Double) -> String {
    let unclipped = -advantage * ratio
    let clipped = -advantage * min(max(ratio, 1 - cliprange), 1 + cliprange)
    return unclipped > clipped ? "unclipped" : (clipped > unclipped ? "clipped" : "equal")
}

// MARK: 1. The ratio

chapter.heading("1. The ratio: how much more likely the token is now")
chapter.say("""
  ratio_t = exp((logpi_t - logpi_old_t) * m_t)          the importance weight
  loss_t  = max(-A_t * ratio_t, -A_t * clip(ratio_t, 1 - eps, 1 + eps))
  loss    = sum_{b,t} loss_t * m_t / sum_{b,t} m_t      one mean over every kept token
""")
let inside = load("actor_loss/ratios-inside-clip-f64")
let insideResult = loss(inside)
chapter.say("""
GoldenData/actor_loss/ratios-inside-clip-f64.json: B = 2 answers of M = 6 tokens, all kept,
eps = \(fmt(inside.cliprange, 1)). The actor has moved a little since sampling: every ratio is within [0.8, 1.2],
so the clip never acts and loss_t = -A_t * ratio_t.
""")
var ratioTable = Table(["b, t", "logpi - logpi_old", "ratio", "A_t", "loss_t"])
for i in 0..<inside.count {
    ratioTable.add([inside.label(i), fmt(inside.logRatio(i)), fmt(insideResult.ratios.scalars[i]),
                    fmt(inside.advantages.scalars[i]), fmt(insideResult.tokenLosses.scalars[i])])
}
chapter.show(ratioTable)
chapter.say("""
A positive advantage makes loss_t negative: descending the loss raises that token's probability.
A negative advantage does the opposite. At the first step after sampling (dropout off, the same
temperature) every ratio is exactly 1 and the loss is just -mean(A).
""")
chapter.check("loss", ours: insideResult.loss, against: inside.fixture)

// MARK: 2. The clip truth table

chapter.heading("2. The clip truth table")
let grid = load("actor_loss/advantage-sign-grid-f64")
let gridResult = loss(grid)
let gridGradient = gradient(grid)
chapter.say("""
GoldenData/actor_loss/advantage-sign-grid-f64.json: log-ratios -0.9 .. 0.9 against A = +1.5 (row
0) and A = -1.5 (row 1), eps = \(fmt(grid.cliprange, 1)). "max picks" is the branch the token loss comes from;
the last column is the library's d loss / d logpi_t of the mean over all 14 tokens, zero where
the clip froze the token (checked below against autograd's, from the same fixture).
""")
var truth = Table(["A", "log-ratio", "ratio", "band", "-A*ratio", "-A*clip", "loss_t", "max picks", "gradient"])
for i in 0..<grid.count {
    let advantage = grid.advantages.scalars[i], ratio = gridResult.ratios.scalars[i]
    let clippedRatio = min(max(ratio, 1 - grid.cliprange), 1 + grid.cliprange)  // display only
    truth.add([(advantage > 0 ? "+" : "") + fmt(advantage, 1), fmt(grid.logRatio(i), 1), fmt(ratio), band(ratio, grid.cliprange),
               fmt(-advantage * ratio), fmt(-advantage * clippedRatio), fmt(gridResult.tokenLosses.scalars[i]),
               winner(advantage: advantage, ratio: ratio, cliprange: grid.cliprange), fmt(gridGradient.scalars[i])])
}
chapter.show(truth)
chapter.say("""
The table, folded:

               ratio below 1 - eps       inside the band           ratio above 1 + eps
  A > 0        unclipped: push up        unclipped: push up        clipped: gradient 0
  A < 0        clipped: gradient 0       unclipped: push down      unclipped: push down

The clip only ever stops a token that has already moved far enough in its advantage's direction
(A > 0 and already more likely, A < 0 and already less likely). A token that moved the wrong way
keeps its full, unclipped gradient: max makes the bound pessimistic, never optimistic. A negative
gradient means descent raises logpi.
""")
chapter.check("loss", ours: gridResult.loss, against: grid.fixture)
chapter.check("grad_log_probs", ours: gridGradient, against: grid.fixture)

// MARK: 3. A batch mostly outside the clip

chapter.heading("3. A batch mostly outside the clip")
let outside = load("actor_loss/ratios-outside-clip-f64")
let outsideResult = loss(outside)
let outsideGradient = gradient(outside)
chapter.say("""
GoldenData/actor_loss/ratios-outside-clip-f64.json: 15 tokens, most ratios outside [0.8, 1.2],
advantages of both signs. Grouped by the cells of the table above:
""")
var cases = [String: (tokens: Int, frozen: Int, sum: Double, picks: Set<String>)]()
for i in 0..<outside.count {
    let advantage = outside.advantages.scalars[i], ratio = outsideResult.ratios.scalars[i]
    let key = "\(advantage > 0 ? "A > 0" : "A < 0"), \(band(ratio, outside.cliprange))"
    var entry = cases[key] ?? (0, 0, 0, [])
    entry.tokens += 1
    entry.frozen += outsideGradient.scalars[i] == 0 ? 1 : 0
    entry.sum += outsideResult.tokenLosses.scalars[i]
    entry.picks.insert(winner(advantage: advantage, ratio: ratio, cliprange: outside.cliprange))
    cases[key] = entry
}
var caseTable = Table(["cell", "tokens", "max picks", "gradient 0", "sum of loss_t"])
for sign in ["A > 0", "A < 0"] {
    for side in ["below", "inside", "above"] {
        let key = "\(sign), \(side)"
        guard let entry = cases[key] else { continue }
        caseTable.add([key, String(entry.tokens), entry.picks.sorted().joined(separator: ", "), "\(entry.frozen) of \(entry.tokens)", fmt(entry.sum)])
    }
}
chapter.show(caseTable)
let frozen = outsideGradient.scalars.filter { $0 == 0 }.count
chapter.say("""
\(frozen) of \(outside.count) tokens are frozen: they still count in the loss value, and in its denominator,
but send no gradient. The loss is the token-mean \(fmt(outsideResult.loss)) = sum / \(outsideResult.tokenCount).
""")
chapter.check("loss", ours: outsideResult.loss, against: outside.fixture)

// MARK: 4. The masked mean

chapter.heading("4. The mean: over every kept token of the batch")
let partial = load("actor_loss/partial-mask-f64")
let partialResult = loss(partial)
let width = partial.logProbs.shape[1]
chapter.say("""
GoldenData/actor_loss/partial-mask-f64.json: 3 answers of 7, 3 and 5 kept tokens. Masked positions
get log-ratio * 0 = 0, so ratio = exp(0) = 1 there, and are then left out of the sum. Row 1:
""")
var rowTable = Table(["t", "logpi - logpi_old", "m_t", "ratio", "loss_t", "counted"])
for t in 0..<width {
    let i = width + t
    rowTable.add([String(t), fmt(partial.logRatio(i)), String(partial.mask.scalars[i]),
                  fmt(partialResult.ratios.scalars[i]), fmt(partialResult.tokenLosses.scalars[i]),
                  partial.mask.scalars[i] == 1 ? "yes" : "no"])
}
chapter.show(rowTable)
var rowSums = [Double](), rowCounts = [Int]()
var meanTable = Table(["row", "kept tokens", "sum of loss_t * m_t", "row mean"])
for b in 0..<partial.logProbs.shape[0] {
    let kept = (0..<width).filter { partial.mask.scalars[b * width + $0] == 1 }
    let sum = kept.reduce(0.0) { $0 + partialResult.tokenLosses.scalars[b * width + $1] }
    rowSums.append(sum)
    rowCounts.append(kept.count)
    meanTable.add(["b=\(b)", String(kept.count), fmt(sum), fmt(sum / Double(kept.count))])
}
chapter.show(meanTable)
let perSequence = zip(rowSums, rowCounts).map { $0 / Double($1) }.reduce(0, +) / Double(rowSums.count)
chapter.say("""
DeepSpeed-Chat divides the batch's sum by all \(partialResult.tokenCount) kept tokens: loss = \(fmt(partialResult.loss)). Every token
weighs the same, whatever its answer's length. align-anything averages each row first, then the
rows: \(fmt(perSequence)) (an illustration, not a fixture), where the 3 tokens of row 1 together weigh as
much as the 7 of row 0.
""")
chapter.check("loss", ours: partialResult.loss, against: partial.fixture)

// The aggregation example of the pitfalls notes, through the library: with log-probs equal to
// the old ones every ratio is 1 and loss_t = -A_t, so A = -(per-token losses) reproduces them.
let notesLosses: [Double] = [2, 2, 2, 2, 2, 6, 5, 3, 2, 4, 10, 3, 4, 5, 2, 3, 4, 1, 1, 3]
let notesMask: [Int64] = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
let fresh = Tensor<Double>(shape: [2, 10], repeating: 0)
let notes = chapter.must {
    try actorLoss(logProbs: fresh, oldLogProbs: fresh, advantages: Tensor.make([2, 10], notesLosses.map { -$0 }),
                  mask: Tensor.make([2, 10], notesMask), cliprange: 0.2)
}
let notesRowMeans = [10.0 / 5, 10.0 / 1]
chapter.say("""

The pitfalls notes' example (an illustration, not a fixture): per-token losses
row 0 = [2, 2, 2, 2, 2 | 6, 5, 3, 2, 4] with 5 kept, row 1 = [10 | 3, 4, 5, 2, 3, 4, 1, 1, 3] with 1
kept (| is where the mask ends), fed to the library as ratio 1 and A = -loss.
  token-mean (DeepSpeed-Chat, the library)       (10 + 10) / 6        = \(fmt(notes.loss))
  per-sequence mean, then batch (align-anything) (10/5 + 10/1) / 2    = \(fmt(notesRowMeans.reduce(0, +) / 2))
  sum / constant 10, then batch (Dr. GRPO)       (10/10 + 10/10) / 2  = \(fmt((10.0 / 10 + 10.0 / 10) / 2))
Same tokens, three losses. Per-sequence means give a short answer's tokens more weight each.
""")

// MARK: 5. The mask inside exp

chapter.heading("5. Why the mask goes inside exp")
let huge = load("actor_loss/masked-huge-log-ratio-f64")
let hugeResult = loss(huge)
chapter.say("""
GoldenData/actor_loss/masked-huge-log-ratio-f64.json: two masked positions hold log-ratios of
+-800 (garbage past the end of an answer). Exponentiated as they are, the wrong way:
""")
var hugeTable = Table(["b, t", "m_t", "log-ratio", "exp(log-ratio)", "exp(log-ratio * m)", "A_t"])
for i in 0..<huge.count where huge.mask.scalars[i] == 0 && abs(huge.logRatio(i)) > 100 {
    hugeTable.add([huge.label(i), String(huge.mask.scalars[i]), fmt(huge.logRatio(i), 2),
                   fmt(exp(huge.logRatio(i))), fmt(hugeResult.ratios.scalars[i]), fmt(huge.advantages.scalars[i])])
}
chapter.show(hugeTable)
chapter.say("""
exp(800) overflows to inf. Both advantages here are positive, so max(-A * inf, -A * 1.2) would
pick the finite clipped branch and the wrong way would survive, by luck. With A < 0 the token
loss is -A * inf = inf, and the masked sum inf * 0 = nan: one garbage pad poisons the batch.
Multiplying the log-ratio by the mask first makes every masked ratio exp(0) = 1, whatever sits
there. (It does not help with a NaN: NaN * 0 is NaN. The library refuses NaN inputs.)
""")
chapter.check("loss", ours: hugeResult.loss, against: huge.fixture)

// MARK: 6. What it refuses

chapter.heading("6. An input it refuses")
let empty = load("actor_loss/error-empty-mask")
chapter.say("""
GoldenData/actor_loss/error-empty-mask.json: the mask keeps no token. PyTorch computes 0 / 0 = nan
and the step silently trains on NaN; the library throws.
""")
chapter.checkRejects(empty.fixture) { try actorLoss(logProbs: empty.logProbs, oldLogProbs: empty.oldLogProbs,
                                                    advantages: empty.advantages, mask: empty.mask,
                                                    cliprange: empty.cliprange) }

chapter.finish()
