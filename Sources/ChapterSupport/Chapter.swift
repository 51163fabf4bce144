#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import TensorCore
import Golden

/// One chapter run: prints as it goes, counts the checks against golden
/// fixtures, and exits non-zero from `finish()` if any did not match.
///
/// ```
/// let chapter = Chapter(number: 4, title: "GAE")
/// let fixture = chapter.fixture("gae/peer-toy-f64")
/// let values = chapter.floatInput(fixture, "values")
/// ...
/// chapter.check("advantages", ours: result.advantages, against: fixture)
/// chapter.finish()
/// ```
public final class Chapter {
    public let number: Int
    /// The repository's GoldenData directory.
    public let goldenData: String
    /// The chapter's own folder, `Chapters/NN-slug`, found from its source file.
    public let directory: String
    private var checks = 0
    private var mismatches = [String]()
    private var claims = 0
    private var failedClaims = [String]()

    /// Prints the chapter's title. `file` locates the repository from the
    /// chapter's own source file, so it runs from any working directory.
    public init(number: Int, title: String, file: String = #filePath) {
        self.number = number
        directory = (file as NSString).deletingLastPathComponent
        var components = file.split(separator: "/", omittingEmptySubsequences: false)
        if components.count > 3 { components.removeLast(3) }  // Chapters/NN-slug/main.swift
        let fromSource = components.joined(separator: "/") + "/GoldenData"
        goldenData = FileManager.default.fileExists(atPath: fromSource) ? fromSource : "GoldenData"
        let heading = String(format: "Chapter %02d · %@", number, title)
        print(heading)
        print(String(repeating: "=", count: heading.count))
    }

    /// A numbered section heading.
    public func heading(_ title: String) {
        print("")
        print(title)
        print(String(repeating: "-", count: title.count))
    }

    /// Prose, printed as written (keep lines under 100 characters).
    public func say(_ text: String) {
        print(text)
    }

    /// Prints a table.
    public func show(_ table: Table, maximumRows: Int = 14) {
        print("")
        print(table.rendered(maximumRows: maximumRows))
    }

    /// Prints a rank-1 or rank-2 tensor as a table: one row per `b`, one column per `t`.
    public func show(_ name: String, _ tensor: Tensor<Double>, digits: Int = 4, columnLabel: String = "t",
                     firstColumn: Int = 0) {
        let rows = tensor.rank == 2 ? tensor.shape[0] : 1
        let columns = tensor.rank == 2 ? tensor.shape[1] : tensor.count
        var table = Table(["\(name) \(describe(shape: tensor.shape))"] + (0..<columns).map { "\(columnLabel)=\(firstColumn + $0)" })
        for b in 0..<rows {
            table.add(["b=\(b)"] + (0..<columns).map { fmt(tensor.scalars[b * columns + $0], digits) })
        }
        show(table)
    }

    /// Prints an int64 tensor (ids, masks) as a table.
    public func show(_ name: String, _ tensor: Tensor<Int64>, columnLabel: String = "t", firstColumn: Int = 0) {
        let rows = tensor.rank == 2 ? tensor.shape[0] : 1
        let columns = tensor.rank == 2 ? tensor.shape[1] : tensor.count
        var table = Table(["\(name) \(describe(shape: tensor.shape))"] + (0..<columns).map { "\(columnLabel)=\(firstColumn + $0)" })
        for b in 0..<rows {
            table.add(["b=\(b)"] + (0..<columns).map { String(tensor.scalars[b * columns + $0]) })
        }
        show(table)
    }

    // MARK: Fixtures

    /// Loads `GoldenData/<path>.json`, e.g. `fixture("gae/peer-toy-f64")`.
    public func fixture(_ path: String) -> Fixture {
        let file = goldenData + "/" + path + ".json"
        do {
            return try Fixture.load(path: file)
        } catch {
            fail("cannot load the golden fixture \(path).json: \(error)")
        }
    }

    /// A fixture's arguments in precision `T`, through the one reader
    /// (``FixtureArguments``) that `golden-verify` and the tests use too.
    public func arguments<T: FloatScalar>(_ fixture: Fixture, as _: T.Type = Double.self) -> FixtureArguments<T> {
        must { try FixtureArguments<T>(fixture) }
    }

    /// A float input of a fixture, in float64.
    public func floatInput(_ fixture: Fixture, _ name: String) -> Tensor<Double> {
        must { try arguments(fixture).float(name) }
    }

    /// An int64 or bool input of a fixture (ids, labels, masks), as the stage declares it.
    public func intInput(_ fixture: Fixture, _ name: String) -> Tensor<Int64> {
        let reader = arguments(fixture)
        return must { reader.declaration.input(name)?.kind == .mask ? try reader.mask(name) : try reader.ids(name) }
    }

    /// A whole-number param of a fixture.
    public func intParam(_ fixture: Fixture, _ name: String) -> Int {
        must { try arguments(fixture).int(name) }
    }

