// Chapter 06 · The critic loss: value clipping and the pessimistic max.
//
// Reads top to bottom: the inputs, the clip band around the old values, the two
// squared errors and the larger one kept, the 0.5 and the token-mean checked
// against PyTorch, a partial mask, three widths of the band, why max and not min
// on two hand-picked tokens, and one input the library rejects. The math is
// `criticLoss(values:oldValues:returns:mask:cliprangeValue:)` in Sources/CriticLoss;
// this file only prints and checks. Run it with `make chapter N=6`.

import ChapterSupport
import CriticLoss
import Golden
import TensorCore

let chapter = Chapter(number: 6, title: "The critic loss: value clipping and the pessimistic max")
chapter.say("""
The critic learns to predict the return R_t = A_t + V_t that GAE computed (chapter 04). PPO lets
it move only so far per rollout: each new value is clamped to a band around the value it had
when the rollout was scored, and the loss keeps the larger of the clipped and unclipped errors.
""")

/// The two squared errors of one token, for the tables: (V - R)² and (V_clipped - R)².
func squaredErrors(_ value: Double, _ clipped: Double, _ target: Double) -> (unclipped: Double, clipped: Double) {
    ((value - target) * (value - target), (clipped - target) * (clipped - target))
}

/// Which side of the max a token's loss came from.
func keptBy(_ value: Double, _ clipped: Double, _ target: Double) -> String {
    let errors = squaredErrors(value, clipped, target)
    if value == clipped { return "inside: equal" }
    return errors.clipped > errors.unclipped ? "clipped (flat)" : "unclipped"
}

// MARK: 1. Inputs

chapter.heading("1. Inputs")
let far = chapter.fixture("critic_loss/returns-far-f64")
let values = chapter.floatInput(far, "values")
let oldValues = chapter.floatInput(far, "old_values")
let returns = chapter.floatInput(far, "returns")
let mask = chapter.intInput(far, "mask")
let clipRange = chapter.realParam(far, "cliprange_value")
chapter.say("""
GoldenData/critic_loss/returns-far-f64.json: B = 2 answers of M = 5 tokens (already cut to the
answer, [:, start:]), every token kept. old_values are the critic's values at rollout time,
values the critic's values now, after updates on the same rollout (a later mini-batch, a second
PPO epoch; on the very first update V = V_old and nothing clips). returns are GAE's targets,
here far above and below the old values. eps_v = cliprange_value = \(fmt(clipRange, 2)), DeepSpeed-Chat's default.
""")
chapter.show("old_values", oldValues)
chapter.show("values", values)
chapter.show("returns", returns)

// MARK: 2. The clip band

chapter.heading("2. Clip the new values to a band around the old ones")
chapter.say("""
  values_clipped = clamp(V, V_old - eps_v, V_old + eps_v)
The band is absolute, in reward units, and centred on V_old, not on R: it says how far the
value may have moved since the rollout, whatever the target is.
""")
let result = chapter.must {
    try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: mask, cliprangeValue: clipRange)
}
var band = Table(["b, t", "V_old - eps", "V_old + eps", "V", "values_clipped", "moved"])
for i in 0..<values.count {
    let index = values.index(ofFlat: i)
    let moved = values.scalars[i] - oldValues.scalars[i]
    band.add(["\(index[0]), \(index[1])", fmt(oldValues.scalars[i] - clipRange), fmt(oldValues.scalars[i] + clipRange),
              fmt(values.scalars[i]), fmt(result.clippedValues.scalars[i]),
              abs(moved) <= clipRange ? "inside" : (moved > 0 ? "up, past the band" : "down, past the band")])
}
chapter.show(band)

// MARK: 3. Two squared errors, the larger kept

