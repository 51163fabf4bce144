// Chapter 12 · Three PPO steps: DeepSpeed-Chat, align-anything and TRL on one rollout.
//
// Reads top to bottom: one small rollout batch written down here, handed to the
// three systems' step functions (DeepSpeed-Chat `ppoLosses`, align-anything
// `ppoLossesSeqMean`, TRL `ppoLossesJointWhitened`), then where each puts the
// score, what each clamps, which positions each loss reads, how each reduces,
// and a table of every number that differs. The side-by-side run is an
// illustration; the checked numbers come from golden fixtures of each system
// (sections 9 and 10). The math is in Sources/; this file only builds inputs, prints
// and checks. Run it with `make chapter N=12`.

import ChapterSupport
import ComputeRewards
import GAE
import GatherLogProbs
import Golden
import PPOLossesJointWhitened
import PPOLossesSeqMean
import PPOStep
import RewardsKLFirstPad
import TensorCore

let chapter = Chapter(number: 12, title: "Three PPO steps: one rollout, three data flows")
chapter.say("""
Chapter 07 ran DeepSpeed-Chat's train_rlhf. align-anything's rl_step and TRL's PPOTrainer.train
run the same four pieces (KL-shaped rewards, GAE, clipped actor loss, clipped critic loss) with
different choices at every seam. Here one rollout goes through all three, and the differences
are printed where they arise.
""")

/// Row-major literal rows -> a [rows, columns] tensor.
func matrix(_ rows: [[Double]]) -> Tensor<Double> { Tensor.make([rows.count, rows[0].count], rows.flatMap { $0 }) }
/// Element-wise sum of two tensors of one shape (input construction only).
func plus(_ a: Tensor<Double>, _ b: Tensor<Double>) -> Tensor<Double> {
    Tensor.make(a.shape, zip(a.scalars, b.scalars).map { $0 + $1 })
}
/// Columns `[from...]` of a rank-2 tensor, as a new tensor.
func tail<S>(_ x: Tensor<S>, from first: Int) -> Tensor<S> { x.columns(first...) }
/// A row of a rank-2 tensor as cells.
func cells(_ x: Tensor<Double>, _ b: Int, _ digits: Int = 3) -> [String] { x.row(b).map { fmt($0, digits) } }
func cells(_ x: Tensor<Int64>, _ b: Int) -> [String] { x.row(b).map { String($0) } }

/// DeepSpeed-Chat's `ppoLosses` on a fixture's inputs and params, through its stage adapter.
@MainActor func ppoStep(_ fixture: Fixture) throws(StageError) -> PPOLossesResult<Double> {
    do {
        return try PPOLossesStage.forward(chapter.arguments(fixture))
    } catch let error as StageError {
        throw error
    } catch {
        return chapter.must { throw error }  // a fixture the chapter cannot read ends it with the message
    }
}

/// align-anything's `ppoLossesSeqMean` on a fixture's inputs and params.
@MainActor func seqMeanStep(_ fixture: Fixture) throws(StageError) -> PPOLossesSeqMeanResult<Double> {
    try ppoLossesSeqMean(attentionMask: chapter.intInput(fixture, "attention_mask"),
                         logProbs: chapter.floatInput(fixture, "log_probs"),
                         refLogProbs: chapter.floatInput(fixture, "ref_log_probs"),
                         rewardValues: chapter.floatInput(fixture, "reward_values"),
                         newLogProbs: chapter.floatInput(fixture, "new_log_probs"),
                         newValues: chapter.floatInput(fixture, "new_values"),
                         reward: chapter.floatInput(fixture, "reward"),
                         promptLength: chapter.intParam(fixture, "prompt_length"),
                         klCoeff: chapter.realParam(fixture, "kl_coeff"),
                         clipRangeScore: chapter.realParam(fixture, "clip_range_score"),
                         clipRangeRatio: chapter.realParam(fixture, "clip_range_ratio"),
                         clipRangeValue: chapter.realParam(fixture, "clip_range_value"),
                         gamma: chapter.realParam(fixture, "gamma"),
                         gaeLambda: chapter.realParam(fixture, "gae_lambda"))
}

