import Foundation
import Testing
import TensorCore
import TestSupport
import Golden
import RewardsKLFirstPad
@testable import PPOLossesJointWhitened

/// The inputs and settings of one update, TRL's defaults unless a test changes them.
private struct Update {
    var responses: Tensor<Int64>
    var logprobs: Tensor<Double>
    var refLogprobs: Tensor<Double>
    var values: Tensor<Double>
    var scores: Tensor<Double>
    var newLogits: Tensor<Double>
    var newValues: Tensor<Double>
    var pad = 0, eos = 2
    var stop: Int? = nil
    var penalty: Double? = nil
    var klCoef = 0.05
    var estimator = KLEstimator.k1
    var whiten = false
    var gamma = 1.0, lam = 0.95, cliprange = 0.2, cliprangeValue = 0.2, vfCoef = 0.1, temperature = 0.7

    func run() throws(StageError) -> PPOLossesJointWhitenedResult<Double> {
        try ppoLossesJointWhitened(
            responses: responses, logprobs: logprobs, refLogprobs: refLogprobs, values: values, scores: scores,
            newLogits: newLogits, newValues: newValues, padTokenId: pad, eosTokenId: eos, stopTokenId: stop,
            missingEOSPenalty: penalty, klCoef: klCoef, klEstimator: estimator, whitenRewards: whiten, gamma: gamma,
            lam: lam, cliprange: cliprange, cliprangeValue: cliprangeValue, vfCoef: vfCoef, temperature: temperature)
    }

    func gradients() throws(StageError) -> PPOLossesJointWhitenedGradients<Double> {
        try ppoLossesJointWhitenedGradients(run())
    }

    /// A random update: B = 3 rows of T = 5 over V = 6, a full row, a padded row and a short one.
    static func random(seed: UInt64, logitScale: Double = 1) -> Update {
        var rng = SplitMix64(seed: seed)
        let responses = intMatrix([[3, 4, 5, 1, 3], [4, 2, 0, 0, 0], [5, 0, 0, 0, 0]])
        let logprobs = rng.uniform(count: 15, -3, -0.5)
        return Update(
            responses: responses, logprobs: Tensor.make([3, 5], logprobs),
            refLogprobs: Tensor.make([3, 5], logprobs.map { $0 + rng.uniform(-0.3, 0.3) }),
            values: Tensor.make([3, 5], rng.uniform(count: 15, -1, 1)), scores: vector(rng.uniform(count: 3, -2, 2)),
            newLogits: Tensor.make([3, 5, 6], rng.uniform(count: 90, -logitScale, logitScale)),
            newValues: Tensor.make([3, 5], rng.uniform(count: 15, -1, 1)))
    }
}

@Suite("ppo_losses_joint_whitened")
struct PPOLossesJointWhitenedTests {
    @Test("every golden fixture passes")
    func golden() {
        expectGoldenFixturesPass(stage: "ppo_losses_joint_whitened", minimum: 10)
    }

    /// The TRL PPO toy of peer-conventions §11 (one row, three response tokens, two pads,
    /// d = logprob - ref = 0.1, -0.2, 0.3, V = 0.5, 0.4, 0.3, 0.2, 0.1, score 1, kl_coef 0.1,
    /// γ = 1, λ = 0.95), with a policy that has not moved: all new logits 0 over V = 2, so every
    /// new log-prob is -ln 2, and logprobs = -ln 2 on the response; new values = the old ones.
    private func toy() -> Update {
        let lnTwo = log(2.0)
        return Update(
            responses: intMatrix([[1, 1, 1, 0, 0]]), logprobs: matrix([[-lnTwo, -lnTwo, -lnTwo, 0, 0]]),
            refLogprobs: matrix([[-lnTwo - 0.1, -lnTwo + 0.2, -lnTwo - 0.3, 0, 0]]),
            values: matrix([[0.5, 0.4, 0.3, 0.2, 0.1]]), scores: vector([1]),
            newLogits: Tensor(shape: [1, 5, 2], repeating: 0), newValues: matrix([[0.5, 0.4, 0.3, 0.2, 0]]),
            pad: 0, eos: 5, klCoef: 0.1)
    }

