// Chapter 02 · The reward model: a pairwise loss over the tokens where two answers differ.
//
// Reads top to bottom: the seed article's pair walked through DeepSpeed-Chat's
// RewardModel.forward (divergence, ends, window, per-token loss), a batch of two
// pairs, OPT's num_padding_at_beginning, an identical pair, why -logsigmoid, the
// end scores forward_value hands to PPO, and one pair the library rejects. The math
// is `pairwiseRewardLoss` and `rewardEndScores` in Sources/PairwiseRewardLoss; this
// file only prints and checks. Run it with `make chapter N=2`.

import ChapterSupport
import Foundation
import Golden
import PairwiseRewardLoss
import TensorCore

let chapter = Chapter(number: 2, title: "The reward model: a pairwise loss where the answers differ")
chapter.say("""
Step 2 of DeepSpeed-Chat trains a reward model: an OPT body and a linear value head that gives
every token a scalar. Each prompt comes with a chosen and a rejected answer, and the loss asks
the chosen answer's per-token rewards to beat the rejected one's, token by token, over the span
where the two answers differ. PPO later reads one number per answer: the reward at its end.
""")

/// The library's error, printed as `stage: kind in 'argument':` and its detail on the next line,
/// so that it fits a 100-column page.
struct Wrapped: Error, CustomStringConvertible {
    let error: StageError
    var description: String {
        var lines = ["\(error.stage): \(error.kind.rawValue) in '\(error.argument)':"], line = ""
        for word in error.detail.split(separator: " ") {
            if !line.isEmpty && line.count + word.count + 1 > 90 { lines.append(line); line = "" }
            line += (line.isEmpty ? "" : " ") + word
        }
        return (lines + [line]).joined(separator: "\n      ")
    }
}

/// The end of one row by the (k+1)-th pad rule, recomputed here only to print c_end and r_end
/// side by side; the library keeps their max, `endIndices`, and the scores read at each.
func endOfRow(_ ids: Tensor<Int64>, _ row: Int, pad: Int64, skip: Int) -> Int {
    let pads = (0..<ids.shape[1]).filter { ids[row, $0] == pad }
    return pads.count > skip ? pads[skip] : ids.shape[1]
}

/// Prints the stacked ids with each row named chosen i or rejected i.
@MainActor func showStacked(_ ids: Tensor<Int64>, _ rewards: Tensor<Double>) {
    let rows = ids.shape[0], width = ids.shape[1], pairs = rows / 2
    func name(_ row: Int) -> String { row < pairs ? "chosen \(row)" : "rejected \(row - pairs)" }
    var idTable = Table(["row", "input_ids"] + (0..<width).map { "t=\($0)" })
    var rewardTable = Table(["row", "rewards"] + (0..<width).map { "t=\($0)" })
    for row in 0..<rows {
        idTable.add(["\(row)", name(row)] + (0..<width).map { String(ids[row, $0]) })
        rewardTable.add(["\(row)", name(row)] + (0..<width).map { fmt(rewards[row, $0], 3) })
    }
    idTable.leftAligned = [0, 1]
    rewardTable.leftAligned = [0, 1]
    chapter.show(idTable)
    chapter.show(rewardTable)
}

/// One row per pair: divergence, both ends, the window and the pair's loss.
@MainActor func showPairs(_ ids: Tensor<Int64>, _ result: PairwiseRewardLossResult<Double>, pad: Int64, skip: Int) {
    let pairs = ids.shape[0] / 2
    var table = Table(["pair", "rows", "div", "c_end", "r_end", "end", "window", "pair loss"])
    for i in 0..<pairs {
        let identical = (0..<ids.shape[1]).allSatisfy { ids[i, $0] == ids[pairs + i, $0] }
        let chosenEnd = endOfRow(ids, i, pad: pad, skip: skip)
        let rejectedEnd = identical ? chosenEnd : endOfRow(ids, pairs + i, pad: pad, skip: skip)
        precondition(identical || max(chosenEnd, rejectedEnd) == result.endIndices[i], "the printed ends disagree")
        table.add(["\(i)", "\(i), \(pairs + i)", "\(result.divergenceIndices[i])", "\(chosenEnd)", "\(rejectedEnd)",
                   "\(result.endIndices[i])", "[\(result.divergenceIndices[i]), \(result.endIndices[i]))",
                   fmt(result.pairLosses[i], 6)])
    }
    chapter.show(table)
}

