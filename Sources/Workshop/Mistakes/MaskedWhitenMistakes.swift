import TensorCore
import Golden

/// The well-known wrong masked whitenings.
enum MaskedWhitenMistakes {
    static let chapter = "Chapters/12-three-ppo-steps"

    static let entry = StageMistakes(stage: "masked_whiten", mistakes: [biasedVariance, unmaskedStatistics]) { a, output, index in
        guard output == "whitened" else { return nil }
        let values = try a.float("values"), mask = try a.mask("mask")
        let (mean, variance, n) = statistics(values, mask, unbiased: true, masked: true)
        let i = index.count == 2 ? index[0] * values.shape[1] + index[1] : 0
        return ["n = \(n) selected values, μ = Σ values·mask / n = \(show(mean))",
                "σ² = Σ (values - μ)²·mask / (n - 1) = \(show(variance)) (unbiased)",
                "whitened = (\(show(values.scalars[i])) - μ) / sqrt(σ² + 1e-8)\(try a.bool("shift_mean") ? "" : " + μ (shift_mean false)")"]
    }

    /// Mean and variance over the selected (or all) positions.
    static func statistics(_ values: Tensor<Double>, _ mask: Tensor<Int64>, unbiased: Bool, masked: Bool) -> (Double, Double, Int) {
        let kept = values.scalars.indices.filter { !masked || mask.scalars[$0] != 0 }
        let n = kept.count
        let mean = kept.reduce(0.0) { $0 + values.scalars[$1] } / Double(n)
        let squares = kept.reduce(0.0) { $0 + (values.scalars[$1] - mean) * (values.scalars[$1] - mean) }
        return (mean, squares / Double(unbiased ? n - 1 : n), n)
    }

    static func whitened(_ a: FixtureArguments<Double>, unbiased: Bool, masked: Bool) throws -> [String: FixtureTensor] {
        let values = try a.float("values"), mask = try a.mask("mask"), shiftMean = try a.bool("shift_mean")
        let (mean, variance, _) = statistics(values, mask, unbiased: unbiased, masked: masked)
        let scale = 1 / (variance + 1e-8).squareRoot()
        return ["whitened": output(values.shape, values.scalars.map { ($0 - mean) * scale + (shiftMean ? 0 : mean) })]
    }

    static let biasedVariance = Mistake(
        id: "masked_whiten.biased-variance", stage: "masked_whiten", chapter: chapter,
        title: "the biased variance (divide by n) instead of TRL's unbiased one (n - 1)",
        explanation: "TRL's masked_var uses Bessel's correction, n/(n - 1), over the n selected values. torch.var defaults to unbiased while numpy's var and many hand-written versions divide by n; the whitened values then come out larger by sqrt(n/(n - 1)).") { a in
        try whitened(a, unbiased: false, masked: true)
    }

    static let unmaskedStatistics = Mistake(
        id: "masked_whiten.unmasked-statistics", stage: "masked_whiten", chapter: chapter,
        title: "mean and variance over every position, padding included",
        explanation: "The statistics run over the positions the mask selects only: a pad's value (often 0, or a fill like TRL's INVALID_LOGPROB) is not data. Counting it shifts the mean and shrinks or inflates the spread, by an amount that depends on the padding.") { a in
        try whitened(a, unbiased: true, masked: false)
    }
}
