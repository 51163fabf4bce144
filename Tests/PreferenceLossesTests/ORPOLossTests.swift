import Foundation
import Testing
import TensorCore
import TestSupport
@testable import PreferenceLosses

@Suite("orpo_loss")
struct ORPOLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "orpo_loss", minimum: 10)
    }

    @Test("one pair by hand: odds 1 against odds 1/3")
    func byHand() throws {
        // Position 0 is a prompt token (-1: in the NLL mask, not in the completion mask),
        // position 1 the completion: a = -ln 2 (p = 1/2, odds 1), b = -ln 4 (p = 1/4, odds 1/3).
        // log_odds = log 1 - log(1/3) = ln 3 = 1.0986122886681098
        //   (the formula: (a - b) - (L(a) - L(b)) = ln 2 - (ln 1/2 - ln 3/4) = ln 2 + ln 3/2 = ln 3)
        // logσ(ln 3) = log(3/4) = -0.2876820724517809; β = 0.1: losses = -0.02876820724517809
        // nll_loss = -(-1 - ln 2)/2 = 0.8465735902799727; loss = nll - mean(losses) = 0.8753417975251507
        let chosen = matrix([[-1, -log(2.0)]]), rejected = matrix([[-3, -log(4.0)]])
        let completion = intMatrix([[0, 1]]), nll = intMatrix([[1, 1]])
        let r = try orpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: completion,
                             rejectedMask: completion, chosenNLLMask: nll, beta: 0.1)
        expectClose(r.chosenLogps, [-log(2.0)], "chosen_logps")
        expectClose(r.rejectedLogps, [-log(4.0)], "rejected_logps")
        expectClose(r.logOddsChosen, 1.0986122886681098, "log_odds_chosen")
        expectClose(r.logOddsRatio, -0.2876820724517809, "log_odds_ratio")
        expectClose(r.losses, [-0.02876820724517809], "losses")
        expectClose(r.nllLoss, 0.8465735902799727, "nll_loss")
        expectClose(r.loss, 0.8753417975251507, "loss")
        expectClose(r.chosenRewards, [-0.06931471805599453], "chosen_rewards = β · a")
        expectClose(r.rejectedRewards, [-0.13862943611198905], "rejected_rewards = β · b")
        #expect(r.rewardAccuracy == 1)
        // ∂loss/∂log_odds = -(β/B)·σ(-ln 3) = -0.1 · 1/4 = -0.025
        // ∂log_odds/∂a = 1/(1 - e^a) = 2      -> completion token: -0.05, plus the NLL's -1/2
        // ∂log_odds/∂b = -1/(1 - e^b) = -4/3  -> +0.025 · 4/3 = 0.0333...
        // The prompt token only has the NLL's -1/2.
        let g = try orpoLossGradLogProbs(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: completion,
                                         rejectedMask: completion, chosenNLLMask: nll, beta: 0.1)
        expectClose(g.gradChosenLogProbs, [-0.5, -0.55], "grad_chosen")
        expectClose(g.gradRejectedLogProbs, [0, 0.1 / 3], "grad_rejected")
    }

    @Test("log1mexp is accurate on both sides of -ln 2 and continuous there")
    func log1mexpBranches() {
        // Near 0: 1 - e^v by hand is -v - v²/2 - ...; at v = -1e-10 that is 9.9999999995e-11.
        expectClose(log1mexp(-1e-10), log(9.9999999995e-11), abs: 0, rel: 1e-15, "log1mexp(-1e-10)")
        // Far below: log(1 - e^v) ≈ -e^v; at v = -50, -e^-50 = -1.9287498479639178e-22.
        expectClose(log1mexp(-50.0), -1.9287498479639178e-22, abs: 0, rel: 1e-15, "log1mexp(-50)")
        // At -ln 2: log(1 - 1/2) = -ln 2, approached from either side.
        let t = -log(2.0)
        expectClose(log1mexp(t), -log(2.0), abs: 1e-15, rel: 0, "log1mexp(-ln 2)")
        expectClose(log1mexp(t.nextDown), log1mexp(t.nextUp), abs: 1e-15, rel: 0, "continuity at -ln 2")
        // float32: where 1 - e^v rounds to 0, expm1 keeps it.
        #expect(log1mexp(Float(-1e-8)).isFinite)
        expectClose(log1mexp(Float(-1e-8)), log(1e-8), abs: 0, rel: 1e-6, "float32 log1mexp(-1e-8)")
    }

    @Test("invariants: swapping the sides negates the log odds; losses ≤ 0; masked values do not count")
    func invariants() throws {
        var rng = SplitMix64(seed: 311)
        let batch = randomTokenPairs(&rng, rows: 4, width: 6)
        let nll = nllMask(batch.chosenMask)
        let r = try orpoLoss(chosenLogProbs: batch.chosen, rejectedLogProbs: batch.rejected, chosenMask: batch.chosenMask,
                             rejectedMask: batch.rejectedMask, chosenNLLMask: nll, beta: 0.3)
        let swapped = try orpoLoss(chosenLogProbs: batch.rejected, rejectedLogProbs: batch.chosen,
                                   chosenMask: batch.rejectedMask, rejectedMask: batch.chosenMask,
                                   chosenNLLMask: nllMask(batch.rejectedMask), beta: 0.3)
        expectClose(swapped.logOddsChosen, -Double(r.logOddsChosen), abs: 1e-14, rel: 1e-12, "log odds antisymmetric")
        #expect(r.losses.scalars.allSatisfy { $0 <= 0 })
        expectClose(r.loss, r.nllLoss - r.losses.scalars.reduce(0, +) / 4, abs: 1e-14, rel: 1e-14, "loss = nll - mean(losses)")
        // log_odds_ratio is the mean of logσ(log_odds), β-free: β · log_odds_ratio = mean(losses).
        expectClose(0.3 * r.logOddsRatio, r.losses.scalars.reduce(0, +) / 4, abs: 1e-14, rel: 1e-12, "β · log_odds_ratio")
        // Padding (in no mask) is free to change.
        var moved = batch.rejected
        for i in moved.scalars.indices where batch.rejectedMask.scalars[i] == 0 { moved.scalars[i] = -7 }
        let other = try orpoLoss(chosenLogProbs: batch.chosen, rejectedLogProbs: moved, chosenMask: batch.chosenMask,
                                 rejectedMask: batch.rejectedMask, chosenNLLMask: nll, beta: 0.3)
        #expect(other.loss == r.loss)
        // float32 agrees.
        let narrow = try orpoLoss(chosenLogProbs: batch.chosen.converted(to: Float.self),
                                  rejectedLogProbs: batch.rejected.converted(to: Float.self),
                                  chosenMask: batch.chosenMask, rejectedMask: batch.rejectedMask, chosenNLLMask: nll, beta: 0.3)
        expectClose(narrow.loss, Double(r.loss), abs: 1e-5, rel: 1e-5, "float32 loss")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let c = matrix([[-1, -0.5], [-2, -1]]), r = matrix([[-1, -1.5], [-2, -3]])
        let m = intMatrix([[0, 1], [0, 1]]), n = intMatrix([[1, 1], [1, 1]])
        func call(_ c: Tensor<Double> = c, r: Tensor<Double> = r, cm: Tensor<Int64> = m, rm: Tensor<Int64> = m,
                  nm: Tensor<Int64> = n) throws -> ORPOLossResult<Double> {
            try orpoLoss(chosenLogProbs: c, rejectedLogProbs: r, chosenMask: cm, rejectedMask: rm, chosenNLLMask: nm)
        }
        #expect(try call().losses.count == 2)
        expectStageError(.shapeMismatch, argument: "chosen_nll_mask") { try call(nm: intMatrix([[1], [1]])) }
        expectStageError(.shapeMismatch, argument: "rejected_log_probs") { try call(r: matrix([[-1, -1]])) }
        expectStageError(.shapeMismatch, argument: "chosen_log_probs") {
            try call(Tensor(shape: [0, 2], repeating: 0), r: Tensor(shape: [0, 2], repeating: 0), cm: Tensor(shape: [0, 2], repeating: 0),
                     rm: Tensor(shape: [0, 2], repeating: 0), nm: Tensor(shape: [0, 2], repeating: 0))
        }
        expectStageError(.notANumber, argument: "rejected_log_probs") { try call(r: matrix([[-1, .nan], [-2, -3]])) }
        expectStageError(.invalidMask, argument: "chosen_nll_mask") { try call(nm: intMatrix([[1, 1], [-1, 1]])) }
        expectStageError(.emptyMask, argument: "chosen_mask") { try call(cm: intMatrix([[0, 1], [0, 0]])) }
        expectStageError(.emptyMask, argument: "rejected_mask") { try call(rm: intMatrix([[0, 0], [0, 1]])) }
        expectStageError(.emptyMask, argument: "chosen_nll_mask") { try call(nm: intMatrix([[0, 0], [0, 0]])) }
        // Averages of 0 and of +0.2: no odds at p ≥ 1.
        expectStageError(.nonFiniteResult, argument: "chosen_log_probs") { try call(matrix([[-1, 0], [-2, -1]])) }
        expectStageError(.nonFiniteResult, argument: "rejected_log_probs") { try call(r: matrix([[-1, 0.2], [-2, -3]])) }
    }
}

