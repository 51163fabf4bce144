import TensorCore

/// Runs a chained stage and re-throws its error under the calling stage's name.
///
/// The argument keeps its name unless `renaming` maps it (a chained stage's output
/// `loss` is this stage's `pg_loss`); the detail says which stage threw.
@inlinable
func relabelled<R>(_ stage: String, renaming: [String: String] = [:],
                   _ body: () throws(StageError) -> R) throws(StageError) -> R {
    do {
        return try body()
    } catch {
        throw StageError(error.kind, stage: stage, argument: renaming[error.argument] ?? error.argument,
                         "in \(error.stage): \(error.detail)")
    }
}
