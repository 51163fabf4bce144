import Foundation
import Testing
import TensorCore
import TestSupport
@testable import Golden

/// Writes `text` to a fresh temporary file and returns its path.
private func temporaryFile(_ text: String, name: String = "fixture.json") throws -> String {
    let directory = NSTemporaryDirectory() + "golden-tests-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = directory + "/" + name
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// A valid gae fixture whose parts a test can break.
private func gaeFixture(params: String = #"{"start": 1, "gamma": 1.0, "lambda": 0.0}"#,
                        values: String = #"{"dtype": "float64", "shape": [1, 3], "data": [0.2, 0.5, 0.9]}"#,
                        expected: String = #""expected": {"advantages": {"dtype": "float64", "shape": [1, 2], "data": [0.4, 0.1]}}, "tolerance": {"abs": 1e-12, "rel": 1e-10}"#,
                        stage: String = "gae") -> String {
    """
    {"format": "rlhf-golden-v1", "stage": "\(stage)", "name": "hand", "source": "test",
     "params": \(params),
     "inputs": {"values": \(values), "rewards": {"dtype": "float64", "shape": [1, 3], "data": [0, 0, 1]}},
     \(expected)}
    """
}

@Suite("the fixture format and the verifier")
struct FixtureFormatTests {
    @Test("a hand-written fixture passes: λ = 0 advantages are TD errors")
    func validFixture() throws {
        let outcome = verifyFile(atPath: try temporaryFile(gaeFixture()))
        #expect(outcome.passed, "\(outcome.message)")
        #expect(outcome.compared == ["advantages"])
    }

    @Test("a wrong expected value fails and names output, index, expected and got")
    func wrongValue() throws {
        let text = gaeFixture(expected: #""expected": {"advantages": {"dtype": "float64", "shape": [1, 2], "data": [0.4, 0.2]}}, "tolerance": {"abs": 1e-12, "rel": 0}"#)
        let outcome = verifyFile(atPath: try temporaryFile(text))
        #expect(!outcome.passed)
        #expect(outcome.message.contains("'advantages' at index [0, 1]"), "\(outcome.message)")
        #expect(outcome.message.contains("expected 0.2") && outcome.message.contains("got 0.09999999999999998"), "\(outcome.message)")
    }

    @Test("malformed files fail with the file and field named, and never crash", arguments: [
        ("not json {", "field 'file': not JSON at line 1"),
        (#"{"format": "rlhf-golden-v1"}"#, "field 'stage': missing field"),
        (#"{"format": "rlhf-golden-v2", "stage": "gae"}"#, "field 'format': unknown format"),
        (gaeFixture(values: #"{"dtype": "float64", "shape": [1, 4], "data": [0.2, 0.5, 0.9]}"#),
         "field 'inputs.values.data': shape [1, 4] holds 4 elements, data has 3"),
        (gaeFixture(values: #"{"dtype": "float16", "shape": [1, 3], "data": [0.2, 0.5, 0.9]}"#),
         "field 'inputs.values.dtype': unknown dtype \"float16\""),
        (gaeFixture(values: #"{"dtype": "float64", "shape": [1, 3], "data": [0.2, "x", 0.9]}"#),
         "field 'inputs.values.data[1]'"),
        (gaeFixture(stage: "gea"), "field 'stage': unknown stage \"gea\""),
        (gaeFixture(params: #"{"start": 1, "gamma": 1.0}"#), "field 'params.lambda': missing param"),
        (gaeFixture(expected: #""expected": {"advantages": {"dtype": "float64", "shape": [1, 2], "data": [0.4, 0.1]}}"#),
         "field 'tolerance': missing field"),
        (gaeFixture(expected: #""other": 1"#), "field 'expected': missing field"),
        // A 300-byte file whose element count overflows Int, or would allocate 10^12 floats.
        (gaeFixture(values: #"{"dtype": "float64", "shape": [4294967296, 4294967296], "data": []}"#),
         "field 'inputs.values.shape': shape [4294967296, 4294967296] is beyond the limit"),
        (gaeFixture(values: #"{"dtype": "float64", "shape": [1000000000000, 0], "data": []}"#),
         "field 'inputs.values.shape': shape [1000000000000, 0] is beyond the limit"),
        (gaeFixture(values: #"{"dtype": "float64", "shape": [1, -3], "data": []}"#),
         "field 'inputs.values.shape': extents are whole numbers >= 0, got -3"),
        // Nested data must follow the shape: 3 rows of 1 are not 1 row of 3.
        (gaeFixture(values: #"{"dtype": "float64", "shape": [1, 3], "data": [[0.2], [0.5], [0.9]]}"#),
         "field 'inputs.values.data': axis 0 has extent 1, the nested data holds 3"),
        (gaeFixture(values: #"{"dtype": "float64", "shape": [1, 3], "data": [[0.2, 0.5, [0.9]]]}"#),
         "field 'inputs.values.data': nested deeper than the shape's 2 axes"),
    ])
    func malformed(text: String, message: String) throws {
        let path = try temporaryFile(text)
        let outcome = verifyFile(atPath: path)
        #expect(!outcome.passed)
        #expect(outcome.message.contains(path), "the message names the file: \(outcome.message)")
        #expect(outcome.message.contains(message), "\(outcome.message)")
    }

    @Test("an output the stage does not produce, of the wrong shape, or a float one expected as int64 fails")
    func unknownOrMisshapenOutput() throws {
        let unknown = gaeFixture(expected: #""expected": {"grad_values": {"dtype": "float64", "shape": [1, 3], "data": [0, 0, 0]}}, "tolerance": {"abs": 1e-12}"#)
        let first = verifyFile(atPath: try temporaryFile(unknown))
        #expect(!first.passed && first.message.contains("'grad_values' is not produced"), "\(first.message)")
        let misshapen = gaeFixture(expected: #""expected": {"advantages": {"dtype": "float64", "shape": [2, 1], "data": [0.4, 0.1]}}, "tolerance": {"abs": 1e-12}"#)
        let second = verifyFile(atPath: try temporaryFile(misshapen))
        #expect(!second.passed && second.message.contains("expected shape [2, 1], got [1, 2]"), "\(second.message)")
        // Within abs 1 of [0.4, 0.1], yet integers where the stage gives floats.
        let integers = gaeFixture(expected: #""expected": {"advantages": {"dtype": "int64", "shape": [1, 2], "data": [0, 0]}}, "tolerance": {"abs": 1}"#)
        let third = verifyFile(atPath: try temporaryFile(integers))
        #expect(!third.passed && third.message.contains("output 'advantages': expected dtype int64, the stage gives float64"),
                "\(third.message)")
    }

    @Test("expect_error passes only on a thrown stage error")
    func expectError() throws {
        let rejected = gaeFixture(params: #"{"start": 3, "gamma": 1.0, "lambda": 0.0}"#, expected: #""expect_error": "start outside [0, N)""#)
        let outcome = verifyFile(atPath: try temporaryFile(rejected))
        #expect(outcome.passed, "\(outcome.message)")
        #expect(outcome.message.contains("gae: parameter out of range in 'start'"))

        let accepted = gaeFixture(expected: #""expect_error": "there is nothing wrong with this input""#)
        let second = verifyFile(atPath: try temporaryFile(accepted))
        #expect(!second.passed && second.message.contains("expected an error"), "\(second.message)")
    }

    @Test("NaN, inf and -inf: as strings, or as Python's bare tokens; nested data is flattened")
    func specialValues() throws {
        let value = try parseJSON(#"{"a": ["nan", "inf", "-inf", NaN, Infinity, -Infinity, 1e-3, -0.5]}"#)
        guard case .object(let members) = value, let a = members["a"] else {
            Issue.record("not an object: \(value)")
            return
        }
        let tensor = try FixtureTensor.decode(.object(["dtype": .string("float64"), "shape": .array([.number("8")]), "data": a]), field: "a")
        let d = tensor.doubles
        #expect(d[0].isNaN && d[3].isNaN)
        #expect(d[1] == .infinity && d[4] == .infinity && d[2] == -.infinity && d[5] == -.infinity)
        #expect(d[6] == 1e-3 && d[7] == -0.5)

        let nested = try parseJSON(#"{"dtype": "int64", "shape": [2, 2], "data": [[1, 2], [3, 4]]}"#)
        #expect(try FixtureTensor.decode(nested, field: "x") == .int64(Tensor.make([2, 2], [1, 2, 3, 4])))
    }

    @Test("float32 data is read straight into Float, one rounding")
    func float32Parsing() throws {
        let value = try parseJSON(#"{"dtype": "float32", "shape": [2], "data": [0.1, 0.10000000149011612]}"#)
        guard case .float32(let t) = try FixtureTensor.decode(value, field: "x") else {
            Issue.record("not float32")
            return
        }
        #expect(t.scalars == [Float(0.1), Float(0.1)])
    }

    @Test("the comparison rule: abs + rel·|expected|; NaN only matches NaN, inf the same inf")
    func comparisonRule() {
        let tolerance = Tolerance(abs: 0.1, rel: 0.01)
        #expect(compare(got: [10.19], expected: [10], tolerance: tolerance).passed)   // 0.19 <= 0.1 + 0.1
        #expect(!compare(got: [10.21], expected: [10], tolerance: tolerance).passed)
        #expect(compare(got: [.nan], expected: [.nan], tolerance: tolerance).passed)
        #expect(!compare(got: [0], expected: [.nan], tolerance: tolerance).passed)
        #expect(compare(got: [-.infinity], expected: [-.infinity], tolerance: tolerance).passed)
        #expect(!compare(got: [.infinity], expected: [-.infinity], tolerance: tolerance).passed)
        let report = compare(got: [1, 2, 3.5], expected: [1, 2, 3], tolerance: Tolerance(abs: 0, rel: 0))
        #expect(report.failures == 1 && report.largestError == 0.5 && report.largestErrorIndex == 2)
    }

    @Test("a name holding control characters is escaped, so it cannot print a forged row")
    func controlCharacters() {
        #expect(printable("ok\npass  gae  forged") == "ok\\npass  gae  forged")
        #expect(printable("a\u{1B}[2Jb\tc\r") == "a\\u{1B}[2Jb\\tc\\r")
        #expect(printable("line\u{2028}sep") == "line\\u{2028}sep")
        #expect(printable("GAE 优势 λ") == "GAE 优势 λ")
    }

    @Test("a directory with good and bad files: every file gets a verdict")
    func directoryRun() throws {
        let good = try temporaryFile(gaeFixture(), name: "good.json")
        let directory = (good as NSString).deletingLastPathComponent
        try "{ broken".write(toFile: directory + "/bad.json", atomically: true, encoding: .utf8)
        try gaeFixture().write(toFile: directory + "/zz-good.json", atomically: true, encoding: .utf8)
        let (files, missing) = fixtureFiles(under: [directory, directory + "/no-such-dir"])
        #expect(files.map { ($0 as NSString).lastPathComponent } == ["bad.json", "good.json", "zz-good.json"])
        #expect(missing == [directory + "/no-such-dir"])
        #expect(files.map { verifyFile(atPath: $0).passed } == [false, true, true])
    }

    @Test("every committed fixture follows the format and passes")
    func committedFixtures() {
        let (files, _) = fixtureFiles(under: [goldenDataDirectory])
        #expect(files.count >= stageRegistry.count * 10)
        for file in files {
            let outcome = verifyFile(atPath: file)
            #expect(outcome.passed, "\(file): \(outcome.message)")
        }
    }
}
