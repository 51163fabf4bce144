import TensorCore
import Golden
import GAE

/// The well-known wrong GAEs.
enum GAEMistakes {
    static let chapter = "Chapters/04-gae"

    static let entry = StageMistakes(stage: "gae", mistakes: [forwardRecursion, noLambda, monteCarloReturns, wholeRow]) { a, output, index in
        guard index.count == 2 else { return nil }
        let values = try a.float("values"), rewards = try a.float("rewards")
        let start = try a.int("start"), gamma = try a.real("gamma"), lambda = try a.real("lambda")
        let result = try gae(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda)
        let (b, j) = (index[0], index[1]), t = start + index[1], n = values.shape[1]
        let nextValue = t + 1 < n ? values[b, t + 1] : 0
        let nextAdvantage = j + 1 < result.advantages.shape[1] ? result.advantages[b, j + 1] : 0
        let delta = result.deltas[b, j]
        var lines = [
            "position t = start + \(j) = \(t) of the row",
            "V_t+1 = \(show(nextValue))\(t + 1 < n ? "" : " (past the last column)"), V_t = \(show(values[b, t])), r_t = \(show(rewards[b, t]))",
            "delta_t = r_t + γ·V_t+1 - V_t = \(show(delta))",
            "A_t+1 = \(show(nextAdvantage))\(j + 1 < result.advantages.shape[1] ? "" : " (past the last column)")",
            "A_t = delta_t + γ·λ·A_t+1 = \(show(delta)) + \(show(gamma * lambda))·\(show(nextAdvantage)) = \(show(result.advantages[b, j]))",
        ]
        if output == "returns" { lines.append("R_t = A_t + V_t = \(show(result.returns[b, j]))") }
        return lines
    }

    static let forwardRecursion = Mistake(
        id: "gae.forward-recursion", stage: "gae", chapter: chapter,
        title: "A_t = delta_t + γ·λ·A_t-1: the recursion run forward in time",
        explanation: "An advantage sums the TD errors of the future: A_t = delta_t + γλ·delta_t+1 + (γλ)²·delta_t+2 + ... So the loop runs backwards, from the last position down to start, carrying A_t+1. Run forward it sums the past instead.") { a in
        let values = try a.float("values"), rewards = try a.float("rewards")
        let start = try a.int("start"), gamma = try a.real("gamma"), lambda = try a.real("lambda")
        let deltas = try gae(values: values, rewards: rewards, start: start, gamma: gamma, lambda: lambda).deltas
        let (batch, width) = (deltas.shape[0], deltas.shape[1])
        var advantages = deltas, returns = deltas
        for b in 0..<batch {
            var previous = 0.0
            for j in 0..<width {
                previous = deltas[b, j] + gamma * lambda * previous
                advantages.scalars[b * width + j] = previous
                returns.scalars[b * width + j] = previous + values[b, start + j]
            }
        }
        return ["advantages": FixtureTensor(advantages), "returns": FixtureTensor(returns)]
    }

    static let noLambda = Mistake(
        id: "gae.no-lambda", stage: "gae", chapter: chapter,
        title: "A_t = delta_t + γ·A_t+1: λ left out of the recursion",
        explanation: "The carried advantage is discounted by γ·λ, not γ alone: λ trades bias (λ = 0, one TD error) against variance (λ = 1, the Monte-Carlo return minus V). Without λ every run is a λ = 1 run.") { a in
        let result = try gae(values: a.float("values"), rewards: a.float("rewards"), start: a.int("start"),
                             gamma: a.real("gamma"), lambda: 1)
        return ["advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns)]
    }

    static let monteCarloReturns = Mistake(
        id: "gae.monte-carlo-returns", stage: "gae", chapter: chapter,
        title: "returns as the discounted reward-to-go Σ γ^k·r_t+k instead of A_t + V_t",
        explanation: "The critic's target here is the λ-return R_t = A_t + V_t, built from the same advantages. The plain discounted reward-to-go is the λ = 1 target; with λ < 1 the two differ.") { a in
        let values = try a.float("values"), rewards = try a.float("rewards")
        let start = try a.int("start"), gamma = try a.real("gamma")
        let result = try gae(values: values, rewards: rewards, start: start, gamma: gamma, lambda: a.real("lambda"))
        var returns = result.returns
        let (batch, n) = (values.shape[0], values.shape[1]), width = n - start
        for b in 0..<batch {
            var toGo = 0.0
            for t in stride(from: n - 1, through: start, by: -1) {
                toGo = rewards[b, t] + gamma * toGo
                returns.scalars[b * width + t - start] = toGo
            }
        }
        return ["advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(returns)]
    }

    static let wholeRow = Mistake(
        id: "gae.whole-row", stage: "gae", chapter: chapter,
        title: "advantages for every position, start ignored",
        explanation: "Only the answer has actions to credit: the recursion stops at start = prompt_length - 1 and the outputs have N - start columns, lined up with the answer's log-probs. The prompt positions get no advantage.") { a in
        let result = try gae(values: a.float("values"), rewards: a.float("rewards"), start: 0,
                             gamma: a.real("gamma"), lambda: a.real("lambda"))
        return ["advantages": FixtureTensor(result.advantages), "returns": FixtureTensor(result.returns)]
    }
}
