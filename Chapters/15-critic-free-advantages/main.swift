// Chapter 15 · Critic-free advantages: GRPO, Dr. GRPO, RLOO, REINFORCE++ and group_norm.
//
// Reads top to bottom: three groups of four completions written down here (one reward
// each, and each answer's length), handed to TRL's group advantages (`grpoAdvantages`
// with the three `scale_rewards`, `rlooAdvantages`) and to OpenRLHF's per-token
// estimators (`tokenAdvantages`: group_norm, dr_grpo, rloo, reinforce = REINFORCE++),
// the advantages side by side, then what each baseline and each scaling does, with
// checked claims, and the stages on their golden fixtures. Then (sections 8-10) TRL's
// `grpoLoss` reduces answers of 2, 5 and 12 tokens under grpo, bnpo, dr_grpo, dapo and
// luspo: the loss and each token's weight (from `grpoLossGradLogProbs`), the length bias.
// The math is in Sources/CriticFreeAdvantages and Sources/PolicyLosses; this file only
// builds inputs, prints and checks.
// Run it with `make chapter N=15`.

import ChapterSupport
import CriticFreeAdvantages
import Golden
import PolicyLosses
import TensorCore

let chapter = Chapter(number: 15, title: "Critic-free advantages: six baselines, five loss reductions")
chapter.say("""
PPO (chapters 04-07) needs a critic to say how good a state is. The critic-free methods
replace it with the other answers to the same prompt: sample G completions, score each, and
compare each score with its siblings'. They differ in the baseline (the group mean, or the
mean of the others) and in what, if anything, the difference is divided by. Sections 8-10 then
spread the advantages over the answers' tokens and reduce them to one loss, five ways.
""")

/// The completions' cells of one row of a [N] tensor.
func cells(_ values: [Double], _ digits: Int = 4) -> [String] { values.map { fmt($0, digits) } }
/// Whether two arrays agree element by element within `tolerance`.
func agree(_ a: [Double], _ b: [Double], within tolerance: Double) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance }
}
/// The sums of consecutive groups of `size` values.
func groupSums(_ values: [Double], size: Int) -> [Double] {
    stride(from: 0, to: values.count, by: size).map { values[$0..<$0 + size].reduce(0, +) }
}

// MARK: 1. The batch

chapter.heading("1. Three prompts, four completions each")
let groupSize = 4
let rewardList: [Double] = [1, 0, 0, 1,   // prompt A: two of four answers right
                            1, 1, 0, 1,   // prompt B: an easier prompt, three of four right
                            1, 1, 1, 1]   // prompt C: every answer right, nothing to learn
let lengths = [3, 5, 2, 4, 2, 3, 6, 4, 4, 4, 1, 5]  // answer tokens of each completion
let n = rewardList.count, width = 6
let rewards = Tensor.make([n], rewardList)
let actionMask = Tensor<Int64>.make([n, width], lengths.flatMap { l in (0..<width).map { Int64($0 < l ? 1 : 0) } })
let noKL = Tensor<Double>(shape: [n, width], repeating: 0)
let names = ["A", "B", "C"].flatMap { p in (1...groupSize).map { "\(p)\($0)" } }
var batchTable = Table(["completion"] + names)
batchTable.add(["reward r"] + rewardList.map { fmt($0, 0) })
batchTable.add(["answer tokens"] + lengths.map(String.init))
chapter.show(batchTable)
chapter.say("""
A verifiable reward (right 1, wrong 0), N = 12 completions in groups of G = 4: rows 4i ... 4i+3
answer prompt i, as TRL's sampler and OpenRLHF's rollout lay them out. The answer lengths matter
only to the per-token estimators (section 5). No KL term here (beta = 0, kl_coef = 0), so every
estimator sees the same scalar rewards.
""")

// MARK: 2. TRL's GRPO, three scalings

