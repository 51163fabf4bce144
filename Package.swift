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
    // v1.1, the seed systems: one module per stage.
    "RewardEndScoresAttn",        // reward_end_scores_attn (align-anything)
    "RewardEndLossSqreg",         // reward_end_loss_sqreg (align-anything)
    "RewardEndScoresSeqcls",      // reward_end_scores_seqcls (transformers, TRL)
    "RewardEndLossMarginCenter",  // reward_end_loss_margin_center (TRL)
    "RewardsKLEndClamped",        // rewards_kl_end_clamped (align-anything PPO)
    "MaskedWhiten",               // masked_whiten (TRL PPO)
    // v1.1, the alignment zoo: one module per family, one file per stage.
    "KLControl",             // kl_estimators, adaptive_kl_controller (OpenRLHF, TRL)
    "PreferenceLosses",      // dpo_variants, cpo_loss, orpo_loss, kto_loss (TRL, OpenRLHF)
    "CriticFreeAdvantages",  // group_advantages (TRL), token_advantages (OpenRLHF)
]

/// The v1.1 seed-system stages that reuse other modules: align-anything's PPO (the
/// v1 per-token math under its masks and per-sequence means) and TRL's PPO (its
/// fills and whitening around v1's GAE and losses). Each is its own module, with its
/// tests under `Tests/<name>Tests/`.
let chainedStages: [(name: String, uses: [String])] = [
    ("MaskedMeanOverRows", []),                                   // align-anything's masked_mean
    ("GAEMasked", ["GAE"]),                                       // gae_masked
    ("ActorLossSeqMean", ["ActorLoss", "MaskedMeanOverRows"]),    // actor_loss_seq_mean
    ("CriticLossSeqMean", ["CriticLoss", "MaskedMeanOverRows"]),  // critic_loss_seq_mean
    ("PPOLossesSeqMean", ["RewardsKLEndClamped", "GAEMasked", "ActorLossSeqMean", "CriticLossSeqMean",
                          "MaskedMeanOverRows"]),                 // ppo_losses_seq_mean
    ("RewardsKLFirstPad", ["MaskedWhiten"]),                      // rewards_kl_first_pad
    ("PPOLossesJointWhitened", ["MaskedWhiten", "RewardsKLFirstPad", "GAE", "GatherLogProbs", "ActorLoss",
                                "CriticLoss"]),                   // ppo_losses_joint_whitened
    ("PolicyLosses", ["KLControl"]),                              // ppo_policy_loss (OpenRLHF), grpo_loss (TRL)
]
let chainedStageModules = chainedStages.map(\.name)

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
]
for module in chainedStages {
    targets.append(.target(name: module.name, dependencies: (["TensorCore"] + module.uses).map { .byName(name: $0) }))
}
targets += [
    // The only SIMD, unsafe-pointer and threaded code: the fused gather_log_probs
    // and its backward, each tested equal to its plain stage.
    .target(name: "FusedKernels", dependencies: ["TensorCore", "GatherLogProbs"]),
    // A tiny causal LM with its own forward and backward, Adam and sampling. Its
    // loops are optimised even in a debug build (`make chapters`, `make test`), so
    // the end-to-end chapter trains in seconds there too; nothing else changes.
    .target(name: "TinyLM", dependencies: ["TensorCore"], swiftSettings: [.unsafeFlags(["-O"])]),
    // The fixture format `rlhf-golden-v1`: reading, running a stage, comparing.
    .target(name: "Golden", dependencies: ["TensorCore", "PPOStep", "TinyLM"]
                + (stages + chainedStageModules).map { .byName(name: $0) }),
    // SFT, reward model, PPO, GRPO and DPO on the toy language, with the library's stages.
    .target(name: "EndToEnd", dependencies: ["TensorCore", "TinyLM", "PPOStep", "PPOLossesSeqMean", "RewardsKLFirstPad",
                                             "PPOLossesJointWhitened", "PolicyLosses"] + stages.map { .byName(name: $0) }),
    // The workshop kit: the catalogue of well-known mistakes per stage, the
    // diagnosis that names them, the answers route and the exercise harnesses.
    // Kept apart from the stage modules, so a reader of Sources/GAE/ sees only
    // the right GAE.
    .target(name: "Workshop", dependencies: ["TensorCore", "Golden", "PPOStep"]
                + (stages + chainedStageModules).map { .byName(name: $0) }),
    // `golden-verify [PATH ...]`: runs every fixture under the paths.
    .executableTarget(name: "GoldenVerify", dependencies: ["Golden", "Workshop"]),
    // Tables, fixture loading and golden checks for the chapters (no math here).
    .target(name: "ChapterSupport", dependencies: ["TensorCore", "Golden"]),
    // Shared by the tests: the one assertion helper and a seeded RNG.
    .target(name: "TestSupport", dependencies: ["TensorCore", "Golden"], path: "Tests/TestSupport"),
]

