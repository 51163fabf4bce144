import Foundation
import Testing
import TensorCore
import TestSupport
@testable import PreferenceLosses

/// A batch of pairs with given log-ratios h_w, h_l: the policy's log-probs are
/// arbitrary (the losses but `aot` read only h), the references are policy - h.
private struct Pairs {
    var chosen: [Double], rejected: [Double], refChosen: [Double], refRejected: [Double]
    var chosenLengths: [Int64], rejectedLengths: [Int64]

    init(hw: [Double], hl: [Double], chosenLengths: [Int64]? = nil, rejectedLengths: [Int64]? = nil) {
        let chosen = hw.indices.map { -12.5 - 3 * Double($0) }
        let rejected = hl.indices.map { -20.25 - 2 * Double($0) }
        self.chosen = chosen
        self.rejected = rejected
        refChosen = hw.indices.map { chosen[$0] - hw[$0] }
        refRejected = hl.indices.map { rejected[$0] - hl[$0] }
        self.chosenLengths = chosenLengths ?? hw.map { _ in 10 }
        self.rejectedLengths = rejectedLengths ?? hl.map { _ in 12 }
    }

    init(chosen: [Double], rejected: [Double], refChosen: [Double], refRejected: [Double]) {
        self.chosen = chosen
        self.rejected = rejected
        self.refChosen = refChosen
        self.refRejected = refRejected
        chosenLengths = chosen.map { _ in 10 }
        rejectedLengths = rejected.map { _ in 12 }
    }

    /// Random pairs: summed log-probs in [-55, -5], references within ±spread.
    static func random(_ count: Int, seed: UInt64, spread: Double = 2) -> Pairs {
        var rng = SplitMix64(seed: seed)
        let chosen = rng.uniform(count: count, -55, -5), rejected = rng.uniform(count: count, -55, -5)
        var pairs = Pairs(chosen: chosen, rejected: rejected,
                          refChosen: chosen.map { $0 - rng.uniform(-spread, spread) },
                          refRejected: rejected.map { $0 - rng.uniform(-spread, spread) })
        pairs.chosenLengths = (0..<count).map { _ in Int64(rng.uniform(1, 40)) }
        pairs.rejectedLengths = (0..<count).map { _ in Int64(rng.uniform(1, 40)) }
        return pairs
    }

    func run(_ lossType: DPOLossType, beta: Double = 0.1, epsilon: Double = 0, tau: Double = 0.05,
             f: FDivergence = .reverseKL, alpha: Double = 0.5, chosen override: [Double]? = nil,
             rejected overrideRejected: [Double]? = nil) throws -> DPOVariantsResult<Double> {
        try dpoVariants(chosenLogps: vector(override ?? chosen), rejectedLogps: vector(overrideRejected ?? rejected),
                        refChosenLogps: vector(refChosen), refRejectedLogps: vector(refRejected),
                        chosenLengths: Tensor.make([chosenLengths.count], chosenLengths),
                        rejectedLengths: Tensor.make([rejectedLengths.count], rejectedLengths),
                        lossType: lossType, beta: beta, labelSmoothing: epsilon, discopopTau: tau, fDivergence: f,
                        fAlphaDivergenceCoef: alpha)
    }

    func gradients(_ lossType: DPOLossType, beta: Double = 0.1, epsilon: Double = 0, tau: Double = 0.05,
                   f: FDivergence = .reverseKL, alpha: Double = 0.5) throws -> DPOVariantsGradients<Double> {
        try dpoVariantsGradients(chosenLogps: vector(chosen), rejectedLogps: vector(rejected),
                                 refChosenLogps: vector(refChosen), refRejectedLogps: vector(refRejected),
                                 chosenLengths: Tensor.make([chosenLengths.count], chosenLengths),
                                 rejectedLengths: Tensor.make([rejectedLengths.count], rejectedLengths),
                                 lossType: lossType, beta: beta, labelSmoothing: epsilon, discopopTau: tau,
                                 fDivergence: f, fAlphaDivergenceCoef: alpha)
    }
}

private let ln2 = 0.6931471805599453

