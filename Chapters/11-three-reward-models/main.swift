// Chapter 11 · Three reward models: one preference pair, three losses, three ends.
//
// Reads top to bottom: the seed pair through DeepSpeed-Chat's per-token window
// loss, the same pair's end scores through align-anything's and TRL's end-score
// losses, one pair of end scores through both regulariser and margin terms, then
// where each system reads "the end score" on a token strip (left and right padding,
// pad == eos), and a table of what differs. The math is in Sources/PairwiseRewardLoss,
// Sources/RewardEndScoresAttn, Sources/RewardEndLossSqreg, Sources/RewardEndScoresSeqcls
// and Sources/RewardEndLossMarginCenter; this file only prints and checks.
// Run it with `make chapter N=11`.

import ChapterSupport
import Foundation
import Golden
import PairwiseRewardLoss
import RewardEndLossMarginCenter
import RewardEndLossSqreg
import RewardEndScoresAttn
import RewardEndScoresSeqcls
import TensorCore

let chapter = Chapter(number: 11, title: "Three reward models: one pair, three losses, three ends")
chapter.say("""
Three systems train a reward model on the same kind of data, a chosen and a rejected answer to
one prompt, and disagree on two things: what the loss compares (every token where the answers
differ, or one end score per answer) and which token's score is "the end score". DeepSpeed-Chat
(chapter 02), align-anything and TRL, on the same inputs, each result checked against PyTorch.
""")

/// An int tensor's row as a list, for prose.
func ids(_ tensor: Tensor<Int64>, _ row: Int) -> String { list(Array(tensor.row(row))) }

/// The attention mask `ids != pad`, as align-anything builds it for PPO scoring (data
/// preparation, not a formula: 1 where the id is not the pad id).
func maskNotPad(_ tensor: Tensor<Int64>, pad: Int64) -> Tensor<Int64> {
    Tensor.make(tensor.shape, tensor.scalars.map { $0 == pad ? 0 : 1 })
}

// MARK: 1. One pair, DeepSpeed-Chat's way

chapter.heading("1. One pair, DeepSpeed-Chat's way: every token of the divergence window")
let seed = chapter.fixture("reward_pairwise_loss/seed000-inputs-f64")
let seedIds = chapter.intInput(seed, "input_ids")
let seedRewards = chapter.floatInput(seed, "rewards")
let seedPad = Int64(chapter.intParam(seed, "pad_id")), seedSkip = chapter.intParam(seed, "num_padding_at_beginning")
chapter.say("""
The DeepSpeed-Chat article's example (GoldenData/reward_pairwise_loss/seed000-inputs-f64.json) as
one pair: row 0 the chosen answer, row 1 the rejected one, pad_id = \(seedPad), and the value head's
score at every token. The token strip:
""")
var stripTable = Table(["row", ""] + (0..<seedIds.shape[1]).map { "t=\($0)" }, leftAligned: [0, 1])
for (row, name) in ["chosen", "rejected"].enumerated() {
    stripTable.add([name, "input_ids"] + (0..<seedIds.shape[1]).map { String(seedIds[row, $0]) })
    stripTable.add(["", "score"] + (0..<seedIds.shape[1]).map { fmt(seedRewards[row, $0], 3) })
}
chapter.show(stripTable)
let seedResult = chapter.must {
    try pairwiseRewardLoss(inputIds: seedIds, rewards: seedRewards, padId: seedPad, numPaddingAtBeginning: seedSkip)
}
let div = seedResult.divergenceIndices[0], end = seedResult.endIndices[0]
chapter.say("""

RewardModel.forward finds the window [div, end) = [\(div), \(end)): div is the first t where the ids
differ, end the later of the two rows' first pads. Inside it every position is a term
-log sigma(c_t - r_t) (logSigmoid from TensorCore); the pair's loss is their mean:
""")
var windowTable = Table(["t", "in window", "c_t", "r_t", "c_t - r_t", "-log sigma(c_t - r_t)"])
for t in 0..<seedIds.shape[1] {
    let inside = t >= div && t < end
    let x = seedRewards[0, t] - seedRewards[1, t]
    windowTable.add(["\(t)", inside ? "yes" : "", fmt(seedRewards[0, t], 3), fmt(seedRewards[1, t], 3),
                     inside ? fmt(x, 3) : "", inside ? fmt(-logSigmoid(x), 6) : ""])
}
chapter.show(windowTable)
chapter.say("""
loss = mean of the \(end - div) terms = \(fmt(seedResult.loss, 6)); the end scores, read one before each
row's end, are c[3] = \(fmt(seedResult.chosenMeanScores.scalars[0], 1)) and r[3] = \(fmt(seedResult.rejectedMeanScores.scalars[0], 1)). DeepSpeed-Chat trains on the window and
reads the end scores only for its accuracy and for PPO.
""")
chapter.check("loss", ours: seedResult.loss, against: seed)
chapter.check("chosen_mean_scores", ours: seedResult.chosenMeanScores, against: seed)
chapter.check("rejected_mean_scores", ours: seedResult.rejectedMeanScores, against: seed)

