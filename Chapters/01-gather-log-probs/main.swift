// Chapter 01 · Log-probs of the chosen tokens.
//
// Reads top to bottom: the one-token shift on a fixture row, log-softmax one row
// at a time, why log_softmax and not log(softmax) on logits of size 1e4, a masked
// (-inf) vocabulary entry, and one input the library rejects. The math is
// `gatherLogProbs(logits:labels:)` in Sources/GatherLogProbs; this file only
// prints and checks. Run it with `make chapter N=1`.

import ChapterSupport
import Foundation
import Golden
import GatherLogProbs
import TensorCore

let chapter = Chapter(number: 1, title: "Log-probs of the chosen tokens")
chapter.say("""
Every PPO and DPO loss starts from one number per token: the log-probability the model gave
the token that was actually there. log_probs[b, t] = log softmax(logits[b, t, :])[label[b, t]].
""")

/// Every entry of one logits row under log-softmax: the library's gather, asked for every label.
@MainActor func logSoftmaxRow(_ row: [Double]) -> [Double] {
    let width = row.count
    let logits = Tensor.make([1, width, width], Array((0..<width).map { _ in row }.joined()))
    let labels = Tensor.make([1, width], (0..<width).map { Int64($0) })
    return chapter.must { try gatherLogProbs(logits: logits, labels: labels) }.scalars
}

/// The logits of one position, `[b, t, :]`, of a [B, T, V] tensor.
func logitsRow(_ logits: Tensor<Double>, _ b: Int, _ t: Int) -> [Double] {
    let width = logits.shape[2], start = (b * logits.shape[1] + t) * width
    return Array(logits.scalars[start..<(start + width)])
}

/// A float input of a fixture in float32 (a float32 fixture's data as stored).
@MainActor func float32Input(_ fixture: Fixture, _ name: String) -> Tensor<Float> {
    chapter.must { try chapter.arguments(fixture, as: Float.self).float(name) }
}

/// The library's error, printed as `stage: kind in 'argument':` and its detail on the next line,
/// so that it fits a 100-column page.
struct Wrapped: Error, CustomStringConvertible {
    let error: StageError
    var description: String {
        "\(error.stage): \(error.kind.rawValue) in '\(error.argument)':\n      \(error.detail)"
    }
}

// MARK: 1. The one-token shift

chapter.heading("1. The one-token shift: logits[:, :-1] against seq[:, 1:]")
let random = chapter.fixture("gather_log_probs/random-1-f64")
let randomLogits = chapter.floatInput(random, "logits")
let randomLabels = chapter.intInput(random, "labels")
let positions = randomLogits.shape[1]
let promptLength = 3
chapter.say("""
A causal model reads seq[0..t] and its logits at position t are a guess at token t + 1. So the
logits of the last position predict past the end (dropped), and nothing predicts seq[0]. A row
of L tokens gives N = L - 1 log-probs. GoldenData/gather_log_probs/random-1-f64.json holds
logits [B, T, V] = \(describe(shape: randomLogits.shape)) and labels = seq[:, 1:], already shifted. Read row 0 as a
sequence of L = \(positions + 1) tokens whose first P = \(promptLength) are the prompt (seq[0] is not stored: "?"):
""")
let randomResult = chapter.must { try gatherLogProbs(logits: randomLogits, labels: randomLabels) }
let start = promptLength - 1
var shift = Table(["t", "seq[t]", "seq[t+1]", "log p(seq[t+1] | seq[..t])", "the logits at t score", ""],
                  leftAligned: [0, 4, 5])
for t in 0..<positions {
    let scored = "seq[\(t + 1)], " + (t + 1 < promptLength ? "a prompt token" : "an answer token")
    shift.add([String(t), t == 0 ? "?" : String(randomLabels[0, t - 1]), String(randomLabels[0, t]),
               fmt(randomResult[0, t]), scored, t == start ? "<- start = P-1 = \(start)" : ""])
}
chapter.show(shift)
chapter.say("""
The first answer token seq[\(promptLength)] is scored by the logits at t = \(start), not \(promptLength): in log-prob coordinates
the answer starts at start = prompt_length - 1. PPO slices log_probs[:, start:] (chapters 03-05).
""")
chapter.check("log_probs", ours: randomResult, against: random)

