import TensorCore

/// TRL PPO's per-token KL estimator (`PPOConfig.kl_estimator`), by TRL's names.
///
/// With `logr = ref_logprobs - logprobs` on the sampled token (John Schulman's
/// "Approximating KL divergence" notation):
///
/// ```
/// k1:  kl = -logr                        unbiased, negative for some samples
/// k3:  kl = (e^logr - 1) - logr          unbiased, never negative
/// ```
///
/// TRL's code tests `kl_estimator == "k1"` and silently uses k3 for any other
/// string; here any other name is an error (``init(named:stage:)``).
public enum KLEstimator: String, Sendable, CaseIterable {
    case k1
    case k3

    /// The estimator TRL calls `name`.
    ///
    /// - Throws: ``StageError`` (`parameterOutOfRange`, argument `kl_estimator`,
    ///   under `stage`) for a name other than "k1" and "k3".
    @inlinable
    public init(named name: String, stage: String) throws(StageError) {
        self = try peerSwitch(name, argument: "kl_estimator", stage: stage, note: "TRL would silently use k3")
    }

    /// The estimate at one position, from `logr = ref - logprob`, in T.
    @inlinable
    public func kl<T: FloatScalar>(logRatio logr: T) -> T {
        switch self {
        case .k1: return -logr
        case .k3: return (T.exp(logr) - 1) - logr
        }
    }
}