// MARK: 2. The same pair, end-score style

chapter.heading("2. The same pair through align-anything and TRL: one end score per answer")
chapter.say("""
align-anything and TRL first reduce each row to one number, its end score (end_scores), then
compare the two numbers. On this strip the pad id is 0 and no EOS is hidden, so all three rules
read the same token: DeepSpeed-Chat's forward_value (the first pad at t >= prompt_length, minus
one), align-anything's (the last t with attention_mask = 1; the mask here is ids != pad) and the
sequence classifier's (the last t whose id is not pad_token_id). forward_value on these rows is
GoldenData/reward_end_scores/seed000-article-example.json (the article's own example,
prompt_length = 2); the other two columns are library calls on the same rows, not fixtures.
""")
let article = chapter.fixture("reward_end_scores/seed000-article-example")
let articleIds = chapter.intInput(article, "input_ids"), articleValues = chapter.floatInput(article, "values")
precondition(articleIds.scalars == seedIds.scalars && articleValues.scalars == seedRewards.scalars,
             "the article fixture should hold the seed pair")
let articleScores = chapter.must {
    try rewardEndScores(inputIds: articleIds, values: articleValues, padId: Int64(chapter.intParam(article, "pad_id")),
                        promptLength: chapter.intParam(article, "prompt_length"))
}
let seedMask = maskNotPad(seedIds, pad: seedPad)
let seedAttn = chapter.must { try rewardEndScoresAttn(scores: seedRewards, attentionMask: seedMask) }
let seedSeqcls = chapter.must { try rewardEndScoresSeqcls(inputIds: seedIds, scores: seedRewards, padTokenId: seedPad) }
var seedEnds = Table(["row", "DS-Chat forward_value", "align-anything end_index", "seqcls end_index", "end score"],
                     leftAligned: [0])
for (row, name) in ["chosen", "rejected"].enumerated() {
    precondition(seedAttn.endScores.scalars[row] == seedSeqcls.endScores.scalars[row], "the two rules disagree")
    seedEnds.add([name, fmt(articleScores.scalars[row], 3), "\(seedAttn.endIndex.scalars[row])",
                  "\(seedSeqcls.endIndex.scalars[row])", fmt(seedSeqcls.endScores.scalars[row], 3)])
}
chapter.show(seedEnds)
chapter.check("end_scores", ours: articleScores, against: article)
let seedEndScores = seedSeqcls.endScores  // [chosen, rejected] = [B better rows, B worse rows] with B = 1
let seedSqreg = chapter.must { try rewardEndLossSqreg(endScores: seedEndScores, regularization: 0.001) }
let seedTRL = chapter.must {
    try rewardEndLossMarginCenter(rewards: seedEndScores, margin: nil, centerRewardsCoefficient: nil)
}
var threeLosses = Table(["system", "compares", "loss"], leftAligned: [0, 1])
threeLosses.add(["DeepSpeed-Chat", "c_t - r_t for t in [\(div), \(end))", fmt(seedResult.loss, 6)])
threeLosses.add(["align-anything", "h - l at the end, + 0.001 * mean(h^2, l^2)", fmt(seedSqreg.loss, 6)])
threeLosses.add(["TRL (defaults)", "c - r at the end, no margin, no centering", fmt(seedTRL.loss, 6)])
chapter.show(threeLosses)
chapter.say("""
Every difference on this pair is -0.1, so the window mean and the end-score loss coincide
(-log sigma(-0.1) = \(fmt(seedTRL.pairLosses.scalars[0], 6))); align-anything adds its regulariser, 0.001 times the mean
of 0.7^2 and 0.8^2. On a pair whose differences vary along the window the first line parts from
the other two (chapter 02's batch: 0.763483 against about 0.6068, worked out there). Accuracy,
strict in both end-score systems: \(fmt(seedSqreg.accuracy, 1)) (the chosen answer scores lower).
""")

