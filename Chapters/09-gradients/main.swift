// Chapter 09 · Gradients by hand: where each loss pushes, and where it stops.
//
// Reads top to bottom, one loss per section: gather_log_probs, the pairwise
// reward loss, the actor loss, the critic loss, DPO and SFT. Each section shows
// where the gradient is zero and why, the library's hand-derived gradient beside
// central differences of the library's own forward, and the gradient beside
// PyTorch autograd's from GoldenData. The math is the `...Grad...` functions
// beside each forward in Sources/; this file only prints and checks. Run it with
// `make chapter N=9`.

import ActorLoss
import ChapterSupport
import CriticLoss
import DPOLoss
import Foundation
import GatherLogProbs
import Golden
import PairwiseRewardLoss
import SFTLoss
import TensorCore

let chapter = Chapter(number: 9, title: "Gradients by hand: where each loss pushes, and where it stops")
chapter.say("""
The peers get their gradients from autograd. Here every gradient is derived by hand, written
beside its forward in Sources/, and checked two ways: against central differences of the forward,
  (f(x + h) - f(x - h)) / 2h,   h = 1e-5,   in float64,
and against PyTorch autograd's gradient stored in the golden fixture. Central differences need a
smooth neighbourhood; at a kink (a clip bound, a tie in a max) they give the average of the two
one-sided slopes, and section 3 shows what autograd picks there instead.
""")

/// Central differences of `loss` at the flat input `x`, through the library's forward.
@MainActor func numericGradient(_ x: [Double], _ loss: @escaping ([Double]) throws -> Double) -> [Double] {
    chapter.must { try centralDifferenceGradient(at: x, loss) }
}