/// Every position of one pair: in the window or not, and the per-token term inside it.
@MainActor func showWindow(_ ids: Tensor<Int64>, _ rewards: Tensor<Double>, _ result: PairwiseRewardLossResult<Double>,
                           pair i: Int, pad: Int64, skip: Int) {
    let pairs = ids.shape[0] / 2, j = pairs + i
    let div = result.divergenceIndices[i], end = result.endIndices[i]
    let chosenEnd = endOfRow(ids, i, pad: pad, skip: skip), rejectedEnd = endOfRow(ids, j, pad: pad, skip: skip)
    var table = Table(["t", "chosen", "rejected", "c_t", "r_t", "c - r", "-log sigma(c - r)", ""],
                      leftAligned: [0, 7])
    var terms = [Double]()
    for t in 0..<ids.shape[1] {
        var notes = [String]()
        if t == div { notes.append("<- div") }
        if t == chosenEnd { notes.append("<- c_end") }
        if t == rejectedEnd { notes.append("<- r_end") }
        if t >= div && t < end && (ids[i, t] == pad || ids[j, t] == pad) { notes.append("(pad, in the window)") }
        let inWindow = t >= div && t < end
        let term = -logSigmoid(rewards[i, t] - rewards[j, t])
        if inWindow { terms.append(term) }
        table.add([String(t), String(ids[i, t]), String(ids[j, t]), fmt(rewards[i, t], 3), fmt(rewards[j, t], 3),
                   inWindow ? fmt(rewards[i, t] - rewards[j, t], 3) : "", inWindow ? fmt(term, 6) : "",
                   notes.joined(separator: " ")])
    }
    chapter.show(table)
    chapter.say("pair \(i): mean of the \(terms.count) terms in [\(div), \(end)) = \(fmt(terms.reduce(0, +) / Double(terms.count), 6))"
                + " = pair loss \(fmt(result.pairLosses[i], 6))")
}

// MARK: 1. The article's pair

chapter.heading("1. The seed article's example, read as one chosen/rejected pair")
let seed = chapter.fixture("reward_pairwise_loss/seed000-inputs-f64")
let seedIds = chapter.intInput(seed, "input_ids")
let seedRewards = chapter.floatInput(seed, "rewards")
let seedPad = Int64(chapter.intParam(seed, "pad_id")), seedSkip = chapter.intParam(seed, "num_padding_at_beginning")
chapter.say("""
The article's input_ids and values (Step 2, GoldenData/reward_pairwise_loss/seed000-inputs-f64.json)
as a batch of B = 1 pair: DataCollatorReward concatenates the B chosen rows, then the B rejected
rows, so row i and row B + i share a prompt. pad_id = \(seedPad), num_padding_at_beginning = \(seedSkip).
""")
showStacked(seedIds, seedRewards)
chapter.say("""

RewardModel.forward splits the batch in half and, for each pair:
  div   = the first t where the chosen and rejected ids differ (the answers start there)
  c_end = the position of the (k+1)-th pad in the chosen ids, or L if there are fewer; r_end alike
  end   = max(c_end, r_end)
  loss_i = mean over t in [div, end) of -log sigma(c_t - r_t)
  chosen_mean_scores[i] = c[c_end - 1], rejected_mean_scores[i] = r[r_end - 1]   (end scores)
""")
let seedResult = chapter.must {
    try pairwiseRewardLoss(inputIds: seedIds, rewards: seedRewards, padId: seedPad, numPaddingAtBeginning: seedSkip)
}
showWindow(seedIds, seedRewards, seedResult, pair: 0, pad: seedPad, skip: seedSkip)
chapter.say("""
Each difference is -0.1: this reward model prefers the rejected answer a little, so every term
is above ln 2 = 0.693147 and the loss pushes c up and r down. The end scores are read one before
each end: c[3] = \(fmt(seedResult.chosenMeanScores.scalars[0], 1)) and r[3] = \(fmt(seedResult.rejectedMeanScores.scalars[0], 1)), the numbers the article reads off its example.
""")
chapter.check("loss", ours: seedResult.loss, against: seed)
chapter.check("chosen_mean_scores", ours: seedResult.chosenMeanScores, against: seed)
chapter.check("rejected_mean_scores", ours: seedResult.rejectedMeanScores, against: seed)

