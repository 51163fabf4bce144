import Foundation
import Testing
import TensorCore
import TestSupport
@testable import PreferenceLosses

@Suite("kto_loss")
struct KTOLossTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "kto_loss", minimum: 10)
    }

    @Test("two examples by hand: the reference point, the reordering, the gradient")
    func byHand() throws {
        // Example 0 undesirable, example 1 desirable; β = 1.
        // h = policy - ref = [-3 - (-5), -7 - (-6)] = [2, -1]
        // z = max(0, mean([-4 - (-5), -5 - (-8)])) = max(0, (1 + 3)/2) = 2
        // desirable (example 1):   1 - σ(1 · (-1 - 2)) = 1 - σ(-3) = σ(3) = 0.9525741268224334
        // undesirable (example 0): 1 - σ(1 · (2 - 2))  = 1 - 1/2 = 0.5
        // losses = [desirable..., undesirable...] = [0.9525741268224334, 0.5]; loss = 0.7262870634112166
        let r = try ktoLoss(policyLogps: vector([-3, -7]), refLogps: vector([-5, -6]), labels: Tensor.make([2], [0, 1]),
                            klLogps: vector([-4, -5]), refKLLogps: vector([-5, -8]), beta: 1)
        expectClose(r.losses, [0.9525741268224334, 0.5], "losses, desirable first")
        expectClose(r.kl, 2, "kl")
        expectClose(r.chosenRewards, [-1], "chosen_rewards")
        expectClose(r.rejectedRewards, [2], "rejected_rewards")
        expectClose(r.loss, 0.7262870634112166, "loss")
        // In input order: example 0 (undesirable, x = z - h = 0): +(1/2)·σ(0)σ(0) = 0.125;
        // example 1 (desirable, x = h - z = -3): -(1/2)·σ(-3)σ(3) = -(1/2)·0.04517665973091214.
        let g = try ktoLossGradPolicyLogps(policyLogps: vector([-3, -7]), refLogps: vector([-5, -6]),
                                           labels: Tensor.make([2], [0, 1]), klLogps: vector([-4, -5]),
                                           refKLLogps: vector([-5, -8]), beta: 1)
        expectClose(g, [0.125, -0.02258832986545607], "grad_policy_logps")
    }

    @Test("apo_zero_unpaired by hand, with weights, and without the KL inputs")
    func apoByHand() throws {
        // h = [0, ln 3]; β = 1; labels [1, 0]; weights 2 and 0.5.
        // desirable: 2 · (1 - σ(0)) = 1;  undesirable: 0.5 · σ(ln 3) = 0.5 · 3/4 = 0.375
        let r = try ktoLoss(policyLogps: vector([-2, log(3.0) - 4]), refLogps: vector([-2, -4]), labels: Tensor.make([2], [1, 0]),
                            klLogps: nil, refKLLogps: nil, lossType: .apoZeroUnpaired, beta: 1, desirableWeight: 2,
                            undesirableWeight: 0.5)
        expectClose(r.losses, [1, 0.375], "losses")
        expectClose(r.kl, 0, "kl is 0 for apo")
        expectClose(r.loss, 0.6875, "loss")
        // A batch of one is fine for apo.
        let one = try ktoLoss(policyLogps: vector([-2]), refLogps: vector([-2]), labels: Tensor.make([1], [0]), klLogps: nil,
                              refKLLogps: nil, lossType: .apoZeroUnpaired)
        expectClose(one.losses, [0.5], "σ(0) for one undesirable example")
        #expect(one.chosenRewards.shape == [0])
    }

    @Test("invariants: order, the clamp at 0, weights, apo ignores the KL inputs, float32")
    func invariants() throws {
        var rng = SplitMix64(seed: 321)
        let policy = rng.uniform(count: 6, -30, -5), ref = policy.map { $0 + rng.uniform(-3, 3) }
        let kl = rng.uniform(count: 6, -30, -5), refKL = kl.map { $0 - 1 + rng.uniform(-0.5, 0.5) }
        let labels: [Int64] = [1, 0, 0, 1, 1, 0]
        func run(_ order: [Int], _ type: KTOLossType = .kto, dw: Double = 1, uw: Double = 1,
                 refKL refKLValues: [Double] = refKL) throws -> KTOLossResult<Double> {
            try ktoLoss(policyLogps: vector(order.map { policy[$0] }), refLogps: vector(order.map { ref[$0] }),
                        labels: Tensor.make([6], order.map { labels[$0] }), klLogps: vector(order.map { kl[$0] }),
                        refKLLogps: vector(order.map { refKLValues[$0] }), lossType: type, beta: 0.5,
                        desirableWeight: dw, undesirableWeight: uw)
        }
        let identity = Array(0..<6), shuffled = [5, 2, 0, 4, 1, 3]
        for type in KTOLossType.allCases {
            let a = try run(identity, type), b = try run(shuffled, type)
            expectClose(b.loss, Double(a.loss), abs: 1e-15, rel: 1e-14, "\(type): the loss ignores the input order")
            // Reordered: the first N_D losses are the desirable ones (input order within each group).
            let desirable = identity.filter { labels[$0] == 1 }.map { policy[$0] - ref[$0] }
            expectClose(a.chosenRewards, desirable.map { 0.5 * $0 }, "\(type) chosen_rewards in input order")
        }
        // Weights scale their group: desirable_weight 2 doubles the desirable losses only.
        let base = try run(identity), weighted = try run(identity, dw: 2)
        expectClose(Array(weighted.losses.scalars[0..<3]), base.losses.scalars[0..<3].map { 2 * $0 }, abs: 1e-15, rel: 1e-15, "desirable_weight")
        expectClose(Array(weighted.losses.scalars[3..<6]), Array(base.losses.scalars[3..<6]), abs: 0, rel: 0, "undesirable untouched")
        // The KL completions move z (and so the loss) but not apo; a negative mean is clamped to 0.
        let lowKL = try run(identity, refKL: kl.map { $0 + 2 })  // mean log-ratio -2 -> z = 0
        #expect(lowKL.kl == 0)
        #expect(base.kl > 0)
        let apo = try run(identity, .apoZeroUnpaired), apoLow = try run(identity, .apoZeroUnpaired, refKL: kl.map { $0 + 2 })
        #expect(apo.losses == apoLow.losses)
        let apoWithout = try ktoLoss(policyLogps: vector(policy), refLogps: vector(ref), labels: Tensor.make([6], labels),
                                     klLogps: nil, refKLLogps: nil, lossType: .apoZeroUnpaired, beta: 0.5)
        #expect(apoWithout.losses == apo.losses)
        // float32 agrees.
        let narrow = try ktoLoss(policyLogps: vector(policy).converted(to: Float.self), refLogps: vector(ref).converted(to: Float.self),
                                 labels: Tensor.make([6], labels), klLogps: vector(kl).converted(to: Float.self),
                                 refKLLogps: vector(refKL).converted(to: Float.self), beta: 0.5)
        expectClose(narrow.losses, base.losses.scalars, abs: 1e-5, rel: 1e-5, "float32 losses")
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let p = vector([-3, -4, -5]), r = vector([-3.5, -4, -4]), l: Tensor<Int64> = Tensor.make([3], [1, 0, 1])
        func call(_ p: Tensor<Double> = p, r: Tensor<Double> = r, l: Tensor<Int64> = l, kl: Tensor<Double>? = p,
                  refKL: Tensor<Double>? = r, type: KTOLossType = .kto) throws -> KTOLossResult<Double> {
            try ktoLoss(policyLogps: p, refLogps: r, labels: l, klLogps: kl, refKLLogps: refKL, lossType: type)
        }
        #expect(try call().losses.count == 3)
        expectStageError(.shapeMismatch, argument: "labels") { try call(l: Tensor.make([2], [1, 0])) }
        expectStageError(.shapeMismatch, argument: "ref_kl_logps") { try call(refKL: vector([1, 2])) }
        expectStageError(.shapeMismatch, argument: "policy_logps") { try call(matrix([[-3, -4, -5]])) }
        expectStageError(.shapeMismatch, argument: "policy_logps") {
            try call(vector([]), r: vector([]), l: Tensor.make([0], []), kl: nil, refKL: nil, type: .apoZeroUnpaired)
        }
        expectStageError(.notANumber, argument: "ref_logps") { try call(r: vector([-1, .nan, -1])) }
        expectStageError(.notANumber, argument: "kl_logps") { try call(kl: vector([-1, .nan, -1])) }
        expectStageError(.invalidMask, argument: "labels") { try call(l: Tensor.make([3], [1, 2, 0])) }
        expectStageError(.parameterOutOfRange, argument: "loss_type") { try KTOLossType(named: "bco", stage: "kto_loss") }
        // kto needs two examples and the KL inputs; apo needs neither.
        expectStageError(.shapeMismatch, argument: "policy_logps") {
            try call(vector([-3]), r: vector([-3]), l: Tensor.make([1], [1]), kl: vector([-1]), refKL: vector([-1]))
        }
        expectStageError(.shapeMismatch, argument: "kl_logps") { try call(kl: nil) }
        #expect(try call(kl: nil, refKL: nil, type: .apoZeroUnpaired).kl == 0)
        // +inf against +inf: h = inf - inf is NaN in the peer.
        expectStageError(.nonFiniteResult, argument: "losses") {
            try call(vector([.infinity, -4, -5]), r: vector([.infinity, -4, -5]))
        }
    }
}