// MARK: 1. The rollout

chapter.heading("1. One rollout, written down")
let pad: Int64 = 0, eos: Int64 = 1
let promptLength = 3
let ids = Tensor<Int64>.make([3, 8], [
    0, 3, 4, /**/ 5, 3, 1, 0, 0,   // row 0: left-padded prompt; answer 5 3 EOS, then pads
    4, 5, 3, /**/ 4, 0, 0, 0, 0,   // row 1: a one-token answer whose stop token is the pad id (pad == eos)
    3, 3, 4, /**/ 5, 4, 3, 5, 4,   // row 2: the answer fills the whole width, no EOS, no pad
])
let batchSize = 3, length = 8, positions = length - 1, start = promptLength - 1, width = positions - start
let attentionMask = Tensor.make(ids.shape, ids.scalars.map { $0 == pad ? Int64(0) : 1 })
chapter.say("""
B = \(batchSize) sequences of L = \(length) token ids; pad = \(pad), EOS = \(eos); the prompt batch is P = \
\(promptLength) wide
(left-padded), the answers T = L - P = \(width) wide (right-padded). Row 0 stops on an EOS distinct from
the pad; row 1 stops on a token whose id IS the pad id (a tokenizer with pad == eos, as OPT's in
DeepSpeed-Chat), so its EOS is invisible to every mask; row 2 never stops.
""")
chapter.show("input_ids", ids)
chapter.say("""
DeepSpeed-Chat and align-anything both build attention_mask = (ids != pad) and work on the full
sequence: N = L - 1 = \(positions) log-prob positions, position t scoring token t + 1, the answer from
start s = P - 1 = \(start). TRL works in response coordinates: responses = ids[:, P:], [B, T], where
response position j is the full-sequence log-prob position t = s + j. All tables below use j.
""")
chapter.show("attention_mask", attentionMask)

// The policy's logits at the T positions that score the response tokens, [B, T, V].
let vocabulary = 6
let newLogits = Tensor<Double>.make([batchSize, width, vocabulary], [
    // row 0: tokens 5 3 1 0 0
    0.1, 0.0, 0.2, 0.3, 0.4, 1.6,   0.2, 0.1, 0.0, 1.3, 0.5, 0.2,   0.0, 1.8, 0.1, 0.2, 0.3, 0.1,
    0.9, 0.3, 0.1, 0.0, 0.2, 0.4,   0.7, 0.2, 0.3, 0.1, 0.0, 0.5,
    // row 1: tokens 4 0 0 0 0
    0.3, 0.2, 0.0, 0.1, 1.2, 0.6,   0.8, 0.4, 0.2, 0.3, 0.1, 0.0,   0.6, 0.5, 0.0, 0.2, 0.3, 0.1,
    0.9, 0.1, 0.4, 0.2, 0.0, 0.3,   0.5, 0.3, 0.2, 0.1, 0.4, 0.0,
    // row 2: tokens 5 4 3 5 4
    0.2, 0.1, 0.0, 0.3, 0.5, 1.4,   0.1, 0.0, 0.2, 0.4, 1.5, 0.3,   0.3, 0.2, 0.1, 1.1, 0.6, 0.0,
    0.0, 0.1, 0.3, 0.2, 0.4, 1.7,   0.2, 0.0, 0.1, 0.3, 1.0, 0.5,
])
let temperature = 0.7
let responses = tail(ids, from: promptLength)
let newAnswerLogProbs = chapter.must {
    try gatherLogProbs(logits: temperedLogits(newLogits, temperature: temperature), labels: responses)
}
// The rollout's log-probs = the new ones minus a small drift, so the ratios sit near 1.
let drift = matrix([[0.06, -0.12, 0.03, 0.0, 0.0], [-0.08, 0.0, 0.0, 0.0, 0.0], [0.10, 0.02, -0.30, 0.05, -0.04]])
let oldAnswerLogProbs = plus(newAnswerLogProbs, drift)
let promptLogProbs = matrix([[-3.1, -2.4], [-2.2, -1.9], [-2.8, -2.6]])
func joined(_ left: Tensor<Double>, _ right: Tensor<Double>) -> Tensor<Double> {
    Tensor.make([batchSize, positions], (0..<batchSize).flatMap { Array(left.row($0)) + Array(right.row($0)) })
}
let logProbs = joined(promptLogProbs, oldAnswerLogProbs)
let newLogProbs = joined(promptLogProbs, newAnswerLogProbs)
let refLogProbs = plus(logProbs, matrix([[0.0, 0.1, -0.4, 0.3, -0.2, 0.1, 0.2],
                                         [0.1, 0.0, -0.6, 0.2, 0.1, -0.1, 0.3],
                                         [0.0, -0.1, -0.2, -0.5, 0.4, -0.3, -0.2]]))