// MARK: 2. A batch of two pairs

chapter.heading("2. A batch of two pairs of different lengths")
let batch = chapter.fixture("reward_pairwise_loss/right-padded-f64")
let batchIds = chapter.intInput(batch, "input_ids")
let batchRewards = chapter.floatInput(batch, "rewards")
let batchPad = Int64(chapter.intParam(batch, "pad_id")), batchSkip = chapter.intParam(batch, "num_padding_at_beginning")
chapter.say("""
GoldenData/reward_pairwise_loss/right-padded-f64.json: B = 2 pairs, L = \(batchIds.shape[1]), pad_id = \(batchPad),
no leading pad. Rows 0-1 are the chosen answers, rows 2-3 the rejected ones, in the same order.
""")
showStacked(batchIds, batchRewards)
let batchResult = chapter.must {
    try pairwiseRewardLoss(inputIds: batchIds, rewards: batchRewards, padId: batchPad, numPaddingAtBeginning: batchSkip)
}
showPairs(batchIds, batchResult, pad: batchPad, skip: batchSkip)
showWindow(batchIds, batchRewards, batchResult, pair: 0, pad: batchPad, skip: batchSkip)
showWindow(batchIds, batchRewards, batchResult, pair: 1, pad: batchPad, skip: batchSkip)
chapter.say("""
The window runs to the later of the two ends, so positions where the shorter answer is already
padding are scored too (DeepSpeedExamples issue #316): the reference does this, and so does the
library. Each pair is averaged over its own window, then the pairs are averaged:
loss = (\(batchResult.pairLosses.map { fmt($0, 6) }.joined(separator: " + "))) / 2 = \(fmt(batchResult.loss, 6)).
""")
chapter.check("loss", ours: batchResult.loss, against: batch)
chapter.check("chosen_mean_scores", ours: batchResult.chosenMeanScores, against: batch)
chapter.check("rejected_mean_scores", ours: batchResult.rejectedMeanScores, against: batch)

// MARK: 3. num_padding_at_beginning

chapter.heading("3. num_padding_at_beginning: OPT's BOS is its pad")
let opt = chapter.fixture("reward_pairwise_loss/opt-style-f64")
let optIds = chapter.intInput(opt, "input_ids")
let optRewards = chapter.floatInput(opt, "rewards")
let optPad = Int64(chapter.intParam(opt, "pad_id")), optSkip = chapter.intParam(opt, "num_padding_at_beginning")
chapter.say("""
DeepSpeed-Chat pads with </s>, and OPT's tokenizer puts the same id (2) at position 0 as its BOS.
The first "pad" of every row is therefore not the end, and the step 2 and 3 scripts pass
num_padding_at_beginning = 1: the end is the 2nd pad, or L when a row has no other.
GoldenData/reward_pairwise_loss/opt-style-f64.json: B = 3, L = \(optIds.shape[1]), pad_id = \(optPad), k = \(optSkip).
""")
var optTable = Table(["row", "input_ids"] + (0..<optIds.shape[1]).map { "t=\($0)" }, leftAligned: [0, 1])
for row in 0..<optIds.shape[0] {
    optTable.add(["\(row)", row < 3 ? "chosen \(row)" : "rejected \(row - 3)"] + (0..<optIds.shape[1]).map { String(optIds[row, $0]) })
}
chapter.show(optTable)
let optResult = chapter.must {
    try pairwiseRewardLoss(inputIds: optIds, rewards: optRewards, padId: optPad, numPaddingAtBeginning: optSkip)
}
showPairs(optIds, optResult, pad: optPad, skip: optSkip)
chapter.say("""
Chosen 1 has no second pad: its end is L = 10 and its score is read at t = 9.
With k = 0 (an illustration, not a fixture) every row would end at its BOS, t = 0: the window
[div, 0) is empty, PyTorch's mean of nothing is NaN, and the library throws instead:
""")
do {
    _ = try pairwiseRewardLoss(inputIds: optIds, rewards: optRewards, padId: optPad, numPaddingAtBeginning: 0)
    chapter.say("  (no error)")
} catch {
    chapter.say("  " + Wrapped(error: error).description)
}
chapter.check("loss", ours: optResult.loss, against: opt)
chapter.check("chosen_mean_scores", ours: optResult.chosenMeanScores, against: opt)
chapter.check("rejected_mean_scores", ours: optResult.rejectedMeanScores, against: opt)

