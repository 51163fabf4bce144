// Calls the stages from outside the package: GAE on the hand-worked case of
// Tests/GAETests (γ = 1, λ = 0.95), and a committed fixture through the verifier.
// Exits non-zero if either disagrees.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore
import GAE
import Golden

let values = try Tensor(shape: [1, 3], scalars: [0.5, 0.25, 0.125])
let rewards = try Tensor(shape: [1, 3], scalars: [0.0, 0.0, 1.0])
let result = try gae(values: values, rewards: rewards, start: 0, gamma: 1.0, lambda: 0.95)
// δ = [0 + 0.25 - 0.5, 0 + 0.125 - 0.25, 1 - 0.125] = [-0.25, -0.125, 0.875]
// A_2 = 0.875, A_1 = -0.125 + 0.95 · 0.875 = 0.70625, A_0 = -0.25 + 0.95 · 0.70625 = 0.4209375
let expected = [0.4209375, 0.70625, 0.875]
let gaeMatches = zip(result.advantages.scalars, expected).allSatisfy { abs($0 - $1) <= 1e-12 }
print("gae from outside the package: \(result.advantages.scalars) \(gaeMatches ? "ok" : "MISMATCH, expected \(expected)")")

let root = CommandLine.arguments.dropFirst().first ?? "../../GoldenData"
let outcome = verifyFile(atPath: root + "/gae/peer-toy-f64.json")
print("golden fixture gae/peer-toy-f64 through Golden: \(outcome.passed ? "pass" : "FAIL: \(outcome.message)")")
exit(gaeMatches && outcome.passed ? 0 : 1)