@Suite("dpo_variants")
struct DPOVariantsTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "dpo_variants", minimum: 100)
    }

    @Test("by hand: sigmoid at margin 0 is log 2 per pair, and each side's gradient is β/(2B)")
    func sigmoidAtZero() throws {
        // h_w = h_l for both pairs: x = 0, -logσ(0) = log 2. ∂ℓ/∂x = -σ(-0) = -1/2; the mean's 1/B = 1/2,
        // x = β·δ with β = 0.1: ∂loss/∂chosen = (1/2)·(-1/2)·0.1 = -0.025, ∂loss/∂rejected = +0.025.
        let pairs = Pairs(hw: [0.75, -1.5], hl: [0.75, -1.5])
        let result = try pairs.run(.sigmoid)
        expectClose(result.losses, [ln2, ln2], "losses")
        expectClose(result.loss, ln2, "loss")
        expectClose(result.rewardAccuracy, 0, "ties count as wrong")
        let grads = try pairs.gradients(.sigmoid)
        expectClose(grads.gradChosenLogps, [-0.025, -0.025], "grad_chosen_logps")
        expectClose(grads.gradRejectedLogps, [0.025, 0.025], "grad_rejected_logps")
    }

    @Test("by hand: margins of ±900 stay finite (logσ(-900) = -900, not log 0)")
    func marginsOf900() throws {
        // β = 1: x = +900 gives -logσ(900) = log1p(e^-900) = 0 in Double (e^-900 underflows);
        // x = -900 gives -logσ(-900) = 900 + log1p(e^-900) = 900. The mean is 450.
        let result = try Pairs(hw: [450, -450], hl: [-450, 450]).run(.sigmoid, beta: 1)
        expectClose(result.losses, [0, 900], "losses")
        expectClose(result.loss, 450, "loss")
        // The gradient weight σ(-x) is 0 and 1: (1/2)·(-1)·1 = -0.5 for pair 1's chosen log-prob.
        let grads = try Pairs(hw: [450, -450], hl: [-450, 450]).gradients(.sigmoid, beta: 1)
        expectClose(grads.gradChosenLogps, [0, -0.5], "grad_chosen_logps")
    }

    @Test("by hand: hinge, ipo, ipo_sum, sppo_hard and sigmoid_norm")
    func squaresAndHinge() throws {
        // hinge, β = 0.5: δ = 2 gives x = 1 and relu(0) = 0 (and no gradient); δ = 1 gives x = 0.5, relu(0.5) = 0.5,
        // whose gradient is (1/2)·(-1)·0.5 = -0.25 on the chosen log-prob.
        let hinge = Pairs(hw: [1.25, 0.5], hl: [-0.75, -0.5])
        expectClose(try hinge.run(.hinge, beta: 0.5).losses, [0, 0.5], "hinge losses")
        expectClose(try hinge.gradients(.hinge, beta: 0.5).gradChosenLogps, [0, -0.25], "hinge gradient")
        // The same log-ratios h_w = 4, h_l = -2 on 2-token and 200-token answers, β = 0.5 (1/(2β) = 1):
        //   ipo:     2 tokens:   4/2 - (-2/2) = 3,       (3 - 1)² = 4
        //            200 tokens: 4/200 + 2/200 = 0.03,   (0.03 - 1)² = 0.9409
        //   ipo_sum: δ = 6 on both,                      (6 - 1)² = 25
        let lengths = Pairs(hw: [4, 4], hl: [-2, -2], chosenLengths: [2, 200], rejectedLengths: [2, 200])
        expectClose(try lengths.run(.ipo, beta: 0.5).losses, [4, 0.9409], "ipo losses")
        expectClose(try lengths.run(.ipoSum, beta: 0.5).losses, [25, 25], "ipo_sum losses")
        // ipo's gradient on the short pair: (1/2)·2·(3 - 1)/2 = 1 for chosen, -1 for rejected.
        let ipoGrads = try lengths.gradients(.ipo, beta: 0.5)
        expectClose(ipoGrads.gradChosenLogps.scalars[0], 1, "ipo grad chosen")
        expectClose(ipoGrads.gradRejectedLogps.scalars[0], -1, "ipo grad rejected")
        // sigmoid_norm on the short pair: -logσ(0.5·3) = log(1 + e^-1.5) = 0.20141327798275246.
        expectClose(try lengths.run(.sigmoidNorm, beta: 0.5).losses.scalars[0], 0.20141327798275246, "sigmoid_norm")
        // sppo_hard, β = 0.5 (0.5/β = 1): u_w = 1 and u_l = -1 sit on their targets: (1-1)² + (-1+1)² = 0;
        // u_w = 3, u_l = 0: (3-1)² + (0+1)² = 5.
        expectClose(try Pairs(hw: [1, 3], hl: [-1, 0]).run(.sppoHard, beta: 0.5).losses, [0, 5], "sppo_hard")
        // Lengths of 0 count as 1: ipo with lengths 0 equals ipo with lengths 1.
        let zero = Pairs(hw: [3], hl: [1], chosenLengths: [0], rejectedLengths: [0])
        let one = Pairs(hw: [3], hl: [1], chosenLengths: [1], rejectedLengths: [1])
        expectClose(try zero.run(.ipo, beta: 0.5).loss, try one.run(.ipo, beta: 0.5).loss, "length 0 counts as 1")
        expectClose(try one.run(.ipo, beta: 0.5).loss, 1, "(3 - 1 - 1)² = 1")
    }

    @Test("by hand: the pair losses at x = 0 (the policy equal to the reference)")
    func atTheReference() throws {
        let pairs = Pairs(hw: [0], hl: [0])
        // apo_zero: (1 - σ(0)) + σ(0) = 1; apo_down: σ(0) + (1 - σ(0)) = 1.
        expectClose(try pairs.run(.apoZero).loss, 1, "apo_zero")
        expectClose(try pairs.run(.apoDown).loss, 1, "apo_down")
        // nca_pair: -logσ(0) - ½logσ(0) - ½logσ(0) = 2·log 2; bco_pair: -logσ(0) - logσ(0) = 2·log 2.
        expectClose(try pairs.run(.ncaPair).loss, 2 * ln2, "nca_pair")
        expectClose(try pairs.run(.bcoPair).loss, 2 * ln2, "bco_pair")
        // discopop: m = σ(0) = ½, so ½·log 2 + ½·e^0 = 0.8465735902799727.
        expectClose(try pairs.run(.discopop).loss, 0.5 * ln2 + 0.5, "discopop")
        // exo_pair at ε = ½: ½(log ½ - log ½) + ½(log ½ - log ½) = 0 (the two distributions agree).
        expectClose(try pairs.run(.exoPair, epsilon: 0.5).loss, 0, abs: 1e-15, rel: 0, "exo_pair")
        // exo_pair at ε = 0.1: ½(-log 2 - log 0.9) + ½(-log 2 - log 0.1) = -log 2 - ½·log 0.09 = 0.5108256237659907.
        expectClose(try pairs.run(.exoPair, epsilon: 0.1).loss, 0.5108256237659907, "exo_pair ε = 0.1")
        // robust at ε = 0.25: (-(0.75)·log ½ + 0.25·log ½) / 0.5 = log 2.
        expectClose(try pairs.run(.robust, epsilon: 0.25).loss, ln2, "robust")
    }

    @Test("by hand: aot pairs ranks, not pairs, and sends each rank's derivative back to its pair")
    func aotSorts() throws {
        // Policy chosen - rejected: pair 0: -10 - (-13) = 3, pair 1: -11 - (-12) = 1; sorted [1, 3] (pair 1 first).
        // Reference: pair 0: -20 - (-20) = 0, pair 1: -18 - (-20) = 2; sorted [0, 2].
        // Δ = [1 - 0, 3 - 2] = [1, 1]; β = 1: both losses -logσ(1) = log(1 + e^-1) = 0.31326168751822286.
        // Paired, it would be 3 - 0 = 3 and 1 - 2 = -1.
        let pairs = Pairs(chosen: [-10, -11], rejected: [-13, -12], refChosen: [-20, -18], refRejected: [-20, -20])
        let result = try pairs.run(.aot, beta: 1)
        expectClose(result.losses, [0.31326168751822286, 0.31326168751822286], "losses")
        // Rank 0 came from pair 1, rank 1 from pair 0: each chosen log-prob gets (1/2)·(-σ(-1)) = -0.13447071068499755.
        let grads = try pairs.gradients(.aot, beta: 1)
        expectClose(grads.gradChosenLogps, [-0.13447071068499755, -0.13447071068499755], "grad_chosen_logps")
        expectClose(grads.gradRejectedLogps, [0.13447071068499755, 0.13447071068499755], "grad_rejected_logps")
        // aot_unpaired sorts h_w = [10, 7] and h_l = [7, 8] apart: Δ = [7 - 7, 10 - 8] = [0, 2].
        let unpaired = try pairs.run(.aotUnpaired, beta: 1)
        expectClose(unpaired.losses, [ln2, 0.1269280110429725], "aot_unpaired losses: log 2, log(1 + e^-2)")
    }

    @Test("by hand: the four f-divergence scores")
    func scores() throws {
        // h = log 2: forward_kl u = -e^-h = -1/2; js u = logσ(log 2) = log(2/3); alpha (a = 1/2)
        // u = e^(-h/2)/(-1/2) = -2/√2 = -√2; alpha with a = 1 falls back to u = h.
        let pairs = Pairs(hw: [ln2], hl: [0])
        expectClose(try pairs.run(.sigmoid, f: .forwardKL).chosenScores.scalars[0], -0.5, "forward_kl")
        expectClose(try pairs.run(.sigmoid, f: .jsDivergence).chosenScores.scalars[0], Foundation.log(2.0 / 3), "js")
        expectClose(try pairs.run(.sigmoid, f: .alphaDivergence).chosenScores.scalars[0], -2.0.squareRoot(), "alpha")
        expectClose(try pairs.run(.sigmoid, f: .alphaDivergence, alpha: 1).chosenScores.scalars[0], ln2, "alpha a = 1")
        // Past the clamp: a = 1/2, h = -200 gives (a - 1)·h = 100 > 80, u = e^80·(-2), and no derivative.
        let clamped = Pairs(hw: [-200], hl: [0])
        expectClose(try clamped.run(.bcoPair, beta: 1e-40, f: .alphaDivergence).chosenScores.scalars[0],
                    -2 * Foundation.exp(80.0), "clamped score")
        expectClose(try clamped.gradients(.bcoPair, beta: 1e-40, f: .alphaDivergence).gradChosenLogps.scalars[0], 0,
                    "no derivative past the clamp")
        // The rewards use h whatever the scores: β·log 2.
        expectClose(try pairs.run(.sigmoid, f: .forwardKL).chosenRewards.scalars[0], 0.1 * ln2, "chosen_rewards")
    }

    @Test("reward_accuracy is strict; reward_margin is the difference of the rewards")
    func metrics() throws {
        let result = try Pairs(hw: [1.5, 2, -0.75], hl: [1.5, -1, -0.75]).run(.sigmoid)
        expectClose(result.rewardAccuracy, 1.0 / 3, "one of three right, two ties")
        expectClose(result.rewardMargin, [0, 0.3, 0], abs: 1e-15, rel: 1e-12, "reward_margin = 0.1·(h_w - h_l)")
    }

    @Test("invariants: monotone sigmoid, opposite-signed gradients, and the loss types that coincide")
    func invariants() throws {
        // sigmoid decreases as the margin grows; its gradient pushes chosen up (negative) and rejected down.
        var previous = Double.infinity
        for step in -20...20 {
            let margin = Double(step) * 3
            let pairs = Pairs(hw: [margin / 2], hl: [-margin / 2])
            let loss = try pairs.run(.sigmoid).loss
            #expect(loss < previous, "sigmoid loss not decreasing at margin \(margin)")
            previous = loss
            let grads = try pairs.gradients(.sigmoid)
            #expect(grads.gradChosenLogps.scalars[0] < 0 && grads.gradRejectedLogps.scalars[0] > 0, "signs at margin \(margin)")
            expectClose(grads.gradChosenLogps.scalars[0], -grads.gradRejectedLogps.scalars[0], "equal and opposite at \(margin)")
        }
        let pairs = Pairs.random(5, seed: 71)
        // robust at ε = 0 is sigmoid; sigmoid_norm with every length 1 is sigmoid; ipo with lengths 1 is ipo_sum.
        expectClose(try pairs.run(.robust).losses, try pairs.run(.sigmoid).losses.scalars, "robust ε = 0")
        var ones = pairs
        ones.chosenLengths = [1, 1, 1, 1, 1]
        ones.rejectedLengths = [0, 1, 0, 1, 1]
        expectClose(try ones.run(.sigmoidNorm).losses, try ones.run(.sigmoid).losses.scalars, "sigmoid_norm")
        expectClose(try ones.run(.ipo, beta: 0.5).losses, try ones.run(.ipoSum, beta: 0.5).losses.scalars,
                    abs: 1e-11, rel: 1e-12, "ipo with lengths 1 vs ipo_sum (OpenRLHF's grouping of δ rounds apart)")
        // cDPO's symmetry: swapping chosen and rejected and ε ↔ 1 - ε gives the same losses.
        let swapped = Pairs(chosen: pairs.rejected, rejected: pairs.chosen, refChosen: pairs.refRejected,
                            refRejected: pairs.refChosen)
        expectClose(try swapped.run(.sigmoid, epsilon: 0.7).losses, try pairs.run(.sigmoid, epsilon: 0.3).losses.scalars,
                    abs: 1e-12, rel: 1e-11, "cDPO symmetry")
        // aot and aot_unpaired read sorted values: reordering the batch leaves their losses as they are.
        let order = [3, 0, 4, 1, 2]
        let shuffled = Pairs(chosen: order.map { pairs.chosen[$0] }, rejected: order.map { pairs.rejected[$0] },
                             refChosen: order.map { pairs.refChosen[$0] }, refRejected: order.map { pairs.refRejected[$0] })
        for kind in [DPOLossType.aot, .aotUnpaired] {
            expectClose(try shuffled.run(kind, epsilon: 0.2).losses, try pairs.run(kind, epsilon: 0.2).losses.scalars,
                        abs: 0, rel: 0, "\(kind.rawValue) under a reordered batch")
        }
        // aot, aot_unpaired and apo_zero ignore the f-divergence; apo_down does not.
        for kind in [DPOLossType.aot, .aotUnpaired, .apoZero] {
            expectClose(try pairs.run(kind, f: .jsDivergence).losses, try pairs.run(kind).losses.scalars, abs: 0, rel: 0,
                        "\(kind.rawValue) ignores f")
        }
        #expect(try pairs.run(.apoDown, f: .jsDivergence).loss != pairs.run(.apoDown).loss)
        // TRL-style rewards are f-blind.
        expectClose(try pairs.run(.ncaPair, f: .forwardKL).chosenRewards, try pairs.run(.ncaPair).chosenRewards.scalars,
                    abs: 0, rel: 0, "chosen_rewards")
    }

    @Test("the gradients equal central differences for every loss type and f-divergence",
          arguments: DPOLossType.allCases)
    func centralDifferences(lossType: DPOLossType) throws {
        let pairs = Pairs.random(4, seed: 97, spread: 1.5)
        let epsilon = lossType == .exoPair ? 0.05 : (lossType.usesLabelSmoothing ? 0.2 : 0)
        for f in FDivergence.allCases {
            let beta = lossType == .discopop ? 0.3 : 0.5
            let grads = try pairs.gradients(lossType, beta: beta, epsilon: epsilon, f: f)
            let numeric = try centralDifferenceGradient(at: pairs.chosen + pairs.rejected) { probe in
                try pairs.run(lossType, beta: beta, epsilon: epsilon, f: f, chosen: Array(probe[..<4]),
                              rejected: Array(probe[4...])).loss
            }
            let label = "\(lossType.rawValue), \(f.rawValue)"
            expectClose(grads.gradChosenLogps, Array(numeric[..<4]), abs: 1e-8, rel: 1e-6, "grad_chosen_logps, \(label)")
            expectClose(grads.gradRejectedLogps, Array(numeric[4...]), abs: 1e-8, rel: 1e-6,
                        "grad_rejected_logps, \(label)")
        }
    }

    @Test("float32 agrees with float64 within float32's rounding")
    func float32() throws {
        let pairs = Pairs.random(4, seed: 5)
        for kind in DPOLossType.allCases {
            let epsilon = kind == .exoPair ? 0.05 : 0.1
            let wide = try pairs.run(kind, epsilon: kind.usesLabelSmoothing ? epsilon : 0)
            let narrow: DPOVariantsResult<Float> = try dpoVariants(
                chosenLogps: vector(pairs.chosen).converted(to: Float.self),
                rejectedLogps: vector(pairs.rejected).converted(to: Float.self),
                refChosenLogps: vector(pairs.refChosen).converted(to: Float.self),
                refRejectedLogps: vector(pairs.refRejected).converted(to: Float.self),
                chosenLengths: Tensor.make([4], pairs.chosenLengths), rejectedLengths: Tensor.make([4], pairs.rejectedLengths),
                lossType: kind, labelSmoothing: kind.usesLabelSmoothing ? epsilon : 0)
            expectClose(narrow.losses, wide.losses.scalars, abs: 1e-4, rel: 1e-4, "\(kind.rawValue) in float32")
        }
    }

    @Test("bad input throws a typed error naming the argument")
    func errors() throws {
        let pairs = Pairs.random(3, seed: 11)
        let v = vector, lengths = Tensor<Int64>.make([3], [4, 5, 6])
        func run(_ kind: DPOLossType = .sigmoid, chosen: Tensor<Double>? = nil, refRejected: Tensor<Double>? = nil,
                 chosenLengths: Tensor<Int64>? = nil, rejectedLengths: Tensor<Int64>? = nil, beta: Double = 0.1,
                 epsilon: Double = 0, tau: Double = 0.05, f: FDivergence = .reverseKL) throws -> DPOVariantsResult<Double> {
            try dpoVariants(chosenLogps: chosen ?? v(pairs.chosen), rejectedLogps: v(pairs.rejected),
                            refChosenLogps: v(pairs.refChosen), refRejectedLogps: refRejected ?? v(pairs.refRejected),
                            chosenLengths: chosenLengths ?? lengths, rejectedLengths: rejectedLengths ?? lengths,
                            lossType: kind, beta: beta, labelSmoothing: epsilon, discopopTau: tau, fDivergence: f)
        }
        expectStageError(.shapeMismatch, argument: "rejected_lengths") { try run(rejectedLengths: Tensor.make([2], [1, 2])) }
        expectStageError(.shapeMismatch, argument: "chosen_logps") { try run(chosen: matrix([[-1], [-2], [-3]])) }
        expectStageError(.shapeMismatch, argument: "chosen_logps") {
            try dpoVariants(chosenLogps: Tensor<Double>(shape: [0], repeating: 0), rejectedLogps: Tensor(shape: [0], repeating: 0),
                            refChosenLogps: Tensor(shape: [0], repeating: 0), refRejectedLogps: Tensor(shape: [0], repeating: 0),
                            chosenLengths: Tensor(shape: [0], repeating: 0), rejectedLengths: Tensor(shape: [0], repeating: 0))
        }
        expectStageError(.notANumber, argument: "ref_rejected_logps") { try run(refRejected: v([-1, .nan, -3])) }
        expectStageError(.parameterOutOfRange, argument: "chosen_lengths") { try run(chosenLengths: Tensor.make([3], [1, -1, 2])) }
        expectStageError(.parameterOutOfRange, argument: "label_smoothing") { try run(.robust, epsilon: 0.5) }
        expectStageError(.parameterOutOfRange, argument: "label_smoothing") { try run(.robust, epsilon: -0.01) }
        expectStageError(.parameterOutOfRange, argument: "label_smoothing") { try run(.exoPair, epsilon: 0) }
        expectStageError(.parameterOutOfRange, argument: "label_smoothing") { try run(.exoPair, epsilon: 1) }
        for kind in [DPOLossType.ipo, .ipoSum, .sppoHard] {
            expectStageError(.parameterOutOfRange, argument: "beta") { try run(kind, beta: 0) }
        }
        // β = 0 is fine where nothing divides by it: every loss is that of x = 0.
        expectClose(try run(.sigmoid, beta: 0).loss, ln2, "sigmoid at β = 0")
        expectStageError(.parameterOutOfRange, argument: "discopop_tau") { try run(.discopop, tau: 0) }
        expectStageError(.parameterOutOfRange, argument: "discopop_tau") { try run(.discopop, tau: -1) }
        // discopop at x = -900: e^900 overflows Double; x = -90 overflows only Float.
        let far = Pairs(hw: [-450], hl: [450])
        expectStageError(.nonFiniteResult, argument: "losses") { try far.run(.discopop, beta: 1) }
        #expect(try far.run(.discopop, beta: 0.1).loss.isFinite)
        expectStageError(.nonFiniteResult, argument: "losses") {
            let r: DPOVariantsResult<Float> = try dpoVariants(
                chosenLogps: vector(far.chosen).converted(to: Float.self),
                rejectedLogps: vector(far.rejected).converted(to: Float.self),
                refChosenLogps: vector(far.refChosen).converted(to: Float.self),
                refRejectedLogps: vector(far.refRejected).converted(to: Float.self),
                chosenLengths: Tensor.make([1], [1]), rejectedLengths: Tensor.make([1], [1]), lossType: .discopop)
            return r
        }
        // forward_kl at h = -900: e^900 overflows.
        expectStageError(.nonFiniteResult, argument: "chosen_logps") {
            try Pairs(hw: [-900], hl: [0]).run(.sigmoid, f: .forwardKL)
        }
        // The catch-all: an infinite input gives an infinite reward, refused.
        expectStageError(.nonFiniteResult, argument: "losses") { try run(chosen: v([-.infinity, -2, -3])) }
        #expect(throws: StageError.self) { try DPOLossType(named: "sft") }
        #expect(throws: StageError.self) { try FDivergence(named: "kl") }
    }
}