// MARK: 4. An identical pair

chapter.heading("4. An identical pair: the last position, and ln 2")
let same = chapter.fixture("reward_pairwise_loss/identical-pair-f64")
let sameIds = chapter.intInput(same, "input_ids")
let sameRewards = chapter.floatInput(same, "rewards")
let samePad = Int64(chapter.intParam(same, "pad_id")), sameSkip = chapter.intParam(same, "num_padding_at_beginning")
chapter.say("""
When the two rows are the same ids there is no first difference. DeepSpeed-Chat special-cases
it: div = L - 1, end = L (only the last position), and both scores are read at the chosen end.
GoldenData/reward_pairwise_loss/identical-pair-f64.json, B = 3, L = \(sameIds.shape[1]): pair 0 has identical ids and
identical rewards, pair 1 identical ids but other rewards, pair 2 is an ordinary pair.
""")
let sameResult = chapter.must {
    try pairwiseRewardLoss(inputIds: sameIds, rewards: sameRewards, padId: samePad, numPaddingAtBeginning: sameSkip)
}
showPairs(sameIds, sameResult, pad: samePad, skip: sameSkip)
chapter.say("""
Pair 0: c_7 - r_7 = 0 and -log sigma(0) = ln 2 = \(fmt(log(2.0), 6)). Its gradient with respect to the two
rewards is +-1/2 (before the 1/B), not zero; with respect to the model's weights it is zero, since
the same ids give the same rewards through the same forward and the two pushes cancel.
Pair 1 is scored at t = 7, which is a pad position in both rows.
""")
chapter.check("loss", ours: sameResult.loss, against: same)

// MARK: 5. Why -logsigmoid

chapter.heading("5. Why -logsigmoid and not -log(sigmoid): reward gaps of 800")
let gap = chapter.fixture("reward_pairwise_loss/reward-gap-800-f64")
let gapIds = chapter.intInput(gap, "input_ids")
let gapRewards = chapter.floatInput(gap, "rewards")
let gapPad = Int64(chapter.intParam(gap, "pad_id")), gapSkip = chapter.intParam(gap, "num_padding_at_beginning")
let gapResult = chapter.must {
    try pairwiseRewardLoss(inputIds: gapIds, rewards: gapRewards, padId: gapPad, numPaddingAtBeginning: gapSkip)
}
chapter.say("""
sigma(x) = 1 / (1 + exp(-x)). At x = -800, exp(800) overflows (float64 past 709.8, float32 past
88.7), sigma is 0 and -log 0 = inf. Computed inline as THE WRONG WAY, beside the library's
-logSigmoid(x) = -(min(x, 0) - log1p(exp(-|x|))), which never exponentiates a positive number.
GoldenData/reward_pairwise_loss/reward-gap-800-f64.json, B = 2, L = \(gapIds.shape[1]):
""")
var gapTable = Table(["pair", "t", "c_t", "r_t", "c_t - r_t", "-log(sigmoid) (wrong)", "-logsigmoid"])
for i in 0..<2 {
    for t in gapResult.divergenceIndices[i]..<gapResult.endIndices[i] {
        let x = gapRewards[i, t] - gapRewards[2 + i, t]
        gapTable.add(["\(i)", "\(t)", fmt(gapRewards[i, t], 3), fmt(gapRewards[2 + i, t], 3), fmt(x, 3),
                      fmt(-log(1 / (1 + exp(-x))), 3), fmt(-logSigmoid(x), 3)])
    }
}
chapter.show(gapTable)
chapter.say("""
Pair losses \(list(gapResult.pairLosses, 1)) and loss \(fmt(gapResult.loss, 1)): large but finite. The naive form makes the whole
batch loss inf, and autograd through it gives NaN where -logsigmoid's slope is a clean -1.
""")
chapter.check("loss", ours: gapResult.loss, against: gap)

// MARK: 6. The end scores PPO uses

