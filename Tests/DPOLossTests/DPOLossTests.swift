import Foundation
import Testing
import TensorCore
import TestSupport
@testable import DPOLoss

@Suite("dpo_loss")
struct DPOLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "dpo_loss")
    }

    @Test("one pair by hand (pitfalls test 10): loss softplus(-0.21) = 0.593650")
    func onePair() throws {
        // β = 0.1, π_c = -2.0, ref_c = -2.1, π_r = -5.0, ref_r = -3.0, split over
        // tokens and zero-padded: the sums are what count.
        let result = try dpoLoss(betterLogProbs: matrix([[-1.5, -0.5, 0]]), worseLogProbs: matrix([[-2, -2, -1]]),
                                 refBetterLogProbs: matrix([[-1, -1.1, 0]]), refWorseLogProbs: matrix([[-1, -1, -1]]),
                                 beta: 0.1)
        // h_w = 0.1, h_l = -2, β·(h_w - h_l) = 0.21
        expectClose(result.loss, log(1 + exp(-0.21)), "loss")
        expectClose(result.loss, 0.593650, abs: 5e-7, rel: 0, "loss, the pitfalls' 6 digits")
        expectClose(result.betterSampleReward, [0.01], "better_sample_reward")
        expectClose(result.worseSampleReward, [-0.2], "worse_sample_reward")
        expectClose(result.rewardMargin, [0.21], "reward_margin (β applied once)")
        expectClose(result.reward, [-0.19], "reward")
        expectClose(result.rewardAccuracy, 1, "reward_accuracy")
    }

    @Test("policy = reference gives ln 2 for every pair and accuracy 0 (ties are wrong)")
    func policyEqualsReference() throws {
        var rng = SplitMix64(seed: 13)
        let better = Tensor.make([4, 6], rng.uniform(count: 24, -3, 0))
        let worse = Tensor.make([4, 6], rng.uniform(count: 24, -3, 0))
        let result = try dpoLoss(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: better,
                                 refWorseLogProbs: worse, beta: 0.1)
        expectClose(result.loss, log(2.0), "loss")
        expectClose(result.pairLosses, [Double](repeating: log(2.0), count: 4), "pair losses")
        expectClose(result.rewardAccuracy, 0, "reward_accuracy")
    }

    @Test("adding the same constant to both log-ratios leaves the loss unchanged")
    func shiftInvariance() throws {
        var rng = SplitMix64(seed: 17)
        let b = rng.uniform(count: 6, -3, 0), w = rng.uniform(count: 6, -3, 0)
        let rb = rng.uniform(count: 6, -3, 0), rw = rng.uniform(count: 6, -3, 0)
        func loss(shift: Double) throws -> Double {
            // Shift the first token of both policy rows: both sequence sums move by `shift`.
            var b2 = b, w2 = w
            b2[0] += shift; w2[0] += shift
            return try dpoLoss(betterLogProbs: Tensor.make([1, 6], b2), worseLogProbs: Tensor.make([1, 6], w2),
                               refBetterLogProbs: Tensor.make([1, 6], rb), refWorseLogProbs: Tensor.make([1, 6], rw),
                               beta: 0.5).loss
        }
        expectClose([try loss(shift: -1.7)], [try loss(shift: 0)], abs: 1e-14, rel: 0, "loss after a shift")
    }

    @Test("huge margins stay finite")
    func saturation() throws {
        let result = try dpoLoss(betterLogProbs: matrix([[-1], [-9000]]), worseLogProbs: matrix([[-9000], [-1]]),
                                 refBetterLogProbs: matrix([[0], [0]]), refWorseLogProbs: matrix([[0], [0]]), beta: 0.1)
        // pair 0: β·h = 899.9 -> loss ~ 0;  pair 1: -899.9 -> 899.9
        expectClose(result.pairLosses, [0, 899.9], abs: 1e-12, rel: 1e-12, "pair losses")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let x = Tensor<Double>(shape: [2, 3], repeating: 0)
        expectStageError(.shapeMismatch, argument: "ref_better_log_probs") {
            try dpoLoss(betterLogProbs: x, worseLogProbs: x, refBetterLogProbs: Tensor(shape: [2, 4], repeating: 0),
                        refWorseLogProbs: x, beta: 0.1)
        }
        expectStageError(.notANumber, argument: "worse_log_probs") {
            try dpoLoss(betterLogProbs: x, worseLogProbs: matrix([[0, 0, 0], [0, .nan, 0]]), refBetterLogProbs: x,
                        refWorseLogProbs: x, beta: 0.1)
        }
    }
}

