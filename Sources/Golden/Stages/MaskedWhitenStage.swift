import TensorCore
import MaskedWhiten

/// `masked_whiten`: TRL's whitening by the masked mean and unbiased variance.
public enum MaskedWhitenStage: StageAdapter {
    public static let declaration = StageDeclaration(
        name: "masked_whiten", module: "MaskedWhiten",
        function: "maskedWhiten(values:mask:shiftMean:)",
        peer: "TRL trl/experimental/ppo/ppo_trainer.py :: masked_whiten",
        params: [.bool("shift_mean", default: true)],
        inputs: [.float("values"), .mask("mask")],
        outputs: ["whitened"])

    public static func run<T: FloatScalar>(_ a: FixtureArguments<T>) throws -> [String: FixtureTensor] {
        let result = try maskedWhiten(values: a.float("values"), mask: a.mask("mask"), shiftMean: a.bool("shift_mean"))
        return ["whitened": FixtureTensor(result.whitened)]
    }
}
