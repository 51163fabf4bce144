import TensorCore

/// The toy of `shared/reference/peer-conventions.md` §11, shared by the PPO step
/// tests of each system: one sequence of L = 7, the prompt at 0-1, the answer at
/// 2-4, pads at 5-6, so N = 6 log-prob positions.
public enum ConventionsToy {
    public static let attentionMask = intMatrix([[1, 1, 1, 1, 1, 0, 0]])
    public static let logProbs = matrix([[0.0, 0.1, -0.2, 0.3, 0.5, -0.4]])
    public static let values = matrix([[0.0, 0.5, 0.4, 0.3, 0.2, 0.1]])
}
