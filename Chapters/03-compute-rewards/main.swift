// Chapter 03 · Rewards on a KL leash: compute_rewards.
//
// Reads top to bottom: the toy inputs, the KL penalty on every position, where the
// score lands (drawn on a strip of positions), rows of different lengths and a row
// that runs to full length, the clip, and an input the stage refuses. The math is
// `computeRewards(...)` and `scorePositions(actionMask:start:)` in
// Sources/ComputeRewards; this file only prints and checks. Run it with
// `make chapter N=3`.

import ChapterSupport
import ComputeRewards
import Golden
import TensorCore

let chapter = Chapter(number: 3, title: "Rewards on a KL leash: compute_rewards")
chapter.say("""
The reward model scores a whole answer with one number. PPO wants a reward per token.
compute_rewards builds it: a KL penalty on every token keeps the actor close to the reference
model, and the clipped score is added once, at the end of the answer. Where "the end" is, exactly,
is the subtle part.
""")

/// One compute_rewards fixture, read into the library's argument types.
struct RewardsInputs {
    let fixture: Fixture
    let logProbs: Tensor<Double>
    let refLogProbs: Tensor<Double>
    let rewardScore: Tensor<Double>
    let actionMask: Tensor<Int64>
    let promptLength: Int
    let klCtl: Double
    let clipRewardValue: Double
    var start: Int { promptLength - 1 }
    var rows: Int { logProbs.shape[0] }
    var positions: Int { logProbs.shape[1] }
}

@MainActor func load(_ path: String) -> RewardsInputs {
    let fixture = chapter.fixture(path)
    return RewardsInputs(fixture: fixture, logProbs: chapter.floatInput(fixture, "log_probs"),
                         refLogProbs: chapter.floatInput(fixture, "ref_log_probs"),
                         rewardScore: chapter.floatInput(fixture, "reward_score"),
                         actionMask: chapter.intInput(fixture, "action_mask"),
                         promptLength: chapter.intParam(fixture, "prompt_length"),
                         klCtl: chapter.realParam(fixture, "kl_ctl"),
                         clipRewardValue: chapter.realParam(fixture, "clip_reward_value"))
}

/// The library's rewards; with `zeroScore` every score is 0, which leaves the KL term alone.
@MainActor func rewards(_ inputs: RewardsInputs, zeroScore: Bool = false) -> Tensor<Double> {
    chapter.must {
        try computeRewards(logProbs: inputs.logProbs, refLogProbs: inputs.refLogProbs,
                           rewardScore: zeroScore ? Tensor(shape: [inputs.rows], repeating: 0) : inputs.rewardScore,
                           actionMask: inputs.actionMask, promptLength: inputs.promptLength,
                           klCtl: inputs.klCtl, clipRewardValue: inputs.clipRewardValue)
    }
}

/// What token position t scores (token t + 1): P prompt, A answer, . pad.
func role(_ mask: Tensor<Int64>, _ row: Int, _ t: Int, start: Int) -> String {
    mask[row, t] == 0 ? "." : (t < start ? "P" : "A")
}

/// A strip of positions, one row per batch row; the score's position is in brackets.
func strip(_ inputs: RewardsInputs, landing: [Int]) -> Table {
    var table = Table(["row"] + (0..<inputs.positions).map { "t=\($0)" } + ["n", "t*"])
    for b in 0..<inputs.rows {
        let cells = (0..<inputs.positions).map { t in
            let token = role(inputs.actionMask, b, t, start: inputs.start)
            return t == landing[b] ? "[\(token)]" : token
        }
        let answerLength = (inputs.start..<inputs.positions).reduce(0) { $0 + Int(inputs.actionMask[b, $1]) }
        table.add(["b=\(b)"] + cells + [String(answerLength), String(landing[b])])
    }
    return table
}

// MARK: 1. Inputs

chapter.heading("1. Inputs")
let toy = load("compute_rewards/peer-toy-f64")
chapter.say("""
The toy of the reference notes (GoldenData/compute_rewards/peer-toy-f64.json): one sequence of
L = 7 tokens x_0..x_6, prompt x_0-x_1, answer x_2-x_4, pads x_5-x_6. Rewards live in log-prob
coordinates, N = L - 1 = 6 positions, where position t scores token x_{t+1}. So
action_mask = attention_mask[:, 1:] and start = prompt_length - 1 = \(toy.start) is the first answer
position. kl_ctl = \(fmt(toy.klCtl, 2)), clip_reward_value = \(fmt(toy.clipRewardValue, 1)), reward_score = \
\(fmt(toy.rewardScore.scalars[0], 1)).
""")
chapter.show("log_probs", toy.logProbs)
chapter.show("ref_log_probs", toy.refLogProbs)
chapter.show("action_mask", toy.actionMask)

