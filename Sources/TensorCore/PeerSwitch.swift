/// A peer's string switch (`loss_type`, `estimator`, `scale_rewards`, ...) as its
/// Swift enum, whose raw values are the peer's own names.
///
/// ```
/// let lossType: DPOLossType = try peerSwitch("ipo", argument: "loss_type", stage: "dpo_variants")
/// ```
///
/// A name the peer does not know is an error here. Peers differ (TRL's `kl_estimator`
/// silently falls back to k3, OpenRLHF's leaves its result unbound); `note` says what
/// the peer would have done, or what an alias means.
///
/// - Throws: ``StageError`` (`parameterOutOfRange`, naming `argument` and every name
///   it accepts) for any other name.
@inlinable
public func peerSwitch<E: RawRepresentable & CaseIterable>(
    _ name: String, argument: String, stage: String, note: String? = nil
) throws(StageError) -> E where E.RawValue == String {
    guard let value = E(rawValue: name) else {
        let known = E.allCases.map { $0.rawValue.debugDescription }.joined(separator: ", ")
        throw StageError(.parameterOutOfRange, stage: stage, argument: argument,
                         "\(argument) = \(name.debugDescription) must be one of \(known)" + (note.map { " (\($0))" } ?? ""))
    }
    return value
}