let values = matrix([[0.1, 0.2, 0.5, 0.6, 0.8, 1.0, 0.7],
                     [0.0, 0.3, -0.9, -1.5, 0.4, 0.6, 0.2],
                     [0.2, 0.1, 0.9, 1.1, 1.4, 1.8, 2.1]])
let newValues = plus(values, matrix([[0.0, 0.0, 0.1, -0.3, 0.2, 0.4, -0.1],
                                     [0.0, 0.0, -0.5, 0.3, 0.0, 0.1, 0.2],
                                     [0.0, 0.0, 0.3, 0.1, -0.2, 0.25, -0.1]]))
let scores = Tensor<Double>.make([batchSize], [1.2, -7.0, 3.0])
chapter.say("""
The rest of the rollout, [B, N] unless said: log_probs (old actor), ref_log_probs, values
(critic), new_log_probs and new_values (the second forward), and the reward model's score per row,
\(list(scores.scalars, 1)). TRL takes logits, not log-probs, for the second forward: new_logits is a
[B, T, V] = [\(batchSize), \(width), \(vocabulary)] tensor written in this file, and the new log-probs the other two
receive are gather_log_probs(new_logits / (temperature + 1e-7), responses) with TRL's temperature
\(fmt(temperature, 1)), so all three see the same new log-probs on the answer. The old log-probs are
those minus a small written drift (the ratio is exp(drift)); the prompt columns are written
directly. TRL gets the answer columns [:, s:] of every [B, N] tensor.
""")
chapter.show("log_probs", logProbs, digits: 3)
chapter.show("new_log_probs", newLogProbs, digits: 3)
chapter.show("ref_log_probs", refLogProbs, digits: 3)
chapter.show("values", values, digits: 3)
chapter.show("new_values", newValues, digits: 3)

// MARK: 2. The three steps

chapter.heading("2. The three step functions, each with its own defaults")
let dsKL = 0.1, aaKL = 0.02, trlKL = 0.05
let ds = chapter.must {
    try ppoLosses(attentionMask: attentionMask, logProbs: logProbs, refLogProbs: refLogProbs, values: values,
                  newLogProbs: newLogProbs, newValues: newValues, rewardScore: scores, promptLength: promptLength,
                  klCtl: dsKL, clipRewardValue: 5.0, cliprange: 0.2, cliprangeValue: 0.2, gamma: 1.0, lambda: 0.95)
}
let aa = chapter.must {
    try ppoLossesSeqMean(attentionMask: attentionMask, logProbs: logProbs, refLogProbs: refLogProbs,
                         rewardValues: values, newLogProbs: newLogProbs, newValues: newValues, reward: scores,
                         promptLength: promptLength, klCoeff: aaKL, clipRangeScore: 50.0, clipRangeRatio: 0.2,
                         clipRangeValue: 5.0, gamma: 1.0, gaeLambda: 0.95)
}
let vfCoef = 0.1
let trl = chapter.must {
    try ppoLossesJointWhitened(responses: responses, logprobs: tail(logProbs, from: start),
                               refLogprobs: tail(refLogProbs, from: start), values: tail(values, from: start),
                               scores: scores, newLogits: newLogits, newValues: tail(newValues, from: start),
                               padTokenId: Int(pad), eosTokenId: Int(eos), stopTokenId: nil, missingEOSPenalty: nil,
                               klCoef: trlKL, klEstimator: .k1, whitenRewards: false, gamma: 1.0, lam: 0.95,
                               cliprange: 0.2, cliprangeValue: 0.2, vfCoef: vfCoef, temperature: temperature)
}
chapter.say("""
  DeepSpeed-Chat  ppoLosses               kl_ctl \(dsKL), clip_reward_value 5, cliprange 0.2,
                                          cliprange_value 0.2, gamma 1, lambda 0.95
  align-anything  ppoLossesSeqMean        kl_coeff \(aaKL), clip_range_score 50,
                                          clip_range_ratio 0.2, clip_range_value 5, gamma 1,
                                          gae_lambda 0.95
  TRL             ppoLossesJointWhitened  kl_coef \(trlKL) (k1), whiten_rewards false, gamma 1,
                                          lam 0.95, cliprange 0.2, cliprange_value 0.2,
                                          vf_coef \(vfCoef), temperature \(temperature), pad \(pad), eos \(eos),
                                          no stop token
Each runs with the defaults of its own config, so the KL coefficients differ too. Everything below
is the output of these three calls on numbers written in this file: an illustration, not a fixture.
""")