// MARK: 3. The loss terms on fixtures

chapter.heading("3. The end-score losses, term by term")
let sqregOne = chapter.fixture("reward_end_loss_sqreg/one-pair-f64")
let trlOne = chapter.fixture("reward_end_loss_margin_center/one-pair-f64")
let oneScores = chapter.floatInput(sqregOne, "end_scores")
let oneRewards = chapter.floatInput(trlOne, "rewards")
let oneMargin = chapter.floatInput(trlOne, "margin")
let lambda = chapter.realParam(sqregOne, "regularization"), kappa = chapter.realParam(trlOne, "center_rewards_coefficient")
precondition(oneScores.scalars == oneRewards.scalars, "the two fixtures should hold the same pair")
chapter.say("""
One pair of end scores, chosen \(fmt(oneScores.scalars[0], 2)) and rejected \(fmt(oneScores.scalars[1], 2)), in two fixtures:
GoldenData/reward_end_loss_sqreg/one-pair-f64.json (align-anything, regularization = \(fmt(lambda, 3)))
and GoldenData/reward_end_loss_margin_center/one-pair-f64.json (TRL, margin = \(fmt(oneMargin.scalars[0], 1)),
center_rewards_coefficient = \(fmt(kappa, 2))). Each row of the table is the library called with the
terms switched on so far; a term is the difference between two rows.

  align-anything:  loss = mean softplus(-(h - l))       + lambda * mean of the 2B squares h^2, l^2
  TRL:             loss = mean softplus(-(c - r - m))   + kappa  * mean over pairs of (c + r)^2
""")
let aaPlain = chapter.must { try rewardEndLossSqreg(endScores: oneScores, regularization: 0) }
let aaFull = chapter.must { try rewardEndLossSqreg(endScores: oneScores, regularization: lambda) }
let trlPlain = chapter.must { try rewardEndLossMarginCenter(rewards: oneRewards, margin: nil, centerRewardsCoefficient: nil) }
let trlMargin = chapter.must {
    try rewardEndLossMarginCenter(rewards: oneRewards, margin: oneMargin, centerRewardsCoefficient: nil)
}
let trlFull = chapter.must {
    try rewardEndLossMarginCenter(rewards: oneRewards, margin: oneMargin, centerRewardsCoefficient: kappa)
}
var termTable = Table(["system", "terms on", "loss", "this term adds"], leftAligned: [0, 1])
termTable.add(["align-anything", "-log sigma(h - l)", fmt(aaPlain.loss, 6), fmt(aaPlain.loss, 6)])
termTable.add(["", "+ lambda * mean(h^2, l^2)", fmt(aaFull.loss, 6), fmt(aaFull.loss - aaPlain.loss, 6)])
termTable.add(["TRL", "-log sigma(c - r)", fmt(trlPlain.loss, 6), fmt(trlPlain.loss, 6)])
termTable.add(["", "margin: -log sigma(c - r - m)", fmt(trlMargin.loss, 6), fmt(trlMargin.loss - trlPlain.loss, 6)])
termTable.add(["", "+ kappa * mean (c + r)^2", fmt(trlFull.loss, 6), fmt(trlFull.loss - trlMargin.loss, 6)])
chapter.show(termTable)
chapter.say("""
The margin asks the chosen score to win by m = 0.5, so the same gap of 1.0 counts as a gap of 0.5
and the loss rises. The two regularisers pull toward 0 differently: align-anything's squares each
score (0.75^2 and (-0.25)^2), TRL's squares the pair's sum ((0.75 + (-0.25))^2 = 0.25), so TRL's
term leaves the gap alone and only pulls the pair's midpoint toward 0.
""")
chapter.check("loss", ours: aaFull.loss, against: sqregOne)
chapter.check("higher_end_reward", ours: aaFull.higherEndReward, against: sqregOne)
chapter.check("lower_end_reward", ours: aaFull.lowerEndReward, against: sqregOne)
chapter.check("accuracy", ours: aaFull.accuracy, against: sqregOne)
chapter.check("loss", ours: trlFull.loss, against: trlOne)
chapter.check("mean_margin", ours: trlFull.meanMargin, against: trlOne)
chapter.check("min_reward", ours: trlFull.minReward, against: trlOne)
chapter.check("mean_reward", ours: trlFull.meanReward, against: trlOne)
chapter.check("max_reward", ours: trlFull.maxReward, against: trlOne)
chapter.say("""

mean_margin is the mean of c - r = 1.0 whatever the margin column says: TRL logs the gap, not the
gap minus the margin.
""")

