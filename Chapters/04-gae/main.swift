// Chapter 04 · GAE: advantages from a backward recursion.
//
// Reads top to bottom: the inputs, the recursion one position at a time, the
// result beside PyTorch's, then λ = 0 and λ = 1 as the two ends. The math is
// `gae(values:rewards:start:gamma:lambda:)` in Sources/GAE; this file only
// prints and checks. Run it with `make chapter N=4`.

import ChapterSupport
import GAE
import TensorCore

let chapter = Chapter(number: 4, title: "GAE: advantages from a backward recursion")
chapter.say("""
PPO asks, for every answer token: was this action better or worse than the critic expected?
GAE answers with the advantage A_t, a discounted sum of TD errors, computed backwards.
""")

// MARK: 1. Inputs

chapter.heading("1. Inputs")
let toy = chapter.fixture("gae/peer-toy-f64")
let values = chapter.floatInput(toy, "values")
let rewards = chapter.floatInput(toy, "rewards")
let start = chapter.intParam(toy, "start")
let gamma = chapter.realParam(toy, "gamma")
let lambda = chapter.realParam(toy, "lambda")
chapter.say("""
DeepSpeed-Chat's toy (GoldenData/gae/peer-toy-f64.json): one sequence of L = 7 tokens, prompt at
0-1, answer at 2-4, pads at 5-6. In log-prob coordinates (N = 6) the answer starts at
start = prompt_length - 1 = \(start). The rewards come from compute_rewards (a KL penalty on every
token, the score 1.0 added at t = 4) and were zeroed from end = 5 on, as were the values.
gamma = \(fmt(gamma, 2)), lambda = \(fmt(lambda, 2)).
""")
chapter.show("rewards", rewards)
chapter.show("values", values)

// MARK: 2. The recursion

chapter.heading("2. The recursion, from t = N - 1 down to start")
chapter.say("""
  delta_t = r_t + gamma * V_{t+1} - V_t          (V_N = 0: nothing after the last column)
  A_t     = delta_t + gamma * lambda * A_{t+1}   (A_N = 0)
  R_t     = A_t + V_t                            (the critic's regression target)
""")
let result = chapter.must { try gae(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda) }
let positions = values.shape[1]
var recursion = Table(["t", "r_t", "V_t", "V_t+1", "delta_t", "A_t", "R_t"])
for t in stride(from: positions - 1, through: start, by: -1) {
    let column = t - start
    recursion.add([String(t), fmt(rewards[0, t]), fmt(values[0, t]),
                   t + 1 < positions ? fmt(values[0, t + 1]) : "0 (end)",
                   fmt(result.deltas[0, column]), fmt(result.advantages[0, column]), fmt(result.returns[0, column])])
}
chapter.show(recursion)
chapter.say("""
Read it bottom-up in time: at t = 4 the score arrives (r_4 = 0.95) and A_4 = 0.75. Each earlier
position adds its own TD error to lambda times the advantage after it, so the good news at the
end flows back, shrinking by gamma * lambda = \(fmt(gamma * lambda, 2)) per step.
""")

// MARK: 3. Checked against PyTorch

chapter.heading("3. The result beside PyTorch's")
chapter.check("advantages", ours: result.advantages, against: toy)
chapter.check("returns", ours: result.returns, against: toy)

// MARK: 4. The two ends of lambda

