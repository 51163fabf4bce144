// swift-tools-version: 6.0
//
// A pure-Swift, step-by-step reference implementation of the math inside LLM
// alignment: DeepSpeed-Chat's reward-model and PPO stages and align-anything's
// DPO loss, each checked against PyTorch through golden fixtures.
//
// No package dependencies: the Swift toolchain only.

import PackageDescription

/// The stages, in the order one RLHF step meets them. Each is its own module
/// under `Sources/<name>/`, with its tests under `Tests/<name>Tests/`.
let stages = [
    "GatherLogProbs",      // gather_log_probs
    "PairwiseRewardLoss",  // reward_pairwise_loss, reward_end_scores
    "ComputeRewards",      // compute_rewards
    "GAE",                 // gae
    "ActorLoss",           // actor_loss
    "CriticLoss",          // critic_loss
    "DPOLoss",             // dpo_loss
]

var targets: [Target] = [
    // Our tensors, the typed errors and the few numerically careful helpers.
    .target(name: "TensorCore"),
]

for stage in stages {
    targets.append(.target(name: stage, dependencies: ["TensorCore"]))
}

targets += [
    // The data flow of one DeepSpeed-Chat `train_rlhf` call, chaining the stages.
    .target(
        name: "PPOStep",
        dependencies: ["TensorCore", "ComputeRewards", "GAE", "ActorLoss", "CriticLoss"]
    ),
    // The fixture format `rlhf-golden-v1`: reading, running a stage, comparing.
    .target(name: "Golden", dependencies: ["TensorCore", "PPOStep"] + stages.map { .byName(name: $0) }),
    // `golden-verify [PATH ...]`: runs every fixture under the paths.
    .executableTarget(name: "GoldenVerify", dependencies: ["Golden"]),
    // Shared by the tests: the one assertion helper and a seeded RNG.
    .target(name: "TestSupport", dependencies: ["TensorCore", "Golden"], path: "Tests/TestSupport"),
]

// One test target per module: golden fixtures, known answers and invariants.
for name in ["TensorCore", "Golden", "PPOStep"] + stages {
    let shared = ["TestSupport", "TensorCore", "Golden"].filter { $0 != name }
    targets.append(
        .testTarget(name: name + "Tests", dependencies: [.byName(name: name)] + shared.map { .byName(name: $0) })
    )
}

let package = Package(
    name: "RLHFMath",
    products: [
        .executable(name: "golden-verify", targets: ["GoldenVerify"]),
    ],
    targets: targets
)