let sqregHand = chapter.fixture("reward_end_loss_sqreg/by-hand-f64")
let trlHand = chapter.fixture("reward_end_loss_margin_center/by-hand-f64")
let handScores = chapter.floatInput(sqregHand, "end_scores"), handRewards = chapter.floatInput(trlHand, "rewards")
let handLambda = chapter.realParam(sqregHand, "regularization"), handKappa = chapter.realParam(trlHand, "center_rewards_coefficient")
precondition(handScores.scalars == handRewards.scalars, "the two fixtures should hold the same scores")
chapter.say("""

Two pairs, by hand (GoldenData/reward_end_loss_sqreg/by-hand-f64.json, lambda = \(fmt(handLambda, 1)), and
GoldenData/reward_end_loss_margin_center/by-hand-f64.json, kappa = \(fmt(handKappa, 2))): end scores
\(list(handScores.scalars, 1)): chosen [2, 0], then rejected [0, 0]. Pair 1 is a tie; both count it wrong.
""")
let handAA = chapter.must { try rewardEndLossSqreg(endScores: handScores, regularization: handLambda) }
let handAAPlain = chapter.must { try rewardEndLossSqreg(endScores: handScores, regularization: 0) }
let handTRL = chapter.must {
    try rewardEndLossMarginCenter(rewards: handRewards, margin: nil, centerRewardsCoefficient: handKappa)
}
let handTRLPlain = chapter.must {
    try rewardEndLossMarginCenter(rewards: handRewards, margin: nil, centerRewardsCoefficient: nil)
}
var handTable = Table(["pair", "chosen", "rejected", "-log sigma(c - r)"])
for i in 0..<2 {
    handTable.add(["\(i)", fmt(handScores.scalars[i], 1), fmt(handScores.scalars[2 + i], 1), fmt(handTRL.pairLosses.scalars[i], 6)])
}
chapter.show(handTable)
chapter.say("""
mean of the pair terms = \(fmt(handAAPlain.loss, 6)); align-anything adds lambda * (4 + 0 + 0 + 0) / 4 = \(fmt(handAA.loss - handAAPlain.loss, 2)),
TRL adds kappa * ((2 + 0)^2 + (0 + 0)^2) / 2 = \(fmt(handTRL.loss - handTRLPlain.loss, 2)).
""")
chapter.check("loss", ours: handAA.loss, against: sqregHand)
chapter.check("accuracy", ours: handAA.accuracy, against: sqregHand)
chapter.check("loss", ours: handTRL.loss, against: trlHand)
chapter.check("accuracy", ours: handTRL.accuracy, against: trlHand)

// MARK: 4. Where the end score is read

chapter.heading("4. Where each reads the end score: padding side and pad == eos")
chapter.say("""
The three rules, on rows of ids (or of mask):
  DeepSpeed-Chat forward_value   the first pad at t >= prompt_length, minus one (L - 1 if none)
  align-anything                 the last t with attention_mask = 1 (holes skipped)
  sequence classifier (TRL)      the last t whose id is not pad_token_id (0 for an all-pad row)
""")