// MARK: 3. Where the score lands

chapter.heading("3. Where the score lands")
let dsScoreAt = scorePositions(actionMask: ds.actionMask, start: start)
let answerTokens = (0..<batchSize).map { b in (start..<positions).filter { ds.actionMask[b, $0] == 1 }.count }
var landing = Table(["row b", "answer tokens", "DeepSpeed-Chat t* (j)", "align-anything e_b (j)",
                     "TRL seq_len", "TRL j*"])
for b in 0..<batchSize {
    landing.add([String(b), String(answerTokens[b]), "\(dsScoreAt[b]) (\(dsScoreAt[b] - start))",
                 "\(aa.endIndices[b]) (\(aa.endIndices[b] - start))",
                 String(trl.rollout.lengths.sequenceLengths[b]), String(trl.rollout.scorePositions[b])])
}
chapter.show(landing)
chapter.say("""
DeepSpeed-Chat: t* = s + n, one past the last answer token, i.e. the action whose target is the
first pad. align-anything: e_b = the last t with attention_mask[:, 1:] = 1, the action that
produced the last real token (row 0's EOS, row 1's only token). TRL: j* = sequence_lengths + 1,
one past the last token before the first pad; its j* and DeepSpeed-Chat's t* - s agree on this
batch. Row 2 has no pad: all three fall back to the last position. With pad == eos (row 1) the
EOS is a pad to every mask: DeepSpeed-Chat and TRL put the score on the EOS action itself, and
align-anything on the action that produced the token before it.
""")

// MARK: 4. Rewards and the clamp

chapter.heading("4. The rewards and what the clamp touches")
chapter.say("""
All three put a KL penalty on every position and add the score at their position. DeepSpeed-Chat
clips the score alone to +-5 before adding it; align-anything clamps each position's total
(KL + score) to +-50; TRL clips nothing. Row 1's score of \(fmt(scores.scalars[1], 1)) shows it. Rewards on
the answer part, j = t - s:
""")
let dsRewards = tail(ds.rewards, from: start), aaRewards = tail(aa.rewards, from: start)
var rewardTable = Table(["rewards", "j=0", "j=1", "j=2", "j=3", "j=4"])
for b in 0..<batchSize {
    rewardTable.add(["b=\(b) DeepSpeed-Chat"] + cells(dsRewards, b))
    rewardTable.add(["b=\(b) align-anything"] + cells(aaRewards, b))
    rewardTable.add(["b=\(b) TRL"] + cells(trl.rollout.rewards, b))
}
chapter.show(rewardTable, maximumRows: 9)
chapter.say("""
Row 1: DeepSpeed-Chat's score position holds -5 plus its KL term; align-anything's holds -7 plus
its KL term (-7 is far inside +-50); TRL's exactly -7, its fill zeroing the KL at j*. Past the
score DeepSpeed-Chat has zeroed the rewards from ends = t* + 1 on; TRL's are 0 there because its
fill makes log-prob and ref log-prob both 1.0, so the KL is exactly 0; align-anything's still
carry the KL, and GAE multiplies them by the mask. The KL terms differ by the coefficients
(\(dsKL), \(aaKL), \(trlKL)). DeepSpeed-Chat and align-anything also put KL terms on the prompt
positions before s, which GAE never reads; TRL has none.
""")

