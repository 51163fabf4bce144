import TensorCore
import Golden

/// The well-known wrong causal-LM losses.
enum SFTLossMistakes {
    static let chapter = "Chapters/10-end-to-end"

    static let entry = StageMistakes(stage: "sft_loss", mistakes: [noShift, ignoredCounted])

    /// Σ nll and the count over the pairs (logits at t, label at t + shift), labels
    /// equal to ignore_index skipped.
    static func negativeLogLikelihood(_ a: FixtureArguments<Double>, shift: Int) throws -> (sum: Double, count: Int, positions: Int) {
        let logits = try a.float("logits"), labels = try a.ids("labels"), ignore = Int64(try a.int("ignore_index"))
        let (batch, length, vocabulary) = (logits.shape[0], logits.shape[1], logits.shape[2])
        var sum = 0.0, count = 0
        for b in 0..<batch {
            for t in 0..<(length - shift) {
                let y = labels[b, t + shift]
                guard y != ignore else { continue }
                guard y >= 0 && Int(y) < vocabulary else {
                    throw StageError(.labelOutOfRange, stage: "sft_loss", argument: "labels", "label \(y) outside [0, \(vocabulary))")
                }
                let start = (b * length + t) * vocabulary
                sum -= logSoftmax(logits.scalars[start..<(start + vocabulary)], at: Int(y))
                count += 1
            }
        }
        return (sum, count, batch * (length - shift))
    }

    static let noShift = Mistake(
        id: "sft_loss.no-shift", stage: "sft_loss", chapter: chapter,
        title: "logits[:, t] scored against labels[:, t]: no shift",
        explanation: "The logits at position t predict the token at t + 1: the loss pairs logits[:, :-1] with labels[:, 1:]. Without the shift the model is trained to copy its input token, which it sees.") { a in
        let (sum, count, _) = try negativeLogLikelihood(a, shift: 0)
        return ["loss": output(sum / Double(count))]
    }

    static let ignoredCounted = Mistake(
        id: "sft_loss.ignored-counted", stage: "sft_loss", chapter: chapter,
        title: "the mean over every position, ignore_index ones counted",
        explanation: "Positions labelled ignore_index (-100: prompt or padding) add nothing to the sum and must not count in the denominator either: the loss is the mean over counted labels only. Counting them shrinks the loss by the fraction of ignored positions.") { a in
        let (sum, _, positions) = try negativeLogLikelihood(a, shift: 1)
        return ["loss": output(sum / Double(positions))]
    }
}
