import TensorCore
import Golden

/// The well-known wrong `gather_log_probs`.
enum GatherLogProbsMistakes {
    static let chapter = "Chapters/01-gather-log-probs"

    static let entry = StageMistakes(stage: "gather_log_probs", mistakes: [rawLogit, shiftedTwice, probability]) { a, output, index in
        guard output == "log_probs", index.count == 2 else { return nil }
        let logits = try a.float("logits"), labels = try a.ids("labels")
        let (b, t) = (index[0], index[1]), vocabulary = logits.shape[2]
        let row = logits.scalars[((b * logits.shape[1] + t) * vocabulary)..<((b * logits.shape[1] + t + 1) * vocabulary)]
        let label = Int(labels[b, t])
        return ["label y = labels\(describe(shape: index)) = \(label)",
                "logits\(describe(shape: [b, t, label])) = \(show(logits[b, t, label]))",
                "logsumexp(logits[\(b), \(t), :]) = \(show(logSumExp(row)))",
                "log_probs\(describe(shape: index)) = logit of y - logsumexp = \(show(logits[b, t, label] - logSumExp(row)))"]
    }

    /// The two inputs: `logits` [B, T, V] and `labels` [B, T].
    static func positions(_ a: FixtureArguments<Double>) throws -> (Tensor<Double>, Tensor<Int64>) {
        (try a.float("logits"), try a.ids("labels"))
    }

    static let rawLogit = Mistake(
        id: "gather_log_probs.raw-logit", stage: "gather_log_probs", chapter: chapter,
        title: "the label's raw logit, without log_softmax",
        explanation: "A logit is a score, not a log-probability: it changes when a constant is added to the whole row. The log-prob of the label is logits[y] - logsumexp(logits[b, t, :]), which is <= 0.") { a in
        let (logits, labels) = try positions(a)
        let (batch, steps) = (labels.shape[0], labels.shape[1])
        var values = [Double]()
        for b in 0..<batch { for t in 0..<steps { values.append(logits[b, t, Int(labels[b, t])]) } }
        return ["log_probs": output([batch, steps], values)]
    }

    static let shiftedTwice = Mistake(
        id: "gather_log_probs.shifted-twice", stage: "gather_log_probs", chapter: chapter,
        title: "logits[:, :-1] against labels[:, 1:] inside the gather, on inputs already shifted",
        explanation: "The caller already pairs the logits at t with the token at t + 1 (logits[:, :-1], input_ids[:, 1:]); shifting again scores each token with the logits two places back and drops a column. Here logits[b, t] goes with labels[b, t].") { a in
        let (logits, labels) = try positions(a)
        let (batch, steps, vocabulary) = (labels.shape[0], labels.shape[1], logits.shape[2])
        var values = [Double]()
        for b in 0..<batch {
            for t in 0..<max(steps - 1, 0) {
                let start = (b * steps + t) * vocabulary
                values.append(logSoftmax(logits.scalars[start..<(start + vocabulary)], at: Int(labels[b, t + 1])))
            }
        }
        return ["log_probs": output([batch, max(steps - 1, 0)], values)]
    }

    static let probability = Mistake(
        id: "gather_log_probs.probability", stage: "gather_log_probs", chapter: chapter,
        title: "softmax(logits)[y]: the probability, not its log",
        explanation: "PPO's ratio exp(new - old), the KL term and DPO all take log-probabilities. softmax(...)[y] is in (0, 1]; take log_softmax(...)[y], computed as logits[y] - logsumexp so it never forms log(0).") { a in
        let (logits, labels) = try positions(a)
        let (batch, steps, vocabulary) = (labels.shape[0], labels.shape[1], logits.shape[2])
        var values = [Double]()
        for b in 0..<batch {
            for t in 0..<steps {
                let start = (b * steps + t) * vocabulary
                values.append(Double.exp(logSoftmax(logits.scalars[start..<(start + vocabulary)], at: Int(labels[b, t]))))
            }
        }
        return ["log_probs": output([batch, steps], values)]
    }
}
