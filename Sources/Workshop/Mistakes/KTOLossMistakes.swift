import TensorCore
import Golden

/// The well-known wrong KTO losses (TRL's KTOTrainer with precomputed reference log-probs).
enum KTOLossMistakes {
    static let chapter = "Chapters/14-dpo-family"

    static let entry = StageMistakes(stage: "kto_loss", mistakes: [klUnclamped, klMatched, inputOrder]) { a, output, index in
        guard try a.string("loss_type") == "kto", let kl = try a.optionalFloat("kl_logps"),
              let refKL = try a.optionalFloat("ref_kl_logps") else { return nil }
        let mean = (0..<kl.count).reduce(0.0) { $0 + kl.scalars[$1] - refKL.scalars[$1] } / Double(kl.count)
        var lines = ["z = max(0, mean(kl_logps - ref_kl_logps)) = max(0, \(show(mean))) = \(show(max(mean, 0))), "
                     + "from the mismatched KL completions, detached"]
        if output == "losses" {
            lines.append("losses: the desirable examples first (w_d·(1 - σ(β·(h - z)))), then the undesirable (w_u·(1 - σ(β·(z - h)))), "
                         + "h = policy_logps - ref_logps")
        }
        return lines
    }

    /// kto's outputs with reference point `z`, the losses desirable first or in input order.
    static func outputs(_ a: FixtureArguments<Double>, z: Double, inputOrder: Bool = false) throws -> [String: FixtureTensor] {
        let policy = try a.float("policy_logps").scalars, ref = try a.float("ref_logps").scalars
        let labels = try a.mask("labels").scalars, beta = try a.real("beta")
        let wd = try a.real("desirable_weight"), wu = try a.real("undesirable_weight")
        func loss(_ i: Int) -> Double {
            let h = policy[i] - ref[i]
            return labels[i] == 1 ? wd * (1 - sigmoid(beta * (h - z))) : wu * (1 - sigmoid(beta * (z - h)))
        }
        let order = inputOrder ? Array(policy.indices)
            : policy.indices.filter { labels[$0] == 1 } + policy.indices.filter { labels[$0] == 0 }
        let losses = order.map(loss)
        return ["losses": output([losses.count], losses), "loss": output(losses.reduce(0, +) / Double(losses.count)),
                "kl": output(z)]
    }

    static func requireKTO(_ a: FixtureArguments<Double>) throws -> (kl: [Double], refKL: [Double]) {
        guard try a.string("loss_type") == "kto" else { throw NotApplicable("not kto") }
        return (try require(a.optionalFloat("kl_logps"), "kl_logps").scalars,
                try require(a.optionalFloat("ref_kl_logps"), "ref_kl_logps").scalars)
    }

    static let klUnclamped = Mistake(
        id: "kto_loss.kl-unclamped", stage: "kto_loss", chapter: chapter,
        title: "the reference point z = mean(kl_logps - ref_kl_logps) used without the clamp at 0",
        explanation: "z estimates KL(π‖π_ref), which is never negative; a batch estimate can be, and TRL clamps it, z = max(0, mean(...)). A negative z shifts every desirable example's margin up and every undesirable one's down, the opposite of the reference point's job.") { a in
        let (kl, refKL) = try requireKTO(a)
        let mean = (0..<kl.count).reduce(0.0) { $0 + kl[$1] - refKL[$1] } / Double(kl.count)
        return try outputs(a, z: mean)
    }

    static let klMatched = Mistake(
        id: "kto_loss.kl-matched", stage: "kto_loss", chapter: chapter,
        title: "z from the examples' own completions (policy_logps - ref_logps) instead of the mismatched KL completions",
        explanation: "KTO's reference point is a KL estimate on completions that do not answer their prompt: TRL pairs each prompt with another example's completion (kl_logps) so that z does not move with the very rewards it is subtracted from. Taken from the examples themselves, z tracks their mean reward and the loss mostly cancels.") { a in
        _ = try requireKTO(a)
        let policy = try a.float("policy_logps").scalars, ref = try a.float("ref_logps").scalars
        let mean = (0..<policy.count).reduce(0.0) { $0 + policy[$1] - ref[$1] } / Double(policy.count)
        return try outputs(a, z: max(mean, 0))
    }

    static let inputOrder = Mistake(
        id: "kto_loss.losses-input-order", stage: "kto_loss", chapter: chapter,
        title: "losses in input order instead of TRL's: desirable examples first, then undesirable",
        explanation: "TRL concatenates the desirable losses and the undesirable ones, so losses[i] is not example i's loss unless the labels are already sorted. The mean is the same, but a per-example log or weighting that assumes input order is misaligned.") { a in
        let z: Double
        if try a.string("loss_type") == "kto" {
            let (kl, refKL) = try requireKTO(a)
            z = max((0..<kl.count).reduce(0.0) { $0 + kl[$1] - refKL[$1] } / Double(kl.count), 0)
        } else {
            throw NotApplicable("only kto")
        }
        return try outputs(a, z: z, inputOrder: true).filter { $0.key == "losses" }
    }
}