chapter.heading("4. The two ends of lambda")
chapter.say("""
lambda trades bias for variance. lambda = 0 keeps only the one-step TD error: A_t = delta_t, low
variance, but it trusts the critic fully. lambda = 1 (with gamma = 1) sums every reward to the end
and subtracts V_t: A_t = sum_{k>=t} r_k - V_t, the Monte-Carlo return, unbiased but noisy.
""")
let lambdaZero = chapter.fixture("gae/lambda-0-f64")
let zero = chapter.must {
    try gae(values: chapter.floatInput(lambdaZero, "values"), rewards: chapter.floatInput(lambdaZero, "rewards"),
            start: chapter.intParam(lambdaZero, "start"), gamma: chapter.realParam(lambdaZero, "gamma"), lambda: 0)
}
chapter.say("lambda = 0 (GoldenData/gae/lambda-0-f64.json): every advantage equals its TD error.")
var tdTable = Table(["row b, t", "delta_t", "A_t"])
for i in 0..<zero.advantages.count {
    let index = zero.advantages.index(ofFlat: i)
    tdTable.add(["\(index[0]), \(index[1] + chapter.intParam(lambdaZero, "start"))",
                 fmt(zero.deltas.scalars[i]), fmt(zero.advantages.scalars[i])])
}
chapter.show(tdTable, maximumRows: 8)
chapter.check("advantages", ours: zero.advantages, against: lambdaZero)

let lambdaOne = chapter.fixture("gae/lambda-1-f64")
let oneValues = chapter.floatInput(lambdaOne, "values"), oneRewards = chapter.floatInput(lambdaOne, "rewards")
let oneStart = chapter.intParam(lambdaOne, "start"), oneGamma = chapter.realParam(lambdaOne, "gamma")
let one = chapter.must { try gae(values: oneValues, rewards: oneRewards, start: oneStart, gamma: oneGamma, lambda: 1) }
chapter.say("""
lambda = 1, gamma = \(fmt(oneGamma, 1)) (GoldenData/gae/lambda-1-f64.json): the advantage is the reward-to-go minus
the value. Row 0:
""")
var monteCarlo = Table(["t", "sum_{k>=t} r_k", "V_t", "difference", "A_t"])
for t in oneStart..<oneValues.shape[1] {
    let toGo = (t..<oneValues.shape[1]).reduce(0.0) { $0 + oneRewards[0, $1] }
    monteCarlo.add([String(t), fmt(toGo), fmt(oneValues[0, t]), fmt(toGo - oneValues[0, t]),
                    fmt(one.advantages[0, t - oneStart])])
}
chapter.show(monteCarlo)
chapter.check("advantages", ours: one.advantages, against: lambdaOne)

// MARK: 5. An illustration: the capital-city answer

chapter.heading("5. Who gets the blame: the capital-city answer (an illustration, not a fixture)")
chapter.say("""
The seed article's example: the prompt asks for China's capital, the actor answers one character
at a time, shou du shi nan jing ("the capital is Nanjing"), and the reward model scores the whole
answer -10 at the last token. Suppose the critic expected a good answer (V about 2) until "nan"
was chosen, and a bad one (V = -8) after it:
""")
let answer = ["shou", "du", "shi", "nan", "jing"]
let capitalValues = Tensor.make([1, 5], [2.0, 2.1, 2.2, 2.0, -8.0])
let capitalRewards = Tensor.make([1, 5], [0.0, 0, 0, 0, -10])
let blameSmooth = chapter.must { try gae(values: capitalValues, rewards: capitalRewards, start: 0, gamma: 1, lambda: 0.95) }
let blameSharp = chapter.must { try gae(values: capitalValues, rewards: capitalRewards, start: 0, gamma: 1, lambda: 0) }
var blame = Table(["action", "r_t", "V_t", "delta_t", "A_t (lambda 0.95)", "A_t (lambda 0)"])
for t in 0..<5 {
    blame.add([answer[t], fmt(capitalRewards[0, t], 1), fmt(capitalValues[0, t], 1), fmt(blameSmooth.deltas[0, t]),
               fmt(blameSmooth.advantages[0, t]), fmt(blameSharp.advantages[0, t])])
}
chapter.show(blame)
chapter.say("""
With lambda = 0 the blame lands on "nan" alone (delta = -10): the critic already knew the answer
was doomed after it. With lambda = 0.95 the blame also flows back to "shou du shi", which were
fine: lambda near 1 trusts the critic less, and pays for it in noisier advantages.
""")

chapter.finish()