chapter.heading("2. GRPO: r minus the group mean, divided by a std (or not)")
let grpoGroup = chapter.must { try grpoAdvantages(rewards: rewards, groupSize: groupSize, scaleRewards: .group) }
let grpoBatch = chapter.must { try grpoAdvantages(rewards: rewards, groupSize: groupSize, scaleRewards: .batch) }
let grpoNone = chapter.must { try grpoAdvantages(rewards: rewards, groupSize: groupSize, scaleRewards: .none) }
var grpoTable = Table(["completion"] + names)
grpoTable.add(["group mean"] + cells(grpoGroup.baselines.scalars, 3))
grpoTable.add(["group std"] + cells(grpoGroup.scales!.scalars, 3))
grpoTable.add(["batch std"] + cells(grpoBatch.scales!.scalars, 3))
grpoTable.add(["A, scale group"] + cells(grpoGroup.advantages.scalars, 3))
grpoTable.add(["A, scale batch"] + cells(grpoBatch.advantages.scalars, 3))
grpoTable.add(["A, scale none"] + cells(grpoNone.advantages.scalars, 3))
chapter.show(grpoTable)
chapter.say("""
scale group (the GRPO paper, TRL's default): A = (r - mean_g)/(std_g + 1e-4), std unbiased.
scale batch: the same group mean, but one std for all 12 rewards of the batch.
scale none (Dr. GRPO): A = r - mean_g, no division. Dividing by the group std makes a hard or
easy prompt (small std) speak as loudly as a balanced one: B's lone wrong answer gets about -1.5
under scale group but only -0.75 under none. Prompt C has std 0: (1 - 1)/(0 + 1e-4) = 0,
exactly, because its mean is exactly 1; the 1e-4 only keeps 0/0 away.
""")
let handA = 0.5 / ((1.0 / 3).squareRoot() + 1e-4)
chapter.claim(agree(Array(grpoGroup.advantages.scalars[0..<4]), [handA, -handA, -handA, handA], within: 1e-12),
              "prompt A, scale group: ±(1/2)/(sqrt(1/3) + 1e-4) = ±\(fmt(handA, 4)), by hand")
chapter.claim(grpoGroup.advantages.scalars[8..<12].allSatisfy { $0 == 0 },
              "prompt C (all rewards equal): every advantage is exactly 0 under each scaling")
chapter.claim(groupSums(grpoNone.advantages.scalars, size: groupSize).allSatisfy { abs($0) < 1e-15 },
              "scale none: the advantages of each group sum to 0")
chapter.claim(abs(grpoBatch.scales!.scalars[0] - 1.5 / 11.0.squareRoot()) < 1e-15,
              "batch std of nine 1s and three 0s: sqrt((9·(1/4)² + 3·(3/4)²)/11) = 1.5/sqrt(11)")

// MARK: 3. RLOO

chapter.heading("3. RLOO: r minus the mean of the others")
let rloo = chapter.must { try rlooAdvantages(rewards: rewards, groupSize: groupSize, beta: 0) }
var rlooTable = Table(["completion"] + names)
rlooTable.add(["others' mean"] + cells(rloo.baselines.scalars, 3))
rlooTable.add(["A, RLOO"] + cells(rloo.advantages.scalars, 3))
rlooTable.add(["G/(G-1)·(r - mean_g)"] + cells(grpoNone.advantages.scalars.map { $0 * 4 / 3 }, 3))
chapter.show(rlooTable)
chapter.say("""
A_n = r_n - (sum of the group - r_n)/(G - 1): the baseline leaves the completion itself out, so
it does not depend on r_n and the estimate is unbiased. Algebra: r - (S - r)/(G - 1) =
(G·r - S)/(G - 1) = G/(G - 1)·(r - S/G): RLOO is Dr. GRPO's centred reward times G/(G - 1) = 4/3.
TRL's RLOOTrainer puts beta·(summed k1 KL of the completion) inside r before the baseline
(default beta = 0.05); here beta = 0.
""")
chapter.claim(agree(rloo.advantages.scalars, grpoNone.advantages.scalars.map { $0 * 4 / 3 }, within: 1e-15),
              "RLOO = 4/3 · (r - group mean), completion by completion")