    @Test("the §11 toy by hand: GAE from 0, returns from the raw advantages, the losses of an unmoved policy")
    func peerToy() throws {
        let result = try toy().run()
        // rewards -0.01, 0.02, -0.03, 1.0, 0; masked values 0.5, 0.4, 0.3, 0.2, 0 (j > s + 1 = 3 zeroed).
        // GAE, γ = 1, λ = 0.95, from j = 4 down:
        //   j=4: δ = 0 - 0 = 0;                      Â = 0
        //   j=3: δ = 1 + 0 - 0.2 = 0.8;              Â = 0.8
        //   j=2: δ = -0.03 + 0.2 - 0.3 = -0.13;      Â = -0.13 + 0.95·0.8 = 0.63
        //   j=1: δ = 0.02 + 0.3 - 0.4 = -0.08;       Â = -0.08 + 0.95·0.63 = 0.5185
        //   j=0: δ = -0.01 + 0.4 - 0.5 = -0.11;      Â = -0.11 + 0.95·0.5185 = 0.382575
        // returns = Â + masked values = 0.882575, 0.9185, 0.93, 1.0, 0
        expectClose(result.unwhitenedAdvantages, [0.382575, 0.5185, 0.63, 0.8, 0], "Â")
        expectClose(result.returns, [0.882575, 0.9185, 0.93, 1.0, 0], "returns")
        // advantages: Â whitened over j <= 2, then 0 past it:
        //   μ = (0.382575 + 0.5185 + 0.63) / 3;  σ² = Σ (Â - μ)² / 3 · 1.5 (Float(3)/Float(2) is exact)
        let raw = [0.382575, 0.5185, 0.63]
        let mu = raw.reduce(0, +) / 3
        let sigma2 = raw.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / 3 * 1.5
        let whitened = raw.map { ($0 - mu) / (sigma2 + 1e-8).squareRoot() }
        expectClose(result.advantages, whitened + [0, 0], abs: 1e-12, rel: 1e-9, "advantages")
        // ρ = 1 everywhere; pg_loss = -mean over M of the whitened advantages = 0.
        expectClose(result.pgLoss, 0, abs: 1e-15, rel: 0, "pg_loss")
        // vf_loss = 0.5 · mean over j <= 3 of (mv - R)² = 0.5 · (0.382575² + 0.5185² + 0.63² + 0.8²) / 4
        //         = 0.5 · (0.146363630625 + 0.26884225 + 0.3969 + 0.64) / 4 = 0.181513235078125
        expectClose(result.vfLoss, 0.181513235078125, "vf_loss")
        expectClose(result.loss, 0.1 * 0.181513235078125, abs: 1e-15, rel: 1e-12, "loss")
        #expect(result.pgClipfrac == 0 && result.vfClipfrac == 0)
        // Every position has logits (0, 0): entropy ln 2, so policy_entropy = ln 2; approxkl 0, ratio_mean 1.
        expectClose(result.policyEntropy, log(2.0), "policy_entropy")
        #expect(result.approxkl == 0 && result.ratioMean == 1)
        // objective_kl = 0.1 - 0.2 + 0.3 = 0.2; non-score reward -0.1 · 0.2 = -0.02; scores 1; rlhf 0.98;
        // objective_entropy = 3 ln 2 + 2 · (-1): each padded position adds -1 (the 1.0 fill).
        expectClose(result.objectiveKL, 0.2, "objective_kl")
        expectClose(result.objectiveNonScoreReward, -0.02, "objective_non_score_reward")
        expectClose(result.objectiveScores, 1, "objective_scores")
        expectClose(result.objectiveRLHFReward, 0.98, "objective_rlhf_reward")
        expectClose(result.objectiveEntropy, 3 * log(2.0) - 2, "objective_entropy")
        #expect(result.numEOSTokens == 0)
    }