// MARK: 2. The KL penalty

chapter.heading("2. The KL penalty, on every position")
chapter.say("""
  kl_t      = -kl_ctl * (log_probs_t - ref_log_probs_t)   on every t: prompt, answer and pads
  rewards_t = kl_t, then rewards_{t*} += clip(score, -clip_reward_value, clip_reward_value)
The KL column below is the library run with the score set to 0; the last column is the real run.
""")
let toyKL = rewards(toy, zeroScore: true)
let toyRewards = rewards(toy)
let tokenNames = ["P", "A", "A", "A", "pad", "pad"]
var klTable = Table(["t", "scores", "m_t", "log_probs", "ref", "d_t = lp - ref", "kl_t", "rewards_t"])
for t in 0..<toy.positions {
    klTable.add([String(t), "x_\(t + 1) \(tokenNames[t])", String(toy.actionMask[0, t]),
                 fmt(toy.logProbs[0, t]), fmt(toy.refLogProbs[0, t]),
                 fmt(toy.logProbs[0, t] - toy.refLogProbs[0, t]), fmt(toyKL[0, t]), fmt(toyRewards[0, t])])
}
chapter.show(klTable)
chapter.say("""
Where the actor likes its token more than the reference does (d_t > 0) the token pays; where it
likes it less (t = 2, d = -0.2) the token earns a bonus of 0.02. One sampled token's d_t is a
one-sample estimate of KL(actor || ref): it can be negative, only its average cannot. The pad at
t = 5 gets a KL term too (0.04): compute_rewards masks nothing, train_rlhf zeroes it afterwards
(chapter 04). The two columns differ at one position only: t = 4, where the score 1.0 was added.
""")

// MARK: 3. Where the score lands

chapter.heading("3. Where the score lands")
let toyLanding = scorePositions(actionMask: toy.actionMask, start: toy.start)
let toyAnswer = (toy.start..<toy.positions).reduce(0) { $0 + Int(toy.actionMask[0, $1]) }
chapter.say("""
  n   = sum_{t >= start} action_mask_t = \(toyAnswer) answer tokens
  end = start + n + 1 = \(toy.start + toyAnswer + 1)
  rewards[start:end][-1] += clipped score   ->   t* = min(end, N) - 1 = \(toyLanding[0])
""")
var toyStrip = Table(["position t"] + (0..<toy.positions).map { String($0) })
toyStrip.add(["scores token"] + (0..<toy.positions).map { "x_\($0 + 1)" })
toyStrip.add(["token is"] + tokenNames)
toyStrip.add(["action_mask m_t"] + (0..<toy.positions).map { String(toy.actionMask[0, $0]) })
toyStrip.add(["KL term"] + (0..<toy.positions).map { _ in "kl" })
toyStrip.add(["score, DeepSpeed-Chat"] + (0..<toy.positions).map { $0 == toyLanding[0] ? "S" : "" })
// The peers' rule (an illustration): the last position whose mask is 1.
let peerLanding = (0..<toy.positions).last { toy.actionMask[0, $0] == 1 }!
toyStrip.add(["score, AA and OR (*)"] + (0..<toy.positions).map { $0 == peerLanding ? "S" : "" })
chapter.show(toyStrip)
chapter.say("""
t* = \(toyLanding[0]) is the action that emits x_5, the first pad: the end-of-sequence token when pad == eos.
The last answer token x_4 was emitted at t = 3, so DeepSpeed-Chat's score sits one position past
the last answer action, outside the mask m[start:] that the losses use (chapters 05, 06). The
code reads as "the last answer token" because start + n = 4 IS x_4's index among the tokens;
the rewards are indexed by log-prob position, one step shifted.

(*) An illustration, not a fixture: align-anything and OpenRLHF score the last position with
m_t = 1, t = \(peerLanding), the action that emits x_4. On this toy (peer-conventions, section 11), with the
pads zeroed, rewards r_1..r_5 are [-0.01, 0.02, 0.97, 0, 0] for them against DeepSpeed-Chat's
[-0.01, 0.02, -0.03, 0.95, 0], and GAE gives A = [0.4187, 0.5565, 0.67, 0, 0] against
[0.3397, 0.4734, 0.5825, 0.75, 0] (chapter 04).
""")
chapter.check("rewards", ours: toyRewards, against: toy.fixture)

// MARK: 4. Rows of different lengths, a full-length row, a hole