@Suite("dpo_loss backward")
struct DPOLossBackwardTests {
    @Test("the gradients equal central differences")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 53)
        let better = rng.uniform(count: 8, -3, 0), worse = rng.uniform(count: 8, -3, 0)
        let refBetter = Tensor.make([2, 4], rng.uniform(count: 8, -3, 0))
        let refWorse = Tensor.make([2, 4], rng.uniform(count: 8, -3, 0))
        let grads = try dpoLossGradLogProbs(betterLogProbs: Tensor.make([2, 4], better), worseLogProbs: Tensor.make([2, 4], worse),
                                            refBetterLogProbs: refBetter, refWorseLogProbs: refWorse, beta: 0.5)
        let numeric = try centralDifferenceGradient(at: better + worse) { probe in
            Double(try dpoLoss(betterLogProbs: Tensor.make([2, 4], Array(probe[..<8])),
                               worseLogProbs: Tensor.make([2, 4], Array(probe[8...])),
                               refBetterLogProbs: refBetter, refWorseLogProbs: refWorse, beta: 0.5).loss)
        }
        expectClose(grads.gradBetterLogProbs, Array(numeric[..<8]), abs: 1e-9, rel: 1e-6, "grad_better_log_probs")
        expectClose(grads.gradWorseLogProbs, Array(numeric[8...]), abs: 1e-9, rel: 1e-6, "grad_worse_log_probs")
    }

    @Test("by hand: every token of a row gets -(β/B)·σ(-z), padding included")
    func byHand() throws {
        // The pitfalls' pair: z = β·(h_w - h_l) = 0.21, B = 1.
        let grads = try dpoLossGradLogProbs(betterLogProbs: matrix([[-1.5, -0.5, 0]]), worseLogProbs: matrix([[-2, -2, -1]]),
                                            refBetterLogProbs: matrix([[-1, -1.1, 0]]), refWorseLogProbs: matrix([[-1, -1, -1]]),
                                            beta: 0.1)
        let weight = 0.1 / (1 + exp(0.21))  // β·σ(-0.21)
        expectClose(grads.gradBetterLogProbs, [-weight, -weight, -weight], "grad_better_log_probs")
        expectClose(grads.gradWorseLogProbs, [weight, weight, weight], "grad_worse_log_probs")
    }
}

@Suite("dpo_loss: infinite inputs")
struct DPOLossInfiniteInputTests {
    // Expected values are PyTorch's (torch 2.13.0+cpu, float64): the generator's
    // `dpo_loss` (GoldenData/generator/stages/dpo_loss.py) and autograd, on the same
    // inputs. β = 0.5.

    @Test("a -inf token log-prob: its pair's rewards, margin and loss are infinite, the gradient finite")
    func infiniteLogProb() throws {
        let better = matrix([[-1, -.infinity], [-1, -1]]), worse = matrix([[-1, -1], [-2, 0]])
        let reference = matrix([[-1, -1], [-1, -1]])
        let result = try dpoLoss(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: reference,
                                 refWorseLogProbs: reference, beta: 0.5)
        expectClose(result.loss, .infinity, "loss")
        expectClose(result.reward, [-.infinity, 0], "reward")
        expectClose(result.betterSampleReward, [-.infinity, 0], "better_sample_reward")
        expectClose(result.worseSampleReward, [0, 0], "worse_sample_reward")
        expectClose(result.rewardAccuracy, 0, "reward_accuracy")
        expectClose(result.rewardMargin, [-.infinity, 0], "reward_margin")
        let grads = try dpoLossGradLogProbs(betterLogProbs: better, worseLogProbs: worse, refBetterLogProbs: reference,
                                            refWorseLogProbs: reference, beta: 0.5)
        expectClose(grads.gradBetterLogProbs, [-0.25, -0.25, -0.125, -0.125], "grad_better_log_probs")
        expectClose(grads.gradWorseLogProbs, [0.25, 0.25, 0.125, 0.125], "grad_worse_log_probs")
    }

    @Test("where PyTorch gives NaN in an output, a nonFiniteResult naming it")
    func nanOutputs() throws {
        // h_w = +inf (the reference gives -inf), h_l = -inf: PyTorch's loss is 0,
        // the margin +inf, accuracy 1, but reward = inf + (-inf) = NaN.
        let refBetter = matrix([[-.infinity, -1]]), worse = matrix([[-.infinity, -1]])
        let ones = matrix([[-1, -1]])
        expectStageError(.nonFiniteResult, argument: "reward") {
            try dpoLoss(betterLogProbs: ones, worseLogProbs: worse, refBetterLogProbs: refBetter,
                        refWorseLogProbs: ones, beta: 0.5)
        }
        expectStageError(.nonFiniteResult, argument: "reward") {
            try dpoLossGradLogProbs(betterLogProbs: ones, worseLogProbs: worse, refBetterLogProbs: refBetter,
                                    refWorseLogProbs: ones, beta: 0.5)
        }
        // -inf in both the policy's and the reference's better answer: h_w = -inf - (-inf).
        expectStageError(.nonFiniteResult, argument: "loss") {
            try dpoLoss(betterLogProbs: refBetter, worseLogProbs: ones, refBetterLogProbs: refBetter,
                        refWorseLogProbs: ones, beta: 0.5)
        }
    }
}
