import Foundation
import Testing
import TensorCore
import TestSupport
@testable import PreferenceLosses

/// One pair by hand: a prompt position (mask 0, value -9, which must not count),
/// two completion tokens per side.
///
/// chosen   [-9, -1, -2]  mask [0, 1, 1]:  sum S_w = -3,  average a = -1.5
/// rejected [-9, -2, -2]  mask [0, 1, 1]:  sum S_l = -4,  average b = -2
private let chosenRow = matrix([[-9, -1, -2]])
private let rejectedRow = matrix([[-9, -2, -2]])
private let completionMask = intMatrix([[0, 1, 1]])

private func cpo(_ lossType: CPOLossType, beta: Double, labelSmoothing: Double = 0, simpoGamma: Double = 0.5,
                 cpoAlpha: Double = 0, alpha: Double = 0, chosen: Tensor<Double> = chosenRow,
                 rejected: Tensor<Double> = rejectedRow) throws -> (CPOLossResult<Double>, CPOLossGradients<Double>) {
    let forward = try cpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: completionMask,
                              rejectedMask: completionMask, lossType: lossType, beta: beta,
                              labelSmoothing: labelSmoothing, simpoGamma: simpoGamma, cpoAlpha: cpoAlpha, alpha: alpha)
    let backward = try cpoLossGradLogProbs(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: completionMask,
                                           rejectedMask: completionMask, lossType: lossType, beta: beta,
                                           labelSmoothing: labelSmoothing, simpoGamma: simpoGamma, cpoAlpha: cpoAlpha,
                                           alpha: alpha)
    return (forward, backward)
}