// One test target per module: golden fixtures, known answers and invariants.
for name in ["TensorCore", "Golden", "PPOStep", "FusedKernels", "TinyLM", "EndToEnd"] + stages + chainedStageModules {
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
    "11-three-reward-models",
    "12-three-ppo-steps",
    "13-kl-estimators",
    "14-dpo-family",
    "15-critic-free-advantages",
    "16-grpo-end-to-end",
]
/// The SVG plots a chapter writes beside its README: files SwiftPM must not treat as sources.
let chapterPlots = [
    "10-end-to-end": ["reward-kl.svg"],
    "13-kl-estimators": ["kl-estimators.svg"],
    "14-dpo-family": ["dpo-family.svg"],
    "16-grpo-end-to-end": ["reward-kl.svg"],
]

for chapter in chapters {
    targets.append(
        .executableTarget(
            name: "ch" + chapter,
            dependencies: ["ChapterSupport", "TensorCore", "Golden", "PPOStep", "TinyLM", "EndToEnd"]
                + (stages + chainedStageModules).map { .byName(name: $0) },
            path: "Chapters/" + chapter,
            exclude: ["README.md"] + (chapterPlots[chapter] ?? [])
        )
    )
}

/// The workshop's exercises: `Chapters/exercises/NN-slug/` holds `Exercise.swift`,
/// the file an attendee edits (a signature, its doc comment, an empty body), and
/// `main.swift`, the harness that grades it on the chapter's fixtures. It is the
/// executable `exNN-slug`; `make exercise N=4` builds and runs it.
let exercises: [(slug: String, uses: [String])] = [
    ("01-gather-log-probs", []),
    ("02-pairwise-reward-loss", []),
    ("03-compute-rewards", []),
    ("04-gae", []),
    ("05-actor-loss", []),
    ("06-critic-loss", []),
    ("07-ppo-step", ["ComputeRewards", "GAE", "ActorLoss", "CriticLoss"]),  // the step chains the library's stages
    ("08-dpo-loss", []),
    ("11-three-reward-models", []),
    ("12-three-ppo-steps", []),
    ("13-kl-estimators", []),
    ("14-dpo-family", []),
    ("15-critic-free-advantages", []),
]
for exercise in exercises {
    targets.append(
        .executableTarget(
            name: "ex" + exercise.slug,
            dependencies: (["Workshop", "TensorCore"] + exercise.uses).map { .byName(name: $0) },
            path: "Chapters/exercises/" + exercise.slug
        )
    )
}

// The catalogue, the diagnosis, the answers route and every exercise harness
// (run with the library's own functions, and with known mistakes).
targets.append(
    .testTarget(
        name: "WorkshopTests",
        dependencies: ["Workshop", "TestSupport", "TensorCore", "Golden", "PPOStep"]
            + (stages + chainedStageModules).map { .byName(name: $0) }
            + exercises.map { .byName(name: "ex" + $0.slug) }
    )
)

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
                       "FusedKernels", "TinyLM", "EndToEnd"]
    )
)
let benchmarkProducts: [Product] = [.executable(name: "rlhf-bench", targets: ["Bench"])]

/// Libraries other packages can use: `RLHFMath`, every math module and the
/// fixture reader in one product, and one product per stage module. A package that
/// depends on this one by path names it "RLHFMath" and lists the products it uses
/// (the README's "Using the library from another package" shows the lines;
/// Tests/LibraryConsumer is such a package), then imports `GAE`, `TensorCore`, ...
let mathModules = ["TensorCore"] + stages + ["PPOStep"] + chainedStageModules + ["FusedKernels", "TinyLM"]
let libraryProducts: [Product] =
    [.library(name: "RLHFMath", targets: mathModules + ["Golden"])]
    + (stages + ["PPOStep"] + chainedStageModules + ["FusedKernels"]).map { .library(name: $0, targets: [$0]) }

let package = Package(
    name: "RLHFMath",
    products: libraryProducts + [
        .executable(name: "golden-verify", targets: ["GoldenVerify"]),
    ] + chapters.map { .executable(name: "ch" + $0, targets: ["ch" + $0]) }
        + exercises.map { .executable(name: "ex" + $0.slug, targets: ["ex" + $0.slug]) } + benchmarkProducts,
    targets: targets
)