let attnRight = chapter.fixture("reward_end_scores_attn/right-padded-f64")
let attnLeft = chapter.fixture("reward_end_scores_attn/left-padded-f64")
chapter.say("""
align-anything reads only the mask. GoldenData/reward_end_scores_attn/right-padded-f64.json and
left-padded-f64.json (the tokenizer's mask covers the EOS, so the EOS is scored):
""")
for fixture in [attnRight, attnLeft] {
    let mask = chapter.intInput(fixture, "attention_mask"), scores = chapter.floatInput(fixture, "scores")
    let result = chapter.must { try rewardEndScoresAttn(scores: scores, attentionMask: mask) }
    var table = Table(["\(fixture.name)"] + (0..<mask.shape[1]).map { "t=\($0)" } + ["end_index", "end score"])
    for b in 0..<mask.shape[0] {
        table.add(["mask b=\(b)"] + (0..<mask.shape[1]).map { String(mask[b, $0]) }
                  + ["\(result.endIndex.scalars[b])", fmt(result.endScores.scalars[b])])
    }
    chapter.show(table)
    chapter.check("end_index", ours: result.endIndex.scalars.map(Double.init), against: fixture, digits: 0)
    chapter.check("end_scores", ours: result.endScores, against: fixture)
}
chapter.say("""

Left padding ends every row at L - 1: "the last attended position" does not care which side the
pads are on. A rule that looks for the first 0 in the mask would stop at t = 0 on these rows.
""")

let trl = chapter.fixture("reward_end_scores_seqcls/pad-equals-eos-trl-article-f64")
let trlIds = chapter.intInput(trl, "input_ids"), trlScores = chapter.floatInput(trl, "scores")
let trlPad = Int64(chapter.intParam(trl, "pad_token_id"))
chapter.say("""

pad == eos. The TRL article sets tokenizer.pad_token = tokenizer.eos_token for GPT-2 (EOS and pad
are both \(trlPad), <|endoftext|>), and RewardTrainer appends an EOS to plain-text examples.
GoldenData/reward_end_scores_seqcls/pad-equals-eos-trl-article-f64.json, E = \(trlPad):
""")
var eosTable = Table(["row"] + (0..<trlIds.shape[1]).map { "t=\($0)" })
for b in 0..<trlIds.shape[0] {
    eosTable.add(["b=\(b)"] + (0..<trlIds.shape[1]).map { trlIds[b, $0] == trlPad ? "E" : String(trlIds[b, $0]) })
    eosTable.add(["score"] + (0..<trlIds.shape[1]).map { fmt(trlScores[b, $0], 3) })
}
chapter.show(eosTable)
let trlSeqcls = chapter.must { try rewardEndScoresSeqcls(inputIds: trlIds, scores: trlScores, padTokenId: trlPad) }
let trlAttn = chapter.must { try rewardEndScoresAttn(scores: trlScores, attentionMask: maskNotPad(trlIds, pad: trlPad)) }
let promptLength = 2
let trlForwardValue = chapter.must {
    try rewardEndScores(inputIds: trlIds, values: trlScores, padId: trlPad, promptLength: promptLength)
}
/// The index the pre-PR-#35911 transformers rule reads: one before the first pad anywhere in the
/// row (Python's -1, the last column, when the first token is a pad). For display only: it is the
/// rule the library does not implement.
func firstPadMinusOne(_ tensor: Tensor<Int64>, _ row: Int, pad: Int64) -> Int {
    let first = (0..<tensor.shape[1]).first { tensor[row, $0] == pad } ?? tensor.shape[1]
    return first == 0 ? tensor.shape[1] - 1 : first - 1
}
/// align-anything's reward-model training mask: the tokenizer attends every real token and the one
/// EOS it appended, which on these rows is the position after the last non-pad id (data
/// preparation for the illustration, built from the library's seqcls end index).
let trainingMask = Tensor<Int64>.make(trlIds.shape, (0..<trlIds.count).map { flat in
    let b = flat / trlIds.shape[1], t = flat % trlIds.shape[1]
    return t <= Int(trlSeqcls.endIndex.scalars[b]) + 1 ? 1 : 0
})
let trlAttnTraining = chapter.must { try rewardEndScoresAttn(scores: trlScores, attentionMask: trainingMask) }
var whereTable = Table(["row", "seqcls (TRL)", "AA, ids != pad", "AA, EOS in mask", "DS-Chat, P = \(promptLength)",
                        "old: first pad - 1"])
