// Chapter 07 · One PPO step: DeepSpeed-Chat's train_rlhf, shape by shape.
//
// Reads top to bottom: the rollout batch, the masks and where each answer ends,
// the rewards before and after the zeroing, the zeroed values, GAE from start,
// the answer-part slices that feed the two losses, the six outputs beside
// PyTorch's, the trailing position of PR #672, and a batch the step rejects.
// The math is `ppoLosses(...)` in Sources/PPOStep (it chains compute_rewards,
// gae, actor_loss and critic_loss); this file only prints and checks.
// Run it with `make chapter N=7`.

import ChapterSupport
import ComputeRewards
import Golden
import PPOStep
import TensorCore

let chapter = Chapter(number: 7, title: "One PPO step: train_rlhf, shape by shape")
chapter.say("""
Chapters 03 to 06 ran one stage each. DeepSpeed-Chat's train_rlhf chains them on one rollout
batch: rewards with a KL penalty, zeroing past each answer's end, GAE, then the actor and critic
losses on the answer part only. Here is that data flow on one small batch, every tensor printed.
""")

/// `ppoLosses` on a fixture's inputs and params, through its stage adapter.
@MainActor func ppoStep(_ fixture: Fixture) throws(StageError) -> PPOLossesResult<Double> {
    do {
        return try PPOLossesStage.forward(chapter.arguments(fixture))
    } catch let error as StageError {
        throw error
    } catch {
        return chapter.must { throw error }  // a fixture the chapter cannot read ends it with the message
    }
}

/// Columns `[from...]` of a rank-2 tensor: PyTorch's `x[:, from:]`, for printing.
func columns<S>(_ x: Tensor<S>, from first: Int) -> Tensor<S> {
    let rows = x.shape[0], width = x.shape[1] - first
    return Tensor.make([rows, width], (0..<rows).flatMap { x.row($0).dropFirst(first) })
}

/// Two [B, N] tensors row by row, each row before and after a step, in one table.
func beforeAfter(_ name: String, _ before: Tensor<Double>, _ after: Tensor<Double>) -> Table {
    let columns = before.shape[1]
    var table = Table(["\(name) \(describe(shape: before.shape))"] + (0..<columns).map { "t=\($0)" })
    for b in 0..<before.shape[0] {
        table.add(["b=\(b) before"] + (0..<columns).map { fmt(before[b, $0], 3) })
        table.add(["b=\(b) after"] + (0..<columns).map { fmt(after[b, $0], 3) })
    }
    return table
}

// MARK: 1. The batch

chapter.heading("1. The batch: what generate_experience hands to train_rlhf")
let batch = chapter.fixture("ppo_losses/left-padded-prompts-f64")
let attentionMask = chapter.intInput(batch, "attention_mask")
let logProbs = chapter.floatInput(batch, "log_probs")
let refLogProbs = chapter.floatInput(batch, "ref_log_probs")
let values = chapter.floatInput(batch, "values")
let newLogProbs = chapter.floatInput(batch, "new_log_probs")
let newValues = chapter.floatInput(batch, "new_values")
let rewardScore = chapter.floatInput(batch, "reward_score")
let promptLength = chapter.intParam(batch, "prompt_length")
let klCtl = chapter.realParam(batch, "kl_ctl"), clipReward = chapter.realParam(batch, "clip_reward_value")
let batchSize = attentionMask.shape[0], length = attentionMask.shape[1], positions = length - 1
let leftPads = (0..<batchSize).map { b in (0..<promptLength).filter { attentionMask[b, $0] == 0 }.count }
let answerTokens = (0..<batchSize).map { b in (promptLength..<length).filter { attentionMask[b, $0] == 1 }.count }
chapter.say("""
GoldenData/ppo_losses/left-padded-prompts-f64.json: B = \(batchSize) sequences of L = \(length) tokens.
Every prompt is P = prompt_length = \(promptLength) tokens wide, left-padded with \(list(leftPads)) pads;
the answers have \(list(answerTokens)) tokens, right-padded. Row 1 runs to the full length L, with
no pad after its answer.
""")
chapter.show("attention_mask", attentionMask)
chapter.say("""
The rollout also gives, for each of the N = L - 1 = \(positions) log-prob positions (position t scores
token t + 1): log_probs and ref_log_probs (actor and reference, chapter 01) and values (the
critic's V_t, already cut to values[:, :-1]), each [\(batchSize), \(positions)]; and one score per row from
the reward model (chapter 02): reward_score [\(batchSize)] = \(list(rewardScore.scalars)).
Params: kl_ctl = \(fmt(klCtl, 2)), clip_reward_value = \(fmt(clipReward, 1)), \
cliprange = \(fmt(chapter.realParam(batch, "cliprange"), 2)), \
cliprange_value = \(fmt(chapter.realParam(batch, "cliprange_value"), 2)),
gamma = \(fmt(chapter.realParam(batch, "gamma"), 2)), lambda = \(fmt(chapter.realParam(batch, "lambda"), 2)).
""")