// MARK: 5. Advantages, whitening and the value targets

chapter.heading("5. Advantages: the same recursion, different masks, and TRL's whitening")
chapter.say("""
All three run the GAE recursion of chapter 04 from the answer start (TRL from j = 0, the same
place). DeepSpeed-Chat bootstraps from values zeroed only from t* + 1; align-anything from
values * mask (zero from e_b + 1); TRL from values zeroed from j* + 1. TRL then whitens the
advantages over its policy mask M (j <= seq_len): subtract their mean, divide by their standard
deviation (unbiased, the Bessel factor in float32, + 1e-8), and zero them past seq_len.
""")
let dsAdv = ds.advantages, aaAdv = aa.advantages
var advantageTable = Table(["advantages", "j=0", "j=1", "j=2", "j=3", "j=4"])
for b in 0..<batchSize {
    advantageTable.add(["b=\(b) DeepSpeed-Chat"] + cells(dsAdv, b))
    advantageTable.add(["b=\(b) align-anything"] + cells(aaAdv, b))
    advantageTable.add(["b=\(b) TRL before whitening"] + cells(trl.unwhitenedAdvantages, b))
    advantageTable.add(["b=\(b) TRL whitened"] + cells(trl.advantages, b))
}
chapter.show(advantageTable, maximumRows: 12)
chapter.say("""
TRL's returns come from the advantages before whitening: returns = A + masked values. The value
target at the score position, and whether a loss reads it:
""")
var targetTable = Table(["row b", "DS R at t*", "read?", "AA R at e_b", "read?", "TRL R at j*", "read?"])
for b in 0..<batchSize {
    let dsJ = dsScoreAt[b] - start, aaJ = aa.endIndices[b] - start, trlJ = trl.rollout.scorePositions[b]
    let dsMask = ds.actionMask[b, dsScoreAt[b]], aaMask = attentionMask[b, aa.endIndices[b] + 1]
    targetTable.add([String(b), fmt(ds.returns[b, dsJ], 3), dsMask == 1 ? "yes" : "no",
                     fmt(aa.returns[b, aaJ], 3), aaMask == 1 ? "yes" : "no",
                     fmt(trl.returns[b, trlJ], 3), trl.valueMask[b, trlJ] == 1 ? "yes" : "no"])
}
chapter.show(targetTable)
chapter.say("""
DeepSpeed-Chat's loss mask is 0 at a padded row's t*: GAE gives that position an advantage and a
return that no loss reads (chapter 07, section 8). align-anything's score position is the last
masked-in action, trained like any other. TRL's value mask M1 reaches one further than its policy
mask (j <= seq_len + 1), so the critic IS trained at j*, towards a return that holds the raw
score, while the policy loss stops at seq_len.
""")

// MARK: 6. Which positions each loss reads

chapter.heading("6. The loss masks")
var maskTable = Table(["loss mask", "j=0", "j=1", "j=2", "j=3", "j=4"])
let dsLossMask = tail(ds.actionMask, from: start)
for b in 0..<batchSize {
    maskTable.add(["b=\(b) DS actor and critic"] + cells(dsLossMask, b))
    maskTable.add(["b=\(b) AA actor and critic"] + cells(tail(aa.sequenceMask, from: start), b))
    maskTable.add(["b=\(b) TRL actor (M)"] + cells(trl.policyMask, b))
    maskTable.add(["b=\(b) TRL critic (M1)"] + cells(trl.valueMask, b))
}
chapter.show(maskTable, maximumRows: 12)
chapter.say("""
On this batch DeepSpeed-Chat, align-anything and TRL's policy mask agree (attention_mask[:, 1:]
from s on, the EOS of row 0 in, row 1's pad-id EOS out); TRL's critic mask adds j* to rows 0 and 1.
""")