func at(_ index: Int64, _ score: Double) -> String { "t=\(index): \(fmt(score, 3))" }
for b in 0..<trlIds.shape[0] {
    let old = firstPadMinusOne(trlIds, b, pad: trlPad)
    whereTable.add(["b=\(b)", at(trlSeqcls.endIndex.scalars[b], trlSeqcls.endScores.scalars[b]),
                    at(trlAttn.endIndex.scalars[b], trlAttn.endScores.scalars[b]),
                    at(trlAttnTraining.endIndex.scalars[b], trlAttnTraining.endScores.scalars[b]),
                    fmt(trlForwardValue.scalars[b], 3), at(Int64(old), trlScores[b, old])])
}
chapter.show(whereTable)
chapter.say("""
Every trailing E counts as padding for the ids-based rules, so none of them scores the EOS the
trainer appended: the score comes from the token before it (t = 3 in row 0). align-anything
(AA) reads whatever its mask says: with the PPO mask ids != pad it agrees with them; with its
training mask, which attends the appended EOS, it scores the EOS (t = 4 in row 0). Row 1 holds
an E at t = 1, inside the prompt: the sequence classifier (the rule since transformers PR #35911)
reads past it, the mask ids != pad turns it into a hole, and forward_value starts its search at
prompt_length. The old "first pad, minus one" rule (display only: the library does not implement
it) scores row 1 at t = 0, a prompt token. Only the seqcls column is this fixture's output; the
others are library calls on the same rows.
""")
chapter.check("end_index", ours: trlSeqcls.endIndex.scalars.map(Double.init), against: trl, digits: 0)
chapter.check("end_scores", ours: trlSeqcls.endScores, against: trl)

let ppo = chapter.fixture("reward_end_scores_attn/pad-equals-eos-ppo-f64")
let ppoMask = chapter.intInput(ppo, "attention_mask"), ppoScores = chapter.floatInput(ppo, "scores")
chapter.say("""

align-anything's PPO builds the mask as ids != pad, so with pad == eos every EOS is a 0 in it.
GoldenData/reward_end_scores_attn/pad-equals-eos-ppo-f64.json (pad == eos = 2; row 1's prompt EOS
at t = 1 is a hole):
""")
chapter.show("attention_mask", ppoMask)
let ppoResult = chapter.must { try rewardEndScoresAttn(scores: ppoScores, attentionMask: ppoMask) }
chapter.say("end_index = \(list(ppoResult.endIndex.scalars)): the token before each trailing EOS.")
chapter.check("end_index", ours: ppoResult.endIndex.scalars.map(Double.init), against: ppo, digits: 0)
chapter.check("end_scores", ours: ppoResult.endScores, against: ppo)

// MARK: 5. What differs and why

chapter.heading("5. What differs, and why")
var differs = Table(["", "DeepSpeed-Chat", "align-anything", "TRL"], leftAligned: [0, 1, 2, 3])
differs.add(["loss compares", "every token of [div, end)", "end scores h - l", "end scores c - r - m"])
differs.add(["averaged", "per pair, then over pairs", "over pairs", "over pairs"])
differs.add(["regulariser", "none", "lambda * mean(h^2, l^2)", "kappa * mean (c + r)^2"])
differs.add(["its default", "", "lambda = 0.001, on", "kappa null, off"])
differs.add(["margin", "none", "none", "a margin data column"])
differs.add(["end score read at", "first pad after prompt - 1", "last mask = 1", "last id != pad"])
differs.add(["decided by", "ids and prompt_length", "attention_mask", "input_ids, pad_token_id"])
differs.add(["pad == eos", "EOS is a pad: token before", "EOS scored iff in mask", "EOS is a pad: token before"])
chapter.show(differs)
chapter.say("""
Why: DeepSpeed-Chat gives every token where the answers differ a gradient (pad positions of the
shorter answer included); the other two score a whole answer once, at its last token.
align-anything's squares keep the scores small, since only their difference is defined; TRL's
centering fixes only the midpoint, and its margin lets a dataset say how much better.
""")

chapter.finish()
