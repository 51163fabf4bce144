import Foundation
import Testing
import TensorCore
import TestSupport
import PolicyLosses

@Suite("ppo_policy_loss")
struct PPOPolicyLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "ppo_policy_loss", minimum: 40)
    }

    @Test("by hand: a 1x2 batch through the ppo clip, both tokens clipped")
    func clippedByHand() throws {
        // d = [ln 1.5, ln 0.5], A = [+1, -1], ε = 0.2.
        // Token 0: s1 = 1.5·1 = 1.5, s2 = clamp(1.5, 0.8, 1.2)·1 = 1.2 -> q = -min = -1.2 (clipped: s2 < s1).
        // Token 1: s1 = 0.5·(-1) = -0.5, s2 = 0.8·(-1) = -0.8 -> q = -(-0.8) = 0.8 (clipped: s2 < s1).
        // policy_loss = (-1.2 + 0.8)/2 = -0.2; clip_ratio = 2/2 = 1.
        // ppo_kl = -(ln 1.5 + ln 0.5)/2 = -ln(0.75)/2 = 0.14384103622589045.
        // Both tokens take the clamped branch outside [0.8, 1.2]: the gradient is 0.
        let old = matrix([[-1.0, -2.0]])
        let logProbs = matrix([[-1.0 + log(1.5), -2.0 + log(0.5)]])
        let result = try ppoPolicyLoss(logProbs: logProbs, oldLogProbs: old, advantages: matrix([[1, -1]]),
                                       actionMask: intMatrix([[1, 1]]))
        expectClose(result.policyLoss, -0.2, "policy_loss")
        expectClose(result.loss, -0.2, "loss = policy_loss without the KL loss")
        expectClose(result.clipRatio, 1, abs: 0, rel: 0, "clip_ratio")
        expectClose(result.ppoKL, 0.14384103622589045, "ppo_kl")
        #expect(result.klLoss == nil)
        let grad = try ppoPolicyLossGradLogProbs(logProbs: logProbs, oldLogProbs: old, advantages: matrix([[1, -1]]),
                                                 actionMask: intMatrix([[1, 1]]))
        expectClose(grad, [0, 0], abs: 0, rel: 0, "grad_log_probs")
    }

    @Test("by hand: ratios inside the clip range pass -A·ρ/n back")
    func insideByHand() throws {
        // d = [ln 1.1, ln 0.9], A = [2, -1]: s1 = [2.2, -0.9], s2 = s1 (inside [0.8, 1.2]).
        // q = [-2.2, 0.9]; policy_loss = (-2.2 + 0.9)/2 = -0.65; clip_ratio = 0 (no s2 < s1).
        // ∂loss/∂lp_t = -A_t·ρ_t / 2 = [-2·1.1/2, 1·0.9/2] = [-1.1, 0.45].
        let old = matrix([[-0.5, -1.5]])
        let logProbs = matrix([[-0.5 + log(1.1), -1.5 + log(0.9)]])
        let a = matrix([[2, -1]]), mask = intMatrix([[1, 1]])
        let result = try ppoPolicyLoss(logProbs: logProbs, oldLogProbs: old, advantages: a, actionMask: mask)
        expectClose(result.loss, -0.65, "loss")
        expectClose(result.clipRatio, 0, abs: 0, rel: 0, "clip_ratio")
        let grad = try ppoPolicyLossGradLogProbs(logProbs: logProbs, oldLogProbs: old, advantages: a, actionMask: mask)
        expectClose(grad, [-1.1, 0.45], "grad_log_probs")
    }

    @Test("by hand: the dual clip bounds a negative-advantage token's loss at -c·A")
    func dualClipByHand() throws {
        // ρ = 4, A = -1, c = 3: s1 = -4, s2 = 1.2·(-1) = -1.2, min = -4; max(-4, 3·(-1) = -3) = -3 -> q = 3.
        // Without the dual clip q = 4. c·A is a constant: the gradient is 0 under the dual clip,
        // and -A·ρ = 4 without it.
        let old = matrix([[-3.0]]), logProbs = matrix([[-3.0 + log(4.0)]])
        let a = matrix([[-1]]), mask = intMatrix([[1]])
        let dual = PPOPolicyLossConfig(dualClip: 3)
        let clipped = try ppoPolicyLoss(logProbs: logProbs, oldLogProbs: old, advantages: a, actionMask: mask, config: dual)
        expectClose(clipped.loss, 3, "loss with dual_clip 3")
        let plain = try ppoPolicyLoss(logProbs: logProbs, oldLogProbs: old, advantages: a, actionMask: mask)
        expectClose(plain.loss, 4, "loss without dual clip")
        let gradDual = try ppoPolicyLossGradLogProbs(logProbs: logProbs, oldLogProbs: old, advantages: a,
                                                     actionMask: mask, config: dual)
        expectClose(gradDual, [0], abs: 0, rel: 0, "grad with dual clip")
        let gradPlain = try ppoPolicyLossGradLogProbs(logProbs: logProbs, oldLogProbs: old, advantages: a,
                                                      actionMask: mask)
        expectClose(gradPlain, [4], "grad without dual clip")
    }

    @Test("by hand: sample level divides each row by n_b + 1e-8 and skips empty rows")
    func sampleLevelByHand() throws {
        // Ratio 1 everywhere, so q = -A. Row 0 keeps one token (A = 4), row 1 three (A = 1, 2, 3),
        // row 2 none. Row means: -4/(1 + 1e-8) and -6/(3 + 1e-8); row 2 is left out of the mean:
        // policy_loss = (-4/(1 + 1e-8) - 6/(3 + 1e-8))/2 ≈ -3 + 2e-8 (the token mean would be -10/4).
        let lp = matrix([[-1, -2, -3], [-1, -1, -1], [-2, -2, -2]])
        let a = matrix([[4, 100, -100], [1, 2, 3], [7, 7, 7]])
        let mask = intMatrix([[1, 0, 0], [1, 1, 1], [0, 0, 0]])
        let config = PPOPolicyLossConfig(tokenLevelLoss: false)
        let result = try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask, config: config)
        expectClose(result.loss, (-4 / (1 + 1e-8) - 6 / (3 + 1e-8)) / 2, "sample-level loss")
        #expect(abs(result.loss - (-3)) > 1e-8, "the +1e-8 shows at float64 precision")
        let tokenLevel = try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask)
        expectClose(tokenLevel.loss, -2.5, "token-level loss")
    }

    @Test("by hand: gspo's row ratio is exp of the mean log-ratio and reaches every unmasked token")
    func gspoByHand() throws {
        // d = [0.2, 0.4, 9 (masked)] -> g = 0.6/2 = 0.3, ρ = e^0.3 = 1.3498588075760032 at the kept tokens.
        // A = -1: s1 = -e^0.3, s2 = -1.2; min = -e^0.3 -> q = e^0.3 per kept token; loss = row mean = e^0.3.
        // ∂loss/∂g = e^0.3, and ∂g/∂lp_t = m_t/2: grad = [e^0.3/2, e^0.3/2, 0].
        // A = +1: s2 = 1.2 < s1, the clamp blocks: loss = -1.2, grad 0.
        let old = matrix([[-1, -2, -3]])
        let lp = matrix([[-0.8, -1.6, 6]])
        let mask = intMatrix([[1, 1, 0]])
        let config = PPOPolicyLossConfig(policyLossType: .gspo)
        let e03 = 1.3498588075760032
        let negative = try ppoPolicyLoss(logProbs: lp, oldLogProbs: old, advantages: matrix([[-1, -1, -1]]),
                                         actionMask: mask, config: config)
        expectClose(negative.loss, e03 / (1 + 0.5e-8), "loss, A = -1 (row mean over n + 1e-8)")
        expectClose(negative.ratios, [e03, e03, 0], "ratios: 0 under the mask")
        let grad = try ppoPolicyLossGradLogProbs(logProbs: lp, oldLogProbs: old, advantages: matrix([[-1, -1, -1]]),
                                                 actionMask: mask, config: config)
        expectClose(grad, [e03 / 2 / (1 + 0.5e-8), e03 / 2 / (1 + 0.5e-8), 0], "grad, A = -1")
        let positive = try ppoPolicyLoss(logProbs: lp, oldLogProbs: old, advantages: matrix([[1, 1, 1]]),
                                         actionMask: mask, config: config)
        expectClose(positive.loss, -1.2 / (1 + 0.5e-8), "loss, A = +1 (clipped)")
    }

    @Test("by hand: the KL loss is a token mean of the clamped estimate, scaled by kl_coef")
    func klLossByHand() throws {
        // r = lp - ref = [1, -2] (both kept), k1 = [1, -2], k2 = [0.5, 2], k3 = [e^-1 - 1 + 1, e^2 - 1 - 2].
        // Ratio 1 (lp = old), A = 0: policy_loss = 0. kl_loss = mean(k); loss = 0.1·kl_loss.
        let lp = matrix([[-1, -3]]), ref = matrix([[-2, -1]])
        let a = matrix([[0, 0]]), mask = intMatrix([[1, 1]])
        let expected: [(PolicyKLEstimator, Double, [Double])] = [
            (.k1, -0.5, [1, 1]),
            (.k2, 1.25, [1, -2]),
            (.k3, (exp(-1.0) + exp(2.0) - 3) / 2, [1 - exp(-1.0), 1 - exp(2.0)]),
        ]
        for (estimator, klLoss, derivative) in expected {
            let config = PPOPolicyLossConfig(useKLLoss: true, klCoef: 0.1, klEstimator: estimator)
            let result = try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask,
                                           refLogProbs: ref, config: config)
            expectClose(result.klLoss ?? .nan, klLoss, "kl_loss \(estimator)")
            expectClose(result.loss, 0.1 * klLoss, "loss \(estimator)")
            // ∂loss/∂lp_t = kl_coef · k'(r_t) / n.
            let grad = try ppoPolicyLossGradLogProbs(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask,
                                                     refLogProbs: ref, config: config)
            expectClose(grad, derivative.map { 0.1 * $0 / 2 }, "grad \(estimator)")
        }
        // k3 at r = -15 is e^15 - 16 > 10: clamped to 10, and nothing passes the clamp.
        let config = PPOPolicyLossConfig(useKLLoss: true, klCoef: 1, klEstimator: .k3)
        let clamped = try ppoPolicyLoss(logProbs: matrix([[-16.0]]), oldLogProbs: matrix([[-16.0]]),
                                        advantages: matrix([[0]]), actionMask: intMatrix([[1]]),
                                        refLogProbs: matrix([[-1.0]]), config: config)
        expectClose(clamped.klLoss ?? .nan, 10, abs: 0, rel: 0, "clamped k3")
        let clampedGrad = try ppoPolicyLossGradLogProbs(logProbs: matrix([[-16.0]]), oldLogProbs: matrix([[-16.0]]),
                                                        advantages: matrix([[0]]), actionMask: intMatrix([[1]]),
                                                        refLogProbs: matrix([[-1.0]]), config: config)
        expectClose(clampedGrad, [0], abs: 0, rel: 0, "no gradient through the clamp")
    }

    @Test("invariant: at ratio 1 everywhere the token-level ppo loss is -mean(A) over the mask")
    func ratioOneIsMinusMeanAdvantage() throws {
        var rng = SplitMix64(seed: 7)
        let lp = Tensor.make([3, 5], rng.uniform(count: 15, -3, -0.1))
        let a = Tensor.make([3, 5], rng.uniform(count: 15, -2, 2))
        let mask = intMatrix([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
        let kept = (0..<15).filter { mask.scalars[$0] == 1 }
        let meanA = kept.map { a.scalars[$0] }.reduce(0, +) / Double(kept.count)
        let result = try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask)
        expectClose(result.loss, -meanA, abs: 1e-15, rel: 1e-14, "loss")
        expectClose(result.clipRatio, 0, abs: 0, rel: 0, "clip_ratio")
        expectClose(result.ppoKL, 0, abs: 0, rel: 0, "ppo_kl")
        let grad = try ppoPolicyLossGradLogProbs(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask)
        expectClose(grad, (0..<15).map { -a.scalars[$0] * Double(mask.scalars[$0]) / Double(kept.count) },
                    abs: 1e-16, rel: 1e-14, "grad = -A·m/n")
    }

    @Test("invariant: with one log-ratio per row gspo is sample-level ppo")
    func gspoIsSampleLevelPPOForConstantRows() throws {
        var rng = SplitMix64(seed: 11)
        let old = rng.uniform(count: 12, -3, -0.5)
        let rowRatio = [0.05, -0.3, 0.25]
        let lp = Tensor.make([3, 4], (0..<12).map { old[$0] + rowRatio[$0 / 4] })
        let a = Tensor.make([3, 4], rng.uniform(count: 12, -2, 2))
        let mask = intMatrix([[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 1]])
        let gspo = try ppoPolicyLoss(logProbs: lp, oldLogProbs: Tensor.make([3, 4], old), advantages: a,
                                     actionMask: mask, config: PPOPolicyLossConfig(policyLossType: .gspo))
        let sample = try ppoPolicyLoss(logProbs: lp, oldLogProbs: Tensor.make([3, 4], old), advantages: a,
                                       actionMask: mask, config: PPOPolicyLossConfig(tokenLevelLoss: false))
        expectClose(gspo.loss, Double(sample.loss), abs: 1e-15, rel: 1e-13, "loss")
    }

    @Test("central differences agree with the backward pass (away from kinks)")
    func centralDifferences() throws {
        let configs: [PPOPolicyLossConfig] = [
            PPOPolicyLossConfig(),
            PPOPolicyLossConfig(clipEpsLow: 0.2, clipEpsHigh: 0.28, tokenLevelLoss: false),
            PPOPolicyLossConfig(dualClip: 1.5),
            PPOPolicyLossConfig(policyLossType: .gspo, clipEpsLow: 0.1, clipEpsHigh: 0.1),
            PPOPolicyLossConfig(useKLLoss: true, klCoef: 0.3, klEstimator: .k1),
            PPOPolicyLossConfig(useKLLoss: true, klCoef: 0.3, klEstimator: .k2),
            PPOPolicyLossConfig(policyLossType: .gspo, useKLLoss: true, klCoef: 0.3, klEstimator: .k3),
        ]
        var rng = SplitMix64(seed: 2026)
        let old = Tensor.make([3, 4], rng.uniform(count: 12, -3, -0.5))
        let lp = Tensor.make([3, 4], (0..<12).map { old.scalars[$0] + rng.uniform(-0.9, 0.9) })
        let ref = Tensor.make([3, 4], (0..<12).map { old.scalars[$0] + rng.uniform(-0.5, 0.5) })
        let a = Tensor.make([3, 4], rng.uniform(count: 12, -2, 2))
        let mask = intMatrix([[1, 1, 1, 0], [1, 0, 1, 1], [0, 1, 1, 1]])
        for config in configs {
            let grad = try ppoPolicyLossGradLogProbs(logProbs: lp, oldLogProbs: old, advantages: a, actionMask: mask,
                                                     refLogProbs: ref, config: config)
            let numeric = try centralDifferenceGradient(at: lp.scalars) { x in
                try Double(ppoPolicyLoss(logProbs: Tensor.make([3, 4], x), oldLogProbs: old, advantages: a,
                                         actionMask: mask, refLogProbs: ref, config: config).loss)
            }
            expectClose(grad.scalars, numeric, abs: 1e-8, rel: 1e-6, "grad vs central differences, \(config)")
            #expect(grad.scalars.contains { $0 != 0 }, "a gradient that is all zero checks nothing, \(config)")
        }
    }

    @Test("float32 follows float64 within float32 rounding")
    func float32() throws {
        var rng = SplitMix64(seed: 5)
        let old = Tensor.make([2, 5], rng.uniform(count: 10, -3, -0.5))
        let lp = Tensor.make([2, 5], (0..<10).map { old.scalars[$0] + rng.uniform(-0.5, 0.5) })
        let a = Tensor.make([2, 5], rng.uniform(count: 10, -2, 2))
        let mask = intMatrix([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
        let config = PPOPolicyLossConfig(useKLLoss: true, klEstimator: .k3)
        let wide = try ppoPolicyLoss(logProbs: lp, oldLogProbs: old, advantages: a, actionMask: mask, refLogProbs: old,
                                     config: config)
        let narrow = try ppoPolicyLoss(logProbs: lp.converted(to: Float.self), oldLogProbs: old.converted(to: Float.self),
                                       advantages: a.converted(to: Float.self), actionMask: mask,
                                       refLogProbs: old.converted(to: Float.self), config: config)
        expectClose(narrow.loss, Double(wide.loss), abs: 1e-6, rel: 1e-5, "loss")
    }

    @Test("every listed error throws, naming the argument")
    func errors() {
        let lp = matrix([[-1, -2], [-1, -1]]), a = matrix([[1, -1], [0.5, 2]]), mask = intMatrix([[1, 1], [1, 0]])
        expectStageError(.parameterOutOfRange, argument: "dual_clip") {
            try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask,
                              config: PPOPolicyLossConfig(dualClip: 1))
        }
        expectStageError(.emptyMask, argument: "action_mask") {
            try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: intMatrix([[0, 0], [0, 0]]))
        }
        expectStageError(.shapeMismatch, argument: "ref_log_probs") {
            try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: mask,
                              config: PPOPolicyLossConfig(useKLLoss: true))
        }
        expectStageError(.shapeMismatch, argument: "advantages") {
            try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: matrix([[1], [2]]), actionMask: mask)
        }
        expectStageError(.shapeMismatch, argument: "log_probs") {
            try ppoPolicyLoss(logProbs: Tensor<Double>(shape: [0, 2], repeating: 0),
                              oldLogProbs: Tensor<Double>(shape: [0, 2], repeating: 0),
                              advantages: Tensor<Double>(shape: [0, 2], repeating: 0),
                              actionMask: Tensor<Int64>(shape: [0, 2], repeating: 0))
        }
        expectStageError(.notANumber, argument: "old_log_probs") {
            try ppoPolicyLoss(logProbs: lp, oldLogProbs: matrix([[-1, .nan], [-1, -1]]), advantages: a, actionMask: mask)
        }
        expectStageError(.invalidMask, argument: "action_mask") {
            try ppoPolicyLoss(logProbs: lp, oldLogProbs: lp, advantages: a, actionMask: intMatrix([[1, 2], [1, 0]]))
        }
        expectStageError(.parameterOutOfRange, argument: "policy_loss_type") {
            let _: PolicyLossType = try peerSwitch("grpo", "policy_loss_type", stage: "ppo_policy_loss")
        }
        expectStageError(.parameterOutOfRange, argument: "kl_estimator") {
            let _: PolicyKLEstimator = try peerSwitch("k4", "kl_estimator", stage: "ppo_policy_loss")
        }
        // gspo has no clamp: a mean log-ratio of 900 overflows, with A < 0 the loss is +inf.
        expectStageError(.nonFiniteResult, argument: "loss") {
            try ppoPolicyLoss(logProbs: matrix([[899, 898], [-1, -1]]), oldLogProbs: lp, advantages: matrix([[-1, -1], [1, 1]]),
                              actionMask: mask, config: PPOPolicyLossConfig(policyLossType: .gspo))
        }
    }
}
