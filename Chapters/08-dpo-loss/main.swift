// Chapter 08 · DPO: the policy's own log-ratio as the reward.
//
// Reads top to bottom: one preferred / dispreferred pair and its per-token
// log-probs, the sums, the implicit rewards and the loss checked against PyTorch,
// zero padding, policy = reference (ln 2), ties, beta, a gap of 800 that stays
// finite, and one input the library rejects. The math is
// `dpoLoss(betterLogProbs:worseLogProbs:refBetterLogProbs:refWorseLogProbs:beta:)`
// in Sources/DPOLoss; this file only prints and checks. Run it with `make chapter N=8`.

import ChapterSupport
import DPOLoss
import Foundation
import Golden
import TensorCore

let chapter = Chapter(number: 8, title: "DPO: the policy's own log-ratio as the reward")
chapter.say("""
DPO trains on pairs: one prompt, a preferred answer y+ and a dispreferred answer y-. It needs no
reward model, no sampling and no critic: the policy's log-probability ratio to a frozen
reference model, beta * log(pi / pi_ref), plays the part of the reward.
""")

/// The four per-token inputs of a dpo_loss fixture.
struct PairInputs {
    let better, worse, refBetter, refWorse: Tensor<Double>
    let beta: Double
}

@MainActor func inputs(_ fixture: Fixture) -> PairInputs {
    PairInputs(better: chapter.floatInput(fixture, "better_log_probs"),
               worse: chapter.floatInput(fixture, "worse_log_probs"),
               refBetter: chapter.floatInput(fixture, "ref_better_log_probs"),
               refWorse: chapter.floatInput(fixture, "ref_worse_log_probs"), beta: chapter.realParam(fixture, "beta"))
}

@MainActor func run(_ pair: PairInputs, beta: Double? = nil) -> DPOLossResult<Double> {
    chapter.must {
        try dpoLoss(betterLogProbs: pair.better, worseLogProbs: pair.worse, refBetterLogProbs: pair.refBetter,
                    refWorseLogProbs: pair.refWorse, beta: beta ?? pair.beta)
    }
}

/// S(x) of one row, for the tables: the plain sum of its per-token log-probs.
func rowSum(_ x: Tensor<Double>, _ b: Int) -> Double { x.row(b).reduce(0, +) }

/// How many tokens a zero-padded row holds: up to its last non-zero entry.
func rowLength(_ x: Tensor<Double>, _ b: Int) -> Int {
    let row = Array(x.row(b))
    return (row.lastIndex { $0 != 0 } ?? -1) + 1
}

// MARK: 1. The pair

chapter.heading("1. One pair: how to write a formal email")
chapter.say("""
The seed article's example (translated):
  prompt  x : "How do I write a formal email?"
  y+ (preferred)   : "Keep a formal tone, and include a greeting, the body and a signature."
  y- (dispreferred): "Just write whatever, don't worry too much about the format."
The article gives text, not numbers. The numbers below are GoldenData/dpo_loss/peer-toy-f64.json
(the toy pair of the peer notes); reading them as these two answers is an illustration: y+
scored in 5 tokens, y- in 8. Each answer is scored by the policy being trained and by the frozen
reference (the SFT model): log pi(token | prompt, earlier tokens), one number per answer token,
zero-padded on the right to a common width T.
""")
let toy = chapter.fixture("dpo_loss/peer-toy-f64")
let pair = inputs(toy)
var perToken = Table(["log-prob [1, 8]"] + (0..<pair.better.shape[1]).map { "t=\($0)" })
for (label, tensor) in [("policy, y+", pair.better), ("reference, y+", pair.refBetter),
                        ("policy, y-", pair.worse), ("reference, y-", pair.refWorse)] {
    perToken.add([label] + tensor.scalars.map { fmt($0, 2) })
}
chapter.show(perToken)
chapter.say("""
Which tokens get a log-prob is the caller's choice. align-anything's compute_log_probs takes the
last R positions of each sequence (R = the answer's token count) and scores the last R - 1 of
them: the first answer token is never scored. dpoLoss sums whatever window it is given.
""")

// MARK: 2. Sum each answer

chapter.heading("2. Sum each answer, then compare with the reference")
chapter.say("""
  S(y) = sum_t log pi(y_t | x, y_<t) = log pi(y | x)      (pads are 0 and add nothing)
  h+ = S_policy(y+) - S_ref(y+)      h- = S_policy(y-) - S_ref(y-)
""")
let toyResult = run(pair)
var sums = Table(["answer", "tokens", "S_policy", "S_ref", "h = log(pi / pi_ref)", "beta * h"])
sums.add(["y+", String(rowLength(pair.better, 0)), fmt(rowSum(pair.better, 0), 2), fmt(rowSum(pair.refBetter, 0), 2),
          fmt(rowSum(pair.better, 0) - rowSum(pair.refBetter, 0), 2), fmt(toyResult.betterSampleReward.scalars[0], 4)])