    @Test("the §11 toy's gradients by hand")
    func peerToyGradients() throws {
        let update = toy()
        let result = try update.run(), gradients = try update.gradients()
        // Inside the clip range, ∂pg_loss/∂nlp_j = -A_j / |M| = -A_j / 3 on j <= 2; softmax (1/2, 1/2);
        // the response token is 1, so ∂nlp/∂z = (-1/2, +1/2); ∂z/∂logit = 1 / 0.7000001.
        var expectedLogits = [Double](repeating: 0, count: 10)
        for j in 0..<3 {
            let upstream = -result.advantages[0, j] / 3 / 0.7000001
            expectedLogits[2 * j] = -0.5 * upstream
            expectedLogits[2 * j + 1] = 0.5 * upstream
        }
        expectClose(gradients.gradNewLogits, expectedLogits, abs: 1e-15, rel: 1e-12, "grad_new_logits")
        // vf: 0.1 · 0.5 · 2 (vpred - R) / |M1| = 0.1 · (-Â) / 4 = -0.025 · Â on j <= 3; 0 at j = 4.
        expectClose(gradients.gradNewValues, [-0.025 * 0.382575, -0.025 * 0.5185, -0.025 * 0.63, -0.025 * 0.8, 0],
                    abs: 1e-15, rel: 1e-12, "grad_new_values")
    }

    @Test("pad == eos: the EOS log-prob is filled, the score sits on it, num_eos_tokens counts the padding")
    func padIsEOS() throws {
        var update = Update.random(seed: 3)
        update.responses = intMatrix([[3, 4, 2, 2, 2], [4, 5, 3, 1, 2], [5, 2, 2, 2, 2]])
        update.pad = 2
        let result = try update.run()
        #expect(result.rollout.sequenceLengths.scalars == [1, 3, 0])
        #expect(result.rollout.scorePositions == [2, 4, 1])
        #expect(result.numEOSTokens == 8)
        #expect(result.newLogprobs[0, 2] == 1 && result.newLogprobs[1, 4] == 1)
    }

    @Test("the fill cuts the padding out of the losses and the gradients, not out of the entropy")
    func fillInvariants() throws {
        var update = Update.random(seed: 5)
        let before = try update.run(), gradients = try update.gradients()
        // Row 1 = 4 2 0 0 0 (pad 0, eos 2): sequence_lengths 1, so j >= 2 is padded and j >= 3 is past the score.
        for j in 2..<5 {
            for v in 0..<6 {
                update.newLogits[1, j, v] += Double(v)  // not a constant shift: the softmax changes
                #expect(gradients.gradNewLogits[1, j, v] == 0)
            }
        }
        for j in 3..<5 {
            update.newValues[1, j] = 40
            #expect(gradients.gradNewValues[1, j] == 0)
        }
        let after = try update.run()
        #expect(after.loss == before.loss && after.approxkl == before.approxkl && after.ratioMean == before.ratioMean)
        #expect(after.policyEntropy != before.policyEntropy)
        // Each row of grad_new_logits sums to zero (softmax sums to one).
        for position in 0..<15 {
            let row = gradients.gradNewLogits.scalars[(position * 6)..<(position * 6 + 6)]
            expectClose(row.reduce(0, +), 0, abs: 1e-16, rel: 0, "row \(position) of grad_new_logits")
        }
        // The advantages have mean 0 over M and are 0 past it.
        let kept = (0..<15).filter { before.policyMask.scalars[$0] == 1 }
        expectClose(kept.reduce(0.0) { $0 + before.advantages.scalars[$1] }, 0, abs: 1e-14, rel: 0, "Σ_M advantages")
    }

