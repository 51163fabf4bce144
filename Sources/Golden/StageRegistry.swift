import TensorCore

/// Every stage of format `rlhf-golden-v1`, one adapter each, in the order one RLHF
/// step meets them. Adding a stage: its module (or its file in a family module),
/// its adapter in `Sources/Golden/Stages/`, one line here, its tests, its
/// generator file in `GoldenData/generator/stages/`.
public let stageRegistry: [any StageAdapter.Type] = [
    GatherLogProbsStage.self,
    RewardPairwiseLossStage.self,
    RewardEndScoresStage.self,
    ComputeRewardsStage.self,
    GAEStage.self,
    ActorLossStage.self,
    CriticLossStage.self,
    DPOLossStage.self,
    PPOLossesStage.self,
    // Added after v1 (a new stage never changes an old one).
    SFTLossStage.self,
    TinyLMStage.self,
    // v1.1, the seed systems (shared/spec/v1.1-seed-systems.md).
    RewardEndScoresAttnStage.self,
    RewardEndLossSqregStage.self,
    RewardEndScoresSeqclsStage.self,
    RewardEndLossMarginCenterStage.self,
    RewardsKLEndClampedStage.self,
    GAEMaskedStage.self,
    ActorLossSeqMeanStage.self,
    CriticLossSeqMeanStage.self,
    PPOLossesSeqMeanStage.self,
    MaskedWhitenStage.self,
    RewardsKLFirstPadStage.self,
    PPOLossesJointWhitenedStage.self,
    // v1.1, the zoo (shared/spec/v1.1-zoo.md).
    GroupAdvantagesStage.self,
    TokenAdvantagesStage.self,
    PPOPolicyLossStage.self,
    GRPOLossStage.self,
]

/// The adapter of the stage with fixture name `name`.
public func stageAdapter(named name: String) throws(FixtureProblem) -> any StageAdapter.Type {
    guard let adapter = stageRegistry.first(where: { $0.declaration.name == name }) else {
        throw FixtureProblem(field: "stage", "unknown stage \"\(name)\"; known: \(stageRegistry.map { $0.declaration.name }.sorted().joined(separator: ", "))")
    }
    return adapter
}

/// Runs a fixture's stage on its inputs, in the precision of its float inputs, and
/// returns the outputs by their fixture names.
///
/// The fixture is first checked against the stage's declaration (params, inputs).
/// It then computes in float64 if any float input is float64 (PyTorch's type
/// promotion), else in float32.
///
/// - Throws: ``FixtureProblem`` when the fixture cannot be run (unknown stage, a
///   missing or undeclared input or param); ``StageError`` when the stage rejects
///   the input.
public func runStage(_ fixture: Fixture) throws -> [String: FixtureTensor] {
    let adapter = try stageAdapter(named: fixture.stage)
    let floatDTypes = Set(fixture.inputs.values.filter(\.isFloat).map(\.dtype))
    let precision: DType = floatDTypes == [.float32] ? .float32 : .float64
    guard adapter.declaration.precisions.contains(precision) else {
        let wrong = fixture.inputs.sorted { $0.key < $1.key }.first { $0.value.dtype == precision }?.key ?? "inputs"
        throw StageError(.wrongDType, stage: fixture.stage, argument: wrong,
                         "the \(fixture.stage) stage computes in \(adapter.declaration.precisions.map(\.rawValue).joined(separator: " or ")), got \(precision.rawValue)")
    }
    if precision == .float32 {
        let arguments = try FixtureArguments<Float>(fixture)
        try arguments.validate()
        return try adapter.run(arguments)
    }
    let arguments = try FixtureArguments<Double>(fixture)
    try arguments.validate()
    return try adapter.run(arguments)
}