/// The largest |a - b| over two equal-length lists.
func largestGap(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

// MARK: 1. gather_log_probs

chapter.heading("1. gather_log_probs: softmax minus one-hot")
chapter.say("""
  log_probs[b, t] = x_y - log sum_v exp(x_v)               x = logits[b, t, :], y = the label
  d log_probs / d x_v = 1[v = y] - softmax(x)_v
  grad_logits[b, t, v] = grad_output[b, t] * (1[v = y] - softmax(x)_v)
The label's logit is pulled up by 1 - p_y, every other logit pushed down by its own probability.
A row sums to zero: raising every logit by the same amount changes no probability. A -inf logit
(a banned token) has p = 0, so its gradient is exactly 0.
""")
let gatherFixture = chapter.fixture("gather_log_probs/grad-masked-vocab-neg-inf-f64")
let gatherLogits = chapter.floatInput(gatherFixture, "logits")
let gatherLabels = chapter.intInput(gatherFixture, "labels")
let gatherUpstream = chapter.floatInput(gatherFixture, "grad_output")
let gatherGradient = chapter.must {
    try gatherLogProbsGradLogits(logits: gatherLogits, labels: gatherLabels, gradOutput: gatherUpstream)
}
let vocabularySize = gatherLogits.shape[2]
let gatherNumeric = numericGradient(gatherLogits.scalars.map { $0.isInfinite ? -1e300 : $0 }) { probe in
    // A -inf logit is held at -1e300 for the differences: exp underflows to 0 just the same.
    let logProbs = try gatherLogProbs(logits: Tensor.make(gatherLogits.shape, probe), labels: gatherLabels)
    return zip(logProbs.scalars, gatherUpstream.scalars).reduce(0) { $0 + $1.0 * $1.1 }
}
let shownRow = 1  // b = 0, t = 1: a row with two -inf logits
chapter.say("""
GoldenData/gather_log_probs/grad-masked-vocab-neg-inf-f64.json: logits [2, 4, 10] with -inf at
banned entries, labels [2, 4], and an upstream gradient grad_output [2, 4] (what the loss above
sends down). Row b = 0, t = 1: label \(gatherLabels.scalars[shownRow]), grad_output \(fmt(gatherUpstream.scalars[shownRow])).
""")
var gatherTable = Table(["v", "logit", "softmax", "1[v=y]", "hand gradient", "central diff.", "why"])
let rowLogits = Array(gatherLogits.scalars[(shownRow * vocabularySize)..<((shownRow + 1) * vocabularySize)])
let rowMaximum = rowLogits.max() ?? 0
let rowSum = rowLogits.reduce(0.0) { $0 + exp($1 - rowMaximum) }
for v in 0..<vocabularySize {
    let i = shownRow * vocabularySize + v
    let probability = exp(rowLogits[v] - rowMaximum) / rowSum  // display only
    let isLabel = Int64(v) == gatherLabels.scalars[shownRow]
    gatherTable.add([String(v), fmt(rowLogits[v]), fmt(probability), isLabel ? "1" : "0",
                     fmt(gatherGradient.scalars[i], 6), fmt(gatherNumeric[i], 6),
                     rowLogits[v].isInfinite ? "p = 0: exactly 0" : (isLabel ? "pulled up" : "pushed down")])
}
chapter.show(gatherTable)
let rowSums = (0..<(gatherLogits.count / vocabularySize)).map { row in
    (0..<vocabularySize).reduce(0.0) { $0 + gatherGradient.scalars[row * vocabularySize + $1] }
}
let bannedGradients = gatherLogits.scalars.indices.filter { gatherLogits.scalars[$0].isInfinite }
    .map { gatherGradient.scalars[$0] }
chapter.say("""
Largest |row sum| over all 8 rows: \(sci(rowSums.map(abs).max() ?? 0, 1)). Largest |gradient| at the \(bannedGradients.count) -inf logits: \
\(fmt(bannedGradients.map(abs).max() ?? 0, 1)).
Hand against central differences, all \(gatherGradient.count) entries: largest gap \(sci(largestGap(gatherGradient.scalars, gatherNumeric), 1)).
""")
chapter.check("grad_logits", ours: gatherGradient, against: gatherFixture)

// MARK: 2. The pairwise reward loss

chapter.heading("2. The pairwise reward loss: only the window learns")
chapter.say("""
  loss = (1/B) sum_i (1/|W_i|) sum_{t in W_i} -log sigmoid(c_t - r_t)      W_i = [div_i, end_i)
  d loss / d c_t = -sigmoid(r_t - c_t) / (B |W_i|)      c: the chosen row's reward at t
  d loss / d r_t = +sigmoid(r_t - c_t) / (B |W_i|)      r: the rejected row's
Outside the window (the shared prompt before the divergence index, padding past the later end)
the rewards never enter the loss, so their gradient is 0. Inside, chosen and rejected get equal
and opposite pushes; a pair already far apart (c >> r) gets almost none.
""")
let pairFixture = chapter.fixture("reward_pairwise_loss/right-padded-f64")
let pairIds = chapter.intInput(pairFixture, "input_ids")
let pairRewards = chapter.floatInput(pairFixture, "rewards")
let padId = Int64(chapter.intParam(pairFixture, "pad_id"))
let skipped = chapter.intParam(pairFixture, "num_padding_at_beginning")
let pairForward = chapter.must {
    try pairwiseRewardLoss(inputIds: pairIds, rewards: pairRewards, padId: padId, numPaddingAtBeginning: skipped)
}
let pairGradient = chapter.must {
    try pairwiseRewardLossGradRewards(inputIds: pairIds, rewards: pairRewards, padId: padId,
                                      numPaddingAtBeginning: skipped)
}
let pairNumeric = numericGradient(pairRewards.scalars) { probe in
    Double(try pairwiseRewardLoss(inputIds: pairIds, rewards: Tensor.make(pairRewards.shape, probe), padId: padId,
                                  numPaddingAtBeginning: skipped).loss)
}
let pairLength = pairIds.shape[1], pairs = pairIds.shape[0] / 2
chapter.say("""
GoldenData/reward_pairwise_loss/right-padded-f64.json: \(pairs) pairs of length \(pairLength), pad id \(padId).
Pair 0: chosen row 0, rejected row \(pairs); divergence index \(pairForward.divergenceIndices[0]), end \(pairForward.endIndices[0]), so W_0 = [\(pairForward.divergenceIndices[0]), \(pairForward.endIndices[0])).
""")
var pairTable = Table(["t", "chosen id", "rejected id", "in W_0", "grad chosen", "grad rejected", "central (chosen)"])
for t in 0..<pairLength {
    let chosen = t, rejected = pairs * pairLength + t
    let inWindow = t >= pairForward.divergenceIndices[0] && t < pairForward.endIndices[0]
    pairTable.add([String(t), String(pairIds.scalars[chosen]), String(pairIds.scalars[rejected]), inWindow ? "yes" : "no",
                   fmt(pairGradient.scalars[chosen], 6), fmt(pairGradient.scalars[rejected], 6),
                   fmt(pairNumeric[chosen], 6)])
}
chapter.show(pairTable)
chapter.say("""
Hand against central differences, all \(pairGradient.count) entries: largest gap \(sci(largestGap(pairGradient.scalars, pairNumeric), 1)).
""")
chapter.check("grad_rewards", ours: pairGradient, against: pairFixture)

// MARK: 3. The actor loss

chapter.heading("3. The actor loss: the clip freezes a token, the kink is autograd's choice")
chapter.say("""
  loss = sum_t m_t max(-A_t ratio_t, -A_t clip(ratio_t)) / n,      d ratio_t / d logpi_t = ratio_t
  d loss / d logpi_t = -A_t ratio_t / n    where the unclipped branch counts
                     = 0                   where the clipped branch wins and the clamp is flat
""")
let gridFixture = chapter.fixture("actor_loss/advantage-sign-grid-f64")
let gridLogProbs = chapter.floatInput(gridFixture, "log_probs")
let gridOld = chapter.floatInput(gridFixture, "old_log_probs")
let gridAdvantages = chapter.floatInput(gridFixture, "advantages")
let gridMask = chapter.intInput(gridFixture, "mask")
let gridClip = chapter.realParam(gridFixture, "cliprange")
let gridForward = chapter.must {
    try actorLoss(logProbs: gridLogProbs, oldLogProbs: gridOld, advantages: gridAdvantages, mask: gridMask,
                  cliprange: gridClip)
}
let gridGradient = chapter.must {
    try actorLossGradLogProbs(logProbs: gridLogProbs, oldLogProbs: gridOld, advantages: gridAdvantages,
                              mask: gridMask, cliprange: gridClip)
}
let gridNumeric = numericGradient(gridLogProbs.scalars) { probe in
    Double(try actorLoss(logProbs: Tensor.make(gridLogProbs.shape, probe), oldLogProbs: gridOld,
                         advantages: gridAdvantages, mask: gridMask, cliprange: gridClip).loss)
}
chapter.say("""
GoldenData/actor_loss/advantage-sign-grid-f64.json: log-ratios -0.9 .. 0.9 against A = +1.5 and
A = -1.5, eps = \(fmt(gridClip, 1)), n = \(gridForward.tokenCount).
""")
var actorTable = Table(["A", "ratio", "hand gradient", "central diff.", "zero because"])
for i in 0..<gridLogProbs.count {
    let advantage = gridAdvantages.scalars[i], ratio = gridForward.ratios.scalars[i]
    let frozen = (advantage > 0 && ratio > 1 + gridClip) || (advantage < 0 && ratio < 1 - gridClip)
    actorTable.add([(advantage > 0 ? "+" : "") + fmt(advantage, 1), fmt(ratio), fmt(gridGradient.scalars[i], 6),
                    fmt(gridNumeric[i], 6),
                    frozen ? (advantage > 0 ? "A > 0, ratio above 1+eps" : "A < 0, ratio below 1-eps") : ""])
}
chapter.show(actorTable, maximumRows: 16)
chapter.say("""
Hand against central differences: largest gap \(sci(largestGap(gridGradient.scalars, gridNumeric), 1)). A frozen token still counts in n.
""")
chapter.check("grad_log_probs", ours: gridGradient, against: gridFixture)

let kinkFixture = chapter.fixture("actor_loss/kink-ratio-at-upper-bound-f64")
let kinkLogProbs = chapter.floatInput(kinkFixture, "log_probs")
let kinkOld = chapter.floatInput(kinkFixture, "old_log_probs")
let kinkAdvantages = chapter.floatInput(kinkFixture, "advantages")
let kinkMask = chapter.intInput(kinkFixture, "mask")
let kinkClip = chapter.realParam(kinkFixture, "cliprange")
let kinkForward = chapter.must {
    try actorLoss(logProbs: kinkLogProbs, oldLogProbs: kinkOld, advantages: kinkAdvantages, mask: kinkMask,
                  cliprange: kinkClip)
}
let kinkGradient = chapter.must {
    try actorLossGradLogProbs(logProbs: kinkLogProbs, oldLogProbs: kinkOld, advantages: kinkAdvantages,
                              mask: kinkMask, cliprange: kinkClip)
}
let kinkNumeric = numericGradient(kinkLogProbs.scalars) { probe in
    Double(try actorLoss(logProbs: Tensor.make(kinkLogProbs.shape, probe), oldLogProbs: kinkOld,
                         advantages: kinkAdvantages, mask: kinkMask, cliprange: kinkClip).loss)
}
chapter.say("""

At the kink. GoldenData/actor_loss/kink-ratio-at-upper-bound-f64.json puts ratios exactly on
1 + eps (eps = e^(5/32) - 1 = \(fmt(kinkClip, 6)), so the ratio e^(5/32) equals the bound to the last bit).
There the two branches are the same number: torch.max sends half the gradient to each, and
torch.clamp passes the gradient at its bound, so autograd gives the full -A ratio / n. Central
differences straddle the kink and average the slope on each side.
""")
var kinkTable = Table(["A", "ratio", "on the bound", "hand = autograd", "central diff.", "-A ratio / n"])
for i in 0..<kinkLogProbs.count {
    let advantage = kinkAdvantages.scalars[i], ratio = kinkForward.ratios.scalars[i]
    kinkTable.add([(advantage > 0 ? "+" : "") + fmt(advantage, 2), fmt(ratio, 6), ratio == 1 + kinkClip ? "yes" : "no",
                   fmt(kinkGradient.scalars[i], 6), fmt(kinkNumeric[i], 6),
                   fmt(-advantage * ratio / Double(kinkForward.tokenCount), 6)])
}
chapter.show(kinkTable)
chapter.say("""
On the bound with A > 0, a step up freezes the token (slope 0) and a step down does not (slope
-A ratio / n): central differences report half. With A < 0 both sides are unclipped and all
three agree. Any value between the one-sided slopes is a valid subgradient; the library copies
autograd's so that its gradients match PyTorch's to the bit.
""")
chapter.check("grad_log_probs", ours: kinkGradient, against: kinkFixture)

// MARK: 4. The critic loss

chapter.heading("4. The critic loss: no gradient once the clipped error wins")
chapter.say("""
  Vc_t = clamp(V_t, V_old,t - eps, V_old,t + eps)
  loss = 0.5 sum_t m_t max((V_t - R_t)^2, (Vc_t - R_t)^2) / n
  d loss / d V_t = (V_t - R_t) / n     where the unclipped error counts (or the two tie)
                 = 0                   where the clipped error is larger and V is outside the band
""")
let criticFixture = chapter.fixture("critic_loss/outside-clip-f64")
let criticValues = chapter.floatInput(criticFixture, "values")
let criticOld = chapter.floatInput(criticFixture, "old_values")
let criticReturns = chapter.floatInput(criticFixture, "returns")
let criticMask = chapter.intInput(criticFixture, "mask")
let criticClip = chapter.realParam(criticFixture, "cliprange_value")
let criticForward = chapter.must {
    try criticLoss(values: criticValues, oldValues: criticOld, returns: criticReturns, mask: criticMask,
                   cliprangeValue: criticClip)
}
let criticGradient = chapter.must {
    try criticLossGradValues(values: criticValues, oldValues: criticOld, returns: criticReturns, mask: criticMask,
                             cliprangeValue: criticClip)
}
let criticNumeric = numericGradient(criticValues.scalars) { probe in
    Double(try criticLoss(values: Tensor.make(criticValues.shape, probe), oldValues: criticOld,
                          returns: criticReturns, mask: criticMask, cliprangeValue: criticClip).loss)
}
chapter.say("""
GoldenData/critic_loss/outside-clip-f64.json: 15 values, most moved more than eps_v = \(fmt(criticClip, 1)) from the
old ones, n = \(criticForward.tokenCount).
""")
var criticTable = Table(["V_old", "V", "Vc", "R", "(V-R)^2", "(Vc-R)^2", "hand", "central", "zero because"])
for i in 0..<criticValues.count {
    let value = criticValues.scalars[i], clipped = criticForward.clippedValues.scalars[i]
    let target = criticReturns.scalars[i]
    let unclippedError = (value - target) * (value - target), clippedError = (clipped - target) * (clipped - target)
    criticTable.add([fmt(criticOld.scalars[i]), fmt(value), fmt(clipped), fmt(target), fmt(unclippedError),
                     fmt(clippedError), fmt(criticGradient.scalars[i]), fmt(criticNumeric[i]),
                     clippedError > unclippedError ? "clipped wins, flat" : ""])
}
chapter.show(criticTable, maximumRows: 16)
chapter.say("""
The clipped error wins when V overshot the band toward R: the raw value is nearer R than the
clamped one, and max keeps the clamped error, whose value is stuck on the bound, so moving V
changes nothing. PPO gives no credit for progress past the band. Hand against central
differences: largest gap \(sci(largestGap(criticGradient.scalars, criticNumeric), 1)).
""")
chapter.check("grad_values", ours: criticGradient, against: criticFixture)

// MARK: 5. DPO

chapter.heading("5. DPO: one weight per pair, on every token of the row")
chapter.say("""
  z_i  = beta ((S_w - S_w,ref) - (S_l - S_l,ref))        S = sum_t logpi over the row
  loss = (1/B) sum_i -log sigmoid(z_i)
  d loss / d better_log_probs[i, t] = -(beta / B) sigmoid(-z_i)      for every t of the row
  d loss / d worse_log_probs[i, t]  = +(beta / B) sigmoid(-z_i)
The sequence log-prob is a plain sum, so every position of a row gets the same gradient, the
zero-padded ones included: the padding must be masked before it reaches this loss, as align-
anything does when it builds the per-token log-probs. sigmoid(-z) is the weight: a pair the policy
already ranks far apart barely moves.
""")
let dpoFixture = chapter.fixture("dpo_loss/zero-padded-rows-f64")
let better = chapter.floatInput(dpoFixture, "better_log_probs")
let worse = chapter.floatInput(dpoFixture, "worse_log_probs")
let refBetter = chapter.floatInput(dpoFixture, "ref_better_log_probs")
let refWorse = chapter.floatInput(dpoFixture, "ref_worse_log_probs")
let beta = chapter.realParam(dpoFixture, "beta")
let dpoForward = chapter.must {
    try dpoLoss(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: refBetter,
                refWorseLogProbs: refWorse, beta: beta)
}
let dpoGradients = chapter.must {
    try dpoLossGradLogProbs(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: refBetter,
                            refWorseLogProbs: refWorse, beta: beta)
}
let dpoNumeric = numericGradient(better.scalars + worse.scalars) { probe in
    Double(try dpoLoss(betterLogProbs: Tensor.make(better.shape, Array(probe[..<better.count])),
                       worseLogProbs: Tensor.make(worse.shape, Array(probe[better.count...])),
                       refBetterLogProbs: refBetter, refWorseLogProbs: refWorse, beta: beta).loss)
}
let dpoBatch = better.shape[0], dpoWidth = better.shape[1]
chapter.say("""
GoldenData/dpo_loss/zero-padded-rows-f64.json: B = \(dpoBatch) pairs, T = \(dpoWidth), beta = \(fmt(beta, 1)). One row per pair:
""")
var dpoTable = Table(["pair", "z", "sigmoid(-z)", "grad better (each t)", "grad worse (each t)",
                      "central (better, t=T-1)"])
for i in 0..<dpoBatch {
    let z = dpoForward.rewardMargin.scalars[i]
    let lastBetter = i * dpoWidth + dpoWidth - 1
    dpoTable.add(["i=\(i)", fmt(z, 6), fmt(1 / (1 + exp(z)), 6), fmt(dpoGradients.gradBetterLogProbs.scalars[lastBetter], 6),
                  fmt(dpoGradients.gradWorseLogProbs.scalars[lastBetter], 6), fmt(dpoNumeric[lastBetter], 6)])
}
chapter.show(dpoTable)
let dpoHand = dpoGradients.gradBetterLogProbs.scalars + dpoGradients.gradWorseLogProbs.scalars
chapter.say("""
(z is align-anything's reward_margin: beta times the log-ratio margin.) Hand against central
differences, all \(dpoHand.count) entries: largest gap \(sci(largestGap(dpoHand, dpoNumeric), 1)).
""")
chapter.check("grad_better_log_probs", ours: dpoGradients.gradBetterLogProbs, against: dpoFixture)
chapter.check("grad_worse_log_probs", ours: dpoGradients.gradWorseLogProbs, against: dpoFixture)

// MARK: 6. SFT

chapter.heading("6. SFT: cross-entropy, averaged over the labels that count")
chapter.say("""
  loss = (1/n) sum_{counted (b,t)} -log softmax(logits[b, t])[labels[b, t+1]]
  grad_logits[b, t, v] = (softmax(logits[b, t])_v - 1[v = labels[b, t+1]]) / n    for counted (b, t)
                       = 0        where labels[b, t+1] = -100, and at t = L-1 (nothing to predict)
The same softmax-minus-one-hot as section 1, with the opposite sign (a loss, not a log-prob) and
the weight 1/n shared by every counted label of the batch.
""")
let sftFixture = chapter.fixture("sft_loss/prompt-ignored-f64")
let sftLogits = chapter.floatInput(sftFixture, "logits")
let sftLabels = chapter.intInput(sftFixture, "labels")
let sftForward = chapter.must { try sftLoss(logits: sftLogits, labels: sftLabels) }
let sftGradient = chapter.must { try sftLossGradLogits(logits: sftLogits, labels: sftLabels) }
let sftNumeric = numericGradient(sftLogits.scalars) { probe in
    Double(try sftLoss(logits: Tensor.make(sftLogits.shape, probe), labels: sftLabels).loss)
}
let sftLength = sftLogits.shape[1], sftVocabulary = sftLogits.shape[2]
chapter.say("""
GoldenData/sft_loss/prompt-ignored-f64.json: logits [3, 8, 13], the prompt and the padding
labelled -100 (align-anything's labels), n = \(sftForward.tokenCount) counted labels. Row b = 0, position by position:
""")
var sftTable = Table(["t", "labels[t+1]", "counted", "sum_v |grad|", "sum_v grad", "largest gap to central"])
for t in 0..<sftLength {
    let rowStart = t * sftVocabulary
    let hand = Array(sftGradient.scalars[rowStart..<(rowStart + sftVocabulary)])
    let numeric = Array(sftNumeric[rowStart..<(rowStart + sftVocabulary)])
    let next = t + 1 < sftLength ? String(sftLabels.scalars[t + 1]) : "(none)"
    let counted = t + 1 < sftLength && sftLabels.scalars[t + 1] != -100
    sftTable.add([String(t), next, counted ? "yes" : "no", fmt(hand.map(abs).reduce(0, +), 6),
                  fmt(hand.reduce(0, +), 6), sci(largestGap(hand, numeric), 1)])
}
chapter.show(sftTable)
chapter.say("""
Every row that does not count is exactly 0; every row that counts sums to 0 and its absolute
values sum to 2 (1 - p_y) / n. Hand against central differences, all \(sftGradient.count) entries: largest
gap \(sci(largestGap(sftGradient.scalars, sftNumeric), 1)).
""")
chapter.check("grad_logits", ours: sftGradient, against: sftFixture)

chapter.finish()
