import Testing
import TensorCore

/// Expects `body` to throw a ``StageError`` of `kind` naming `argument`.
public func expectStageError<R>(
    _ kind: StageError.Kind, argument: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> R
) {
    do {
        let result = try body()
        Issue.record("expected a \(kind.rawValue) error naming '\(argument)', got a result: \(result)", sourceLocation: sourceLocation)
    } catch let error as StageError {
        #expect(error.kind == kind, "wrong kind: \(error)", sourceLocation: sourceLocation)
        #expect(error.argument == argument, "wrong argument: \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a StageError, got \(error)", sourceLocation: sourceLocation)
    }
}

/// A [rows, columns] Double tensor from rows, for readable test inputs.
public func matrix(_ rows: [[Double]]) -> Tensor<Double> {
    Tensor.make([rows.count, rows.first?.count ?? 0], rows.flatMap { $0 })
}

/// A [rows, columns] Int64 tensor from rows.
public func intMatrix(_ rows: [[Int64]]) -> Tensor<Int64> {
    Tensor.make([rows.count, rows.first?.count ?? 0], rows.flatMap { $0 })
}

/// A [count] Double tensor.
public func vector(_ values: [Double]) -> Tensor<Double> {
    Tensor.make([values.count], values)
}
