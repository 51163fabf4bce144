import Foundation
import Testing
import TestSupport

/// The repository root, from this file's path.
private let repositoryRoot: String = {
    var components = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(3)  // Tests/ChapterTests/ChapterOutputTests.swift
    return components.joined(separator: "/")
}()

/// Every chapter directory, `Chapters/NN-slug`, in book order.
private let chapterDirectories: [String] = {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/Chapters")) ?? []
    return entries.filter { $0.first?.isNumber == true }.sorted()
}()

/// Where the chapter executables were built: beside this test binary.
private func executable(for slug: String) -> String? {
    var candidates = [String]()
    if let me = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append((me as NSString).deletingLastPathComponent)
    }
    candidates.append((CommandLine.arguments[0] as NSString).deletingLastPathComponent)
    candidates.append(repositoryRoot + "/.build/debug")
    for directory in candidates {
        var path = directory
        // On macOS the test binary sits inside a bundle: .../debug/X.xctest/Contents/MacOS
        while !path.isEmpty && path != "/" {
            let candidate = path + "/ch" + slug
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            if !path.contains(".xctest") { break }
            path = (path as NSString).deletingLastPathComponent
        }
    }
    return nil
}

/// Runs a chapter and returns its exit status and everything it printed.
private func run(_ path: String, _ arguments: [String] = []) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: NSTemporaryDirectory())  // chapters must not need the cwd
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The output pasted in a chapter README, between `<!-- output: ... -->` and
/// `<!-- end output -->`, without the code fence.
private func pastedOutput(inReadme text: String) -> String? {
    let lines = text.components(separatedBy: "\n")
    guard let begin = lines.firstIndex(where: { $0.hasPrefix("<!-- output:") }),
          let end = lines.firstIndex(where: { $0 == "<!-- end output -->" }), end > begin + 2,
          lines[begin + 1] == "```text", lines[end - 1] == "```"
    else { return nil }
    return lines[(begin + 2)..<(end - 1)].joined(separator: "\n") + "\n"
}

@Suite("chapters")
struct ChapterOutputTests {
    @Test("there is a chapter for every stage, in order from 00")
    func chapterList() {
        #expect(chapterDirectories.count >= 9)
        for (number, directory) in chapterDirectories.enumerated() {
            #expect(directory.hasPrefix(String(format: "%02d-", number)), "\(directory) is out of order")
        }
    }

    @Test("drift check: each chapter passes its self-check, fits 100 columns, and prints exactly the output pasted in its README",
          arguments: chapterDirectories)
    func outputMatchesReadme(directory: String) throws {
        guard let path = executable(for: directory) else {
            Issue.record("ch\(directory) is not built; run `swift build` first")
            return
        }
        let (status, output) = try run(path)
        #expect(status == 0, "ch\(directory) exited with \(status):\n\(output.suffix(2000))")
        for (number, line) in output.components(separatedBy: "\n").enumerated() where line.count > 100 {
            Issue.record("ch\(directory) line \(number + 1) is \(line.count) characters wide: \(line)")
        }
        let readme = try String(contentsOfFile: "\(repositoryRoot)/Chapters/\(directory)/README.md", encoding: .utf8)
        guard let pasted = pastedOutput(inReadme: readme) else {
            Issue.record("Chapters/\(directory)/README.md has no output block between <!-- output: ... --> and <!-- end output -->")
            return
        }
        if pasted != output {
            let pastedLines = pasted.components(separatedBy: "\n"), outputLines = output.components(separatedBy: "\n")
            let first = zip(pastedLines, outputLines).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                ?? min(pastedLines.count, outputLines.count)
            Issue.record("""
                Chapters/\(directory)/README.md's pasted output differs from what ch\(directory) prints, first at line \(first + 1):
                  README:  \(first < pastedLines.count ? pastedLines[first] : "(end)")
                  prints:  \(first < outputLines.count ? outputLines[first] : "(end)")
                Refresh it with: Chapters/paste-output.sh \(directory.prefix(2))
                """)
        }
    }

    @Test("chapter 10 refuses an absurd flag with its usage and status 2, before it trains anything",
          arguments: [["--steps", "0"], ["--steps", "99999999999"], ["--steps", "-3"], ["--kl-ctl", "nan"],
                      ["--kl-ctl", "-1"], ["--kl-ctl", "inf"], ["--seed", "-1"], ["--seed"], ["--plot", ""],
                      ["--plot", "/no/such/directory/plot.svg"], ["--bogus"], ["--recipe", "bogus"]])
    func chapter10Flags(arguments: [String]) throws {
        let path = try #require(executable(for: "10-end-to-end"), "ch10-end-to-end is not built")
        let (status, output) = try run(path, arguments)
        #expect(status == 2, "\(arguments): exited with \(status):\n\(output.suffix(500))")
        #expect(output.contains("usage: ch10-end-to-end"), "\(arguments): \(output.suffix(500))")
        #expect(!output.contains("[1/4]"), "\(arguments): it started training")
    }

    @Test("chapter 16 refuses an absurd flag with its usage and status 2, before it trains anything",
          arguments: [["--steps", "0"], ["--steps", "99999999999"], ["--beta", "nan"], ["--beta", "-1"],
                      ["--group-size", "3"], ["--group-size", "1"], ["--epochs", "0"], ["--seed", "-1"], ["--seed"],
                      ["--plot", ""], ["--plot", "/no/such/directory/plot.svg"], ["--bogus"]])
    func chapter16Flags(arguments: [String]) throws {
        let path = try #require(executable(for: "16-grpo-end-to-end"), "ch16-grpo-end-to-end is not built")
        let (status, output) = try run(path, arguments)
        #expect(status == 2, "\(arguments): exited with \(status):\n\(output.suffix(500))")
        #expect(output.contains("usage: ch16-grpo-end-to-end"), "\(arguments): \(output.suffix(500))")
        #expect(!output.contains("[1/3]"), "\(arguments): it started training")
    }
}