chapter.heading("4. Rows of different lengths, a full-length row, a hole in the mask")
chapter.say("""
Strips in log-prob coordinates: each cell is the token that position scores (P prompt, A answer,
. pad), and [ ] marks t*, where the score lands. n = answer tokens counted from start.
""")
let padded = load("compute_rewards/padded-answers-f64")
let paddedLanding = scorePositions(actionMask: padded.actionMask, start: padded.start)
chapter.say("""

Right-padded answers of 2, 4 and 5 tokens (GoldenData/compute_rewards/padded-answers-f64.json,
start = \(padded.start)): every score lands on the first pad after its answer, t* = start + n.
""")
chapter.show(strip(padded, landing: paddedLanding))
chapter.check("rewards", ours: rewards(padded), against: padded.fixture)

let full = load("compute_rewards/full-length-row-f64")
let fullLanding = scorePositions(actionMask: full.actionMask, start: full.start)
let fullAnswer = (full.start..<full.positions).reduce(0) { $0 + Int(full.actionMask[0, $1]) }
chapter.say("""

A row that runs to full length (GoldenData/compute_rewards/full-length-row-f64.json, start = \(full.start)):
""")
chapter.show(strip(full, landing: fullLanding))
chapter.say("""
Row 0 has no pad after its answer: end = start + n + 1 = \(full.start + fullAnswer + 1) is past N = \(full.positions), the slice
rewards[0, start:end] stops at N, and [-1] picks t* = N - 1 = \(fullLanding[0]), the action that emits the last
answer token. Only here does DeepSpeed-Chat agree with align-anything and OpenRLHF. Row 1, padded,
lands one past its answer as usual.
""")
chapter.check("rewards", ours: rewards(full), against: full.fixture)

let hole = load("compute_rewards/mask-with-hole-f64")
let holeLanding = scorePositions(actionMask: hole.actionMask, start: hole.start)
chapter.say("""

A 0 inside an answer (GoldenData/compute_rewards/mask-with-hole-f64.json, start = \(hole.start)): n counts
ones, not positions, so the hole in row 0 pulls t* one step back, onto the last answer action.
""")
chapter.show(strip(hole, landing: holeLanding))
chapter.check("rewards", ours: rewards(hole), against: hole.fixture)

// MARK: 5. The clip

chapter.heading("5. The clip: the score, not the reward")
let clipped = load("compute_rewards/score-clipped-f64")
let clippedKL = rewards(clipped, zeroScore: true)
let clippedRewards = rewards(clipped)
let clippedLanding = scorePositions(actionMask: clipped.actionMask, start: clipped.start)
chapter.say("""
GoldenData/compute_rewards/score-clipped-f64.json: scores +7 and -7 past the bound, 4.5 inside it
and -5 on it, clip_reward_value = \(fmt(clipped.clipRewardValue, 1)). The score is clamped before it is added:
""")
var clipTable = Table(["row", "reward_score", "t*", "added at t*", "kl_t*", "rewards_t*"])
for b in 0..<clipped.rows {
    let t = clippedLanding[b]
    clipTable.add(["b=\(b)", fmt(clipped.rewardScore.scalars[b]), String(t),
                   fmt(clippedRewards[b, t] - clippedKL[b, t]), fmt(clippedKL[b, t]), fmt(clippedRewards[b, t])])
}
chapter.show(clipTable)
chapter.say("""
"added at t*" is rewards minus the KL-only run: the clamped score. The KL term is not clamped,
so row 1's reward at t* is -5.04, past the bound. The clip stops a reward model's outliers, not
the KL term. (align-anything clamps the whole per-token reward to +-50 instead; OpenRLHF clamps
the score to +-10.)
""")
chapter.check("rewards", ours: clippedRewards, against: clipped.fixture)

// MARK: 6. What it refuses

chapter.heading("6. An input it refuses")
let poisoned = load("compute_rewards/error-nan-reward-score")
let poisonedLanding = scorePositions(actionMask: poisoned.actionMask, start: poisoned.start)
chapter.say("""
GoldenData/compute_rewards/error-nan-reward-score.json: row 1's score is NaN. The clip does not
catch it: clamp(NaN, -5, 5) is NaN, PyTorch adds it at t* = \(poisonedLanding[1]), and GAE carries it back
to every answer token of the row. The library refuses a NaN in any float input instead.
""")
chapter.checkRejects(poisoned.fixture) {
    try computeRewards(logProbs: poisoned.logProbs, refLogProbs: poisoned.refLogProbs,
                       rewardScore: poisoned.rewardScore, actionMask: poisoned.actionMask,
                       promptLength: poisoned.promptLength, klCtl: poisoned.klCtl,
                       clipRewardValue: poisoned.clipRewardValue)
}

chapter.finish()