let step = chapter.must { try ppoStep(batch) }
let start = step.start, width = positions - start

// MARK: 2. Masks, start and ends

chapter.heading("2. action_mask, start and where each answer ends")
chapter.say("""
  action_mask = attention_mask[:, 1:]                 [B, N]: 1 where position t's target is real
  start       = prompt_length - 1 = \(start)                 the first position that scores an answer token
  n[b]        = sum(action_mask[b, start:])           answer tokens of row b
  ends[b]     = start + n[b] + 1                      the zeroing starts here
""")
chapter.show("action_mask", step.actionMask)
chapter.say("""
The left pads of the prompt show up as zeros before start; they are never read by GAE or the
losses, which all begin at start. The answer part, action_mask[:, start:], is the loss mask:
""")
let lossMask = columns(step.actionMask, from: start)
chapter.show("action_mask[:, \(start):]", lossMask, firstColumn: start)
let scoreAt = scorePositions(actionMask: step.actionMask, start: start)
var endsTable = Table(["row b", "left pads", "n[b]", "ends[b]", "score lands at t*", "zeroed from"])
for b in 0..<batchSize {
    endsTable.add([String(b), String(leftPads[b]), String(step.ends[b] - start - 1), String(step.ends[b]),
                   String(scoreAt[b]), step.ends[b] < positions ? "t = \(step.ends[b])" : "nothing (ends >= N)"])
}
chapter.show(endsTable)
chapter.say("""
t* = min(ends, N) - 1 = start + n: one past the last answer token's position, the action whose
target is the first pad (the EOS when pad == eos). Row 1 has no pad: ends = \(step.ends[1]) > N = \
\(positions), its
score lands on the last position, t = \(positions - 1), and nothing is zeroed.
""")

// MARK: 3. Rewards

chapter.heading("3. Rewards: compute_rewards, then zeroed from ends")
let unzeroed = chapter.must {
    try computeRewards(logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: rewardScore,
                       actionMask: step.actionMask, promptLength: promptLength, klCtl: klCtl,
                       clipRewardValue: clipReward)
}
let klOnly = chapter.must {
    try computeRewards(logProbs: logProbs, refLogProbs: refLogProbs,
                       rewardScore: Tensor(shape: [batchSize], repeating: 0.0),
                       actionMask: step.actionMask, promptLength: promptLength, klCtl: klCtl,
                       clipRewardValue: clipReward)
}
chapter.say("""
compute_rewards puts -kl_ctl * (log_probs - ref_log_probs) on every position, prompt and pads
included, and adds the clipped score at t*:
""")
var scoreTable = Table(["row b", "t*", "KL term at t*", "+ clipped score", "= rewards[b, t*]"])
for b in 0..<batchSize {
    let t = scoreAt[b]
    scoreTable.add([String(b), String(t), fmt(klOnly[b, t]), fmt(unzeroed[b, t] - klOnly[b, t]),
                    fmt(unzeroed[b, t])])
}
chapter.show(scoreTable)
chapter.say("""
(The KL column is computeRewards with every score set to 0; all three scores are inside
+-\(fmt(clipReward, 0)), so the clip changes nothing here.) Then train_rlhf zeroes rewards[b, ends[b]:].
"before" is computeRewards alone, "after" is what ppoLosses hands to GAE:
""")
chapter.show(beforeAfter("rewards", unzeroed, step.rewards))
chapter.say("""
Rows 0 and 2 lose their tails (t >= 8 and t >= 7; row 2's KL term at t = 7 is -0.0005, which
prints as 0.000); the score at t* survives, since ends is one past it. Row 1 keeps every position.
""")

// MARK: 4. Old values