chapter.heading("6. The end scores PPO uses: RewardModel.forward_value")
let article = chapter.fixture("reward_end_scores/seed000-article-example")
let articleIds = chapter.intInput(article, "input_ids")
let articleValues = chapter.floatInput(article, "values")
let articlePad = Int64(chapter.intParam(article, "pad_id")), articlePrompt = chapter.intParam(article, "prompt_length")
chapter.say("""
In step 3 the trained model scores a prompt + answer with forward_value: the value head at every
token, and one end score per row, the value at the last token before the first pad found at or
after prompt_length. The article's own example, written by hand into
GoldenData/reward_end_scores/seed000-article-example.json; prompt_length = \(articlePrompt), pad_id = \(articlePad):
""")
chapter.show("input_ids", articleIds)
chapter.show("values", articleValues)
let articleScores = chapter.must {
    try rewardEndScores(inputIds: articleIds, values: articleValues, padId: articlePad, promptLength: articlePrompt)
}
/// The first pad at or after the prompt, recomputed for display (the library returns only the score).
func firstPad(_ ids: Tensor<Int64>, _ row: Int, pad: Int64, from start: Int) -> Int {
    (start..<ids.shape[1]).first { ids[row, $0] == pad } ?? ids.shape[1]
}
var endTable = Table(["row", "first pad at t >= P", "c_end - 1", "end score"])
for row in 0..<articleIds.shape[0] {
    let end = firstPad(articleIds, row, pad: articlePad, from: articlePrompt)
    endTable.add(["\(row)", "\(end)", "\(end - 1)", fmt(articleScores.scalars[row], 4)])
}
chapter.show(endTable)
chapter.say("""
values[0][3] = 0.7 and values[1][3] = 0.8: tokens 103 and 102 close their answers, and their
values stand for the whole sequence (the last token has seen everything before it).
""")
chapter.check("end_scores", ours: articleScores, against: article)

let left = chapter.fixture("reward_end_scores/left-padded-prompt-f64")
let leftIds = chapter.intInput(left, "input_ids")
let leftValues = chapter.floatInput(left, "values")
let leftPad = Int64(chapter.intParam(left, "pad_id")), leftPrompt = chapter.intParam(left, "prompt_length")
chapter.say("""

Left-padded prompts (GoldenData/reward_end_scores/left-padded-prompt-f64.json, prompt_length = \(leftPrompt)):
the pads at t < \(leftPrompt) sit inside the prompt, and the search starts at prompt_length, so they are
never mistaken for the end. The last two columns (an illustration, not a fixture) search from
t = 0 instead: they stop at a prompt pad, and index -1 reads the last column, a pad's value.
""")
chapter.show("input_ids", leftIds)
let leftScores = chapter.must {
    try rewardEndScores(inputIds: leftIds, values: leftValues, padId: leftPad, promptLength: leftPrompt)
}
var leftTable = Table(["row", "first pad at t >= P", "end score", "first pad from t = 0", "would read (wrong)"])
for row in 0..<leftIds.shape[0] {
    let anywhere = firstPad(leftIds, row, pad: leftPad, from: 0), end = firstPad(leftIds, row, pad: leftPad, from: leftPrompt)
    let wrong = anywhere == 0 ? "t = -1 (last): \(fmt(leftValues[row, leftIds.shape[1] - 1]))"
                              : "t = \(anywhere - 1): \(fmt(leftValues[row, anywhere - 1]))"
    leftTable.add(["\(row)", "\(end)", fmt(leftScores.scalars[row]), "\(anywhere)", wrong])
}
chapter.show(leftTable)
chapter.check("end_scores", ours: leftScores, against: left)

// MARK: 7. A pair the library rejects

chapter.heading("7. A pair the library rejects: answers that differ at position 0")
let diverge = chapter.fixture("reward_pairwise_loss/error-diverge-at-0")
let divergeIds = chapter.intInput(diverge, "input_ids")
chapter.say("""
GoldenData/reward_pairwise_loss/error-diverge-at-0.json: chosen \(list(Array(divergeIds.row(0)))), rejected \(list(Array(divergeIds.row(1)))).
The two rows share no prompt, so div = 0; DeepSpeed-Chat asserts divergence_ind > 0.
""")
chapter.checkRejects(diverge) {
    do {
        return try pairwiseRewardLoss(inputIds: divergeIds, rewards: chapter.floatInput(diverge, "rewards"),
                                      padId: Int64(chapter.intParam(diverge, "pad_id")),
                                      numPaddingAtBeginning: chapter.intParam(diverge, "num_padding_at_beginning"))
    } catch let error as StageError {
        throw Wrapped(error: error)
    }
}

chapter.finish()