chapter.heading("3. Two squared errors, and the larger one kept")
chapter.say("""
  vf_loss1 = (V - R)^2            vf_loss2 = (values_clipped - R)^2
  token loss = max(vf_loss1, vf_loss2)
""")
var errors = Table(["b, t", "V", "values_clipped", "R", "(V - R)^2", "(Vc - R)^2", "max", "kept by"])
for i in 0..<values.count {
    let index = values.index(ofFlat: i)
    let (v, vc, r) = (values.scalars[i], result.clippedValues.scalars[i], returns.scalars[i])
    let e = squaredErrors(v, vc, r)
    errors.add(["\(index[0]), \(index[1])", fmt(v), fmt(vc), fmt(r), fmt(e.unclipped), fmt(e.clipped),
                fmt(result.tokenLosses.scalars[i]), keptBy(v, vc, r)])
}
chapter.show(errors)
chapter.say("""
Three kinds of token. Inside the band the two errors are equal and the gradient is the plain
(V - R) / n. Where V went past the band toward R (0,1; 0,4; 1,0), the clipped error is the larger:
values_clipped sits on the band's edge whatever V does, so this token pushes V no further this
rollout. Where V went past the band away from R or overshot it (0,0; 0,2; 1,2; 1,3), the
unclipped error is the larger and the full gradient pulls V back.
""")

// MARK: 4. The 0.5 and the token-mean

chapter.heading("4. The 0.5 and the masked token-mean")
let kept = result.tokenLosses.scalars.indices.filter { mask.scalars[$0] != 0 }
let keptSum = kept.reduce(0.0) { $0 + result.tokenLosses.scalars[$1] }
chapter.say("""
  loss = 0.5 * sum_{b,t} max(...) * m_{b,t} / sum_{b,t} m_{b,t}
One mean over every kept token of the batch (not a mean per answer, then over answers). The
0.5 makes the gradient of one unclipped token (V - R) / n instead of 2 (V - R) / n.
Here: 0.5 * \(fmt(keptSum)) / \(result.tokenCount) = \(fmt(result.loss, 6)).
""")
chapter.check("loss", ours: result.loss, against: far)

// MARK: 5. A partial mask

chapter.heading("5. Only the kept tokens count")
let partial = chapter.fixture("critic_loss/partial-mask-f64")
let partialMask = chapter.intInput(partial, "mask")
let partialResult = chapter.must {
    try criticLoss(values: chapter.floatInput(partial, "values"), oldValues: chapter.floatInput(partial, "old_values"),
                   returns: chapter.floatInput(partial, "returns"), mask: partialMask,
                   cliprangeValue: chapter.realParam(partial, "cliprange_value"))
}
chapter.say("""
GoldenData/critic_loss/partial-mask-f64.json: 3 answers of different lengths in M = 7 columns.
The mask is action_mask[:, start:]; past each answer's end the values and returns are whatever
the tensors hold, and the loss must not see them.
""")
chapter.show("mask", partialMask)
let partialColumns = partialMask.shape[1]
var perRow = Table(["row", "kept tokens", "sum of kept max(...)", "sum of masked max(...)"])
for b in 0..<partialMask.shape[0] {
    let columns = (b * partialColumns)..<((b + 1) * partialColumns)
    let keptHere = columns.filter { partialMask.scalars[$0] != 0 }
    let maskedHere = columns.filter { partialMask.scalars[$0] == 0 }
    perRow.add([String(b), String(keptHere.count),
                fmt(keptHere.reduce(0.0) { $0 + partialResult.tokenLosses.scalars[$1] }),
                fmt(maskedHere.reduce(0.0) { $0 + partialResult.tokenLosses.scalars[$1] })])
}
chapter.show(perRow)
chapter.say("""
The masked tokens are dropped, not averaged in: the loss divides by the \(partialResult.tokenCount) kept tokens of the
whole batch, so a long answer weighs more than a short one.
""")
chapter.check("loss", ours: partialResult.loss, against: partial)

// MARK: 6. Three widths of the band

