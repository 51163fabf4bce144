import Foundation
import TensorCore
import Golden

/// The format of an answer file: what an attendee's own code computed for one
/// golden fixture.
///
/// `DIR/<stage>/<fixture file name>`, e.g. `answers/gae/worked-example-1.json`:
///
/// ```json
/// {
///   "format": "rlhf-golden-answers-v1",
///   "stage": "gae",
///   "fixture": "worked-example-1",
///   "outputs": {
///     "advantages": { "dtype": "float64", "shape": [2, 3], "data": [...] },
///     "returns":    { "dtype": "float64", "shape": [2, 3], "data": [...] }
///   }
/// }
/// ```
///
/// Tensors are encoded as in the fixtures. An answer may leave out outputs (the
/// gradients, say): only the outputs it gives are compared. `GoldenData/workshop.py`
/// writes these files from PyTorch.
public let answersFormat = "rlhf-golden-answers-v1"

/// One answer file, read.
public struct Answer: Sendable {
    public let path: String
    public let stage: String
    /// The name of the fixture it answers.
    public let fixture: String
    public let outputs: [String: FixtureTensor]

    /// Reads and checks an answer file; every problem names the field.
    public static func load(path: String) throws(FixtureProblem) -> Answer {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FixtureProblem(field: "file", "cannot read \(path)")
        }
        let document: JSONValue
        do {
            document = try parseJSON(String(decoding: data, as: UTF8.self))
        } catch {
            throw FixtureProblem(field: "file", error.description)
        }
        guard case .object(let top) = document else { throw FixtureProblem(field: "file", "expected a JSON object") }
        func string(_ key: String) throws(FixtureProblem) -> String {
            guard case .string(let s)? = top[key] else { throw FixtureProblem(field: key, "missing, or not a string") }
            return s
        }
        let format = try string("format")
        guard format == answersFormat else {
            throw FixtureProblem(field: "format", "unknown format \"\(format)\"; answers are \"\(answersFormat)\"")
        }
        guard case .object(let members)? = top["outputs"] else {
            throw FixtureProblem(field: "outputs", "missing, or not an object of tensors")
        }
        var outputs = [String: FixtureTensor]()
        for (name, value) in members {
            outputs[name] = try FixtureTensor.decode(value, field: "outputs.\(name)")
        }
        return Answer(path: path, stage: try string("stage"), fixture: try string("fixture"), outputs: outputs)
    }
}

/// The verdict on one set of submitted outputs (an answer file, or an exercise's
/// outputs on one fixture), with the diagnosis when it failed.
public struct CheckOutcome: Sendable {
    public let stage: String
    public let name: String
    public let passed: Bool
    /// The outputs compared, in the stage's order.
    public let compared: [String]
    public let largestError: Double?
    /// Why it failed ("" when it passed).
    public let message: String
    public let diagnosis: Diagnosis?

    public init(stage: String, name: String, passed: Bool, compared: [String], largestError: Double?, message: String,
                diagnosis: Diagnosis?) {
        self.stage = stage
        self.name = name
        self.passed = passed
        self.compared = compared
        self.largestError = largestError
        self.message = message
        self.diagnosis = diagnosis
    }

    /// The row `golden-verify` prints, then the message and diagnosis lines
    /// indented under it when it failed.
    public var lines: [String] {
        let compared = self.compared.isEmpty ? "-" : self.compared.joined(separator: ",")
        var lines = [rowText(passed ? "pass" : "FAIL", stage, name, compared, largestError.map(formatError) ?? "-")]
        if !passed {
            // One line per failed output, so a line stays readable in a terminal.
            lines += message.components(separatedBy: "; ").map { "      " + printable($0) }
            lines += diagnosis.map { diagnosisLines($0) } ?? []
        }
        return lines
    }
}

/// One row in `golden-verify`'s columns: status, stage, fixture, compared, error.
public func rowText(_ status: String, _ stage: String, _ fixture: String, _ compared: String, _ error: String) -> String {
    func pad(_ text: String, _ width: Int) -> String {
        let shown = printable(text)
        return shown.count >= width ? shown + " " : shown + String(repeating: " ", count: width - shown.count)
    }
    return pad(status, 6) + pad(stage, 22) + pad(fixture, 36) + pad(compared, 30) + error
}

/// The header over the rows.
public let rowHeader = rowText("", "stage", "fixture", "compared", "max abs err")