// MARK: 7. Reductions and the total

chapter.heading("7. Token means, sequence means, and vf_coef")
let aaTokenCounts = aa.actor.tokenCounts
chapter.say("""
DeepSpeed-Chat and TRL average the per-token losses over every kept token of the batch (a token
mean: \(ds.actor.tokenCount) tokens for DeepSpeed-Chat's actor, \(trl.actor.tokenCount) for TRL's, \(trl.critic.tokenCount) for TRL's critic).
align-anything averages within each row first (\(list(aaTokenCounts)) tokens), then over the \(batchSize) rows, so row
1's single token weighs as much as row 2's five. DeepSpeed-Chat and align-anything step actor and
critic separately; TRL backpropagates one loss, pg_loss + vf_coef * vf_loss.
""")
var lossTable = Table(["", "actor loss", "critic loss", "what is optimised"], leftAligned: [0, 3])
lossTable.add(["DeepSpeed-Chat", fmt(ds.actor.loss, 6), fmt(ds.critic.loss, 6), "each loss by its own optimiser"])
lossTable.add(["align-anything", fmt(aa.actor.loss, 6), fmt(aa.critic.loss, 6), "each loss by its own optimiser"])
lossTable.add(["TRL", fmt(trl.pgLoss, 6), fmt(trl.vfLoss, 6),
               "loss = \(fmt(trl.pgLoss, 4)) + \(vfCoef) * \(fmt(trl.vfLoss, 4)) = \(fmt(trl.loss, 4))"])
chapter.show(lossTable)

// MARK: 8. Every difference

chapter.heading("8. Every number that differs, and why")
var why = Table(["", "DeepSpeed-Chat", "align-anything", "TRL"], leftAligned: [0, 1, 2, 3])
why.add(["coordinates", "[B, N], s = P - 1", "[B, N], s = P - 1", "[B, T] response, j = t - s"])
why.add(["score at", "t* = s + n (first pad)", "e_b (last real token)", "j* = seq_len + 1"])
why.add(["score clip", "score alone to +-5", "total to +-50", "none"])
why.add(["KL coefficient", "0.1", "0.02", "0.05 (k1 or k3)"])
why.add(["after the end", "r, V zeroed from t* + 1", "r * m, V * m", "kl 0 from j*, V 0 from j* + 1"])
why.add(["advantages", "raw GAE", "raw GAE", "whitened over M"])
why.add(["policy mask", "m[:, s:]", "m[:, s:]", "j <= seq_len"])
why.add(["value mask", "m[:, s:]", "m[:, s:]", "j <= seq_len + 1 (trains j*)"])
why.add(["reduction", "token mean", "mean per row, then rows", "token mean"])
why.add(["value clip", "0.2", "5.0", "0.2"])
why.add(["ratio", "exp(mask * log-ratio)", "exp(log-ratio)", "exp(nlp - lp'), 1 under fill"])
why.add(["objective", "two losses", "two losses", "pg + 0.1 * vf, one optimiser"])
chapter.show(why, maximumRows: 12)
chapter.say("""
On this batch: row 1's score (the clip); every KL term (the coefficients); the rewards of rows 0
and 1 (where the score lands); the advantages (the score position, which values survive past the
end, TRL's whitening); and the losses (masks, reduction, value clip, and TRL's vf_coef).
""")
chapter.say("""
The same differences as numbers of this rollout (j in response coordinates):
""")
/// "yes" or "no" for a 0/1 mask entry.
func yesNo(_ x: Int64) -> String { x == 1 ? "yes" : "no" }
var numbers = Table(["on this rollout", "DS", "AA", "TRL", "why"], leftAligned: [0, 4])
numbers.add(["row 0: score at j", String(dsScoreAt[0] - start), String(aa.endIndices[0] - start),
             String(trl.rollout.scorePositions[0]), "one past the EOS / the EOS action"])
numbers.add(["row 1: reward at the score", fmt(dsRewards[1, dsScoreAt[1] - start], 3),
             fmt(aaRewards[1, aa.endIndices[1] - start], 3), fmt(trl.rollout.rewards[1, trl.rollout.scorePositions[1]], 3),
             "DS clips to -5; TRL's KL is 0 there"])
