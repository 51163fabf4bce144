import Testing
import Golden

/// The repository's `GoldenData` directory, found from this file's path so the
/// tests run from any working directory.
public let goldenDataDirectory: String = {
    var components = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(3)  // Tests/TestSupport/GoldenFixtures.swift
    return components.joined(separator: "/") + "/GoldenData"
}()

/// Every fixture file of one stage, e.g. `fixtureFiles(stage: "gae")`.
public func fixtureFiles(stage: String) -> [String] {
    fixtureFiles(under: [goldenDataDirectory + "/" + stage]).files
}

/// Runs every fixture of `stage` and records an issue per failing fixture, with
/// the output, index, expected, got and largest error. Also checks that the stage
/// has at least `minimum` fixtures, so an emptied folder cannot pass.
public func expectGoldenFixturesPass(stage: String, minimum: Int = 8, sourceLocation: SourceLocation = #_sourceLocation) {
    let files = fixtureFiles(stage: stage)
    #expect(files.count >= minimum, "only \(files.count) fixtures for \(stage) in \(goldenDataDirectory)", sourceLocation: sourceLocation)
    var errorCases = 0
    for file in files {
        let outcome = verifyFile(atPath: file)
        #expect(outcome.stage == stage, "\(file) is in \(stage)/ but names stage \(outcome.stage)", sourceLocation: sourceLocation)
        if outcome.compared == ["expect_error"] { errorCases += 1 }
        if !outcome.passed {
            Issue.record("\(stage)/\(outcome.name): \(outcome.message)", sourceLocation: sourceLocation)
        }
    }
    #expect(errorCases > 0, "no expect_error fixture for \(stage)", sourceLocation: sourceLocation)
}
