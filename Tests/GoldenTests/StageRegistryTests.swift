import Foundation
import Testing
import TensorCore
import TestSupport
import Golden

/// The drift checks of the stage registry: the registry, the folders under
/// `GoldenData/`, the project's copy of the format spec (`GoldenData/README.md`)
/// and the README's module map must name the same stages, with the same params,
/// inputs and outputs.
@Suite("the stage registry")
struct StageRegistryTests {
    let names = stageRegistry.map { $0.declaration.name }

    @Test("each stage is declared once, with distinct param, input and output names")
    func unique() {
        #expect(Set(names).count == names.count, "\(names)")
        for adapter in stageRegistry {
            let d = adapter.declaration
            for (what, list) in [("params", d.params.map(\.name)), ("inputs", d.inputs.map(\.name)), ("outputs", d.outputs)] {
                #expect(Set(list).count == list.count, "\(d.name) repeats one of its \(what): \(list)")
            }
        }
    }

    @Test("the registry and the folders under GoldenData name the same stages, at least 10 fixtures each")
    func folders() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: goldenDataDirectory).filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: goldenDataDirectory + "/" + name, isDirectory: &isDirectory)
                && isDirectory.boolValue && !name.hasPrefix("generator") && !name.hasPrefix("__")
        }
        #expect(Set(folders) == Set(names), "folders \(folders.sorted()) against the registry \(names.sorted())")
        for name in names {
            #expect(fixtureFiles(stage: name).count >= 10, "\(name) has fewer than 10 fixtures")
        }
    }

    @Test("GoldenData/README.md's stage table gives each stage's params, inputs and outputs by the registry's names")
    func formatSpec() throws {
        // The v1 table, and one table per later part ("### Stages of v1.1: ...").
        let rows = try tableRows(in: goldenDataDirectory + "/README.md", under: "### Stages of v1")
        #expect(Set(rows.keys) == Set(names), "spec table \(rows.keys.sorted()) against the registry \(names.sorted())")
        for adapter in stageRegistry {
            let d = adapter.declaration
            guard let row = rows[d.name] else { continue }
            let inputNames = Set(d.inputs.map(\.name))
            for name in d.params.map(\.name) + d.inputs.map(\.name) + d.outputs {
                // tiny_lm spells its weight gradients once, as `grad_<weight>`.
                let generic = name.hasPrefix("grad_") && inputNames.contains(String(name.dropFirst(5)))
                    && row.contains("`grad_<weight>`")
                #expect(row.contains("`\(name)`") || generic, "the spec row of \(d.name) does not name `\(name)`")
            }
        }
    }

    @Test("the README's module map gives each stage the module the registry names")
    func moduleMap() throws {
        let readme = goldenDataDirectory.replacingOccurrences(of: "/GoldenData", with: "/README.md")
        let rows = try tableRows(in: readme, under: "## Module map")
        #expect(Set(rows.keys) == Set(names), "module map \(rows.keys.sorted()) against the registry \(names.sorted())")
        for adapter in stageRegistry {
            let d = adapter.declaration
            #expect(rows[d.name]?.contains("| `\(d.module)` |") == true, "the module map row of \(d.name) does not name module \(d.module)")
        }
    }

    @Test("the glossary gives each stage the peer function its declaration names")
    func glossary() throws {
        let path = goldenDataDirectory.replacingOccurrences(of: "/GoldenData", with: "/Chapters/GLOSSARY.md")
        let rows = try tableRows(in: path, under: "## Stages and the peer function")
        #expect(Set(rows.keys) == Set(names), "glossary stages \(rows.keys.sorted()) against the registry \(names.sorted())")
        for adapter in stageRegistry {
            let d = adapter.declaration
            #expect(rows[d.name]?.hasSuffix("| \(d.peer) |") == true, "the glossary row of \(d.name) does not end with its peer \(d.peer)")
        }
    }

    @Test("every committed fixture runs through its adapter and gives only declared outputs")
    func declaredOutputs() throws {
        for name in names {
            let declared = try stageAdapter(named: name).declaration.outputs
            for file in fixtureFiles(stage: name) {
                let fixture = try Fixture.load(path: file)
                guard case .outputs = fixture.expectation else { continue }
                let produced = try runStage(fixture).keys
                #expect(produced.allSatisfy(declared.contains), "\(name)/\(fixture.name) gives \(produced.sorted()), declared \(declared)")
            }
        }
    }

    @Test("a fixture is checked against its declaration before the stage runs: every required param and input, each param of its kind")
    func validation() throws {
        let file = try #require(fixtureFiles(stage: "gae").first { $0.hasSuffix("-f64.json") })
        let fixture = try Fixture.load(path: file)
        func problem(_ change: (inout Fixture) -> Void) -> String? {
            var changed = fixture
            change(&changed)
            do {
                _ = try runStage(changed)
                return nil
            } catch let problem as FixtureProblem {
                return problem.field
            } catch {
                return "\(error)"
            }
        }
        #expect(problem { $0.params["start"] = nil } == "params.start")
        #expect(problem { $0.params["gamma"] = .string("1.0") } == "params.gamma")
        #expect(problem { $0.inputs["rewards"] = nil } == "inputs.rewards")
        // What the stage does not declare is ignored, as GoldenData/README.md promises.
        #expect(problem { $0.params["lamda"] = .number("0.9") } == nil)
        #expect(problem { $0.inputs["reward"] = $0.inputs["rewards"] } == nil)
        // An expect_error fixture that lacks a param fails as malformed, whatever else it gets wrong.
        var broken = fixture
        broken.params["start"] = nil
        broken.inputs["values"] = .float64(Tensor(shape: [3], repeating: 0))
        broken.expectation = .error("values of the wrong rank")
        #expect(!verify(broken).passed)
    }

    @Test("a default applies only where the declaration gives one")
    func defaults() throws {
        let file = try #require(fixtureFiles(stage: "sft_loss").first { $0.hasSuffix("-f64.json") })
        var fixture = try Fixture.load(path: file)
        fixture.params["ignore_index"] = nil
        #expect(try FixtureArguments<Double>(fixture).int("ignore_index") == -100)
        #expect(throws: FixtureProblem.self) { try FixtureArguments<Double>(fixture).real("ignore_index") }
        #expect(throws: FixtureProblem.self) { try FixtureArguments<Double>(fixture).float("logit") }
    }
}

/// The rows of the Markdown tables in each section whose heading starts with
/// `heading` (up to the next heading), by the backticked name in their first
/// column (`| \`gae\` (note) | ...` -> "gae").
private func tableRows(in path: String, under heading: String) throws -> [String: String] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let starts = lines.indices.filter { lines[$0].hasPrefix(heading) }
    if starts.isEmpty { Issue.record("no heading '\(heading)' in \(path)") }
    var rows = [String: String]()
    for start in starts {
        for line in lines[(start + 1)...] {
            if line.hasPrefix("#") { break }  // the section ends at the next heading
            guard line.hasPrefix("|") else { continue }
            let firstCell = line.dropFirst().prefix { $0 != "|" }
            if let open = firstCell.firstIndex(of: "`"),
               let close = firstCell[firstCell.index(after: open)...].firstIndex(of: "`") {
                rows[String(firstCell[firstCell.index(after: open)..<close])] = line
            }
        }
    }
    return rows
}