    @Test("grad_new_logits and grad_new_values equal central differences of the loss, away from the kinks")
    func finiteDifferences() throws {
        // Logits of scale 3 put several ratios outside the clip range (their gradient is 0).
        let update = Update.random(seed: 7, logitScale: 3)
        let result = try update.run(), gradients = try update.gradients()
        let (low, high) = (1 - update.cliprange, 1 + update.cliprange)
        for i in 0..<15 {
            let ratio = result.actor.ratios.scalars[i]
            try #require(abs(ratio - low) > 1e-3 && abs(ratio - high) > 1e-3, "ratio \(ratio) at \(i) is near a kink")
            let value = result.predictedValues.scalars[i], old = result.rollout.maskedValues.scalars[i]
            try #require(abs(abs(value - old) - update.cliprangeValue) > 1e-3, "value at \(i) is near a kink")
        }
        #expect(result.pgClipfrac > 0)
        let numericLogits = try centralDifferenceGradient(at: update.newLogits.scalars) { probe in
            var changed = update
            changed.newLogits = Tensor.make(update.newLogits.shape, probe)
            return try changed.run().loss
        }
        expectClose(gradients.gradNewLogits, numericLogits, abs: 1e-9, rel: 1e-6, "grad_new_logits vs central differences")
        let numericValues = try centralDifferenceGradient(at: update.newValues.scalars) { probe in
            var changed = update
            changed.newValues = Tensor.make(update.newValues.shape, probe)
            return try changed.run().loss
        }
        expectClose(gradients.gradNewValues, numericValues, abs: 1e-9, rel: 1e-6, "grad_new_values vs central differences")
    }

    @Test("the kink fixtures put Swift's ratios exactly on the clip bound, in both precisions")
    func kinkFixtures() throws {
        for (name, bound) in [("kink-ratio-at-upper-bound", 1.0), ("kink-ratio-at-lower-bound", -1.0)] {
            for suffix in ["f64", "f32"] {
                let path = goldenDataDirectory + "/ppo_losses_joint_whitened/\(name)-\(suffix).json"
                let fixture = try Fixture.load(path: path)
                let cliprange = try FixtureArguments<Double>(fixture).real("cliprange")
                if suffix == "f64" {
                    let ratios = try ratiosOf(FixtureArguments<Double>(fixture))
                    #expect(ratios.filter { $0 == 1.0 + bound * cliprange }.count == 5, "\(name)-\(suffix)")
                } else {
                    let ratios = try ratiosOf(FixtureArguments<Float>(fixture))
                    #expect(ratios.filter { $0 == Float(1.0 + bound * cliprange) }.count == 5, "\(name)-\(suffix)")
                }
            }
        }
    }

    @Test("bad input throws a typed error")
    func errors() throws {
        let update = Update.random(seed: 11)
        func expectError(_ kind: StageError.Kind, _ argument: String, _ change: (inout Update) -> Void,
                         sourceLocation: SourceLocation = #_sourceLocation) {
            var changed = update
            change(&changed)
            expectStageError(kind, argument: argument, sourceLocation: sourceLocation) { try changed.run() }
        }
        // One response position in the whole batch, then none.
        expectError(.emptyMask, "responses") { $0.responses = intMatrix([[3, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]) }
        expectError(.emptyMask, "responses") { $0.responses = Tensor(shape: [3, 5], repeating: 0) }
        expectError(.labelOutOfRange, "responses") { $0.responses[0, 0] = 6 }
        expectError(.shapeMismatch, "new_logits") { $0.newLogits = Tensor(shape: [3, 6, 6], repeating: 0) }
        expectError(.shapeMismatch, "new_values") { $0.newValues = Tensor(shape: [3, 4], repeating: 0) }
        expectError(.parameterOutOfRange, "temperature") { $0.temperature = -0.5 }
        expectError(.parameterOutOfRange, "cliprange") { $0.cliprange = -0.1 }
        expectError(.notANumber, "new_logits") { $0.newLogits[2, 4, 1] = .nan }  // a padded position
        // An infinite logit makes TRL's entropy NaN (0 · -∞ in Σ p·z).
        expectError(.nonFiniteResult, "policy_entropy") { $0.newLogits[2, 4, 1] = -.infinity }
        expectStageError(.parameterOutOfRange, argument: "kl_estimator") {
            try KLEstimator(named: "kl", stage: "ppo_losses_joint_whitened")
        }
    }
}

/// The ratios ρ = exp(nlp - lp') Swift computes for a fixture, in its precision.
private func ratiosOf<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [T] {
    try PPOLossesJointWhitenedStage.forward(a).actor.ratios.scalars
}
