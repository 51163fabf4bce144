import Foundation
import Testing
import TensorCore
import TestSupport
@testable import RewardEndLossSqreg

@Suite("reward_end_loss_sqreg")
struct RewardEndLossSqregTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "reward_end_loss_sqreg", minimum: 10)
    }

    @Test("two pairs by hand, λ = 0.1, 0 and -0.1")
    func byHand() throws {
        // h = [2, 0], l = [0, 0]
        // pair 1: x = 2, softplus(-2) = log(1 + e^-2) = 0.1269280110429725
        // pair 2: x = 0, softplus(0)  = ln 2         = 0.6931471805599453
        // mean = 0.8200751916029178 / 2 = 0.4100375958014589
        // λ = 0.1: + 0.1 · (2² + 0² + 0² + 0²) / 4 = 0.1   -> 0.5100375958014589
        let endScores = vector([2, 0, 0, 0])
        let result = try rewardEndLossSqreg(endScores: endScores, regularization: 0.1)
        expectClose(result.loss, 0.5100375958014589, "loss, λ = 0.1")
        #expect(result.higherEndReward.scalars == [2, 0])
        #expect(result.lowerEndReward.scalars == [0, 0])
        // Pair 2 ties: it counts as wrong. 1 of 2.
        #expect(result.accuracy == 0.5)
        // λ = 0 adds nothing, and a negative λ is ignored, not subtracted.
        expectClose(try rewardEndLossSqreg(endScores: endScores, regularization: 0).loss, 0.4100375958014589, "loss, λ = 0")
        expectClose(try rewardEndLossSqreg(endScores: endScores, regularization: -0.1).loss, 0.4100375958014589, "loss, λ = -0.1")
    }

    @Test("the gradient by hand, λ = 0.1 and -0.1")
    func gradientByHand() throws {
        // σ(-2) = 1 / (1 + e^2) = 0.11920292202211755, σ(0) = 0.5, B = 2
        // ∂/∂h_1 = -σ(-2)/2 + 0.1·2/2 = -0.059601461011058775 + 0.1 = 0.04039853898894123
        // ∂/∂h_2 = -0.5/2 + 0 = -0.25;   ∂/∂l_1 = σ(-2)/2 + 0 = 0.05960146101105877;   ∂/∂l_2 = 0.25
        let endScores = vector([2, 0, 0, 0])
        expectClose(try rewardEndLossSqregGradEndScores(endScores: endScores, regularization: 0.1),
                    [0.04039853898894123, -0.25, 0.05960146101105877, 0.25], "grad_end_scores, λ = 0.1")
        // λ = -0.1: the regularizer is absent, only the pairwise term is left.
        expectClose(try rewardEndLossSqregGradEndScores(endScores: endScores, regularization: -0.1),
                    [-0.05960146101105877, -0.25, 0.05960146101105877, 0.25], "grad_end_scores, λ = -0.1")
    }

    @Test("invariants: shifting every score leaves the pairwise term alone; a swap flips the accuracy; large gaps stay finite")
    func invariants() throws {
        var rng = SplitMix64(seed: 81)
        let scores = rng.uniform(count: 10, -3, 3)
        let base = try rewardEndLossSqreg(endScores: vector(scores), regularization: 0)
        let shifted = try rewardEndLossSqreg(endScores: vector(scores.map { $0 + 7.5 }), regularization: 0)
        expectClose(shifted.loss, Double(base.loss), abs: 1e-12, rel: 1e-12, "loss after a shift by 7.5")
        // Swapping better and worse: the accuracies of a tie-free batch add to 1.
        let swapped = try rewardEndLossSqreg(endScores: vector(Array(scores[5...] + scores[..<5])), regularization: 0)
        #expect(base.accuracy + swapped.accuracy == 1)
        // The regularizer is λ times the mean of the 2B squares.
        let regularized = try rewardEndLossSqreg(endScores: vector(scores), regularization: 0.25)
        let meanSquare = scores.reduce(0) { $0 + $1 * $1 } / 10
        expectClose(regularized.loss, Double(base.loss) + 0.25 * meanSquare, "loss with λ = 0.25")
        // Gaps of ±1000: softplus(-1000) = 0 and softplus(1000) = 1000, no overflow.
        let far = try rewardEndLossSqreg(endScores: vector([500, -500, -500, 500]), regularization: 0)
        expectClose(far.loss, 500, "loss at gaps +1000 and -1000")
        let farFloat = try rewardEndLossSqreg(endScores: Tensor<Float>.make([4], [500, -500, -500, 500]), regularization: 0)
        #expect(farFloat.loss == 500)
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        expectStageError(.invalidPair, argument: "end_scores") { try rewardEndLossSqreg(endScores: vector([1, 2, 3]), regularization: 0.001) }
        expectStageError(.invalidPair, argument: "end_scores") { try rewardEndLossSqreg(endScores: vector([1]), regularization: 0.001) }
        expectStageError(.shapeMismatch, argument: "end_scores") { try rewardEndLossSqreg(endScores: vector([]), regularization: 0.001) }
        expectStageError(.shapeMismatch, argument: "end_scores") {
            try rewardEndLossSqreg(endScores: matrix([[1], [2]]), regularization: 0.001)
        }
        expectStageError(.notANumber, argument: "end_scores") { try rewardEndLossSqreg(endScores: vector([1, .nan]), regularization: 0.001) }
        expectStageError(.parameterOutOfRange, argument: "regularization") {
            try rewardEndLossSqreg(endScores: vector([1, 2]), regularization: .infinity)
        }
        // Two infinite scores in one pair: inf - inf is NaN, which the peer would return.
        expectStageError(.nonFiniteResult, argument: "loss") {
            try rewardEndLossSqreg(endScores: vector([.infinity, .infinity]), regularization: 0.001)
        }
        expectStageError(.nonFiniteResult, argument: "loss") {
            try rewardEndLossSqregGradEndScores(endScores: vector([.infinity, .infinity]), regularization: 0.001)
        }
    }
}

@Suite("reward_end_loss_sqreg backward")
struct RewardEndLossSqregBackwardTests {
    @Test("grad_end_scores equals central differences, with and without the regularizer")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 82)
        let scores = rng.uniform(count: 8, -2, 2)
        for regularization in [0.001, 0.3, 0, -0.2] {
            let grad = try rewardEndLossSqregGradEndScores(endScores: vector(scores), regularization: regularization)
            let numeric = try centralDifferenceGradient(at: scores) { probe in
                Double(try rewardEndLossSqreg(endScores: vector(probe), regularization: regularization).loss)
            }
            expectClose(grad, numeric, abs: 1e-9, rel: 1e-6, "grad_end_scores vs finite differences, λ = \(regularization)")
        }
    }
}
