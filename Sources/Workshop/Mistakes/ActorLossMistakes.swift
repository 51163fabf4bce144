import TensorCore
import Golden

/// The well-known wrong PPO policy losses (DeepSpeed-Chat's token-mean form).
enum ActorLossMistakes {
    static let chapter = "Chapters/05-actor-loss"

    static let entry = StageMistakes(stage: "actor_loss", mistakes: [minForMax, ratioInverted, meanOverPadding, noClip]) { a, output, _ in
        guard output == "loss" else { return nil }
        let x = try Inputs(a, clip: "cliprange")
        let (sum, count) = x.maskedSum { x.clippedTerm($0, $1, pessimistic: true) }
        return ["per token: ratio = exp(log_probs - old_log_probs), loss_t = max(-A·ratio, -A·clamp(ratio, 1 - ε, 1 + ε)), ε = \(show(x.clip))",
                "Σ loss_t over the \(count) tokens the mask keeps = \(show(sum))",
                "loss = Σ / \(count) = \(show(sum / Double(count))) (a token-mean over the whole batch)"]
    }

    /// The four [B, M] inputs of a PPO policy loss and its clip range, read once.
    struct Inputs {
        let logProbs: Tensor<Double>, oldLogProbs: Tensor<Double>, advantages: Tensor<Double>, mask: Tensor<Int64>
        let clip: Double

        init(_ a: FixtureArguments<Double>, clip name: String) throws {
            logProbs = try a.float("log_probs")
            oldLogProbs = try a.float("old_log_probs")
            advantages = try a.float("advantages")
            mask = try a.mask("mask")
            clip = try a.real(name)
        }

        /// The per-token loss from the log-ratio and the advantage: `max` of the
        /// two negated terms (pessimistic), or `min` (the mistake).
        func clippedTerm(_ logRatio: Double, _ advantage: Double, pessimistic: Bool) -> Double {
            let ratio = Double.exp(logRatio), clipped = min(max(ratio, 1 - clip), 1 + clip)
            return pessimistic ? max(-advantage * ratio, -advantage * clipped) : min(-advantage * ratio, -advantage * clipped)
        }

        /// Σ term(log-ratio, advantage) over the kept tokens, and how many.
        func maskedSum(_ term: (Double, Double) -> Double) -> (sum: Double, count: Int) {
            var sum = 0.0, count = 0
            for i in mask.scalars.indices where mask.scalars[i] != 0 {
                sum += term(logProbs.scalars[i] - oldLogProbs.scalars[i], advantages.scalars[i])
                count += 1
            }
            return (sum, count)
        }
    }

    static let minForMax = Mistake(
        id: "actor_loss.min-for-max", stage: "actor_loss", chapter: chapter,
        title: "min(-A·ratio, -A·clipped ratio): the optimistic bound",
        explanation: "PPO maximises min(A·ratio, A·clip(ratio)), so the loss is its negation, max(-A·ratio, -A·clip(ratio)): the pessimistic bound that stops rewarding a ratio past 1 ± ε. Taking min of the negated terms turns the clip into a bonus for moving further.") { a in
        let x = try Inputs(a, clip: "cliprange")
        let (sum, count) = x.maskedSum { x.clippedTerm($0, $1, pessimistic: false) }
        return ["loss": output(sum / Double(count))]
    }

    static let ratioInverted = Mistake(
        id: "actor_loss.ratio-inverted", stage: "actor_loss", chapter: chapter,
        title: "ratio = exp(old_log_probs - log_probs): the ratio upside down",
        explanation: "The importance ratio is π_new(a)/π_old(a) = exp(log_probs - old_log_probs). Inverted, a policy that raises a good action's probability is pushed back.") { a in
        let x = try Inputs(a, clip: "cliprange")
        let (sum, count) = x.maskedSum { x.clippedTerm(-$0, $1, pessimistic: true) }
        return ["loss": output(sum / Double(count))]
    }

    static let meanOverPadding = Mistake(
        id: "actor_loss.mean-over-padding", stage: "actor_loss", chapter: chapter,
        title: "Σ(loss·mask) / (B·M): padding counted in the mean",
        explanation: "The token-mean divides by the number of tokens the mask keeps, Σ mask, not by every position of the batch. Dividing by B·M shrinks the loss (and its gradient) by the fraction of padding, which changes from batch to batch.") { a in
        let x = try Inputs(a, clip: "cliprange")
        let (sum, _) = x.maskedSum { x.clippedTerm($0, $1, pessimistic: true) }
        return ["loss": output(sum / Double(x.mask.count))]
    }

    static let noClip = Mistake(
        id: "actor_loss.no-clip", stage: "actor_loss", chapter: chapter,
        title: "-A·ratio: the policy-gradient loss without PPO's clip",
        explanation: "PPO's loss per token is max(-A·ratio, -A·clamp(ratio, 1 - ε, 1 + ε)). Without the clipped term nothing stops a minibatch from moving the policy far from the one that sampled the data.") { a in
        let x = try Inputs(a, clip: "cliprange")
        let (sum, count) = x.maskedSum { -$1 * Double.exp($0) }
        return ["loss": output(sum / Double(count))]
    }
}
