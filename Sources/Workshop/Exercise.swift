import Foundation
import TensorCore
import Golden

/// What an untouched exercise throws: its body is still empty.
public struct ExerciseNotImplemented: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "not implemented yet" }
}

/// One workshop exercise: a chapter's stage, the function an attendee writes for
/// it (`Function`, in Double), and how to read the attendee's results as the
/// stage's fixture outputs.
///
/// The harness (`grade`) runs the attendee's function on every fixture of the
/// stage that expects outputs, and checks and diagnoses its results with the same
/// rows as `golden-verify --answers`.
public struct Exercise<Function>: Sendable {
    /// The chapter number, e.g. 4.
    public let number: Int
    /// `04-gae`: the folder `Chapters/exercises/04-gae/` and the chapter `Chapters/04-gae/`.
    public let slug: String
    /// The fixture stage, e.g. `gae`.
    public let stage: String
    /// The function the attendee writes, e.g. `gae(values:rewards:start:gamma:lambda:)`.
    public let function: String
    /// The chapter that explains the stage.
    public let chapter: String
    /// Calls the attendee's function on a fixture's arguments and names its results.
    public let outputs: @Sendable (Function, FixtureArguments<Double>) throws -> [String: FixtureTensor]
    /// For an exercise that covers part of its stage (some loss types, one reward
    /// function): what it leaves out, said once in the report (e.g. "fixtures of
    /// the other loss types"); nil when it covers the whole stage.
    public let scope: String?
    /// Whether a fixture is outside the exercise's part of the stage (then it is
    /// skipped and counted, not graded).
    public let outOfScope: @Sendable (FixtureArguments<Double>) throws -> Bool

    public init(number: Int, slug: String, stage: String, function: String, chapter: String,
                scope: String? = nil, outOfScope: @escaping @Sendable (FixtureArguments<Double>) throws -> Bool = { _ in false },
                outputs: @escaping @Sendable (Function, FixtureArguments<Double>) throws -> [String: FixtureTensor]) {
        self.number = number
        self.slug = slug
        self.stage = stage
        self.function = function
        self.chapter = chapter
        self.scope = scope
        self.outOfScope = outOfScope
        self.outputs = outputs
    }

    /// The file the attendee edits.
    public var file: String { "Chapters/exercises/\(slug)/Exercise.swift" }
}

/// What grading an exercise found.
public struct ExerciseReport: Sendable {
    /// One outcome per fixture that expects outputs, in file order.
    public var outcomes: [CheckOutcome]
    /// The fixtures that expect an error: checking inputs is the library's job, not the exercise's.
    public var skippedErrorFixtures: Int
    /// The fixtures outside the exercise's part of the stage (``Exercise/scope``).
    public var skippedOutOfScope: Int = 0
    /// Set when the attendee's function threw ``ExerciseNotImplemented``.
    public var notImplemented: Bool
    /// Everything to print, in order.
    public var lines: [String]

    public var passedCount: Int { outcomes.filter(\.passed).count }
    public var failedCount: Int { outcomes.count - passedCount }
    /// Whether every fixture passed (and there was at least one).
    public var passed: Bool { !notImplemented && !outcomes.isEmpty && failedCount == 0 }
    /// The mistakes named anywhere in the report, each once, in order.
    public var namedMistakes: [String] {
        var ids = [String]()
        for outcome in outcomes {
            for mistake in outcome.diagnosis?.named ?? [] where !ids.contains(mistake.id) { ids.append(mistake.id) }
        }
        return ids
    }
}

/// Grades `function` on every fixture of the exercise's stage under `goldenData`.
public func grade<Function>(_ exercise: Exercise<Function>, _ function: Function, goldenData: String) -> ExerciseReport {
    let title = "exercise \(twoDigits(exercise.number)): \(exercise.function) (stage \(exercise.stage))"
    var report = ExerciseReport(outcomes: [], skippedErrorFixtures: 0, notImplemented: false, lines: [title, ""])
    let folder = (goldenData as NSString).appendingPathComponent(exercise.stage)
    let files = fixtureFiles(under: [folder]).files
    guard !files.isEmpty else {
        report.lines.append("no fixtures found under \(folder): run from the repository's root")
        return report
    }
    report.lines.append(rowHeader)
    for file in files {
        let fixture: Fixture
        do {
            fixture = try Fixture.load(path: file)
        } catch {
            report.outcomes.append(CheckOutcome(stage: exercise.stage, name: (file as NSString).lastPathComponent,
                                                passed: false, compared: [], largestError: nil,
                                                message: "malformed fixture \(file): \(error.description)", diagnosis: nil))
            report.lines += report.outcomes.last!.lines
            continue
        }
        if case .error = fixture.expectation {
            report.skippedErrorFixtures += 1
            continue
        }
        if let arguments = try? FixtureArguments<Double>(fixture), (try? exercise.outOfScope(arguments)) == true {
            report.skippedOutOfScope += 1
            continue
        }
        let outcome: CheckOutcome
        do {
            let submitted = try exercise.outputs(function, try FixtureArguments<Double>(fixture))
            outcome = checkAnswer(fixture, submitted: submitted)
        } catch is ExerciseNotImplemented {
            report.notImplemented = true
            report.lines = [title, "",
                            "\(exercise.function) in \(exercise.file) is not implemented yet.",
                            "Fill in its body (the doc comment above it gives the rule, \(exercise.chapter)/README.md",
                            "explains it), then run `make exercise N=\(exercise.number)` again."]
            return report
        } catch {
            outcome = CheckOutcome(stage: fixture.stage, name: fixture.name, passed: false, compared: [],
                                   largestError: nil, message: "your function threw: \(error)", diagnosis: nil)
        }
        report.outcomes.append(outcome)
        report.lines += outcome.lines
    }
    report.lines.append("")
    report.lines.append("\(report.passedCount) passed, \(report.failedCount) failed"
                        + " (\(report.skippedErrorFixtures) fixtures that expect an error skipped: checking inputs is not part of the exercise)")
    if let scope = exercise.scope {
        report.lines.append("\(report.skippedOutOfScope) \(scope) skipped: not part of this exercise")
    }
    report.lines.append(report.passed
                        ? "exercise \(twoDigits(exercise.number)) passed: \(exercise.function) matches every fixture of \(exercise.stage)"
                        : "exercise \(twoDigits(exercise.number)) not passed yet: see the rows marked FAIL above")
    return report
}

/// The harness of an exercise executable: grades `function`, prints the report,
/// and exits 0 if every fixture passed, 1 otherwise (an untouched exercise too).
///
/// `source` is the caller's `#filePath`, from which `GoldenData/` is found, so the
/// harness runs from any directory; else `GoldenData` in the current directory.
public func runExercise<Function>(_ exercise: Exercise<Function>, _ function: Function, source: String = #filePath) -> Never {
    var components = source.split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(min(4, components.count))  // Chapters/exercises/NN-slug/main.swift
    let fromSource = components.joined(separator: "/") + "/GoldenData"
    let goldenData = FileManager.default.fileExists(atPath: fromSource) ? fromSource : "GoldenData"
    let report = grade(exercise, function, goldenData: goldenData)
    for line in report.lines { print(line) }
    fflush(nil)
    exit(report.passed ? 0 : 1)
}

/// `4` as `04`.
func twoDigits(_ n: Int) -> String { n < 10 && n >= 0 ? "0\(n)" : "\(n)" }