chapter.claim(groupSums(rloo.advantages.scalars, size: groupSize).allSatisfy { abs($0) < 1e-15 },
              "RLOO: the advantages of each group sum to 0")

// MARK: 4. OpenRLHF: the same baselines per token

chapter.heading("4. OpenRLHF: the same baselines, then one reward per token")
@MainActor func openRLHF(_ estimator: TokenAdvantageEstimator) -> TokenAdvantagesResult<Double> {
    chapter.must {
        try tokenAdvantages(rewards: rewards, kl: noKL, actionMask: actionMask, estimator: estimator,
                            nSamplesPerPrompt: groupSize, klCoef: 0)
    }
}
let groupNorm = openRLHF(.groupNorm), drGrpo = openRLHF(.drGrpo), openRloo = openRLHF(.rloo)
var shapedTable = Table(["completion"] + names)
shapedTable.add(["group_norm"] + cells(groupNorm.shapedRewards.scalars, 3))
shapedTable.add(["dr_grpo"] + cells(drGrpo.shapedRewards.scalars, 3))
shapedTable.add(["rloo"] + cells(openRloo.shapedRewards.scalars, 3))
chapter.show(shapedTable)
chapter.say("""
OpenRLHF shapes the scalar reward with the same three baselines (its shaped_rewards), clamps it
to [-10, 10], writes it on the answer's last token, and sums backwards with gamma forced to 1:
every action token of an answer gets the shaped reward as its advantage. group_norm is GRPO
with eps 1e-9 instead of TRL's 1e-4, dr_grpo is scale none, rloo is RLOO.
""")
let firstTokenAdvantage = { (result: TokenAdvantagesResult<Double>) in (0..<n).map { result.advantages[$0, 0] } }
chapter.claim(agree(groupNorm.shapedRewards.scalars, grpoGroup.advantages.scalars, within: 1e-3)
              && !agree(groupNorm.shapedRewards.scalars, grpoGroup.advantages.scalars, within: 1e-6),
              "group_norm and TRL's scale group differ only through the eps (1e-9 vs 1e-4): by < 1e-3")
chapter.claim(agree(drGrpo.shapedRewards.scalars, grpoNone.advantages.scalars, within: 0)
              && agree(openRloo.shapedRewards.scalars, rloo.advantages.scalars, within: 1e-15),
              "dr_grpo equals TRL's scale none, OpenRLHF's rloo equals TRL's RLOO")
chapter.claim(agree(firstTokenAdvantage(drGrpo), drGrpo.shapedRewards.scalars, within: 0),
              "with no KL and gamma 1, the advantage at an answer's first token is its shaped reward")

// MARK: 5. REINFORCE++

chapter.heading("5. REINFORCE++: no baseline, whitened over every answer token of the batch")
let reinforce = openRLHF(.reinforce)
let (mu, inverseStd) = reinforce.whitening!
var tokenTable = Table(["completion", "tokens"] + (0..<width).map { "A[t=\($0)]" })
for row in [0, 1, 2, 4, 6, 10] {
    tokenTable.add([names[row], String(lengths[row])] + (0..<width).map { t in
        (actionMask[row, t] == 1 ? "" : "(") + fmt(reinforce.advantages[row, t], 3)
            + (actionMask[row, t] == 1 ? "" : ")")
    })
}
chapter.show(tokenTable)
let tokenCount = lengths.reduce(0, +)
let tokenWeightedMean = zip(rewardList, lengths).reduce(0.0) { $0 + $1.0 * Double($1.1) } / Double(tokenCount)
chapter.say("""
REINFORCE++ (estimator reinforce) keeps the raw reward r on every answer token (gamma = 1), then
whitens over all \(tokenCount) answer tokens of the batch at once: mu = \(fmt(mu, 4)), 1/sigma = \
\(fmt(inverseStd, 4)) (biased
variance). The baseline is the batch's token-weighted mean reward, not the prompt's: a long right
answer pulls mu up more than a short one, and prompt C's answers, which GRPO leaves at 0, get
(1 - mu)/sigma > 0. In parentheses: masked positions past an answer's end. OpenRLHF whitens them
too and does not re-zero them, so they read -mu/sigma; the loss masks them later.
""")
let selected = (0..<n * width).filter { actionMask.scalars[$0] == 1 }
let maskedMean = selected.reduce(0.0) { $0 + reinforce.advantages.scalars[$1] } / Double(selected.count)
chapter.claim(abs(mu - tokenWeightedMean) < 1e-15,
              "mu is the token-weighted mean reward: Σ r·length / Σ length = \(fmt(tokenWeightedMean, 4))")
