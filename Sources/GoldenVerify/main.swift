// golden-verify [PATH ...]
//
// Runs every golden fixture (format rlhf-golden-v1) under the given files and
// directories (default: GoldenData), prints one row per fixture, then
// `N passed, N failed` alone on the last line. Exits 1 if anything failed.
//
// A workshop attendee points it at a directory their own PyTorch code wrote:
//   swift run -c release golden-verify path/to/my-fixtures
// or at the answers GoldenData/workshop.py saved for the golden fixtures:
//   swift run -c release golden-verify --answers path/to/answers
// Under a failed row it names the known mistake that reproduces the numbers
// (the catalogue in Sources/Workshop/), or shows the first differing element.
// `golden-verify --stages` says where each stage's code is.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Golden
import Workshop

var arguments = Array(CommandLine.arguments.dropFirst())
let usage = """
    usage: golden-verify [--failures-only] [PATH ...]
           golden-verify --answers DIR [--failures-only] [GOLDEN ...]
           golden-verify --stages
           golden-verify --mistakes

    Runs every fixture (*.json, format rlhf-golden-v1) under the PATHs (files or
    directories; default GoldenData), one row per fixture, and ends with
    'N passed, N failed'. Exits 1 if any fixture failed or none was found.

    Under a failed row: the known mistake whose numbers the failed outputs
    reproduce (its id, title, why it is wrong, the chapter to read), or else the
    first differing element and what the right value there is made of.

    --answers DIR checks an attendee's answers instead: DIR/<stage>/<fixture>.json
    files (format rlhf-golden-answers-v1, as GoldenData/workshop.py writes them),
    each against the golden fixture of the same stage and name under the GOLDEN
    directories (default GoldenData), with the same rows and diagnoses.

    --mistakes lists the catalogue of well-known mistakes, by stage: id, title,
    why it is wrong, the chapter that explains the right rule.

    --stages lists every stage: its fixture name, the Swift module and function
    that compute it, and the peer function it matches.
    """
if arguments.contains("-h") || arguments.contains("--help") {
    print(usage)
    exit(0)
}
var answersDirectory: String?
if let flag = arguments.firstIndex(of: "--answers") {
    guard flag + 1 < arguments.count, !arguments[flag + 1].hasPrefix("-") else {
        print("golden-verify: --answers needs a directory\n\n\(usage)")
        exit(2)
    }
    answersDirectory = arguments[flag + 1]
    arguments.removeSubrange(flag...(flag + 1))
}
if let unknown = arguments.first(where: { $0.hasPrefix("-") && !["--failures-only", "--stages", "--mistakes"].contains($0) }) {
    print("golden-verify: unknown option \(unknown)\n\n\(usage)")
    exit(2)
}
if arguments.contains("--stages") {
    for adapter in stageRegistry {
        let d = adapter.declaration
        print("\(d.name)\n    module    Sources/\(d.module)/\n    function  \(d.function)\n    peer      \(d.peer)")
    }
    exit(0)
}
if arguments.contains("--mistakes") {
    for entry in mistakeCatalogue {
        print(entry.stage)
        for mistake in entry.mistakes {
            print("    \(mistake.id): \(mistake.title)")
            wrap(mistake.explanation, width: 88).forEach { print("        " + $0) }
            print("        read: \(mistake.chapter)/README.md")
        }
    }
    exit(0)
}
let failuresOnly = arguments.contains("--failures-only")
let paths = arguments.filter { !$0.hasPrefix("-") }
let roots = paths.isEmpty ? ["GoldenData"] : paths

/// Prints a line and flushes it: each row reaches a pipe as soon as it is
/// printed, so nothing already verified is lost if the run is stopped.
func emit(_ line: String) {
    print(line)
    fflush(nil)
}

if let answersDirectory {
    let outcomes = checkAnswers(in: answersDirectory, goldenRoots: roots)
    emit(rowHeader)
    for outcome in outcomes where !(failuresOnly && outcome.passed) {
        outcome.lines.forEach(emit)
    }
    let passedCount = outcomes.filter(\.passed).count
    emit("\(passedCount) passed, \(outcomes.count - passedCount) failed")
    exit(passedCount == outcomes.count ? 0 : 1)
}

let (files, missing) = fixtureFiles(under: roots)
var passed = 0, failed = 0

/// `text` padded to `width`; what came from a fixture (names, messages) has its
/// control characters escaped first, so a name holding a newline cannot print a
/// second, forged row.
func pad(_ text: String, _ width: Int) -> String {
    let shown = printable(text)
    return shown.count >= width ? shown + " " : shown + String(repeating: " ", count: width - shown.count)
}

for path in missing {
    emit("FAIL  \(printable(path)): no such file or directory")
    failed += 1
}

/// For a fixture whose expected outputs the library does not reproduce: the
/// expected numbers are the ones under test (a fixture written by an attendee's
/// code), the library's are the right ones.
func diagnosisOfFixture(atPath path: String) -> [String] {
    guard let fixture = try? Fixture.load(path: path), case .outputs(let expected, let tolerance) = fixture.expectation,
          let right = try? runStage(fixture) else { return [] }
    return diagnosisLines(diagnose(fixture, submitted: expected, right: right, tolerance: tolerance))
}

emit(pad("", 6) + pad("stage", 22) + pad("fixture", 36) + pad("compared", 30) + "max abs err")
for file in files {
    let outcome = verifyFile(atPath: file)
    if outcome.passed { passed += 1 } else { failed += 1 }
    if failuresOnly && outcome.passed { continue }
    let status = outcome.passed ? "pass" : "FAIL"
    let compared = outcome.compared.joined(separator: ",")
    var row = pad(status, 6) + pad(outcome.stage, 22) + pad(outcome.name, 36)
    if outcome.compared == ["expect_error"] {
        row += pad("expect_error", 30) + (outcome.passed ? "threw: " : "") + printable(outcome.message)
        emit(row)
    } else {
        row += pad(compared.isEmpty ? "-" : compared, 30) + (outcome.largestError.map(formatError) ?? "-")
        emit(row)
        if !outcome.passed {
            emit("      \(printable(outcome.message))")
            diagnosisOfFixture(atPath: file).forEach(emit)
        }
    }
}
if files.isEmpty {
    emit("no fixture files found under \(printable(roots.joined(separator: ", ")))")
}
emit("\(passed) passed, \(failed) failed")
exit(failed == 0 && !files.isEmpty ? 0 : 1)
