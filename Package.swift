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
    "SFTLoss",             // sft_loss, and the step 1/2 data preparation on token ids
    // v1.1, the seed systems: TRL's PPO.
    "MaskedWhiten",        // masked_whiten
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
    // TRL PPO's rollout rewards, which whiten them when asked.
    .target(name: "RewardsKLFirstPad", dependencies: ["TensorCore", "MaskedWhiten"]),
    // One TRL PPO update, chaining the rollout, GAE, whitening and v1's losses.
    .target(
        name: "PPOLossesJointWhitened",
        dependencies: ["TensorCore", "MaskedWhiten", "RewardsKLFirstPad", "GAE", "GatherLogProbs", "ActorLoss",
                       "CriticLoss"]
    ),
    // The only SIMD, unsafe-pointer and threaded code: the fused gather_log_probs
    // and its backward, each tested equal to its plain stage.
    .target(name: "FusedKernels", dependencies: ["TensorCore", "GatherLogProbs"]),
    // A tiny causal LM with its own forward and backward, Adam and sampling. Its
    // loops are optimised even in a debug build (`make chapters`, `make test`), so
    // the end-to-end chapter trains in seconds there too; nothing else changes.
    .target(name: "TinyLM", dependencies: ["TensorCore"], swiftSettings: [.unsafeFlags(["-O"])]),
    // The fixture format `rlhf-golden-v1`: reading, running a stage, comparing.
    .target(name: "Golden", dependencies: ["TensorCore", "PPOStep", "TinyLM", "RewardsKLFirstPad", "PPOLossesJointWhitened"]
                                 + stages.map { .byName(name: $0) }),
    // SFT, reward model, PPO and DPO on the toy language, with the library's stages.
    .target(name: "EndToEnd", dependencies: ["TensorCore", "TinyLM", "PPOStep"] + stages.map { .byName(name: $0) }),
    // `golden-verify [PATH ...]`: runs every fixture under the paths.
    .executableTarget(name: "GoldenVerify", dependencies: ["Golden"]),
    // Tables, fixture loading and golden checks for the chapters (no math here).
    .target(name: "ChapterSupport", dependencies: ["TensorCore", "Golden"]),
    // Shared by the tests: the one assertion helper and a seeded RNG.
    .target(name: "TestSupport", dependencies: ["TensorCore", "Golden"], path: "Tests/TestSupport"),
]

// One test target per module: golden fixtures, known answers and invariants.
for name in ["TensorCore", "Golden", "PPOStep", "FusedKernels", "TinyLM", "EndToEnd", "RewardsKLFirstPad",
                 "PPOLossesJointWhitened"] + stages {
    let shared = ["TestSupport", "TensorCore", "Golden"].filter { $0 != name }
    targets.append(
        .testTarget(name: name + "Tests", dependencies: [.byName(name: name)] + shared.map { .byName(name: $0) })
    )
}

/// The book: `Chapters/NN-slug/main.swift` is the executable `chNN-slug`, and
/// `Chapters/NN-slug/README.md` its prose with the output pasted whole.
let chapters = [
    "00-the-map",
    "01-gather-log-probs",
    "02-pairwise-reward-loss",
    "03-compute-rewards",
    "04-gae",
    "05-actor-loss",
    "06-critic-loss",
    "07-ppo-step",
    "08-dpo-loss",
    "09-gradients",
    "10-end-to-end",
]

for chapter in chapters {
    targets.append(
        .executableTarget(
            name: "ch" + chapter,
            dependencies: ["ChapterSupport", "TensorCore", "Golden", "PPOStep", "TinyLM", "EndToEnd"]
                + stages.map { .byName(name: $0) },
            path: "Chapters/" + chapter,
            exclude: ["README.md"] + (chapter == "10-end-to-end" ? ["reward-kl.svg"] : [])
        )
    )
}

// Runs every chapter and checks that the output pasted in its README is exactly
// what it prints today.
targets.append(
    .testTarget(
        name: "ChapterTests",
        dependencies: ["TestSupport", "ChapterSupport"] + chapters.map { .byName(name: "ch" + $0) }
    )
)

// Benchmarks (make bench): `rlhf-bench` times the stages at RLHF-sized shapes,
// release build; Benchmarks/torch_baseline.py runs the same shapes in PyTorch.
targets.append(
    .executableTarget(
        name: "Bench",
        dependencies: ["TensorCore", "GatherLogProbs", "ComputeRewards", "GAE", "ActorLoss", "CriticLoss", "PPOStep",
                       "FusedKernels"]
    )
)
let benchmarkProducts: [Product] = [.executable(name: "rlhf-bench", targets: ["Bench"])]

/// Libraries other packages can use: `RLHFMath`, every math module and the
/// fixture reader in one product, and one product per stage module.
///
/// ```swift
/// dependencies: [.package(path: "../rlhf-swift")],
/// targets: [.target(name: "Mine", dependencies: [.product(name: "RLHFMath", package: "RLHFMath")])]
/// ```
///
/// Then `import GAE`, `import TensorCore`, ... (Tests/LibraryConsumer builds one.)
let mathModules = ["TensorCore"] + stages + ["PPOStep", "RewardsKLFirstPad", "PPOLossesJointWhitened", "FusedKernels", "TinyLM"]
let libraryProducts: [Product] =
    [.library(name: "RLHFMath", targets: mathModules + ["Golden"])]
    + (stages + ["PPOStep", "RewardsKLFirstPad", "PPOLossesJointWhitened", "FusedKernels"]).map { .library(name: $0, targets: [$0]) }

let package = Package(
    name: "RLHFMath",
    products: libraryProducts + [
        .executable(name: "golden-verify", targets: ["GoldenVerify"]),
    ] + chapters.map { .executable(name: "ch" + $0, targets: ["ch" + $0]) } + benchmarkProducts,
    targets: targets
)