chapter.claim(abs(maskedMean) < 1e-15, "the whitened advantages have masked mean 0")
chapter.claim(abs(reinforce.advantages[2, 5] + mu * inverseStd) < 1e-15,
              "a masked position past the end holds -mu/sigma, not 0")
chapter.claim(agree(Array(firstTokenAdvantage(reinforce).suffix(4)), [Double](repeating: (1 - mu) * inverseStd, count: 4),
                    within: 1e-15) && (1 - mu) * inverseStd > 0,
              "prompt C's all-right answers get a positive advantage (GRPO gives them 0)")

// MARK: 6. Side by side

chapter.heading("6. The advantages side by side (at an answer's first token)")
var side = Table(["", "r", "GRPO grp", "GRPO bat", "Dr. GRPO", "RLOO", "grp_norm", "REINF++"],
                 leftAligned: [0])
for row in 0..<n {
    side.add([names[row], fmt(rewardList[row], 0), fmt(grpoGroup.advantages.scalars[row], 3),
              fmt(grpoBatch.advantages.scalars[row], 3), fmt(grpoNone.advantages.scalars[row], 3),
              fmt(rloo.advantages.scalars[row], 3), fmt(groupNorm.advantages[row, 0], 3),
              fmt(reinforce.advantages[row, 0], 3)])
}
chapter.show(side)
chapter.say("""
What each baseline and scaling does:
- group mean (GRPO, Dr. GRPO, group_norm, reinforce_baseline): each prompt is its own reference;
  advantages sum to 0 per group, and a prompt whose answers all score alike teaches nothing.
- leave-one-out (RLOO): the same ranking, scaled by G/(G - 1), and unbiased: the baseline never
  sees the completion it judges.
- group std (scale group, group_norm): makes every prompt's advantages unit-spread, so a prompt
  the policy nearly solved (B) pushes as hard as an uncertain one (A); Dr. GRPO drops it.
- batch std (scale batch): one spread for the batch, so prompts keep their relative loudness.
- REINFORCE++: no group at all; one token-weighted baseline and spread for the whole batch.
""")

// MARK: 7. Checked against the golden fixtures

chapter.heading("7. The stages on their golden fixtures")
@MainActor func groupAdvantagesOf(_ name: String) -> (Fixture, GroupAdvantagesResult<Double>) {
    let fixture = chapter.fixture("group_advantages/\(name)")
    return (fixture, chapter.must { try GroupAdvantagesStage.forward(chapter.arguments(fixture)) })
}
@MainActor func tokenAdvantagesOf(_ name: String) -> (Fixture, TokenAdvantagesResult<Double>) {
    let fixture = chapter.fixture("token_advantages/\(name)")
    return (fixture, chapter.must { try TokenAdvantagesStage.forward(chapter.arguments(fixture)) })
}
for name in ["grpo-hand-1001-f64", "grpo-batch-f64", "grpo-none-hand-1001-f64", "rloo-hand-1001-f64",
             "rloo-default-beta-f64"] {
    let (fixture, result) = groupAdvantagesOf(name)
    chapter.check("advantages", ours: result.advantages.scalars, against: fixture, digits: 5)
}
for name in ["group-norm-f64", "reinforce-one-token-equal-f64"] {
    let (fixture, result) = tokenAdvantagesOf(name)
    chapter.check("shaped_rewards", ours: result.shapedRewards.scalars, against: fixture, digits: 5)
    chapter.check("advantages", ours: result.advantages.scalars, against: fixture, digits: 5)
}
let rejected = chapter.fixture("group_advantages/error-group-size-zero")
chapter.checkRejects(rejected) { try GroupAdvantagesStage.forward(chapter.arguments(rejected)) }