numbers.add(["row 2: reward at j = 0", fmt(dsRewards[2, 0], 3), fmt(aaRewards[2, 0], 3),
             fmt(trl.rollout.rewards[2, 0], 3), "beta = 0.1 / 0.02 / 0.05"])
numbers.add(["row 0: advantage at j = 0", fmt(dsAdv[0, 0], 3), fmt(aaAdv[0, 0], 3), fmt(trl.advantages[0, 0], 3),
             "score position; TRL whitens"])
numbers.add(["row 0: V trained at score?", yesNo(dsLossMask[0, dsScoreAt[0] - start]), "yes",
             yesNo(trl.valueMask[0, trl.rollout.scorePositions[0]]), "TRL's M1 reaches j*"])
numbers.add(["actor loss", fmt(ds.actor.loss, 4), fmt(aa.actor.loss, 4), fmt(trl.pgLoss, 4),
             "reduction, advantages"])
numbers.add(["critic loss", fmt(ds.critic.loss, 4), fmt(aa.critic.loss, 4), fmt(trl.vfLoss, 4),
             "value clip 0.2 / 5, masks, means"])
numbers.add(["total loss", "-", "-", fmt(trl.loss, 4), "TRL: one backward of pg + \(vfCoef) * vf"])
chapter.show(numbers)


// MARK: 9. Checked against PyTorch

chapter.heading("9. Each system's step on one of its golden fixtures")
chapter.say("""
The numbers above are illustrations. What is checked: each step function on a fixture computed by
its peer's PyTorch code, with the fixture's own inputs and params.

DeepSpeed-Chat, ppoLosses on ppo_losses/right-padded-answers-f64:
""")
let dsFixture = chapter.fixture("ppo_losses/right-padded-answers-f64")
let dsChecked = chapter.must { try ppoStep(dsFixture) }
chapter.check("rewards", ours: dsChecked.rewards, against: dsFixture)
chapter.check("advantages", ours: dsChecked.advantages, against: dsFixture)
chapter.check("actor_loss", ours: dsChecked.actor.loss, against: dsFixture)
chapter.check("critic_loss", ours: dsChecked.critic.loss, against: dsFixture)

chapter.say("""

align-anything, ppoLossesSeqMean on ppo_losses_seq_mean/pad-equals-eos-f64:
""")
let aaFixture = chapter.fixture("ppo_losses_seq_mean/pad-equals-eos-f64")
let aaChecked = chapter.must { try seqMeanStep(aaFixture) }
chapter.check("rewards", ours: aaChecked.rewards, against: aaFixture)
chapter.check("advantages", ours: aaChecked.advantages, against: aaFixture)
chapter.check("returns", ours: aaChecked.returns, against: aaFixture)
chapter.check("actor_loss", ours: aaChecked.actor.loss, against: aaFixture)
chapter.check("critic_loss", ours: aaChecked.critic.loss, against: aaFixture)

chapter.say("""

TRL, ppoLossesJointWhitened on ppo_losses_joint_whitened/pad-eq-eos-f64 (pad == eos for every row):
""")
let trlFixture = chapter.fixture("ppo_losses_joint_whitened/pad-eq-eos-f64")
let trlChecked = chapter.must { try PPOLossesJointWhitenedStage.forward(chapter.arguments(trlFixture)) }
chapter.check("rewards", ours: trlChecked.rollout.rewards, against: trlFixture)
chapter.check("advantages", ours: trlChecked.advantages, against: trlFixture)
chapter.check("returns", ours: trlChecked.returns, against: trlFixture)
chapter.check("pg_loss", ours: trlChecked.pgLoss, against: trlFixture)
chapter.check("vf_loss", ours: trlChecked.vfLoss, against: trlFixture)
chapter.check("loss", ours: trlChecked.loss, against: trlFixture)

// MARK: 10. The toy of the convention notes