@Suite("kto_loss backward")
struct KTOLossBackwardTests {
    @Test("grad_policy_logps equals central differences for kto and apo, with weights, z held by the KL inputs")
    func finiteDifferences() throws {
        var rng = SplitMix64(seed: 322)
        let policy = rng.uniform(count: 7, -20, -5), ref = policy.map { $0 + rng.uniform(-4, 4) }
        let kl = vector(rng.uniform(count: 7, -20, -5)), refKL = vector(rng.uniform(count: 7, -22, -7))
        let labels: Tensor<Int64> = Tensor.make([7], [0, 1, 1, 0, 1, 0, 0])
        for (type, beta, dw, uw) in [(KTOLossType.kto, 0.1, 1.0, 1.0), (.kto, 0.7, 1.33, 0.5), (.apoZeroUnpaired, 0.4, 2.0, 0.75)] {
            let g = try ktoLossGradPolicyLogps(policyLogps: vector(policy), refLogps: vector(ref), labels: labels, klLogps: kl,
                                               refKLLogps: refKL, lossType: type, beta: beta, desirableWeight: dw,
                                               undesirableWeight: uw)
            let numeric = try centralDifferenceGradient(at: policy) { probe in
                Double(try ktoLoss(policyLogps: vector(probe), refLogps: vector(ref), labels: labels, klLogps: kl,
                                   refKLLogps: refKL, lossType: type, beta: beta, desirableWeight: dw,
                                   undesirableWeight: uw).loss)
            }
            expectClose(g, numeric, abs: 1e-9, rel: 1e-6, "\(type) β \(beta): grad_policy_logps")
        }
    }
}