// MARK: 8. From advantages to one loss: grpo_loss's reductions

chapter.heading("8. From advantages to one loss: five reductions, answers of 2, 5 and 12 tokens")
let answerLengths = [2, 5, 12], paddedWidth = 12, maxCompletionLength = 16
let answerNames = answerLengths.map { "n=\($0)" }
let reductions: [(type: GRPOLossType, normaliser: String)] = [
    (.grpo, "mean_b(Σ_t q·m / n_b)"), (.bnpo, "Σ q·m / N"), (.drGRPO, "Σ q·m / (B·L)"),
    (.dapo, "Σ q·m / num_items (N here)"), (.luspo, "mean over B·T of q·n_b"),
]
/// A [3, T] mask of answers of the given lengths, left-aligned.
@MainActor func answerMask(_ lengths: [Int]) -> Tensor<Int64> {
    Tensor<Int64>.make([lengths.count, paddedWidth], lengths.flatMap { l in (0..<paddedWidth).map { Int64($0 < l ? 1 : 0) } })
}
// Any log-probs will do: on-policy, the new ones equal the old ones, so ρ = exp(0) = 1.
let samplingLogProbs = Tensor.make([3, paddedWidth], (0..<3 * paddedWidth).map { -0.4 - 0.1 * Double($0 % 5) })
/// `grpo_loss` and its gradient with respect to the log-probs, on-policy, for one loss type.
@MainActor func reduced(_ type: GRPOLossType, advantages: [Double],
                        lengths: [Int] = answerLengths) -> (loss: Double, grad: Tensor<Double>) {
    let config = GRPOLossConfig(lossType: type, maxCompletionLength: maxCompletionLength)
    let (mask, advantageTensor) = (answerMask(lengths), Tensor.make([lengths.count], advantages))
    let loss = chapter.must {
        try grpoLoss(logProbs: samplingLogProbs, oldLogProbs: samplingLogProbs, advantages: advantageTensor,
                     mask: mask, config: config).loss
    }
    let grad = chapter.must {
        try grpoLossGradLogProbs(logProbs: samplingLogProbs, oldLogProbs: samplingLogProbs,
                                 advantages: advantageTensor, mask: mask, config: config)
    }
    return (loss, grad)
}
chapter.say("""
The advantages above are one number per answer. TRL's GRPOTrainer gives A_b to every token of
answer b, takes the clipped per-token loss q = -min(ρ·A, clip(ρ, 1-ε, 1+ε)·A) and reduces it to
one number; loss_type says how. Here B = 3 answers of n_b = 2, 5 and 12 tokens, padded to T = 12,
N = 19 answer tokens, max_completion_length L = \(maxCompletionLength), one process, GA = 1. On-policy
(the first step on fresh samples) log_probs = old_log_probs, so ρ = 1, the clip is idle and
q = -A_b on every position. The gradient is then ∂loss/∂log_prob[b,t] = -A_b·W[b,t], with
W[b,t] = ∂loss/∂q[b,t] the weight the reduction gives that token: the tables print W, read off
grpoLossGradLogProbs as the gradient divided by -A_b.
""")

