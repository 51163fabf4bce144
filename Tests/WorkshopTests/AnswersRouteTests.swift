import Foundation
import Testing
import TensorCore
import Golden
import TestSupport
import Workshop

@Suite("the answers route and golden-verify's diagnosis")
struct AnswersRouteTests {
    /// The answers GoldenData/workshop.py saved for Chapters/workshop-example/attendee_gae.py.
    let exampleAnswers = repositoryRoot + "/Chapters/workshop-example/answers"

    @Test("golden-verify --answers on the committed answers of a PyTorch GAE without λ names gae.no-lambda under every failed row")
    func pythonExampleNamed() throws {
        let path = try #require(builtExecutable("golden-verify"), "golden-verify is not built")
        let (status, output) = try run(path, ["--answers", exampleAnswers, goldenDataDirectory])
        #expect(status == 1, "\(output)")
        let lines = output.components(separatedBy: "\n")
        let failed = lines.indices.filter { lines[$0].hasPrefix("FAIL  gae") }
        #expect(failed.count >= 10, "\(output)")
        for row in failed {
            // The row, a line per failed output, then the diagnosis, indented.
            let next = try #require(lines[(row + 1)...].firstIndex { !$0.hasPrefix("      output '") })
            #expect(next > row + 1, "no line on the failed outputs under \(lines[row])")
            #expect(lines[next].hasPrefix("      known mistake gae.no-lambda: "), "under \(lines[row]):\n\(lines[next])")
        }
        #expect(lines.contains { $0.hasPrefix("pass  gae") && $0.contains("lambda-1-f64") }, "the λ = 1 fixtures pass")
        let answers = fixtureFiles(under: [exampleAnswers]).files
        #expect(lines.last { !$0.isEmpty } == "\(answers.count - failed.count) passed, \(failed.count) failed")
    }

    @Test("the committed answers are the answer format, one per gae fixture with expected outputs, matched by name")
    func exampleAnswersFormat() throws {
        let outcomes = checkAnswers(in: exampleAnswers, goldenRoots: [goldenDataDirectory])
        #expect(outcomes.count == outputFixtures(stage: "gae").count)
        #expect(outcomes.allSatisfy { $0.stage == "gae" && !$0.message.contains("malformed") && !$0.message.contains("no fixture") })
    }

    @Test("an answer naming no fixture, a malformed answer, and an output the fixture does not expect each fail with a message")
    func badAnswers() throws {
        let directory = NSTemporaryDirectory() + "workshop-answers-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/gae", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tensor = #"{"dtype": "float64", "shape": [1], "data": [0.5]}"#
        try #"{"format": "rlhf-golden-answers-v1", "stage": "gae", "fixture": "no-such-fixture", "outputs": {"advantages": \#(tensor)}}"#
            .write(toFile: directory + "/gae/a.json", atomically: true, encoding: .utf8)
        try #"{"format": "rlhf-golden-answers-v1", "stage": "gae", "outputs": {}}"#
            .write(toFile: directory + "/gae/b.json", atomically: true, encoding: .utf8)
        try #"{"format": "rlhf-golden-answers-v1", "stage": "gae", "fixture": "random-1-f64", "outputs": {"loss": \#(tensor)}}"#
            .write(toFile: directory + "/gae/c.json", atomically: true, encoding: .utf8)
        let outcomes = checkAnswers(in: directory, goldenRoots: [goldenDataDirectory])
        #expect(outcomes.count == 3 && outcomes.allSatisfy { !$0.passed })
        #expect(outcomes[0].message.contains("no fixture named \"no-such-fixture\""), "\(outcomes[0].message)")
        #expect(outcomes[1].message.contains("field 'fixture'"), "\(outcomes[1].message)")
        #expect(outcomes[2].message.contains("output 'loss' is not one this fixture expects"), "\(outcomes[2].message)")
    }

    @Test("golden-verify on a fixture written by code with a known mistake (its expected outputs wrong) names the mistake")
    func fixtureRouteNamed() throws {
        let path = try #require(builtExecutable("golden-verify"), "golden-verify is not built")
        let directory = NSTemporaryDirectory() + "workshop-fixtures-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The committed critic_loss fixture, with its expected loss replaced by what a
        // critic loss without the 0.5 gives (twice the right one).
        let source = goldenDataDirectory + "/critic_loss/" + (try #require(
            fixtureFiles(stage: "critic_loss").map { ($0 as NSString).lastPathComponent }.first { !$0.hasPrefix("error") }))
        var document = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source))) as? [String: Any])
        var expected = try #require(document["expected"] as? [String: Any])
        var loss = try #require(expected["loss"] as? [String: Any])
        let right = try #require((loss["data"] as? [Double])?.first)
        loss["data"] = [2 * right]
        expected = ["loss": loss]
        document["expected"] = expected
        try JSONSerialization.data(withJSONObject: document).write(to: URL(fileURLWithPath: directory + "/mine.json"))
        let (status, output) = try run(path, [directory])
        #expect(status == 1)
        #expect(output.contains("known mistake critic_loss.no-half:"), "\(output)")
        #expect(output.contains("read: Chapters/06-critic-loss/README.md"), "\(output)")
    }
}
