import Testing
import TensorCore
import TestSupport
@testable import KLControl

@Suite("adaptive_kl_controller")
struct AdaptiveKLControllerTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "adaptive_kl_controller", minimum: 10)
    }

    @Test("three updates worked by hand")
    func byHand() throws {
        // init 0.1, target 1, horizon 1000, n_steps 100 each:
        //   KL 1.1: e = 0.1 (inside the clip), c = 0.1 · (1 + 0.1·100/1000) = 0.1 · 1.01 = 0.101
        //   KL 5.0: e = 4 -> clipped to 0.2,   c = 0.101 · (1 + 0.2·0.1) = 0.101 · 1.02 = 0.10302
        //   KL 0.0: e = -1 -> clipped to -0.2, c = 0.10302 · (1 - 0.02) = 0.10302 · 0.98 = 0.1009596
        let coefficients = try adaptiveKLCoefficients(currentKL: vector([1.1, 5.0, 0.0]), nSteps: Tensor.make([3], [100, 100, 100]),
                                                      initKLCoef: 0.1, target: 1, horizon: 1000)
        expectClose(coefficients, [0.101, 0.10302, 0.1009596], abs: 0, rel: 1e-14, "kl_coef")
    }

    @Test("the fixed controller: target nil or 0, horizon never read")
    func fixed() throws {
        for target in [nil, 0.0] as [Double?] {
            let coefficients = try adaptiveKLCoefficients(currentKL: vector([0.3, 9.0]), nSteps: Tensor.make([2], [64, 64]),
                                                          initKLCoef: 0.05, target: target, horizon: -1)
            #expect(coefficients.scalars == [0.05, 0.05])
        }
    }

    @Test("a short horizon flips the sign: e = -0.2 and n/horizon = 6 give the multiplier -0.2, n/horizon = 5 gives 0")
    func signFlip() throws {
        // 0.01 · (1 - 0.2·6) = 0.01 · (-0.2) = -0.002; then · (1 - 0.2·5) = · 0 -> -0 (a signed zero).
        let coefficients = try adaptiveKLCoefficients(currentKL: vector([0.0, 0.0]), nSteps: Tensor.make([2], [600, 500]),
                                                      initKLCoef: 0.01, target: 6, horizon: 100)
        expectClose(coefficients, [-0.002, 0], abs: 1e-18, rel: 1e-15, "kl_coef")
        #expect(coefficients.scalars[0] < 0)
    }

    @Test("invariants: an empty run, n_steps 0 keeps the coefficient, and the step is monotone in the KL")
    func invariants() throws {
        let empty = try adaptiveKLCoefficients(currentKL: vector([]), nSteps: Tensor.make([0], []), initKLCoef: 0.01,
                                               target: 0.1, horizon: 10000)
        #expect(empty.shape == [0])
        let still = try adaptiveKLCoefficients(currentKL: vector([3, 0, 0.1]), nSteps: Tensor.make([3], [0, 0, 0]),
                                               initKLCoef: 0.02, target: 0.1, horizon: 10000)
        #expect(still.scalars == [0.02, 0.02, 0.02])
        // One step from the same start: a higher KL never gives a lower coefficient, and it is bounded by the clip.
        var rng = SplitMix64(seed: 5)
        let kls = rng.uniform(count: 40, 0, 0.4).sorted()
        let next = try kls.map { kl in
            try adaptiveKLCoefficients(currentKL: vector([kl]), nSteps: Tensor.make([1], [512]), initKLCoef: 0.05,
                                       target: 0.1, horizon: 10000).scalars[0]
        }
        for i in 1..<next.count { #expect(next[i] >= next[i - 1]) }
        #expect(next.allSatisfy { $0 >= 0.05 * (1 - 0.2 * 512 / 10000) && $0 <= 0.05 * (1 + 0.2 * 512 / 10000) })
    }

    @Test("bad input throws a typed error")
    func errors() {
        let kl = vector([0.1, 0.2]), steps = Tensor<Int64>.make([2], [8, 8])
        expectStageError(.shapeMismatch, argument: "n_steps") {
            try adaptiveKLCoefficients(currentKL: kl, nSteps: Tensor.make([1], [8]), initKLCoef: 0.01, target: 0.1,
                                       horizon: 10)
        }
        expectStageError(.parameterOutOfRange, argument: "n_steps") {
            try adaptiveKLCoefficients(currentKL: kl, nSteps: Tensor.make([2], [8, -1]), initKLCoef: 0.01, target: nil,
                                       horizon: 10)
        }
        expectStageError(.parameterOutOfRange, argument: "target") {
            try adaptiveKLCoefficients(currentKL: kl, nSteps: steps, initKLCoef: 0.01, target: -0.1, horizon: 10)
        }
        for horizon in [0.0, -5.0] {
            expectStageError(.parameterOutOfRange, argument: "horizon") {
                try adaptiveKLCoefficients(currentKL: kl, nSteps: steps, initKLCoef: 0.01, target: 0.1, horizon: horizon)
            }
        }
        expectStageError(.notANumber, argument: "current_kl") {
            try adaptiveKLCoefficients(currentKL: vector([0.1, .nan]), nSteps: steps, initKLCoef: 0.01, target: 0.1,
                                       horizon: 10)
        }
        expectStageError(.shapeMismatch, argument: "current_kl") {
            try adaptiveKLCoefficients(currentKL: matrix([[0.1], [0.2]]), nSteps: steps, initKLCoef: 0.01, target: 0.1,
                                       horizon: 10)
        }
        // Nothing bounds the multiplier: n_steps huge against the horizon overflows the coefficient.
        expectStageError(.nonFiniteResult, argument: "kl_coef") {
            try adaptiveKLCoefficients(currentKL: vector([1, 1, 1]), nSteps: Tensor.make([3], [.max, .max, .max]),
                                       initKLCoef: 1e300, target: 0.1, horizon: 1e-300)
        }
    }
}