chapter.say("""

Case 1, one sign: three wrong answers, each with advantage A = -1 (so q = 1 on every token).
""")
let wrongAdvantages: [Double] = [-1, -1, -1]
let oneSign = reductions.map { reduced($0.type, advantages: wrongAdvantages) }
/// W[b,t] = gradient / (-A_b) at one position.
func weight(_ grad: Tensor<Double>, _ advantages: [Double], _ b: Int, _ t: Int) -> Double { grad[b, t] / -advantages[b] }
// Derived by hand, with q = 1 on every position (the padding too):
// grpo mean_b(n_b/n_b) = 1; bnpo 19/19 = 1; dr_grpo 19/(3·16); dapo 19/19; luspo (2+5+12)·12/(3·12) = 19/3.
let lossesByHand: [Double] = [1, 1, 19.0 / 48, 1, 19.0 / 3]
var lossTable = Table(["loss_type", "reduction", "loss", "by hand"], leftAligned: [0, 1])
for (index, reduction) in reductions.enumerated() {
    lossTable.add([reduction.type.rawValue, reduction.normaliser, fmt(oneSign[index].loss, 4), fmt(lossesByHand[index], 4)])
}
chapter.show(lossTable)
var weightTable = Table(["loss_type"] + answerNames.map { "W, \($0)" } + ["2 : 12"] + answerNames.map { "Σ_t W, \($0)" } + ["W, padding"])
for (index, reduction) in reductions.enumerated() {
    let grad = oneSign[index].grad
    let perToken = (0..<3).map { weight(grad, wrongAdvantages, $0, 0) }
    let totals = (0..<3).map { b in (0..<paddedWidth).reduce(0.0) { $0 + weight(grad, wrongAdvantages, b, $1) } }
    weightTable.add([reduction.type.rawValue] + cells(perToken, 4) + [fmt(perToken[0] / perToken[2], 2)]
                    + cells(totals, 4) + [fmt(weight(grad, wrongAdvantages, 0, paddedWidth - 1), 4)])
}
chapter.show(weightTable)
chapter.say("""
W, n: what one token of the n-token answer weighs; 2 : 12, a token of the 2-token answer against
one of the 12-token answer; Σ_t W, the whole answer's weight (padding included); W, padding, the
weight of a position past the 2-token answer's end.
- grpo divides each answer by its own length first: every answer gets the same total weight 1/B,
  so a token of the 2-token answer weighs 12/2 = 6 times a token of the 12-token answer. For a
  wrong answer (A < 0) that means a long one is penalised 6 times less per token, and for a
  right one (A > 0) a short one is rewarded more per token: the length bias the Dr. GRPO paper
  (Liu et al. 2025, "Understanding R1-Zero-Like Training") blames for wrong answers that keep
  growing longer.
- bnpo and dapo divide the batch's sum by its token count: every token weighs 1/N = 1/19, and a
  longer answer weighs more in total because it has more tokens. They differ only across
  micro-batches: bnpo divides by the local count and by GA, dapo by num_items_in_batch, the
  active-token count of the whole accumulated batch across processes, and not by GA.
- dr_grpo divides by B·L, a constant: every token weighs 1/(3·16) = 1/48 whatever the lengths
  in the batch, so the loss is a plain sum over tokens, scaled (Dr. GRPO's fix).
- luspo multiplies each answer's loss by its length and averages over all B·T entries: a token's
  weight n_b/(B·T) grows with its answer's length (2 : 12 = 1/6), the opposite of grpo, and an
  answer's tokens together weigh n_b²/(B·T). At token level TRL applies no mask there, so each
  padding position weighs n_b/(B·T) too (Σ_t W = n_b/B with them): the loss counts them and the
  gradient reaches their log-probs.
""")
let oneSignWeights = { (index: Int, b: Int) in weight(oneSign[index].grad, wrongAdvantages, b, 0) }
let counts = answerLengths.map(Double.init)
chapter.claim(zip(oneSign.map(\.loss), lossesByHand).allSatisfy { abs($0 - $1) < 1e-12 },
              "each loss equals its value by hand (1, 1, 19/48, 1, 19/3)")