chapter.heading("6. How wide the band is")
chapter.say("""
Whether clipping bites depends on eps_v against how far the values move in one rollout:
""")
var widths = Table(["fixture", "eps_v", "tokens", "V past the band", "clipped error larger", "loss"])
var widthChecks = [(fixture: Fixture, run: CriticLossResult<Double>, kept: [String])]()
for name in ["inside-clip-f64", "outside-clip-f64", "cliprange-5-f64"] {
    let fixture = chapter.fixture("critic_loss/" + name)
    let v = chapter.floatInput(fixture, "values"), r = chapter.floatInput(fixture, "returns")
    let eps = chapter.realParam(fixture, "cliprange_value")
    let run = chapter.must {
        try criticLoss(values: v, oldValues: chapter.floatInput(fixture, "old_values"), returns: r,
                       mask: chapter.intInput(fixture, "mask"), cliprangeValue: eps)
    }
    let kept = (0..<v.count).map { keptBy(v.scalars[$0], run.clippedValues.scalars[$0], r.scalars[$0]) }
    let past = kept.filter { $0 != "inside: equal" }.count
    widths.add([name, fmt(eps, 1), String(v.count), String(past),
                String(kept.filter { $0 == "clipped (flat)" }.count), fmt(run.loss, 6)])
    widthChecks.append((fixture, run, kept))
}
chapter.show(widths)
let outsideClipped = widthChecks[1].kept.filter { $0 == "clipped (flat)" }.count
let outsideUnclipped = widthChecks[1].kept.filter { $0 == "unclipped" }.count
chapter.say("""
inside-clip: every V within 0.2 of V_old, so values_clipped = V and the loss is half the plain
mean squared error. outside-clip: every V moved more than 0.2, but mostly away from R or past it,
so the unclipped error wins \(outsideUnclipped) times and the clip stops only \(outsideClipped) tokens. cliprange-5:
eps_v = 5, align-anything's default; on values of size 1 nothing ever clips.
""")
for (fixture, run, _) in widthChecks {
    chapter.check("loss", ours: run.loss, against: fixture)
}

// MARK: 7. Why max and not min

chapter.heading("7. Why max, not min (an illustration, not a fixture)")
chapter.say("""
Two single tokens, R = 10, eps_v = 0.2 (the value-clipping test of the pitfalls notes). The
gradient comes from criticLossGradValues, the library's derivative of the same loss.
""")
var pessimistic = Table(["V moved", "V_old", "V", "clipped", "(V - R)^2", "(Vc - R)^2", "loss", "dloss/dV",
                         "min: loss"])
for (label, old, new) in [("away from R", 5.0, 1.0), ("toward R", 1.0, 5.0)] {
    let v = Tensor.make([1, 1], [new]), o = Tensor.make([1, 1], [old]), r = Tensor.make([1, 1], [10.0])
    let one = Tensor<Int64>.make([1, 1], [1])
    let run = chapter.must { try criticLoss(values: v, oldValues: o, returns: r, mask: one, cliprangeValue: 0.2) }
    let grad = chapter.must {
        try criticLossGradValues(values: v, oldValues: o, returns: r, mask: one, cliprangeValue: 0.2)
    }
    let e = squaredErrors(new, run.clippedValues[0, 0], 10)
    let wrongMin = 0.5 * min(e.unclipped, e.clipped)
    pessimistic.add([label, fmt(old, 1), fmt(new, 1), fmt(run.clippedValues[0, 0], 1), fmt(e.unclipped, 2),
                      fmt(e.clipped, 2), fmt(run.loss, 2), fmt(grad[0, 0], 2), fmt(wrongMin, 2)])
}
chapter.show(pessimistic)
chapter.say("""
(The last column is the wrong way, computed here only to compare.)
Moved away: V went from 5 to 1, further from R = 10. max keeps (1 - 10)^2 = 81, loss 40.5, and
the gradient -9 pulls V back up. min would keep 27.04 from the clamped value 4.8, whose gradient
is zero: the critic would never be corrected for walking away from its target.
Moved toward: V jumped from 1 to 5, far past the band [0.8, 1.2]. max keeps the clipped error
77.44, loss 38.72, gradient 0: no further push this rollout. min would keep 25 and keep pushing,
rewarding the update for leaving the trust region. max is the pessimistic bound, as the actor's
clip is: an update gets no credit for going too far, and full blame for going the wrong way.
(One of the source articles says this step returns the smaller loss; the DeepSpeed-Chat code it
quotes takes torch.max, and max is what the trust region needs.)
""")

// MARK: 8. Rejected input

chapter.heading("8. An input the library rejects")
chapter.say("""
A mask that keeps no token makes the token-mean 0/0. PyTorch returns NaN and training goes on
with a NaN gradient; criticLoss throws instead.
""")
let emptyMask = chapter.fixture("critic_loss/error-empty-mask")
chapter.checkRejects(emptyMask) {
    try criticLoss(values: chapter.floatInput(emptyMask, "values"),
                   oldValues: chapter.floatInput(emptyMask, "old_values"),
                   returns: chapter.floatInput(emptyMask, "returns"), mask: chapter.intInput(emptyMask, "mask"),
                   cliprangeValue: chapter.realParam(emptyMask, "cliprange_value"))
}

chapter.finish()