sums.add(["y-", String(rowLength(pair.worse, 0)), fmt(rowSum(pair.worse, 0), 2), fmt(rowSum(pair.refWorse, 0), 2),
          fmt(rowSum(pair.worse, 0) - rowSum(pair.refWorse, 0), 2), fmt(toyResult.worseSampleReward.scalars[0], 4)])
chapter.show(sums)
chapter.say("""
The policy now gives y+ e^1 times the reference's probability (h+ = 1) and y- e^-2 times (h- = -2).
Both answers are unlikely in absolute terms (log pi = -10 and -14); only the ratios matter.
""")

// MARK: 3. Rewards, accuracy, margin, loss

chapter.heading("3. Implicit rewards, accuracy, margin and the loss")
let toyBeta = fmt(pair.beta, 1), toyMargin = fmt(toyResult.rewardMargin.scalars[0], 1), toyLoss = fmt(toyResult.loss, 6)
chapter.say("""
  better_sample_reward = beta * h+          worse_sample_reward = beta * h-
  reward = better + worse                   reward_margin = better - worse = beta * (h+ - h-)
  reward_accuracy = mean over pairs of [better > worse]
  loss = mean over pairs of -log sigmoid(beta * (h+ - h-))
beta = \(toyBeta): the margin is \(toyMargin), and the loss is -log sigmoid(\(toyMargin)) = \(toyLoss). The margin is the
logit itself: beta is applied once, not again on top of the margin.
""")
chapter.check("loss", ours: toyResult.loss, against: toy)
chapter.check("better_sample_reward", ours: toyResult.betterSampleReward, against: toy)
chapter.check("worse_sample_reward", ours: toyResult.worseSampleReward, against: toy)
chapter.check("reward", ours: toyResult.reward, against: toy)
chapter.check("reward_margin", ours: toyResult.rewardMargin, against: toy)
chapter.check("reward_accuracy", ours: toyResult.rewardAccuracy, against: toy)

// MARK: 4. Why no reward model

chapter.heading("4. Why DPO needs no reward model")
chapter.say("""
PPO (chapters 03-07) needs a reward model to score sampled answers, a critic to turn scores
into advantages, and fresh samples at every step. DPO's loss is the reward model's pairwise loss
(chapter 02), -log sigmoid(r+ - r-), with r = beta * log(pi / pi_ref) in place of a trained
score. The answers are fixed data, so nothing is sampled; each pair's loss looks at the two
whole answers at once, so there is no per-token credit to assign and no critic. Lowering the loss
raises log pi(y+) against log pi(y-), each measured from the reference: the policy is its own
reward model.
The article's formula, -log sigmoid(beta * (log pi(y+) - log pi(y-))), leaves out pi_ref; the
align-anything code it quotes, and dpoLoss, subtract the reference's log-probs.
""")

// MARK: 5. Zero padding adds nothing

chapter.heading("5. Answers of different lengths: sums, not means")
let padded = chapter.fixture("dpo_loss/zero-padded-rows-f64")
let paddedPair = inputs(padded)
let paddedResult = run(paddedPair)
chapter.say("""
GoldenData/dpo_loss/zero-padded-rows-f64.json: 3 pairs in T = \(paddedPair.better.shape[1]) columns, each answer padded with
zeros after its last token. A sum ignores the zeros; a mean over T would not.
""")
var lengths = Table(["pair", "y+ tokens", "y- tokens", "better", "worse", "margin", "pair loss"])
for b in 0..<paddedPair.better.shape[0] {
    lengths.add([String(b), String(rowLength(paddedPair.better, b)), String(rowLength(paddedPair.worse, b)),
                 fmt(paddedResult.betterSampleReward.scalars[b]), fmt(paddedResult.worseSampleReward.scalars[b]),
                 fmt(paddedResult.rewardMargin.scalars[b]), fmt(paddedResult.pairLosses.scalars[b], 6)])
}
chapter.show(lengths)
chapter.say("The loss is the mean of the pair losses: \(fmt(paddedResult.loss, 6)).")
chapter.check("loss", ours: paddedResult.loss, against: padded)
chapter.check("reward_margin", ours: paddedResult.rewardMargin, against: padded)

// MARK: 6. Policy = reference

chapter.heading("6. Step 0: policy = reference gives ln 2")
let same = chapter.fixture("dpo_loss/policy-equals-reference-f64")
let sameResult = run(inputs(same))
chapter.say("""
GoldenData/dpo_loss/policy-equals-reference-f64.json: the policy's log-probs are the reference's,
as at the first step, when the policy is still the SFT model. Every h is 0, every reward 0, and
every pair loss is -log sigmoid(0) = ln 2 = \(fmt(log(2.0), 6)):
""")
var step0 = Table(["pair", "better", "worse", "margin", "pair loss"])
for b in 0..<sameResult.pairLosses.count {
    step0.add([String(b), fmt(sameResult.betterSampleReward.scalars[b]), fmt(sameResult.worseSampleReward.scalars[b]),
               fmt(sameResult.rewardMargin.scalars[b]), fmt(sameResult.pairLosses.scalars[b], 6)])
}
chapter.show(step0)
chapter.say("""
A loss that stays at 0.6931 step after step means the two log-ratios never separate: beta = 0, or
a reference that is secretly the policy itself. reward_accuracy = \(fmt(sameResult.rewardAccuracy, 2)), not 0.5: every pair
is a tie, and a tie counts as wrong (section 7).
""")
chapter.check("loss", ours: sameResult.loss, against: same)