@Suite("orpo_loss backward")
struct ORPOLossBackwardTests {
    @Test("the gradients equal central differences, the prompt in the NLL and near-zero averages included")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 312)
        for (scale, beta) in [(1.0, 0.1), (0.05, 0.5), (1.0, 2.0)] {  // scale 0.05: averages near 0, the expm1 branch
            let batch = randomTokenPairs(&rng, rows: 3, width: 5)
            let chosen = Tensor.make(batch.chosen.shape, batch.chosen.scalars.map { $0 * scale })
            let rejected = Tensor.make(batch.rejected.shape, batch.rejected.scalars.map { $0 * scale })
            let nll = nllMask(batch.chosenMask)
            func loss(_ c: [Double], _ r: [Double]) throws -> Double {
                Double(try orpoLoss(chosenLogProbs: Tensor.make(chosen.shape, c), rejectedLogProbs: Tensor.make(rejected.shape, r),
                                    chosenMask: batch.chosenMask, rejectedMask: batch.rejectedMask, chosenNLLMask: nll,
                                    beta: beta).loss)
            }
            let g = try orpoLossGradLogProbs(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: batch.chosenMask,
                                             rejectedMask: batch.rejectedMask, chosenNLLMask: nll, beta: beta)
            let step = 1e-5 * scale
            expectClose(g.gradChosenLogProbs,
                        try centralDifferenceGradient(at: chosen.scalars, step: step) { try loss($0, rejected.scalars) },
                        abs: 1e-7, rel: 1e-6, "grad_chosen, scale \(scale)")
            expectClose(g.gradRejectedLogProbs,
                        try centralDifferenceGradient(at: rejected.scalars, step: step) { try loss(chosen.scalars, $0) },
                        abs: 1e-7, rel: 1e-6, "grad_rejected, scale \(scale)")
        }
    }
}

/// TRL's ORPO NLL mask for a completion mask from `randomBatch`: the prompt
/// position 0 and every completion position.
private func nllMask(_ completion: Tensor<Int64>) -> Tensor<Int64> {
    var mask = completion
    for b in 0..<mask.shape[0] { mask[b, 0] = 1 }
    return mask
}
