import Foundation
import TensorCore

/// The verdict on one fixture file.
public struct FixtureOutcome: Sendable {
    /// The file (or "" for a fixture built in memory).
    public let path: String
    /// The stage, or "?" when the file could not be read that far.
    public let stage: String
    /// The fixture's name, or the file name when the file could not be read.
    public let name: String
    public let passed: Bool
    /// The outputs compared, in order, or ["expect_error"].
    public let compared: [String]
    /// The largest abs error over the compared outputs.
    public let largestError: Double?
    /// Per output, how it compared.
    public let comparisons: [(output: String, comparison: Comparison)]
    /// The error thrown (for expect_error), or why it failed.
    public let message: String
}

/// Loads and runs one fixture file. Never throws: every problem becomes a failed
/// outcome that names the file and the field.
public func verifyFile(atPath path: String) -> FixtureOutcome {
    let fileName = (path as NSString).lastPathComponent
    let fixture: Fixture
    do {
        fixture = try Fixture.load(path: path)
    } catch {
        return FixtureOutcome(path: path, stage: "?", name: fileName, passed: false, compared: [], largestError: nil,
                              comparisons: [], message: "malformed fixture \(path): \(error.description)")
    }
    return verify(fixture)
}

/// Runs one fixture and compares every expected output.
public func verify(_ fixture: Fixture) -> FixtureOutcome {
    func outcome(_ passed: Bool, _ compared: [String], _ message: String, largestError: Double? = nil,
                 comparisons: [(String, Comparison)] = []) -> FixtureOutcome {
        FixtureOutcome(path: fixture.path, stage: fixture.stage, name: fixture.name, passed: passed, compared: compared,
                       largestError: largestError, comparisons: comparisons.map { (output: $0.0, comparison: $0.1) },
                       message: message)
    }
    let where_ = fixture.path.isEmpty ? fixture.name : fixture.path

    switch fixture.expectation {
    case .error(let why):
        do {
            let outputs = try runStage(fixture)
            return outcome(false, ["expect_error"],
                           "expected an error (\(why)), but the stage returned \(outputs.keys.sorted().joined(separator: ", "))")
        } catch let error as StageError {
            return outcome(true, ["expect_error"], error.description)
        } catch let problem as FixtureProblem {
            return outcome(false, ["expect_error"], "malformed fixture \(where_): \(problem.description)")
        } catch {
            return outcome(false, ["expect_error"], "unexpected error: \(error)")
        }

    case .outputs(let expected, let tolerance):
        let outputs: [String: FixtureTensor]
        do {
            outputs = try runStage(fixture)
        } catch let problem as FixtureProblem {
            return outcome(false, [], "malformed fixture \(where_): \(problem.description)")
        } catch {
            return outcome(false, [], "the stage threw: \(error)")
        }
        // Compare in the stage's own output order, then any other names.
        let order = (try? stageAdapter(named: fixture.stage))?.declaration.outputs ?? []
        let names = order.filter { expected[$0] != nil } + expected.keys.filter { !order.contains($0) }.sorted()
        var comparisons = [(String, Comparison)]()
        var problems = [String]()
        var largest = 0.0
        for name in names {
            let want = expected[name]!
            guard let got = outputs[name] else {
                problems.append("output '\(name)' is not produced by stage \(fixture.stage) (it gives \(order.joined(separator: ", ")))")
                continue
            }
            guard got.shape == want.shape else {
                problems.append("output '\(name)': expected shape \(describe(shape: want.shape)), got \(describe(shape: got.shape))")
                continue
            }
            // A float output may be expected in either float dtype (the fixture's
            // precision decides how it is computed); ids, counts and masks exactly.
            guard got.dtype == want.dtype || (got.isFloat && want.isFloat) else {
                problems.append("output '\(name)': expected dtype \(want.dtype.rawValue), the stage gives \(got.dtype.rawValue)")
                continue
            }
            let comparison = compare(got: got.doubles, expected: want.doubles, tolerance: tolerance)
            comparisons.append((name, comparison))
            largest = max(largest, comparison.largestError)
            if !comparison.passed {
                let index = comparison.firstFailure.map { describe(shape: Tensor<Double>.make(want.shape, want.doubles).index(ofFlat: $0.index)) } ?? "?"
                problems.append("output '\(name)' at index \(index): \(comparison)")
            }
        }
        return outcome(problems.isEmpty, names, problems.joined(separator: "; "), largestError: largest,
                       comparisons: comparisons)
    }
}

/// Every `.json` file under the given files and directories, sorted, and the
/// paths that do not exist.
public func fixtureFiles(under paths: [String]) -> (files: [String], missing: [String]) {
    var files = [String](), missing = [String]()
    let manager = FileManager.default
    for path in paths {
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else {
            missing.append(path)
            continue
        }
        if !isDirectory.boolValue {
            files.append(path)
            continue
        }
        let enumerator = manager.enumerator(atPath: path)
        var found = [String]()
        while let relative = enumerator?.nextObject() as? String {
            if relative.hasSuffix(".json") {
                found.append((path as NSString).appendingPathComponent(relative))
            }
        }
        files += found.sorted()
    }
    return (files, missing)
}

/// `text` with its control characters escaped (`\n`, `\t`, `\u{1B}`, ...), for a
/// terminal row that shows a fixture's name or a message built from it: a name
/// holding a newline must not print a line of its own.
public func printable(_ text: String) -> String {
    var shown = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": shown += "\\n"
        case "\r": shown += "\\r"
        case "\t": shown += "\\t"
        case _ where scalar.properties.generalCategory == .control
            || scalar.properties.generalCategory == .lineSeparator
            || scalar.properties.generalCategory == .paragraphSeparator
            || scalar.properties.generalCategory == .format:
            shown += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        default: shown.unicodeScalars.append(scalar)
        }
    }
    return shown
}