chapter.heading("10. The convention notes' toy: one sequence, the same hyperparameters")
chapter.say("""
../shared/reference/peer-conventions.md section 11 isolates the conventions: one sequence of L = 7
(P = 2, s = 1, three answer tokens, two pads), the same beta = 0.1, gamma = 1, lambda = 0.95 and
score 1.0 for every system. DeepSpeed-Chat and align-anything have golden fixtures for it:
""")
let dsToy = chapter.fixture("ppo_losses/peer-toy-f64")
let dsToyStep = chapter.must { try ppoStep(dsToy) }
chapter.check("rewards", ours: dsToyStep.rewards, against: dsToy)
chapter.check("advantages", ours: dsToyStep.advantages, against: dsToy)
let aaToy = chapter.fixture("ppo_losses_seq_mean/peer-toy-f64")
let aaToyStep = chapter.must { try seqMeanStep(aaToy) }
chapter.check("rewards", ours: aaToyStep.rewards, against: aaToy)
chapter.check("advantages", ours: aaToyStep.advantages, against: aaToy)
// TRL on the same numbers, in response coordinates j = t - 1 (tokens 3 4 5, then pads).
let toyLogProbs = chapter.floatInput(dsToy, "log_probs"), toyRefLogProbs = chapter.floatInput(dsToy, "ref_log_probs")
let toyValues = chapter.floatInput(dsToy, "values")
let toyRollout = chapter.must {
    try rewardsKLFirstPad(responses: Tensor<Int64>.make([1, 5], [3, 4, 5, 0, 0]),
                          logprobs: tail(toyLogProbs, from: 1), refLogprobs: tail(toyRefLogProbs, from: 1),
                          values: tail(toyValues, from: 1), scores: chapter.floatInput(dsToy, "reward_score"),
                          padTokenId: 0, eosTokenId: 1, stopTokenId: nil, missingEOSPenalty: nil, klCoef: 0.1,
                          klEstimator: .k1, whitenRewards: false)
}
let toyGAE = chapter.must {
    try gae(values: toyRollout.maskedValues, rewards: toyRollout.rewards, start: 0, gamma: 1.0, lambda: 0.95)
}
let noteTRL = [0.382575, 0.5185, 0.63, 0.8, 0.0]
chapter.say("""

TRL has no fixture for the toy. rewardsKLFirstPad and gae (start 0) on the same numbers in
response coordinates, beside the note's numpy replica (a cross-check, not a fixture):
""")
var toyTable = Table(["t = j + 1", "1", "2", "3", "4", "5"])
toyTable.add(["DS rewards (checked)"] + cells(tail(dsToyStep.rewards, from: 1), 0, 4))
toyTable.add(["AA rewards (checked)"] + cells(tail(aaToyStep.rewards, from: 1), 0, 4))
toyTable.add(["TRL rewards"] + cells(toyRollout.rewards, 0, 4))
toyTable.add(["DS advantages (checked)"] + cells(dsToyStep.advantages, 0, 6))
toyTable.add(["AA advantages (checked)"] + cells(aaToyStep.advantages, 0, 6))
toyTable.add(["TRL advantages, unwhitened"] + cells(toyGAE.advantages, 0, 6))
toyTable.add(["TRL, the note's replica"] + noteTRL.map { fmt($0, 6) })
chapter.show(toyTable)
chapter.claim(zip(toyGAE.advantages.scalars, noteTRL).allSatisfy { abs($0 - $1) < 1e-6 },
              "TRL's unwhitened advantages on the toy equal the note's replica to 1e-6")
chapter.say("""
The score sits at t = 4 for DeepSpeed-Chat (0.95 = 1.0 plus the KL term of that pad-target action)
and TRL (1.0: its fill zeroes that KL), at t = 3 for align-anything (0.97, the last answer
action); align-anything's pads still carry their KL terms (-0.05, 0.04), which its GAE masks.
The earlier the score sits, the fewer gamma*lambda factors it passes through on its way back to
the answer tokens: align-anything's advantages are the largest. TRL's exceed DeepSpeed-Chat's by
the KL term TRL zeroes at t = 4 (1.0 against 0.95), discounted: 0.05, 0.0475, ...
""")

chapter.finish()
