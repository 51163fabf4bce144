import Foundation
import Testing
import TensorCore
import TestSupport
import PolicyLosses

@Suite("grpo_loss")
struct GRPOLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "grpo_loss", minimum: 90)
    }

    // A 2x2 batch at ratio 1 (log_probs = old), so every clipping loss type has q = -A:
    // A = [3, -1], mask [[1, 1], [1, 0]]  ->  q = [[-3, -3], [1, 1]], n = [2, 1], N = 3.
    let lp = matrix([[-1, -2], [-0.5, -1.5]])
    let a = vector([3, -1])
    let mask = intMatrix([[1, 1], [1, 0]])

    @Test("by hand: the five reductions of the clipped loss at ratio 1")
    func reductionsByHand() throws {
        // grpo:    row means -6/2 = -3 and 1/1 = 1, mean over rows (-3 + 1)/2 = -1
        // bnpo:    (-3 - 3 + 1)/3 = -5/3
        // dr_grpo: (-3 - 3 + 1)/(B·L) = -5/(2·5) = -0.5 with max_completion_length 5
        // dapo:    -5/max(N, 1) = -5/3; with num_items_in_batch 10: -0.5
        // luspo:   mean over all 4 entries of q·n_b = (-6 - 6 + 1 + 1)/4 = -2.5 (the masked q counts)
        // With GA = 2: grpo, bnpo, dr_grpo, luspo halve; dapo does not.
        let expected: [(GRPOLossType, Double, Double)] = [
            (.grpo, -1, -0.5), (.bnpo, -5.0 / 3, -5.0 / 6), (.drGRPO, -0.5, -0.25), (.dapo, -5.0 / 3, -5.0 / 3),
            (.luspo, -2.5, -1.25),
        ]
        for (lossType, one, two) in expected {
            for (ga, want) in [(1, one), (2, two)] {
                let config = GRPOLossConfig(lossType: lossType, maxCompletionLength: 5, gradientAccumulationSteps: ga)
                let result = try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask, config: config)
                expectClose(result.loss, want, abs: 1e-15, rel: 1e-15, "\(lossType) GA \(ga)")
                expectClose(result.clipRatioRegion ?? .nan, 0, abs: 0, rel: 0, "no clipping at ratio 1, \(lossType)")
                #expect(result.kl == nil)
            }
        }
        let items = try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask,
                                 config: GRPOLossConfig(numItemsInBatch: 10))
        expectClose(items.loss, -0.5, abs: 1e-15, rel: 1e-15, "dapo with num_items_in_batch 10")
    }

    @Test("by hand: gradients of grpo and luspo at ratio 1")
    func gradientsByHand() throws {
        // ∂q/∂lp = -A·ρ = -A at ratio 1 (inside the clip: both branches tie, each passes A/2).
        // grpo: R = m/(n_b·B): row 0 weighs 1/4 per token, row 1 1/2 -> [[-3/4, -3/4], [1/2, 0]].
        // luspo: R = n_b/(B·T) at every entry: row 0 2/4, row 1 1/4 -> [[-3/2, -3/2], [1/4, 1/4]]:
        // TRL applies no mask there, so the padded entry gets a gradient.
        let grpo = try grpoLossGradLogProbs(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask,
                                            config: GRPOLossConfig(lossType: .grpo))
        expectClose(grpo, [-0.75, -0.75, 0.5, 0], abs: 1e-15, rel: 1e-15, "grpo")
        let luspo = try grpoLossGradLogProbs(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask,
                                             config: GRPOLossConfig(lossType: .luspo))
        expectClose(luspo, [-1.5, -1.5, 0.25, 0.25], abs: 1e-15, rel: 1e-15, "luspo")
    }

    @Test("by hand: cispo, sapo and vespo")
    func otherTypesByHand() throws {
        // cispo: one token, d = ln 2 (ρ = 2), A = 1.5, lp = -1 + ln 2: q = -min(2, ε_h)·A·lp.
        //   ε_h = 5: q = -2·1.5·lp = -3·lp, grad -3 (c is detached).  ε_h null = 0.2: c = 0.2, grad -0.3.
        let old = matrix([[-1.0]]), lpc = matrix([[-1.0 + log(2.0)]]), one = intMatrix([[1]])
        let capped5 = GRPOLossConfig(lossType: .cispo, epsilonHigh: 5)
        let c5 = try grpoLoss(logProbs: lpc, oldLogProbs: old, advantages: vector([1.5]), mask: one, config: capped5)
        expectClose(c5.loss, -3 * (-1 + log(2.0)), "cispo ε_h 5")
        #expect(c5.clipRatioLow == nil, "cispo reports no clip metrics")
        expectClose(try grpoLossGradLogProbs(logProbs: lpc, oldLogProbs: old, advantages: vector([1.5]), mask: one,
                                             config: capped5), [-3], "cispo grad ε_h 5")
        expectClose(try grpoLossGradLogProbs(logProbs: lpc, oldLogProbs: old, advantages: vector([1.5]), mask: one,
                                             config: GRPOLossConfig(lossType: .cispo)), [-0.3], "cispo grad ε_h = ε")

        // sapo at ratio 1: σ(0) = 1/2, q = -(1/2·4/τ)·A. A = 2 > 0 uses τ = 1: q = -4.
        //   A = -2 uses τ = 1.05: q = 4/1.05. ∂q/∂ρ = -4·A·σ(1-σ) = -A at any τ, so grad = -A (one token).
        for (advantage, loss) in [(2.0, -4.0), (-2.0, 4 / 1.05)] {
            let result = try grpoLoss(logProbs: old, oldLogProbs: old, advantages: vector([advantage]), mask: one,
                                      config: GRPOLossConfig(lossType: .sapo))
            expectClose(result.loss, loss, "sapo A = \(advantage)")
            expectClose(try grpoLossGradLogProbs(logProbs: old, oldLogProbs: old, advantages: vector([advantage]),
                                                 mask: one, config: GRPOLossConfig(lossType: .sapo)),
                        [-advantage], "sapo grad A = \(advantage)")
        }

        // vespo at d = 0: S = 0, ℓ = 0, W = 1, φ = exp(λ + 0 - λ) = 1, so q = -A·lp, reduced as dapo:
        // loss = Σ -A_b·lp·m / N = -(3·(-1) + 3·(-2) + (-1)·(-0.5))/3 = 8.5/3; grad = -A·m/N.
        let vespo = try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask,
                                 config: GRPOLossConfig(lossType: .vespo))
        expectClose(vespo.loss, 8.5 / 3, "vespo")
        expectClose(try grpoLossGradLogProbs(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask,
                                             config: GRPOLossConfig(lossType: .vespo)),
                    [-1, -1, 1.0 / 3, 0], "vespo grad")
    }

    @Test("by hand: the k3 KL term, its metric and the bias correction")
    func klByHand() throws {
        // One token, ref - lp = ln 2: k = 2 - ln 2 - 1 = 1 - ln 2. A = 0, so the policy term is 0.
        // dapo with beta 0.5: loss = 0.5·(1 - ln 2), kl = 1 - ln 2; ∂k/∂lp = 1 - e^(ref - lp) = -1 -> grad -0.5.
        // Bias correction with d = ln 3 (ρ = 3): k' = 3·(1 - ln 2); ∂k'/∂lp = -1·3 + (1 - ln 2)·3.
        let lpk = matrix([[-2.0]]), ref = matrix([[-2.0 + log(2.0)]]), one = intMatrix([[1]])
        let plain = GRPOLossConfig(beta: 0.5)
        let result = try grpoLoss(logProbs: lpk, oldLogProbs: lpk, advantages: vector([0]), mask: one,
                                  refLogProbs: ref, config: plain)
        expectClose(result.kl ?? .nan, 1 - log(2.0), "kl")
        expectClose(result.loss, 0.5 * (1 - log(2.0)), "loss")
        expectClose(try grpoLossGradLogProbs(logProbs: lpk, oldLogProbs: lpk, advantages: vector([0]), mask: one,
                                             refLogProbs: ref, config: plain), [-0.5], "grad")
        let corrected = GRPOLossConfig(beta: 0.5, useBiasCorrectionKL: true)
        let old = matrix([[-2.0 - log(3.0)]])
        let bias = try grpoLoss(logProbs: lpk, oldLogProbs: old, advantages: vector([0]), mask: one, refLogProbs: ref,
                                config: corrected)
        expectClose(bias.kl ?? .nan, 3 * (1 - log(2.0)), "bias-corrected kl")
        expectClose(try grpoLossGradLogProbs(logProbs: lpk, oldLogProbs: old, advantages: vector([0]), mask: one,
                                             refLogProbs: ref, config: corrected),
                    [0.5 * (-3 + 3 * (1 - log(2.0)))], "bias-corrected grad")
    }

    @Test("by hand: the delta cap acts after the clip and changes the clip metrics")
    func deltaByHand() throws {
        // d = ln 2 (ρ = 2), A = 1: ρc = 1.2; without delta q = -min(2, 1.2) = -1.2 and the token is clipped high.
        // With delta 1.1: ρ ← 1.1, q = -min(1.1, 1.2) = -1.1. The gradient is 0: the min takes the capped
        // branch, and the cap passes nothing where ρ = 2 > delta. 1.1 < 1 + ε is no longer counted as clipped high.
        let old = matrix([[-1.0]]), lpd = matrix([[-1.0 + log(2.0)]]), one = intMatrix([[1]])
        let plain = try grpoLoss(logProbs: lpd, oldLogProbs: old, advantages: vector([1]), mask: one)
        expectClose(plain.loss, -1.2, "no delta")
        expectClose(plain.clipRatioHigh ?? .nan, 1, abs: 0, rel: 0, "clipped high")
        let capped = try grpoLoss(logProbs: lpd, oldLogProbs: old, advantages: vector([1]), mask: one,
                                  config: GRPOLossConfig(delta: 1.1))
        expectClose(capped.loss, -1.1, "delta 1.1")
        expectClose(capped.clipRatioHigh ?? .nan, 0, abs: 0, rel: 0, "the capped ratio is inside")
        expectClose(try grpoLossGradLogProbs(logProbs: lpd, oldLogProbs: old, advantages: vector([1]), mask: one,
                                             config: GRPOLossConfig(delta: 1.1)), [0], abs: 0, rel: 0, "grad")
    }

    @Test("invariant: bnpo equals grpo when every row has the same length")
    func bnpoIsGRPOForEqualLengths() throws {
        var rng = SplitMix64(seed: 3)
        let old = Tensor.make([3, 4], rng.uniform(count: 12, -3, -0.5))
        let lpr = Tensor.make([3, 4], (0..<12).map { old.scalars[$0] + rng.uniform(-0.5, 0.5) })
        let adv = vector(rng.uniform(count: 3, -2, 2))
        let full = intMatrix([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]])
        for level in ImportanceSamplingLevel.allCases {
            let grpo = GRPOLossConfig(lossType: .grpo, importanceSamplingLevel: level, gradientAccumulationSteps: 2)
            let bnpo = GRPOLossConfig(lossType: .bnpo, importanceSamplingLevel: level, gradientAccumulationSteps: 2)
            let g = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: full, config: grpo)
            let b = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: full, config: bnpo)
            expectClose(g.loss, Double(b.loss), abs: 1e-15, rel: 1e-14, "loss, \(level)")
            let gg = try grpoLossGradLogProbs(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: full, config: grpo)
            let bg = try grpoLossGradLogProbs(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: full, config: bnpo)
            expectClose(gg, bg.scalars, abs: 1e-16, rel: 1e-14, "grad, \(level)")
        }
    }

    @Test("invariant: dapo with num_items_in_batch = Σ m is bnpo; dr_grpo with L = T on full masks is bnpo")
    func normalisersAgree() throws {
        var rng = SplitMix64(seed: 4)
        let old = Tensor.make([2, 5], rng.uniform(count: 10, -3, -0.5))
        let lpr = Tensor.make([2, 5], (0..<10).map { old.scalars[$0] + rng.uniform(-0.5, 0.5) })
        let adv = vector([0.7, -1.3])
        let partial = intMatrix([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        let bnpo = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: partial,
                                config: GRPOLossConfig(lossType: .bnpo))
        let dapo = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: partial,
                                config: GRPOLossConfig(lossType: .dapo, numItemsInBatch: 8))
        expectClose(dapo.loss, Double(bnpo.loss), abs: 1e-15, rel: 1e-14, "dapo vs bnpo")
        let ones = Tensor<Int64>(shape: [2, 5], repeating: 1)
        let bnpoFull = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: ones,
                                    config: GRPOLossConfig(lossType: .bnpo))
        let dr = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: ones,
                              config: GRPOLossConfig(lossType: .drGRPO, maxCompletionLength: 5))
        expectClose(dr.loss, Double(bnpoFull.loss), abs: 1e-15, rel: 1e-14, "dr_grpo vs bnpo")
    }

    @Test("invariant: a fully masked batch has loss 0, metrics 0 and gradient 0; luspo counts padding, dapo does not")
    func maskedBatchAndPadding() throws {
        var rng = SplitMix64(seed: 9)
        let old = Tensor.make([2, 3], rng.uniform(count: 6, -3, -0.5))
        let lpr = Tensor.make([2, 3], (0..<6).map { old.scalars[$0] + rng.uniform(-0.5, 0.5) })
        let ref = Tensor.make([2, 3], rng.uniform(count: 6, -3, -0.5))
        let none = Tensor<Int64>(shape: [2, 3], repeating: 0)
        for lossType in GRPOLossType.allCases {
            let config = GRPOLossConfig(lossType: lossType, beta: 0.04)
            let result = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: vector([1, -1]), mask: none,
                                      refLogProbs: ref, config: config)
            #expect(result.loss == 0, "\(lossType)")
            #expect(result.kl == 0, "\(lossType)")
            let grad = try grpoLossGradLogProbs(logProbs: lpr, oldLogProbs: old, advantages: vector([1, -1]), mask: none,
                                                refLogProbs: ref, config: config)
            #expect(grad.scalars.allSatisfy { $0 == 0 }, "\(lossType)")
        }
        // Changing a padded log-prob moves luspo's token-level loss (no mask there) but not dapo's.
        let partial = intMatrix([[1, 1, 0], [1, 0, 0]])
        var moved = lpr
        moved.scalars[2] += 0.3
        for (lossType, changes) in [(GRPOLossType.luspo, true), (.dapo, false)] {
            let config = GRPOLossConfig(lossType: lossType)
            let before = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: vector([1, -1]), mask: partial,
                                      config: config)
            let after = try grpoLoss(logProbs: moved, oldLogProbs: old, advantages: vector([1, -1]), mask: partial,
                                     config: config)
            #expect((before.loss != after.loss) == changes, "\(lossType)")
        }
    }

    @Test("invariant: sequence level with one kept token per row is token level")
    func oneTokenSequenceIsToken() throws {
        var rng = SplitMix64(seed: 12)
        let old = Tensor.make([3, 3], rng.uniform(count: 9, -3, -0.5))
        let lpr = Tensor.make([3, 3], (0..<9).map { old.scalars[$0] + rng.uniform(-0.5, 0.5) })
        let adv = vector([1.2, -0.4, 0.9])
        let single = intMatrix([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
        for lossType in [GRPOLossType.grpo, .dapo, .sapo, .bnpo] {
            let token = GRPOLossConfig(lossType: lossType)
            let sequence = GRPOLossConfig(lossType: lossType, importanceSamplingLevel: .sequence)
            let t = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: single, config: token)
            let s = try grpoLoss(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: single, config: sequence)
            expectClose(s.loss, Double(t.loss), abs: 1e-15, rel: 1e-14, "loss, \(lossType)")
            let tg = try grpoLossGradLogProbs(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: single, config: token)
            let sg = try grpoLossGradLogProbs(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: single,
                                              config: sequence)
            expectClose(sg, tg.scalars, abs: 1e-16, rel: 1e-14, "grad, \(lossType)")
        }
    }

    /// Central differences see every path from log_probs to the loss, the detached ones
    /// included. cispo's c = min(ρ, ε_h) is held constant by a cap below every ratio
    /// (ε_h = 0.3 < e^-0.6). vespo's φ_b depends on d: its differences move old_log_probs
    /// with log_probs, so d, ρ and φ stay fixed and only the explicit log_probs (and the
    /// KL's) path is measured, which is vespo's whole gradient without the bias correction.
    @Test("central differences agree with the backward pass for every loss type and level (away from kinks)")
    func centralDifferences() throws {
        var rng = SplitMix64(seed: 77)
        let shape = [3, 4]
        let old = Tensor.make(shape, rng.uniform(count: 12, -3, -0.5))
        let lpr = Tensor.make(shape, (0..<12).map { old.scalars[$0] + rng.uniform(-0.6, 0.6) })
        let ref = Tensor.make(shape, (0..<12).map { old.scalars[$0] + rng.uniform(-0.4, 0.4) })
        let adv = vector([1.1, -0.8, 0.6])
        let mask = intMatrix([[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]])
        for lossType in GRPOLossType.allCases {
            for level in ImportanceSamplingLevel.allCases {
                for (beta, bias) in [(0.0, false), (0.1, false), (0.1, true)] where !(lossType == .vespo && bias) {
                    let config = GRPOLossConfig(lossType: lossType, epsilonHigh: lossType == .cispo ? 0.3 : 0.28,
                                                beta: beta, importanceSamplingLevel: level, maxCompletionLength: 6,
                                                useBiasCorrectionKL: bias, gradientAccumulationSteps: 2)
                    let label = "\(lossType) \(level) beta \(beta) bias \(bias)"
                    let grad = try grpoLossGradLogProbs(logProbs: lpr, oldLogProbs: old, advantages: adv, mask: mask,
                                                        refLogProbs: ref, config: config)
                    let numeric = try centralDifferenceGradient(at: lpr.scalars) { x in
                        let moved = lossType == .vespo ? Tensor.make(shape, (0..<12).map { old.scalars[$0] + x[$0] - lpr.scalars[$0] })
                                                       : old
                        return try Double(grpoLoss(logProbs: Tensor.make(shape, x), oldLogProbs: moved, advantages: adv,
                                                   mask: mask, refLogProbs: ref, config: config).loss)
                    }
                    expectClose(grad.scalars, numeric, abs: 1e-8, rel: 1e-6, label)
                    #expect(grad.scalars.contains { $0 != 0 }, "a gradient that is all zero checks nothing, \(label)")
                }
            }
        }
    }

    @Test("every listed error throws, naming the argument")
    func errors() {
        let ref = matrix([[-1, -1], [-1, -1]])
        expectStageError(.shapeMismatch, argument: "ref_log_probs") {
            try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask, config: GRPOLossConfig(beta: 0.04))
        }
        expectStageError(.parameterOutOfRange, argument: "max_completion_length") {
            try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask,
                         config: GRPOLossConfig(lossType: .drGRPO, maxCompletionLength: 0))
        }
        expectStageError(.parameterOutOfRange, argument: "gradient_accumulation_steps") {
            try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask,
                         config: GRPOLossConfig(gradientAccumulationSteps: 0))
        }
        expectStageError(.shapeMismatch, argument: "advantages") {
            try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: vector([1, 2, 3]), mask: mask)
        }
        expectStageError(.shapeMismatch, argument: "old_log_probs") {
            try grpoLoss(logProbs: lp, oldLogProbs: matrix([[-1], [-1]]), advantages: a, mask: mask)
        }
        expectStageError(.shapeMismatch, argument: "log_probs") {
            try grpoLoss(logProbs: Tensor<Double>(shape: [0, 2], repeating: 0),
                         oldLogProbs: Tensor<Double>(shape: [0, 2], repeating: 0),
                         advantages: Tensor<Double>(shape: [0], repeating: 0), mask: Tensor<Int64>(shape: [0, 2], repeating: 0))
        }
        expectStageError(.notANumber, argument: "ref_log_probs") {
            try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: mask, refLogProbs: matrix([[-1, .nan], [-1, -1]]),
                         config: GRPOLossConfig(beta: 0.04))
        }
        expectStageError(.invalidMask, argument: "mask") {
            try grpoLoss(logProbs: lp, oldLogProbs: lp, advantages: a, mask: intMatrix([[1, -1], [1, 0]]), refLogProbs: ref)
        }
        expectStageError(.parameterOutOfRange, argument: "loss_type") {
            let _: GRPOLossType = try peerSwitch("ppo", "loss_type", stage: "grpo_loss")
        }
        expectStageError(.parameterOutOfRange, argument: "importance_sampling_level") {
            let _: ImportanceSamplingLevel = try peerSwitch("batch", "importance_sampling_level", stage: "grpo_loss")
        }
        // ρ = e^900 = inf with A < 0: min(-inf, 0.8·A) = -inf, the loss is +inf.
        expectStageError(.nonFiniteResult, argument: "loss") {
            try grpoLoss(logProbs: matrix([[899, -2], [-0.5, -1.5]]), oldLogProbs: lp, advantages: vector([-1, 1]),
                         mask: mask)
        }
    }
}