/// Checks submitted outputs against a fixture's expected outputs, with the
/// fixture's tolerance, and diagnoses a failure with the stage's catalogue.
///
/// Only the outputs given are compared; an output the fixture does not expect,
/// or no expected output at all, is a failure. A fixture that expects an error
/// cannot be answered with outputs.
public func checkAnswer(_ fixture: Fixture, submitted: [String: FixtureTensor]) -> CheckOutcome {
    func fail(_ message: String, _ compared: [String] = [], _ diagnosis: Diagnosis? = nil,
              largest: Double? = nil) -> CheckOutcome {
        CheckOutcome(stage: fixture.stage, name: fixture.name, passed: false, compared: compared, largestError: largest,
                     message: message, diagnosis: diagnosis)
    }
    guard case .outputs(let expected, let tolerance) = fixture.expectation else {
        return fail("the fixture expects an error, not outputs: answers cover fixtures with expected outputs")
    }
    let order = (try? stageAdapter(named: fixture.stage))?.declaration.outputs ?? expected.keys.sorted()
    if let unknown = submitted.keys.sorted().first(where: { expected[$0] == nil }) {
        return fail("output '\(unknown)' is not one this fixture expects (it expects \(order.filter { expected[$0] != nil }.joined(separator: ", ")))")
    }
    let names = order.filter { submitted[$0] != nil } + submitted.keys.filter { !order.contains($0) }.sorted()
    guard !names.isEmpty else {
        return fail("no output given; the fixture expects \(order.filter { expected[$0] != nil }.joined(separator: ", "))")
    }
    var problems = [String](), largest = 0.0
    for name in names {
        let got = submitted[name]!, want = expected[name]!
        guard got.shape == want.shape else {
            problems.append("output '\(name)': expected shape \(describe(shape: want.shape)), got \(describe(shape: got.shape))")
            largest = .infinity
            continue
        }
        let comparison = compare(got: got.doubles, expected: want.doubles, tolerance: tolerance)
        largest = max(largest, comparison.largestError)
        if let failure = comparison.firstFailure {
            let index = Tensor<Double>.make(want.shape, want.doubles).index(ofFlat: failure.index)
            problems.append("output '\(name)' at index \(describe(shape: index)): \(comparison.failures) of \(comparison.count) outside \(tolerance)")
        }
    }
    guard problems.isEmpty else {
        return fail(problems.joined(separator: "; "), names,
                    diagnose(fixture, submitted: submitted, right: expected, tolerance: tolerance), largest: largest)
    }
    return CheckOutcome(stage: fixture.stage, name: fixture.name, passed: true, compared: names, largestError: largest,
                        message: "", diagnosis: nil)
}

/// Checks every answer file under `directory` against the fixture of the same
/// stage and name under `goldenRoots` (directories laid out as `GoldenData/`).
public func checkAnswers(in directory: String, goldenRoots: [String]) -> [CheckOutcome] {
    var outcomes = [CheckOutcome]()
    var fixturesByStage = [String: [String: Fixture]]()
    let (files, missing) = fixtureFiles(under: [directory])
    for path in missing {
        outcomes.append(CheckOutcome(stage: "?", name: path, passed: false, compared: [], largestError: nil,
                                     message: "no such directory: \(path)", diagnosis: nil))
    }
    for file in files {
        let answer: Answer
        do {
            answer = try Answer.load(path: file)
        } catch {
            outcomes.append(CheckOutcome(stage: "?", name: (file as NSString).lastPathComponent, passed: false,
                                         compared: [], largestError: nil,
                                         message: "malformed answer \(file): \(error.description)", diagnosis: nil))
            continue
        }
        if fixturesByStage[answer.stage] == nil {
            var byName = [String: Fixture]()
            let folders = goldenRoots.map { ($0 as NSString).appendingPathComponent(answer.stage) }
            for path in fixtureFiles(under: folders.filter { FileManager.default.fileExists(atPath: $0) }).files {
                if let fixture = try? Fixture.load(path: path) { byName[fixture.name] = fixture }
            }
            fixturesByStage[answer.stage] = byName
        }
        guard let fixture = fixturesByStage[answer.stage]?[answer.fixture] else {
            outcomes.append(CheckOutcome(stage: answer.stage, name: answer.fixture, passed: false, compared: [],
                                         largestError: nil,
                                         message: "no fixture named \"\(answer.fixture)\" for stage \(answer.stage) under \(goldenRoots.joined(separator: ", "))",
                                         diagnosis: nil))
            continue
        }
        outcomes.append(checkAnswer(fixture, submitted: answer.outputs))
    }
    if files.isEmpty && missing.isEmpty {
        outcomes.append(CheckOutcome(stage: "?", name: directory, passed: false, compared: [], largestError: nil,
                                     message: "no answer files (*.json) under \(directory)", diagnosis: nil))
    }
    return outcomes
}