chapter.say("""

Shifting the wrong way is a silent bug (an illustration, not a fixture): V = 5, seq = [0, 1, 2, 3],
and the logits at t put 20.0 on seq[t+1] and 0 elsewhere, as a model that predicts well would.
""")
let toySequence: [Int64] = [0, 1, 2, 3]
var toyLogits = Tensor<Double>(shape: [1, 4, 5], repeating: 0)
for t in 0..<3 { toyLogits[0, t, Int(toySequence[t + 1])] = 20 }
let shifted = chapter.must {
    try gatherLogProbs(logits: Tensor.make([1, 3, 5], Array(toyLogits.scalars[0..<15])),
                       labels: Tensor.make([1, 3], Array(toySequence[1...])))
}
let unshifted = chapter.must {
    try gatherLogProbs(logits: Tensor.make([1, 3, 5], Array(toyLogits.scalars[0..<15])),
                       labels: Tensor.make([1, 3], Array(toySequence[..<3])))
}
var wrongShift = Table(["t", "logits[t] against seq[t+1] (right)", "logits[t] against seq[t] (wrong)"])
for t in 0..<3 { wrongShift.add([String(t), sci(shifted[0, t], 2), fmt(unshifted[0, t], 4)]) }
chapter.show(wrongShift)
chapter.say("""
Right: -log(1 + 4 e^-20) = -8.2e-09 per token. Wrong: about -20, a good model made to look awful.
""")

// MARK: 2. Log-softmax, one row

chapter.heading("2. Log-softmax, one row at a time")
let single = chapter.fixture("gather_log_probs/single-position-f64")
let singleLogits = chapter.floatInput(single, "logits")
let singleLabels = chapter.intInput(single, "labels")
let singleRow = logitsRow(singleLogits, 0, 0)
let singleLabel = Int(singleLabels[0, 0])
let singleMax = singleRow.max()!
let shiftedExp = singleRow.map { exp($0 - singleMax) }
chapter.say("""
  log_softmax(x)_v = x_v - log sum_w exp(x_w)
                   = (x_v - m) - log sum_w exp(x_w - m),   m = max_w x_w
GoldenData/gather_log_probs/single-position-f64.json: B = T = 1, V = \(singleRow.count),
logits \(list(singleRow, 2)), label \(singleLabel).
""")
let singleSoftmax = logSoftmaxRow(singleRow)
var rowTable = Table(["v", "x_v", "x_v - m", "exp(x_v - m)", "softmax_v", "log_softmax_v", ""])
for v in singleRow.indices {
    rowTable.add([String(v), fmt(singleRow[v]), fmt(singleRow[v] - singleMax), fmt(shiftedExp[v]),
                  fmt(exp(singleSoftmax[v])), fmt(singleSoftmax[v]), v == singleLabel ? "<- label" : ""])
}
chapter.show(rowTable)
chapter.say("""
m = \(fmt(singleMax, 2)), sum of exp(x - m) = \(fmt(shiftedExp.reduce(0, +))), its log = \(fmt(log(shiftedExp.reduce(0, +)))). The label's entry:
(\(fmt(singleRow[singleLabel], 2)) - \(fmt(singleMax, 2))) - \(fmt(log(shiftedExp.reduce(0, +)))) = \(fmt(singleSoftmax[singleLabel])).
""")
let singleResult = chapter.must { try gatherLogProbs(logits: singleLogits, labels: singleLabels) }
chapter.check("log_probs", ours: singleResult, against: single)

// MARK: 3. Why log_softmax and not log(softmax)

chapter.heading("3. Why log_softmax and not log(softmax): logits of size 1e4")
let big = chapter.fixture("gather_log_probs/logits-1e4-f64")
let big32 = chapter.fixture("gather_log_probs/logits-1e4-f32")
let bigLogits = chapter.floatInput(big, "logits")
let bigLabels = chapter.intInput(big, "labels")
let bigLogits32 = float32Input(big32, "logits")
let bigLabels32 = chapter.intInput(big32, "labels")
chapter.say("""
exp overflows past 709.8 in float64 and past 88.7 in float32. The naive formula, computed here
inline as THE WRONG WAY, log(exp(x_y) / sum_v exp(x_v)), meets exp(5107.7) = inf: inf / inf is
NaN, and a finite numerator over an infinite sum is 0, whose log is -inf.
GoldenData/gather_log_probs/logits-1e4-f64.json and -f32.json: B = 2, T = 3, V = \(bigLogits.shape[2]).
""")
func naiveDouble(_ row: [Double], _ label: Int) -> Double {
    log(exp(row[label]) / row.map { exp($0) }.reduce(0, +))
}
func naiveFloat(_ row: [Float], _ label: Int) -> Float {
    log(exp(row[label]) / row.map { exp($0) }.reduce(0, +))
}
let bigResult = chapter.must { try gatherLogProbs(logits: bigLogits, labels: bigLabels) }
let bigResult32 = chapter.must { try gatherLogProbs(logits: bigLogits32, labels: bigLabels32) }
var naiveTable = Table(["b, t", "label", "x_label", "max_v x_v", "naive f64", "naive f32", "library f64",
                        "library f32"])