    /// A real param of a fixture.
    public func realParam(_ fixture: Fixture, _ name: String) -> Double {
        must { try arguments(fixture).real(name) }
    }

    /// The golden values of one output.
    public func golden(_ fixture: Fixture, _ output: String) -> [Double] {
        guard case .outputs(let outputs, _) = fixture.expectation, let tensor = outputs[output] else {
            fail("\(fixture.name) has no expected output '\(output)'")
        }
        return tensor.doubles
    }

    // MARK: Running and checking

    /// Runs a library call; a thrown error ends the chapter with the message.
    public func must<R>(_ body: () throws -> R) -> R {
        do {
            return try body()
        } catch {
            fail("the library threw: \(error)")
        }
    }

    /// Prints our values beside the fixture's golden values and counts the check.
    /// Labels default to the flat index; long outputs are elided in the middle.
    public func check(_ output: String, ours: [Double], against fixture: Fixture, labels: [String]? = nil,
                      digits: Int = 6) {
        guard case .outputs(let outputs, let tolerance) = fixture.expectation, let expected = outputs[output] else {
            fail("\(fixture.name) has no expected output '\(output)'")
        }
        let golden = expected.doubles
        let comparison = golden.count == ours.count
            ? compare(got: ours, expected: golden, tolerance: tolerance) : nil
        print("")
        let heading = "  \(output): ours beside GoldenData/\(fixture.stage)/\(fixture.name).json"
        // Keep within 100 columns: a long fixture path pushes the tolerance to its own line.
        print(heading.count + "\(tolerance)".count + 3 <= 100 ? "\(heading) (\(tolerance))" : "\(heading)\n    (\(tolerance))")
        var table = Table(["", "ours", "golden", ""])
        for i in 0..<max(ours.count, golden.count) {
            let label = labels?[i] ?? (expected.shape.count > 1
                ? describe(shape: Tensor<Double>.make(expected.shape, golden).index(ofFlat: i)) : "[\(i)]")
            let single = i < ours.count && i < golden.count
                ? compare(got: [ours[i]], expected: [golden[i]], tolerance: tolerance).passed : false
            table.add([label, i < ours.count ? fmt(ours[i], digits) : "-", i < golden.count ? fmt(golden[i], digits) : "-",
                       single ? "ok" : "MISMATCH"])
        }
        print(table.rendered(indent: 4))
        checks += 1
        if let comparison, comparison.passed {
            print("    -> \(output): \(ours.count) of \(ours.count) match")
        } else {
            mismatches.append(output)
            print("    -> \(output): MISMATCH (\(comparison.map(\.description) ?? "\(ours.count) values against \(golden.count)"))")
        }
    }

    /// `check` for a tensor output.
    public func check(_ output: String, ours: Tensor<Double>, against fixture: Fixture, digits: Int = 6) {
        check(output, ours: ours.scalars, against: fixture, digits: digits)
    }

    /// `check` for a scalar output.
    public func check(_ output: String, ours: Double, against fixture: Fixture, digits: Int = 6) {
        check(output, ours: [ours], against: fixture, labels: [""], digits: digits)
    }

    /// Runs a call that the fixture says must be rejected; prints the error it throws.
    public func checkRejects<R>(_ fixture: Fixture, _ body: () throws -> R) {
        checks += 1
        guard case .error(let why) = fixture.expectation else { fail("\(fixture.name) is not an expect_error fixture") }
        do {
            _ = try body()
            mismatches.append(fixture.name)
            print("  MISMATCH: GoldenData/\(fixture.stage)/\(fixture.name).json expects an error (\(why)); none was thrown")
        } catch {
            print("  GoldenData/\(fixture.stage)/\(fixture.name).json expects an error; the library throws:")
            print("    \(error)")
        }
    }

    /// Checks a claim the chapter makes about its own run (a reward that must
    /// rise, a bound that must hold); prints it with its verdict and counts it.
    public func claim(_ holds: Bool, _ statement: String) {
        claims += 1
        if !holds { failedClaims.append(statement) }
        print("  \(holds ? "holds" : "FAILS"): \(statement)")
    }

    /// Prints the verdict and exits: 0 if every check matched and every claim
    /// held, 1 otherwise.
    public func finish() -> Never {
        print("")
        var failed = false
        if mismatches.isEmpty {
            print("All \(checks) checks match the golden fixtures.")
        } else {
            print("\(mismatches.count) of \(checks) checks do NOT match: \(mismatches.joined(separator: ", "))")
            failed = true
        }
        if claims > 0 {
            if failedClaims.isEmpty {
                print("All \(claims) claims about this run hold.")
            } else {
                print("\(failedClaims.count) of \(claims) claims about this run do NOT hold.")
                failed = true
            }
        }
        exit(failed ? 1 : 0)
    }

    private func fail(_ message: String) -> Never {
        print("")
        print("chapter \(number) stopped: \(message)")
        exit(1)
    }
}
