/// The mistake catalogue: one entry per stage that has well-known mistakes, in
/// the order of `stageRegistry`.
///
/// Adding a stage's mistakes: one file `Mistakes/<Stage>Mistakes.swift` holding
/// an `enum <Stage>Mistakes` with `static let entry = StageMistakes(...)` (its
/// mistakes, each a small function from the fixture's inputs to the wrong
/// outputs, and optionally `explain`), and one line here. `WorkshopTests` then
/// checks every new mistake against the stage's committed fixtures: each must be
/// named when fed as an answer, on at least one fixture, and none may be named
/// for a right answer.
public let mistakeCatalogue: [StageMistakes] = [
    GatherLogProbsMistakes.entry,
    RewardPairwiseLossMistakes.entry,
    RewardEndScoresMistakes.entry,
    ComputeRewardsMistakes.entry,
    GAEMistakes.entry,
    ActorLossMistakes.entry,
    CriticLossMistakes.entry,
    DPOLossMistakes.entry,
    PPOLossesMistakes.entry,
    SFTLossMistakes.entry,
    // v1.1, the seed systems.
    RewardEndScoresAttnMistakes.entry,
    RewardEndLossSqregMistakes.entry,
    RewardEndScoresSeqclsMistakes.entry,
    RewardEndLossMarginCenterMistakes.entry,
    RewardsKLEndClampedMistakes.entry,
    GAEMaskedMistakes.entry,
    ActorLossSeqMeanMistakes.entry,
    CriticLossSeqMeanMistakes.entry,
    MaskedWhitenMistakes.entry,
    RewardsKLFirstPadMistakes.entry,
    // v1.1, the zoo.
    KLEstimatorsMistakes.entry,
    AdaptiveKLControllerMistakes.entry,
    DPOVariantsMistakes.entry,
    CPOLossMistakes.entry,
    ORPOLossMistakes.entry,
    KTOLossMistakes.entry,
    GroupAdvantagesMistakes.entry,
    TokenAdvantagesMistakes.entry,
    PPOPolicyLossMistakes.entry,
    GRPOLossMistakes.entry,
]