for b in 0..<2 {
    for t in 0..<3 {
        let row = logitsRow(bigLogits, b, t), label = Int(bigLabels[b, t])
        let width = bigLogits32.shape[2], offset = (b * 3 + t) * width
        let row32 = Array(bigLogits32.scalars[offset..<(offset + width)])
        naiveTable.add(["\(b), \(t)", String(label), fmt(row[label], 1), fmt(row.max()!, 1),
                        fmt(naiveDouble(row, label), 1), fmt(Double(naiveFloat(row32, label)), 1),
                        fmt(bigResult[b, t], 1), fmt(Double(bigResult32[b, t]), 1)])
    }
}
chapter.show(naiveTable)
chapter.say("""
Subtracting the row's maximum first changes nothing mathematically (the m cancels between the
numerator and the sum) and everything numerically: every exponent is <= 0, the largest term is
exactly exp(0) = 1, and nothing overflows. Row [0, 0], label \(bigLabels[0, 0]):
""")
let firstRow = logitsRow(bigLogits, 0, 0)
let firstMax = firstRow.max()!
var identity = Table(["v", "x_v", "x_v - m", "exp(x_v)", "exp(x_v - m)", ""])
for v in firstRow.indices {
    identity.add([String(v), fmt(firstRow[v], 1), fmt(firstRow[v] - firstMax, 1), sci(exp(firstRow[v]), 2),
                  sci(exp(firstRow[v] - firstMax), 2), v == Int(bigLabels[0, 0]) ? "<- label = argmax" : ""])
}
chapter.show(identity)
chapter.say("""
sum exp(x - m) = \(fmt(firstRow.map { exp($0 - firstMax) }.reduce(0, +), 1)) (the rest underflow to 0), log of it = 0, so log_probs[0, 0] = x_\(bigLabels[0, 0]) - m = \(fmt(bigResult[0, 0], 1)):
the model is certain. Where the label is not the argmax the answer is x_y - m, thousands below zero,
and both precisions keep it.
""")
chapter.check("log_probs", ours: bigResult, against: big, digits: 4)
chapter.check("log_probs", ours: bigResult32.scalars.map(Double.init), against: big32, digits: 4)

// MARK: 4. A masked vocabulary entry

chapter.heading("4. A masked vocabulary entry: logits of -inf")
let masked = chapter.fixture("gather_log_probs/masked-vocab-neg-inf-f64")
let maskedLogits = chapter.floatInput(masked, "logits")
let maskedLabels = chapter.intInput(masked, "labels")
let maskedRow = logitsRow(maskedLogits, 0, 0)
let maskedMax = maskedRow.max()!
chapter.say("""
A sampler that bans tokens sets their logits to -inf. exp(-inf - m) = 0, so a banned entry adds
nothing to the sum and gets log-probability -inf; every other entry stays finite. Only a label
on a banned entry (log-prob -inf) or a row banned entirely (NaN, which the library rejects) breaks.
GoldenData/gather_log_probs/masked-vocab-neg-inf-f64.json, position [0, 0], label \(maskedLabels[0, 0]):
""")
let maskedSoftmax = logSoftmaxRow(maskedRow)
var maskedTable = Table(["v", "x_v", "exp(x_v - m)", "log_softmax_v", ""])
for v in maskedRow.indices {
    maskedTable.add([String(v), fmt(maskedRow[v]), fmt(exp(maskedRow[v] - maskedMax)), fmt(maskedSoftmax[v]),
                     v == Int(maskedLabels[0, 0]) ? "<- label" : (maskedRow[v] == -.infinity ? "<- masked" : "")])
}
chapter.show(maskedTable)
let maskedResult = chapter.must { try gatherLogProbs(logits: maskedLogits, labels: maskedLabels) }
chapter.check("log_probs", ours: maskedResult, against: masked)

// MARK: 5. An input the library rejects

chapter.heading("5. An input the library rejects: a label outside [0, V)")
let tooLarge = chapter.fixture("gather_log_probs/error-label-too-large")
let tooLargeLabels = chapter.intInput(tooLarge, "labels")
chapter.say("""
GoldenData/gather_log_probs/error-label-too-large.json: V = \(chapter.floatInput(tooLarge, "logits").shape[2]), labels \(list(tooLargeLabels.scalars)).
PyTorch's gather raises an index error; the library throws a typed error instead of reading memory.
""")
chapter.checkRejects(tooLarge) {
    do {
        return try gatherLogProbs(logits: chapter.floatInput(tooLarge, "logits"), labels: tooLargeLabels)
    } catch let error as StageError {
        throw Wrapped(error: error)
    }
}

chapter.finish()