chapter.heading("4. old_values: the rollout values, zeroed from ends")
chapter.say("""
old_values = values (in DeepSpeed-Chat the same tensor, not a copy), and old_values[b, ends[b]:]
is zeroed with the rewards, so GAE bootstraps from 0 after the end:
""")
chapter.show(beforeAfter("values", values, step.oldValues))

// MARK: 5. GAE

chapter.heading("5. GAE from start: advantages and returns, [B, N - start]")
chapter.say("""
gae(old_values, rewards, start) runs t = N-1 down to start = \(start) (chapter 04) and returns only
the answer columns, M = N - start = \(width) of them. Columns are labelled in log-prob coordinates:
""")
chapter.show("advantages", step.advantages, firstColumn: start)
chapter.show("returns", step.returns, firstColumn: start)
chapter.say("""
returns = advantages + old_values[:, start:], from the raw advantages: no whitening.
""")

// MARK: 6. The two losses

chapter.heading("6. The losses, on the answer part [:, start:] only")
chapter.say("""
  actor_loss  = actor_loss_fn(new_log_probs[:, \(start):], log_probs[:, \(start):],
                              advantages, action_mask[:, \(start):])
  critic_loss = critic_loss_fn(new_values[:, \(start):], old_values[:, \(start):],
                               returns, action_mask[:, \(start):])
Every tensor going in is [B, M] = [\(batchSize), \(width)]. new_log_probs and new_values come from \
the second
forward of the actor and critic inside train_rlhf (in the fixture: the rollout's numbers plus
noise, so the ratio is not 1 and the clips have work to do). The actor, token by token:
""")
let eps = chapter.realParam(batch, "cliprange"), epsValue = chapter.realParam(batch, "cliprange_value")
var actorTable = Table(["b, t", "mask", "new logp", "old logp", "ratio", "A_t", "token loss", "max picks"],
                       leftAligned: [0, 7])
for b in 0..<batchSize {
    for t in start..<positions {
        let j = t - start, ratio = step.actor.ratios[b, j], advantage = step.advantages[b, j]
        let loss = step.actor.tokenLosses[b, j]
        let picks = lossMask[b, j] == 0 ? "(masked)" : loss == -advantage * ratio ? "-A * ratio" : "-A * clip(ratio)"
        actorTable.add(["\(b), \(t)", String(lossMask[b, j]), fmt(newLogProbs[b, t]), fmt(logProbs[b, t]),
                        fmt(ratio), fmt(advantage), fmt(loss), picks])
    }
}
chapter.show(actorTable, maximumRows: batchSize * width)
chapter.say("""
Where max picks the clipped term the token gives no gradient: the ratio has already moved past
1 +- \(fmt(eps, 1)) in the direction A rewards. Masked positions get ratio exp(0) = 1 (the log-ratio is
multiplied by the mask before exp) and drop out of the sum.
actor_loss = the mean of the \(step.actor.tokenCount) kept token losses = \(fmt(step.actor.loss, 6)).

The critic, token by token: V is clipped to V_old +- \(fmt(epsValue, 1)), and max keeps the larger
squared error:
""")
var criticTable = Table(["b, t", "mask", "V new", "V old", "V clipped", "R_t", "max sq. error", "max picks"],
                        leftAligned: [0, 7])
for b in 0..<batchSize {
    for t in start..<positions {
        let j = t - start, value = newValues[b, t], target = step.returns[b, j]
        let loss = step.critic.tokenLosses[b, j]
        let picks = lossMask[b, j] == 0 ? "(masked)"
            : loss == (value - target) * (value - target) ? "(V - R)^2" : "(V clipped - R)^2"
        criticTable.add(["\(b), \(t)", String(lossMask[b, j]), fmt(value), fmt(step.oldValues[b, t]),
                         fmt(step.critic.clippedValues[b, j]), fmt(target), fmt(loss), picks])
    }
}
chapter.show(criticTable, maximumRows: batchSize * width)
chapter.say("""
Where max picks the clipped error, V has moved more than \(fmt(epsValue, 1)) from V_old toward R \
already and gets
no gradient. In the masked tail of rows 0 and 2 old_values are 0, so the squared errors are
large; none of them reaches the loss.
critic_loss = 0.5 * the mean of the \(step.critic.tokenCount) kept squared errors = \(fmt(step.critic.loss, 6)).
""")

// MARK: 7. Checked against PyTorch