chapter.claim((0..<3).allSatisfy { abs(oneSignWeights(0, $0) * counts[$0] - 1.0 / 3) < 1e-15 },
              "grpo: W = 1/(B·n_b), proportional to 1/n_b: W·n_b = 1/3 for each answer")
chapter.claim([1, 3].allSatisfy { index in (0..<3).allSatisfy { abs(oneSignWeights(index, $0) - 1.0 / 19) < 1e-15 } },
              "bnpo and dapo: W = 1/N = 1/19 for every token of every answer")
chapter.claim((0..<3).allSatisfy { abs(oneSignWeights(2, $0) - 1.0 / 48) < 1e-15 },
              "dr_grpo: W = 1/(B·L) = 1/48 for every token of every answer")
chapter.claim((0..<3).allSatisfy { abs(oneSignWeights(4, $0) - counts[$0] / 36) < 1e-15 }
              && oneSignWeights(4, 0) < oneSignWeights(4, 1) && oneSignWeights(4, 1) < oneSignWeights(4, 2),
              "luspo: W = n_b/(B·T) = n_b/36, growing with the answer's length")
let paddingWeights = oneSign.map { result in
    (0..<3).flatMap { b in (answerLengths[b]..<paddedWidth).map { weight(result.grad, wrongAdvantages, b, $0) } }
}
chapter.claim(paddingWeights[0..<4].allSatisfy { $0.allSatisfy { $0 == 0 } }
              && abs(paddingWeights[4][0] - 2.0 / 36) < 1e-15 && paddingWeights[4].allSatisfy { $0 > 0 },
              "padding gets weight 0 under every reduction but luspo's (2/36 past the 2-token answer)")
let shorter = [GRPOLossType.bnpo, .drGRPO].map { reduced($0, advantages: wrongAdvantages, lengths: [2, 5, 8]) }
chapter.claim(abs(weight(shorter[0].grad, wrongAdvantages, 0, 0) - 1.0 / 15) < 1e-15
              && abs(weight(shorter[1].grad, wrongAdvantages, 0, 0) - 1.0 / 48) < 1e-15,
              "cut the 12-token answer to 8 tokens: bnpo's W moves from 1/19 to 1/15, dr_grpo's stays 1/48")


// MARK: 9. Mixed signs

chapter.heading("9. Mixed signs: two short right answers, one long wrong answer")
let mixedAdvantages: [Double] = [1, 1, -1]
let mixed = reductions.map { reduced($0.type, advantages: mixedAdvantages) }
chapter.say("""
Case 2, the same lengths with A = +1, +1, -1: right answers of 2 and 5 tokens, a wrong one of 12.
A gradient step moves log_prob[b,t] by -lr·∂loss/∂log_prob = lr·A_b·W[b,t]: the table prints
that push per unit of lr, for one token and summed over each answer (padding included).
""")
var mixedTable = Table(["loss_type", "loss"] + answerNames.map { "per token, \($0)" } + answerNames.map { "Σ_t, \($0)" })
for (index, reduction) in reductions.enumerated() {
    let push = { (b: Int, t: Int) in -mixed[index].grad[b, t] }
    mixedTable.add([reduction.type.rawValue, fmt(mixed[index].loss, 4)] + cells((0..<3).map { push($0, 0) }, 4)
                   + cells((0..<3).map { b in (0..<paddedWidth).reduce(0.0) { $0 + push(b, $1) } }, 4))
}
chapter.show(mixedTable)
chapter.say("""
grpo: each answer moves by the same total, 1/3, whatever its length; the loss, mean_b(-A_b) =
-1/3, does not see the lengths. So the 12-token wrong answer's tokens are each pushed down
only 1/36, a sixth of what a token of the 2-token right answer is pushed up.
bnpo, dapo, dr_grpo: every token is pushed by the same amount, so the 12 wrong tokens outweigh
the 7 right ones and the loss Σ(-A_b·n_b)/N = (-2 - 5 + 12)/19 = 5/19 is positive where grpo's
is negative. The sign of a GRPO loss says nothing by itself; only its gradient matters.
luspo: the wrong answer's tokens are pushed hardest (12/36 each), and its padding with them.
""")
chapter.claim(abs(mixed[0].loss + 1.0 / 3) < 1e-15 && abs(mixed[1].loss - 5.0 / 19) < 1e-15
              && abs(mixed[3].loss - 5.0 / 19) < 1e-15 && abs(mixed[2].loss - 5.0 / 48) < 1e-15,
              "losses by hand: grpo -1/3, bnpo = dapo = 5/19, dr_grpo = 5/48: grpo's sign differs")