@Suite("cpo_loss")
struct CPOLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "cpo_loss", minimum: 10)
    }

    @Test("sigmoid with the NLL, by hand")
    func sigmoidByHand() throws {
        // z = S_w - S_l = -3 - (-4) = 1, β = 1, ε = 0: losses = -logσ(1) = log(1 + e^-1) = 0.31326168751822286
        // nll_loss = -(-1 - 2) / 2 = 1.5 (the prompt's -9 is masked); loss = 0.31326... + 1 · 1.5
        let (r, g) = try cpo(.sigmoid, beta: 1, cpoAlpha: 1)
        expectClose(r.chosenLogps, [-3], "chosen_logps")
        expectClose(r.rejectedLogps, [-4], "rejected_logps")
        expectClose(r.losses, [0.31326168751822286], "losses")
        expectClose(r.nllLoss, 1.5, "nll_loss")
        expectClose(r.loss, 1.81326168751822286, "loss")
        expectClose(r.chosenRewards, [-3], "chosen_rewards")    // β · S_w
        expectClose(r.rejectedRewards, [-4], "rejected_rewards")
        #expect(r.rewardAccuracy == 1)
        // ∂loss/∂z = -σ(-1) = -0.2689414213699951; the NLL adds -1/2 per chosen token.
        expectClose(g.gradChosenLogProbs, [0, -0.2689414213699951 - 0.5, -0.2689414213699951 - 0.5], "grad_chosen")
        expectClose(g.gradRejectedLogProbs, [0, 0.2689414213699951, 0.2689414213699951], "grad_rejected")
    }

    @Test("simpo, ipo and hinge, by hand")
    func otherTypesByHand() throws {
        // simpo: averages z = -1.5 - (-2) = 0.5; β = 2, γ = 1: z - γ/β = 0, loss = -logσ(0) = ln 2.
        // ∂loss/∂z = β · (-σ(0)) = -1, spread over 2 tokens: -1/2 each.
        let (simpo, simpoGrad) = try cpo(.simpo, beta: 2, simpoGamma: 1)
        expectClose(simpo.chosenLogps, [-1.5], "simpo chosen_logps (an average)")
        expectClose(simpo.losses, [log(2.0)], "simpo losses")
        expectClose(simpo.nllLoss, 0, "nll_loss with cpo_alpha = 0")
        expectClose(simpo.chosenRewards, [-3], "simpo chosen_rewards = β · a")
        expectClose(simpoGrad.gradChosenLogProbs, [0, -0.5, -0.5], "simpo grad_chosen")
        expectClose(simpoGrad.gradRejectedLogProbs, [0, 0.5, 0.5], "simpo grad_rejected")
        // ipo: β = 0.5, 1/(2β) = 1: (0.5 - 1)² = 0.25; ∂/∂z = 2 · (0.5 - 1) = -1 -> -1/2 per token.
        let (ipo, ipoGrad) = try cpo(.ipo, beta: 0.5, labelSmoothing: 0.3)  // ε ignored
        expectClose(ipo.losses, [0.25], "ipo losses")
        expectClose(ipoGrad.gradChosenLogProbs, [0, -0.5, -0.5], "ipo grad_chosen")
        // hinge: sums, β = 0.5: relu(1 - 0.5 · 1) = 0.5; ∂/∂z = -β = -0.5 on each summed token.
        let (hinge, hingeGrad) = try cpo(.hinge, beta: 0.5, labelSmoothing: 0.3)
        expectClose(hinge.losses, [0.5], "hinge losses")
        expectClose(hingeGrad.gradChosenLogProbs, [0, -0.5, -0.5], "hinge grad_chosen")
        expectClose(hingeGrad.gradRejectedLogProbs, [0, 0.5, 0.5], "hinge grad_rejected")
        // hinge with β = 1: 1 - β·z = 0 exactly, relu passes nothing there.
        let (kink, kinkGrad) = try cpo(.hinge, beta: 1)
        expectClose(kink.losses, [0], "hinge at its kink")
        #expect(kinkGrad.gradChosenLogProbs.scalars.allSatisfy { $0 == 0 })
    }

    @Test("AlphaPO, by hand")
    func alphaPOByHand() throws {
        // One token per side: a = -ln 2 (p = 1/2), b = -ln 4 (p = 1/4); alpha = 1:
        // R = (1 - p^-1)/1: R_w = 1 - 2 = -1, R_l = 1 - 4 = -3; z = 2; simpo with β = 1, γ = 0:
        // loss = -logσ(2) = log(1 + e^-2) = 0.1269280110429725.
        // ∂R/∂logp = p^-alpha = 2 and 4, so grad_w = -σ(-2)·2, grad_l = +σ(-2)·4 with σ(-2) = 0.11920292202211755.
        let chosen = matrix([[-9, -log(2.0), 0]]), rejected = matrix([[-9, -log(4.0), 0]])
        let mask = intMatrix([[0, 1, 0]])
        let r = try cpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: mask, rejectedMask: mask,
                            lossType: .simpo, beta: 1, simpoGamma: 0, cpoAlpha: 0, alpha: 1)
        expectClose(r.chosenRewards, [-1], "chosen_rewards = β · R_w")
        expectClose(r.rejectedRewards, [-3], "rejected_rewards = β · R_l")
        expectClose(r.losses, [0.1269280110429725], "losses")
        let g = try cpoLossGradLogProbs(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: mask,
                                        rejectedMask: mask, lossType: .simpo, beta: 1, simpoGamma: 0, cpoAlpha: 0, alpha: 1)
        expectClose(g.gradChosenLogProbs, [0, -0.2384058440442351, 0], "grad_chosen")
        expectClose(g.gradRejectedLogProbs, [0, 0.4768116880884702, 0], "grad_rejected")
    }

    @Test("invariants: masked positions, label-smoothing symmetry, ε ignored by hinge and ipo, SimPO's shift invariance, alpha → 0")
    func invariants() throws {
        var rng = SplitMix64(seed: 301)
        let batch = randomTokenPairs(&rng, rows: 3, width: 6)
        func run(_ c: Tensor<Double>, _ r: Tensor<Double>, _ type: CPOLossType, eps: Double = 0, alpha: Double = 0,
                 cpoAlpha: Double = 1) throws -> CPOLossResult<Double> {
            try cpoLoss(chosenLogProbs: c, rejectedLogProbs: r, chosenMask: batch.chosenMask, rejectedMask: batch.rejectedMask,
                        lossType: type, beta: 0.7, labelSmoothing: eps, simpoGamma: 0.5, cpoAlpha: cpoAlpha, alpha: alpha)
        }
        // Changing every masked value changes nothing.
        var moved = batch.chosen
        for i in moved.scalars.indices where batch.chosenMask.scalars[i] == 0 { moved.scalars[i] -= 5 }
        for type in CPOLossType.allCases {
            let base = try run(batch.chosen, batch.rejected, type), other = try run(moved, batch.rejected, type)
            #expect(base.loss == other.loss, "\(type): a masked value moved the loss")
        }
        // cDPO: swapping chosen and rejected (masks too) with ε -> 1 - ε gives the same per-pair losses.
        func smoothed(_ c: Tensor<Double>, _ cm: Tensor<Int64>, _ r: Tensor<Double>, _ rm: Tensor<Int64>, _ eps: Double) throws -> [Double] {
            try cpoLoss(chosenLogProbs: c, rejectedLogProbs: r, chosenMask: cm, rejectedMask: rm, lossType: .sigmoid,
                        beta: 0.7, labelSmoothing: eps, cpoAlpha: 0).losses.scalars
        }
        let forward = try smoothed(batch.chosen, batch.chosenMask, batch.rejected, batch.rejectedMask, 0.2)
        let mirrored = try smoothed(batch.rejected, batch.rejectedMask, batch.chosen, batch.chosenMask, 0.8)
        expectClose(mirrored, forward, abs: 1e-12, rel: 1e-12, "cDPO mirror")
        // hinge and ipo ignore ε.
        for type in [CPOLossType.hinge, .ipo] {
            #expect(try run(batch.chosen, batch.rejected, type, eps: 0.3).losses == run(batch.chosen, batch.rejected, type).losses)
        }
        // simpo and ipo average: adding c to every completion token of both sides leaves z, so the losses, unchanged.
        var shiftedChosen = batch.chosen, shiftedRejected = batch.rejected
        for i in shiftedChosen.scalars.indices {
            if batch.chosenMask.scalars[i] == 1 { shiftedChosen.scalars[i] -= 0.25 }
            if batch.rejectedMask.scalars[i] == 1 { shiftedRejected.scalars[i] -= 0.25 }
        }
        for type in [CPOLossType.simpo, .ipo] {
            let base = try run(batch.chosen, batch.rejected, type), shifted = try run(shiftedChosen, shiftedRejected, type)
            expectClose(shifted.losses, base.losses.scalars, abs: 1e-12, rel: 1e-10, "\(type) shift")
        }
        // AlphaPO tends to the plain log-prob as alpha -> 0: (1 - e^(-alpha·logp))/alpha -> logp.
        let limit = try run(batch.chosen, batch.rejected, .simpo, alpha: 1e-7)
        let plain = try run(batch.chosen, batch.rejected, .simpo)
        expectClose(limit.losses, plain.losses.scalars, abs: 1e-6, rel: 1e-6, "alpha -> 0")
        // The total is the mean of the per-pair losses plus cpo_alpha times the NLL, whatever the type.
        for type in CPOLossType.allCases {
            let r = try run(batch.chosen, batch.rejected, type, cpoAlpha: 0.4)
            let mean = r.losses.scalars.reduce(0, +) / 3
            expectClose(r.loss, mean + 0.4 * r.nllLoss, abs: 1e-14, rel: 1e-14, "\(type) total")
            #expect(r.nllLoss > 0)
        }
    }

    @Test("float32 agrees with float64")
    func precisions() throws {
        var rng = SplitMix64(seed: 302)
        let batch = randomTokenPairs(&rng, rows: 3, width: 5)
        for type in CPOLossType.allCases {
            let wide = try cpoLoss(chosenLogProbs: batch.chosen, rejectedLogProbs: batch.rejected, chosenMask: batch.chosenMask,
                                   rejectedMask: batch.rejectedMask, lossType: type, beta: 0.5, alpha: 0.1)
            let narrow = try cpoLoss(chosenLogProbs: batch.chosen.converted(to: Float.self),
                                     rejectedLogProbs: batch.rejected.converted(to: Float.self),
                                     chosenMask: batch.chosenMask, rejectedMask: batch.rejectedMask, lossType: type,
                                     beta: 0.5, alpha: 0.1)
            expectClose(narrow.losses, wide.losses.scalars, abs: 1e-5, rel: 1e-5, "\(type) float32")
            expectClose(narrow.loss, Double(wide.loss), abs: 1e-5, rel: 1e-5, "\(type) float32 loss")
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let mask2 = intMatrix([[0, 1, 2]])
        func call(_ type: CPOLossType = .sigmoid, chosen: Tensor<Double> = chosenRow, rejected: Tensor<Double> = rejectedRow,
                  chosenMask: Tensor<Int64> = completionMask, rejectedMask: Tensor<Int64> = completionMask,
                  beta: Double = 0.1, cpoAlpha: Double = 1, alpha: Double = 0) throws -> CPOLossResult<Double> {
            try cpoLoss(chosenLogProbs: chosen, rejectedLogProbs: rejected, chosenMask: chosenMask,
                        rejectedMask: rejectedMask, lossType: type, beta: beta, cpoAlpha: cpoAlpha, alpha: alpha)
        }
        expectStageError(.shapeMismatch, argument: "rejected_mask") { try call(rejectedMask: intMatrix([[0, 1]])) }
        expectStageError(.shapeMismatch, argument: "rejected_log_probs") { try call(rejected: matrix([[-1, -1, -1], [-1, -1, -1]])) }
        expectStageError(.shapeMismatch, argument: "chosen_log_probs") {
            try cpoLoss(chosenLogProbs: Tensor<Double>(shape: [0, 3], repeating: 0),
                        rejectedLogProbs: Tensor<Double>(shape: [0, 3], repeating: 0),
                        chosenMask: Tensor<Int64>(shape: [0, 3], repeating: 0),
                        rejectedMask: Tensor<Int64>(shape: [0, 3], repeating: 0))
        }
        expectStageError(.notANumber, argument: "chosen_log_probs") { try call(chosen: matrix([[-1, .nan, -1]])) }
        expectStageError(.invalidMask, argument: "chosen_mask") { try call(chosenMask: mask2) }
        expectStageError(.parameterOutOfRange, argument: "loss_type") { try CPOLossType(named: "alphapo", stage: "cpo_loss") }
        expectStageError(.emptyMask, argument: "rejected_mask") { try call(.ipo, rejectedMask: intMatrix([[0, 0, 0]])) }
        expectStageError(.emptyMask, argument: "chosen_mask") { try call(.simpo, chosenMask: intMatrix([[0, 0, 0]]), cpoAlpha: 0) }
        // sigmoid sums an empty row to 0 happily, but the NLL over no chosen token is 0/0.
        expectStageError(.emptyMask, argument: "chosen_mask") { try call(.sigmoid, chosenMask: intMatrix([[0, 0, 0]])) }
        #expect(try call(.sigmoid, chosenMask: intMatrix([[0, 0, 0]]), cpoAlpha: 0).chosenLogps.scalars == [0])
        expectStageError(.parameterOutOfRange, argument: "beta") { try call(.ipo, beta: 0) }
        expectStageError(.parameterOutOfRange, argument: "beta") { try call(.simpo, beta: 0) }
        // exp(-800) underflows to 0, and 0^(-0.5) = inf.
        expectStageError(.nonFiniteResult, argument: "chosen_rewards") { try call(chosen: matrix([[0, -400, -400]]), alpha: 0.5) }
        expectStageError(.nonFiniteResult, argument: "rejected_logps") { try call(rejected: matrix([[-.infinity, -1, -1]])) }
    }
}