// MARK: 7. Ties count as wrong

chapter.heading("7. Accuracy is strict: a tie counts as wrong")
let tie = chapter.fixture("dpo_loss/tie-counts-wrong-f64")
let tieResult = run(inputs(tie))
chapter.say("""
GoldenData/dpo_loss/tie-counts-wrong-f64.json: 4 pairs; in pair 1 the two answers' log-probs are
identical under both models, so its rewards tie exactly.
""")
var ties = Table(["pair", "better", "worse", "margin", "better > worse"])
for b in 0..<tieResult.pairLosses.count {
    let better = tieResult.betterSampleReward.scalars[b], worse = tieResult.worseSampleReward.scalars[b]
    ties.add([String(b), fmt(better, 6), fmt(worse, 6), fmt(tieResult.rewardMargin.scalars[b], 6),
              better > worse ? "yes" : "no"])
}
chapter.show(ties)
chapter.say("""
Two of four are strictly ahead: reward_accuracy = \(fmt(tieResult.rewardAccuracy, 2)). Counting the tie as half right
would give 0.625.
""")
chapter.check("reward_accuracy", ours: tieResult.rewardAccuracy, against: tie)
chapter.check("reward_margin", ours: tieResult.rewardMargin, against: tie)

// MARK: 8. Beta

chapter.heading("8. What beta does")
chapter.say("""
beta scales the log-ratio before the sigmoid. The same log-ratios of section 2 (h+ - h- = 3) at
three betas (an illustration, not a fixture):
""")
var betas = Table(["beta", "reward_margin", "loss", "sigmoid(margin)"])
for beta in [0.1, 0.5, 2.5] {
    let result = run(pair, beta: beta)
    betas.add([fmt(beta, 1), fmt(result.rewardMargin.scalars[0]), fmt(result.loss, 6), fmt(exp(-result.loss), 4)])
}
chapter.show(betas)
chapter.say("""
With a large beta a small departure from the reference already saturates the sigmoid, and the
loss stops asking for more: a higher beta keeps the policy closer to pi_ref, a lower one lets it
drift further before the pair counts as learned. align-anything's default (scale_coeff) is 0.1.
GoldenData/dpo_loss/beta-2.5-f64.json checks beta = 2.5 on two other pairs:
""")
let beta25 = chapter.fixture("dpo_loss/beta-2.5-f64")
let beta25Result = run(inputs(beta25))
chapter.check("better_sample_reward", ours: beta25Result.betterSampleReward, against: beta25)
chapter.check("worse_sample_reward", ours: beta25Result.worseSampleReward, against: beta25)
chapter.check("loss", ours: beta25Result.loss, against: beta25)

// MARK: 9. Large gaps stay finite

chapter.heading("9. A gap of 800 stays finite")
let large = chapter.fixture("dpo_loss/large-gap-800-f64")
let largeResult = run(inputs(large))
chapter.say("""
GoldenData/dpo_loss/large-gap-800-f64.json: one log-prob of about -8000 makes the margins +800 and
-800. The loss uses a stable log-sigmoid, min(x, 0) - log1p(e^-|x|); the naive
-log(1 / (1 + e^-x)) (the wrong way, computed here only to compare) overflows e^800 to inf:
""")
var gaps = Table(["pair", "margin x", "pair loss", "naive -log(sigmoid(x))"])
for b in 0..<largeResult.pairLosses.count {
    let x = largeResult.rewardMargin.scalars[b]
    gaps.add([String(b), fmt(x), fmt(largeResult.pairLosses.scalars[b], 6), fmt(-log(1 / (1 + exp(-x))), 6)])
}
chapter.show(gaps)
chapter.say("""
A pair ranked right by 800 costs nothing; one ranked wrong by 800 costs 800, and the mean of the
two is \(fmt(largeResult.loss, 4)), finite.
""")
chapter.check("loss", ours: largeResult.loss, against: large)
chapter.check("reward_margin", ours: largeResult.rewardMargin, against: large)

// MARK: 10. Rejected input

chapter.heading("10. An input the library rejects")
chapter.say("""
A NaN in a padded slot of the reference's log-probs: PyTorch's sum would carry it into h- and the
loss. dpoLoss rejects a NaN anywhere, padding included.
""")
let nan = chapter.fixture("dpo_loss/error-nan-ref-worse-padded")
chapter.checkRejects(nan) { try dpoLoss(betterLogProbs: chapter.floatInput(nan, "better_log_probs"),
                                        worseLogProbs: chapter.floatInput(nan, "worse_log_probs"),
                                        refBetterLogProbs: chapter.floatInput(nan, "ref_better_log_probs"),
                                        refWorseLogProbs: chapter.floatInput(nan, "ref_worse_log_probs"),
                                        beta: chapter.realParam(nan, "beta")) }

chapter.finish()