chapter.claim((0..<3).allSatisfy { b in
                  abs((0..<paddedWidth).reduce(0.0) { $0 + mixed[0].grad[b, $1] } + mixedAdvantages[b] / 3) < 1e-15 },
              "grpo: each answer's summed gradient is -A_b/B, the same size for 2, 5 and 12 tokens")
chapter.claim([1, 2, 3].allSatisfy { index in
                  (0..<3).allSatisfy { b in abs(abs(mixed[index].grad[b, 0]) - abs(mixed[index].grad[0, 0])) < 1e-15 } },
              "bnpo, dr_grpo, dapo: |∂loss/∂log_prob| is the same for every answer token, right or wrong")
chapter.claim((0..<5).allSatisfy { index in
                  (0..<3).allSatisfy { b in
                      abs(weight(mixed[index].grad, mixedAdvantages, b, 0) - weight(oneSign[index].grad, wrongAdvantages, b, 0))
                          < 1e-15 } },
              "the weights W do not depend on the advantages' signs: the same as in case 1")

// MARK: 10. grpo_loss on its golden fixtures

chapter.heading("10. grpo_loss on its golden fixtures")
@MainActor func grpoLossOf(_ name: String) -> (Fixture, loss: Double, grad: Tensor<Double>) {
    let fixture = chapter.fixture("grpo_loss/\(name)")
    let a = chapter.arguments(fixture)
    let config = chapter.must { try GRPOLossStage.config(a) }
    let (logProbs, oldLogProbs) = chapter.must { (try a.float("log_probs"), try a.float("old_log_probs")) }
    let (advantages, mask) = chapter.must { (try a.float("advantages"), try a.mask("mask")) }
    let loss = chapter.must {
        try grpoLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                     config: config).loss
    }
    let grad = chapter.must {
        try grpoLossGradLogProbs(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages, mask: mask,
                                 config: config)
    }
    return (fixture, loss, grad)
}
chapter.say("""
The fixtures are off-policy (ρ ≠ 1, some clipped), three rows of different lengths, T = 5: the
loss of each reduction, and luspo's gradient, whose entry [1, 4] lies past row 1's end.
""")
for name in ["grpo-token-f64", "bnpo-token-f64", "dr_grpo-token-f64", "dapo-token-f64", "luspo-token-f64"] {
    let (fixture, loss, _) = grpoLossOf(name)
    chapter.check("loss", ours: loss, against: fixture, digits: 6)
}
let (luspoFixture, _, luspoGrad) = grpoLossOf("luspo-token-f64")
chapter.check("grad_log_probs", ours: luspoGrad, against: luspoFixture, digits: 5)
let luspoMask = chapter.intInput(luspoFixture, "mask")
chapter.claim(luspoMask[1, 4] == 0 && luspoGrad[1, 4] != 0,
              "luspo-token: the gradient at a masked position ([1, 4]) is not 0, in PyTorch as here")
let zeroLength = GRPOLossConfig(lossType: .drGRPO, maxCompletionLength: 0)
chapter.claim((try? grpoLoss(logProbs: samplingLogProbs, oldLogProbs: samplingLogProbs,
                             advantages: Tensor.make([3], wrongAdvantages), mask: answerMask(answerLengths),
                             config: zeroLength)) == nil,
              "dr_grpo with max_completion_length = 0 (a normaliser of 0) is refused, not a NaN")


chapter.finish()
