import TensorCore
import Golden
import KLControl

/// The well-known wrong KL estimates (OpenRLHF's k1/k2/k3, clamped to [-10, 10]).
enum KLEstimatorsMistakes {
    static let chapter = "Chapters/13-kl-estimators"

    static let entry = StageMistakes(stage: "kl_estimators", mistakes: [k1ForK3, sign, noClamp, meanOverPadding]) { a, output, index in
        let logProbs = try a.float("log_probs"), ref = try a.float("ref_log_probs")
        let estimator = try KLEstimator(named: a.string("estimator"), stage: "kl_estimators")
        let range = try a.optionalRange("clip_range")
        let clamp = range.map { "clamp to [\(show($0.lo)), \(show($0.hi))]" } ?? "no clamp"
        let formula = ["k1": "k1 = r", "k2": "k2 = r²/2", "k3": "k3 = (exp(-r) - 1) + r"][estimator.rawValue]!
        if output == "kl", index.count == 2 {
            let (b, t) = (index[0], index[1]), r = logProbs[b, t] - ref[b, t]
            return ["r = log_probs - ref_log_probs = \(show(logProbs[b, t])) - \(show(ref[b, t])) = \(show(r))",
                    "\(formula) = \(show(klEstimate(logRatio: r, estimator: estimator))), then \(clamp)"]
        }
        if output == "kl_mean", index.count == 1, let mask = try a.optionalMask("mask") {
            let count = (0..<mask.shape[1]).reduce(0) { $0 + Int(mask[index[0], $1]) }
            return ["kl_mean[b] = Σ_t kl[b,t]·mask[b,t] / Σ_t mask[b,t]: over the \(count) selected positions of row \(index[0]), "
                    + "not the \(mask.shape[1]) columns"]
        }
        return nil
    }

    /// The library's estimates on (possibly altered) inputs and params, as the stage's outputs.
    static func outputs(_ a: FixtureArguments<Double>, logProbs: Tensor<Double>? = nil, refLogProbs: Tensor<Double>? = nil,
                        estimator: KLEstimator? = nil, clip: Bool = true) throws -> [String: FixtureTensor] {
        let range = try a.optionalRange("clip_range")
        let result = try klEstimators(
            logProbs: logProbs ?? a.float("log_probs"), refLogProbs: refLogProbs ?? a.float("ref_log_probs"),
            mask: a.optionalMask("mask"),
            estimator: estimator ?? KLEstimator(named: a.string("estimator"), stage: "kl_estimators"),
            clipRange: clip ? range.map { $0.lo...$0.hi } : nil)
        var outputs = ["kl": FixtureTensor(result.kl)]
        if let klMean = result.klMean { outputs["kl_mean"] = FixtureTensor(klMean) }
        return outputs
    }

    static let k1ForK3 = Mistake(
        id: "kl_estimators.k1-for-k3", stage: "kl_estimators", chapter: chapter,
        title: "k1 = r where k3 = (exp(-r) - 1) + r was meant",
        explanation: "k1 and k3 have the same mean under the policy, but a single k1 sample is negative whenever the policy likes a token less than the reference does, and its variance is large. k3 = (exp(-r) - 1) + r adds a zero-mean control variate that makes every sample >= 0; asking for k3 and computing r gives a different, noisier penalty.") { a in
        guard try a.string("estimator") == "k3" else { throw NotApplicable("estimator is not k3") }
        return try outputs(a, estimator: .k1)
    }

    static let sign = Mistake(
        id: "kl_estimators.sign", stage: "kl_estimators", chapter: chapter,
        title: "r = ref_log_probs - log_probs: the log-ratio taken the wrong way round",
        explanation: "The estimators are of KL(π‖π_ref) with samples from π, so r = log π - log π_ref. TRL writes logr = ref - logprob and then negates it (kl = -logr), which is where the flipped sign comes from when one copies half of it; the flipped k1 averages to minus the KL, and the flipped k3, (exp(r) - 1) - r, no longer averages to the KL at all.") { a in
        try outputs(a, logProbs: a.float("ref_log_probs"), refLogProbs: a.float("log_probs"))
    }

    static let noClamp = Mistake(
        id: "kl_estimators.no-clamp", stage: "kl_estimators", chapter: chapter,
        title: "the estimate left unclamped where OpenRLHF clamps it to [-10, 10]",
        explanation: "OpenRLHF clamps every estimate to [-10, 10] after computing it, so one token whose log-ratio ran away cannot dominate the penalty. Without the clamp a log-ratio of 900 gives a k1 of 900 (and k3 overflows); with clip_range null (TRL) there is no clamp, and that is right there.") { a in
        guard try a.optionalRange("clip_range") != nil else { throw NotApplicable("no clamp asked") }
        return try outputs(a, clip: false)
    }

    static let meanOverPadding = Mistake(
        id: "kl_estimators.mean-over-padding", stage: "kl_estimators", chapter: chapter,
        title: "kl_mean = Σ_t kl·mask / T: the row mean divided by every column, padding included",
        explanation: "The logged KL of a sequence is the mean over its selected tokens, Σ_t kl·mask / Σ_t mask. Dividing by the padded width T makes short answers look closer to the reference than long ones, by the factor n_b/T.") { a in
        var result = try outputs(a)
        let mask = try a.optionalMask("mask"), kl = try require(result["kl"]).doubles
        guard let mask else { throw NotApplicable("no mask") }
        let (rows, columns) = (mask.shape[0], mask.shape[1])
        result["kl_mean"] = output([rows], (0..<rows).map { b in
            (0..<columns).reduce(0.0) { $0 + kl[b * columns + $1] * Double(mask[b, $1]) } / Double(columns)
        })
        return result
    }
}
