import TensorCore
import Golden

/// The well-known wrong PPO value losses (DeepSpeed-Chat's token-mean form).
enum CriticLossMistakes {
    static let chapter = "Chapters/06-critic-loss"

    static let entry = StageMistakes(stage: "critic_loss", mistakes: [minForMax, meanOverPadding, noHalf]) { a, output, _ in
        guard output == "loss" else { return nil }
        let x = try Inputs(a, clip: "cliprange_value")
        let (sum, count) = x.maskedSum(pessimistic: true)
        return ["per token: v_clip = clamp(V, V_old - ε_v, V_old + ε_v), term = max((V - R)², (v_clip - R)²), ε_v = \(show(x.clip))",
                "Σ term over the \(count) tokens the mask keeps = \(show(sum))",
                "loss = 0.5 · Σ / \(count) = \(show(0.5 * sum / Double(count)))"]
    }

    /// The [B, M] inputs of a PPO value loss and its clip range, read once.
    struct Inputs {
        let values: Tensor<Double>, oldValues: Tensor<Double>, returns: Tensor<Double>, mask: Tensor<Int64>
        let clip: Double

        init(_ a: FixtureArguments<Double>, clip name: String) throws {
            values = try a.float("values")
            oldValues = try a.float("old_values")
            returns = try a.float("returns")
            mask = try a.mask("mask")
            clip = try a.real(name)
        }

        /// The squared error of token i: the larger (pessimistic) or the smaller of
        /// the plain and the clipped one.
        func term(_ i: Int, pessimistic: Bool) -> Double {
            let v = values.scalars[i], old = oldValues.scalars[i], r = returns.scalars[i]
            let clipped = min(max(v, old - clip), old + clip)
            let plain = (v - r) * (v - r), clippedError = (clipped - r) * (clipped - r)
            return pessimistic ? max(plain, clippedError) : min(plain, clippedError)
        }

        /// Σ term over the kept tokens, and how many.
        func maskedSum(pessimistic: Bool) -> (sum: Double, count: Int) {
            var sum = 0.0, count = 0
            for i in mask.scalars.indices where mask.scalars[i] != 0 {
                sum += term(i, pessimistic: pessimistic)
                count += 1
            }
            return (sum, count)
        }
    }

    static let minForMax = Mistake(
        id: "critic_loss.min-for-max", stage: "critic_loss", chapter: chapter,
        title: "min((V - R)², (v_clip - R)²): the smaller error kept",
        explanation: "Value clipping keeps the larger of the two errors, a pessimistic bound that mirrors the policy clip: once V has moved more than ε_v past V_old toward R, the clipped error wins and its gradient is zero. Keeping the smaller error rewards moving further.") { a in
        let x = try Inputs(a, clip: "cliprange_value")
        let (sum, count) = x.maskedSum(pessimistic: false)
        return ["loss": output(0.5 * sum / Double(count))]
    }

    static let meanOverPadding = Mistake(
        id: "critic_loss.mean-over-padding", stage: "critic_loss", chapter: chapter,
        title: "0.5·Σ(term·mask) / (B·M): padding counted in the mean",
        explanation: "The mean divides by the number of tokens the mask keeps, Σ mask. Dividing by every position of the batch shrinks the loss by the fraction of padding.") { a in
        let x = try Inputs(a, clip: "cliprange_value")
        let (sum, _) = x.maskedSum(pessimistic: true)
        return ["loss": output(0.5 * sum / Double(x.mask.count))]
    }

    static let noHalf = Mistake(
        id: "critic_loss.no-half", stage: "critic_loss", chapter: chapter,
        title: "the squared error without the factor 0.5",
        explanation: "DeepSpeed-Chat's value loss is 0.5 · Σ max(...) / Σ mask: the half makes the gradient V - R. Without it the loss and its gradient double, which silently doubles the critic's learning rate.") { a in
        let x = try Inputs(a, clip: "cliprange_value")
        let (sum, count) = x.maskedSum(pessimistic: true)
        return ["loss": output(sum / Double(count))]
    }
}