@Suite("cpo_loss backward")
struct CPOLossBackwardTests {
    @Test("the gradients equal central differences for every loss type, with label smoothing, the NLL and AlphaPO")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 303)
        let batch = randomTokenPairs(&rng, rows: 3, width: 5)
        let settings: [(CPOLossType, Double, Double, Double)] = [  // type, ε, cpo_alpha, alpha
            (.sigmoid, 0, 1, 0), (.sigmoid, 0.2, 0.5, 0.15), (.hinge, 0, 1, 0), (.hinge, 0, 0, -0.3),
            (.ipo, 0, 0.3, 0), (.ipo, 0, 0, 0.2), (.simpo, 0, 0, 0), (.simpo, 0.1, 1, 0.25),
        ]
        for (type, eps, cpoAlpha, alpha) in settings {
            func loss(_ c: [Double], _ r: [Double]) throws -> Double {
                Double(try cpoLoss(chosenLogProbs: Tensor.make(batch.chosen.shape, c),
                                   rejectedLogProbs: Tensor.make(batch.rejected.shape, r),
                                   chosenMask: batch.chosenMask, rejectedMask: batch.rejectedMask, lossType: type,
                                   beta: 0.4, labelSmoothing: eps, simpoGamma: 0.3, cpoAlpha: cpoAlpha, alpha: alpha).loss)
            }
            let g = try cpoLossGradLogProbs(chosenLogProbs: batch.chosen, rejectedLogProbs: batch.rejected,
                                            chosenMask: batch.chosenMask, rejectedMask: batch.rejectedMask, lossType: type,
                                            beta: 0.4, labelSmoothing: eps, simpoGamma: 0.3, cpoAlpha: cpoAlpha, alpha: alpha)
            let numericChosen = try centralDifferenceGradient(at: batch.chosen.scalars) { try loss($0, batch.rejected.scalars) }
            let numericRejected = try centralDifferenceGradient(at: batch.rejected.scalars) { try loss(batch.chosen.scalars, $0) }
            expectClose(g.gradChosenLogProbs, numericChosen, abs: 1e-8, rel: 1e-6, "\(type) ε \(eps) alpha \(alpha): grad_chosen")
            expectClose(g.gradRejectedLogProbs, numericRejected, abs: 1e-8, rel: 1e-6, "\(type) ε \(eps) alpha \(alpha): grad_rejected")
            for i in batch.chosenMask.scalars.indices where batch.chosenMask.scalars[i] == 0 {
                #expect(g.gradChosenLogProbs.scalars[i] == 0)
            }
        }
    }
}

/// A random [rows, width] batch: per-token log-probs in (-2, -0.05), a prompt of
/// one masked position, completions of random length >= 1, masked padding.
func randomTokenPairs(_ rng: inout SplitMix64, rows: Int, width: Int)
    -> (chosen: Tensor<Double>, rejected: Tensor<Double>, chosenMask: Tensor<Int64>, rejectedMask: Tensor<Int64>) {
    func side(_ rng: inout SplitMix64) -> (Tensor<Double>, Tensor<Int64>) {
        let values = rng.uniform(count: rows * width, -2, -0.05)
        var mask = [Int64](repeating: 0, count: rows * width)
        for b in 0..<rows {
            let length = 1 + Int(rng.uniform(0, Double(width - 1) - 1e-9))
            for t in 1...length { mask[b * width + t] = 1 }
        }
        return (Tensor.make([rows, width], values), Tensor.make([rows, width], mask))
    }
    let (chosen, chosenMask) = side(&rng), (rejected, rejectedMask) = side(&rng)
    return (chosen, rejected, chosenMask, rejectedMask)
}
