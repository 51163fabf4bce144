// Chapter 15 · Critic-free advantages: GRPO, Dr. GRPO, RLOO, REINFORCE++ and group_norm.
//
// Reads top to bottom: three groups of four completions written down here (one reward
// each, and each answer's length), handed to TRL's group advantages (`grpoAdvantages`
// with the three `scale_rewards`, `rlooAdvantages`) and to OpenRLHF's per-token
// estimators (`tokenAdvantages`: group_norm, dr_grpo, rloo, reinforce = REINFORCE++),
// the advantages side by side, then what each baseline and each scaling does, with
// checked claims, and the stages on their golden fixtures. The math is in
// Sources/CriticFreeAdvantages; this file only builds inputs, prints and checks.
// Run it with `make chapter N=15`.

import ChapterSupport
import CriticFreeAdvantages
import Golden
import TensorCore

let chapter = Chapter(number: 15, title: "Critic-free advantages: one group, six baselines")
chapter.say("""
PPO (chapters 04-07) needs a critic to say how good a state is. The critic-free methods
replace it with the other answers to the same prompt: sample G completions, score each, and
compare each score with its siblings'. They differ in the baseline (the group mean, or the
mean of the others) and in what, if anything, the difference is divided by.
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

// MARK: Later sections (grpo_loss's reductions) go here, before finish().

chapter.finish()