chapter.heading("7. Every output beside PyTorch's")
chapter.check("rewards", ours: step.rewards, against: batch)
chapter.check("old_values", ours: step.oldValues, against: batch)
chapter.check("advantages", ours: step.advantages, against: batch)
chapter.check("returns", ours: step.returns, against: batch)
chapter.check("actor_loss", ours: step.actor.loss, against: batch)
chapter.check("critic_loss", ours: step.critic.loss, against: batch)

// MARK: 8. The trailing position

chapter.heading("8. The trailing position (DeepSpeedExamples PR #672)")
chapter.say("""
Because ends = start + n + 1 is one past t*, the reward and value at t* survive the zeroing and
GAE gives t* an advantage. But the loss mask action_mask[:, start:] is 0 there for a padded
answer: a row of n answer tokens ends up with n + 1 non-zero advantages, one of which no loss
ever reads. PR #672 proposed zeroing from t* instead; a maintainer answered that only the pad
is special in step 2's reward loss (the EOS is scored there), and the code still zeroes from
start + n + 1.
""")
var trailing = Table(["row b", "n[b]", "t*", "mask at t*", "rewards[t*]", "V_old[t*]", "A[t*]",
                      "non-zero A"])
for b in 0..<batchSize {
    let t = scoreAt[b], j = t - start
    let nonZero = (0..<width).filter { step.advantages[b, $0] != 0 }.count
    trailing.add([String(b), String(answerTokens[b]), String(t), String(lossMask[b, j]), fmt(step.rewards[b, t]),
                  fmt(step.oldValues[b, t]), fmt(step.advantages[b, j]), String(nonZero)])
}
chapter.show(trailing)
/// `a + b - c ...` with each term's sign as its operator.
func signed(_ terms: [Double]) -> String {
    terms.enumerated().map { i, x in
        i == 0 ? fmt(x) : (x < 0 ? "- " : "+ ") + fmt(abs(x))
    }.joined(separator: " ")
}
let gammaValue = chapter.realParam(batch, "gamma"), lambdaValue = chapter.realParam(batch, "lambda")
let tStar = scoreAt[0], last = tStar - 1
let pieces = [step.rewards[0, last], -step.oldValues[0, last], gammaValue * lambdaValue * step.rewards[0, tStar],
              gammaValue * (1 - lambdaValue) * step.oldValues[0, tStar]]
chapter.say("""
Rows 0 and 2: the score sits outside the mask and reaches the last answer token, t* - 1, only
through GAE. With nothing after t* (A_{t*} = r_{t*} - V_{t*}):
  A_{t*-1} = r_{t*-1} - V_{t*-1} + gamma*lambda * r_{t*} + gamma*(1 - lambda) * V_{t*}
The score arrives discounted by gamma*lambda, and V_{t*}, at a position the critic loss never
trains, leaks in with weight gamma*(1 - lambda). Row 0, t* = \(tStar):
  A_\(last) = \(signed(pieces)) = \(fmt(pieces.reduce(0, +))), the advantage GAE gave above
  (a cross-check on the library's output, not a fixture).
Row 1 (no padding): t* is the last answer token itself, inside the mask; n non-zero advantages.
""")

// MARK: 9. A batch the step rejects

chapter.heading("9. A batch with no answer token at all")
chapter.say("""
If every row's answer is empty, action_mask[:, start:] is all zeros and both token-means would be
0/0 = NaN in PyTorch. ppoLosses throws instead (a single empty row next to others is fine):
""")

/// The library's error, its message wrapped to fit the page.
struct Wrapped: Error, CustomStringConvertible {
    let error: any Error
    var description: String {
        var lines = [String](), line = ""
        for word in String(describing: error).split(separator: " ") {
            if !line.isEmpty, line.count + word.count + 1 > 88 { lines.append(line); line = "" }
            line += (line.isEmpty ? "" : " ") + word
        }
        return (lines + [line]).joined(separator: "\n    ")
    }
}
let empty = chapter.fixture("ppo_losses/error-empty-answer-mask")
chapter.show("attention_mask (prompt_length \(chapter.intParam(empty, "prompt_length")))",
             chapter.intInput(empty, "attention_mask"))
print("")
chapter.checkRejects(empty) {
    do { return try ppoStep(empty) } catch { throw Wrapped(error: error) }
}

chapter.finish()
