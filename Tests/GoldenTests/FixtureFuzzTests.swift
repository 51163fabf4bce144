import Foundation
import Testing
import TensorCore
import TestSupport
@testable import Golden

/// Seeded mutations of the committed fixtures, run in process through the
/// verifier's own code: every case must end as a pass or a clean failure.
///
/// A trap, a runaway allocation or an endless loop would stop or stall this test
/// run, so reaching the end is itself the first check. On top of that each case
/// checks what a clean failure means: the stage returns no NaN it was not given
/// (it throws `nonFiniteResult` instead), an error is typed, and a failed row's
/// name and message hold no control character once printed.
///
/// `make test` runs 3,000 cases; `make fuzz` runs 100,000 (`FUZZ_CASES`), and
/// `FUZZ_SEED` picks another sequence.
@Suite("the verifier under seeded hostile mutations")
struct FixtureFuzzTests {
    @Test("every mutated fixture ends as a pass or a clean failure")
    func fuzz() throws {
        let environment = ProcessInfo.processInfo.environment
        let cases = environment["FUZZ_CASES"].flatMap { Int($0) } ?? 3_000
        let seed = environment["FUZZ_SEED"].flatMap { UInt64($0) } ?? 2026
        // Small fixtures, so thousands of cases stay within seconds in a debug build,
        // and the two smallest of each stage, so every stage is fuzzed.
        var seeds = [JSONValue]()
        for adapter in stageRegistry {
            let bySize = try fixtureFiles(stage: adapter.declaration.name).map { path in
                (path: path, data: try #require(FileManager.default.contents(atPath: path)))
            }.sorted { $0.data.count < $1.data.count }
            for (rank, file) in bySize.enumerated() where rank < 2 || file.data.count < 6_000 {
                seeds.append(try parseJSON(String(decoding: file.data, as: UTF8.self)))
            }
        }
        #expect(seeds.count >= 100)
        var rng = SplitMix64(seed: seed)
        var outcomes = (decoded: 0, passed: 0, threw: 0)
        for index in 0..<cases {
            var document = seeds[rng.below(seeds.count)]
            var applied = [String]()
            for _ in 0...rng.below(3) {
                applied.append(mutate(&document, &rng))
            }
            let label = "case \(index) (seed \(seed)): \(applied.joined(separator: "; "))"
            guard let fixture = try? Fixture.decode(document) else { continue }
            outcomes.decoded += 1
            let outcome = verify(fixture)
            if outcome.passed { outcomes.passed += 1 }
            #expect(!printable(outcome.name + outcome.message).contains("\n"), "\(label): a control character survives")
            do {
                let outputs = try runStage(fixture)
                for (name, tensor) in outputs where tensor.isFloat && tensor.doubles.contains(where: \.isNaN) {
                    Issue.record("\(label): stage \(fixture.stage) returned a NaN in '\(name)' instead of throwing")
                }
            } catch is StageError {
                outcomes.threw += 1
            } catch is FixtureProblem {
                outcomes.threw += 1
            } catch {
                Issue.record("\(label): an untyped error \(error)")
            }
        }
        // The mutations must reach the stages, not only the decoder.
        #expect(outcomes.decoded > cases / 4, "only \(outcomes.decoded) of \(cases) decoded")
        #expect(outcomes.threw > cases / 10, "only \(outcomes.threw) of \(cases) reached a typed error")
    }
}

/// One random mutation of a fixture document; returns what it did.
private func mutate(_ document: inout JSONValue, _ rng: inout SplitMix64) -> String {
    guard case .object(var top) = document else { return "nothing" }
    defer { document = .object(top) }
    let tensorGroups = ["inputs", "expected"].filter { if case .object = top[$0] { return true } else { return false } }
    switch rng.below(10) {
    case 0, 1, 2:
        // A tensor's shape, dtype or data.
        guard let group = tensorGroups.randomElement(using: &rng),
              case .object(var tensors) = top[group], let name = tensors.keys.sorted().randomElement(using: &rng),
              case .object(var tensor) = tensors[name] else { return "no tensor" }
        let what: String
        switch rng.below(3) {
        case 0:
            let shape = hostileShape(tensor["shape"], &rng)
            tensor["shape"] = shape
            what = "\(group).\(name).shape = \(shape)"
        case 1:
            let dtype = ["float64", "float32", "int64", "bool", "float16", ""].randomElement(using: &rng)!
            tensor["dtype"] = rng.below(8) == 0 ? .number("64") : .string(dtype)
            what = "\(group).\(name).dtype = \(dtype)"
        default:
            guard case .array(var data) = tensor["data"], !data.isEmpty else { return "no data" }
            let value = hostileDatum(&rng)
            switch rng.below(4) {
            case 0: data[rng.below(data.count)] = value
            case 1: data = data.map { _ in value }
            case 2: data.removeLast()
            default: data = [.array(data)]
            }
            tensor["data"] = .array(data)
            what = "\(group).\(name).data with \(value)"
        }
        tensors[name] = .object(tensor)
        top[group] = .object(tensors)
        return what
    case 3, 4:
        // A param: removed, of another kind, or extreme.
        guard case .object(var params) = top["params"] ?? .object([:]) else { return "params not an object" }
        let names = params.keys.sorted() + ["start", "prompt_length", "beta", "ignore_index"]
        let name = names.randomElement(using: &rng)!
        let value: JSONValue? = [nil, .null, .string("1"), .bool(true), .number("1e300"), .number("-1e300"),
                                 .number("-5"), .number("0"), .number("9223372036854775807"), .number("1e-320"),
                                 .number("2.5"), .string("nan"), .array([])].randomElement(using: &rng)!
        params[name] = value
        top["params"] = .object(params)
        return "params.\(name) = \(value.map { "\($0)" } ?? "removed")"
    case 5:
        // An input removed or renamed.
        guard case .object(var inputs) = top["inputs"], let name = inputs.keys.sorted().randomElement(using: &rng) else {
            return "no inputs"
        }
        let tensor = inputs.removeValue(forKey: name)
        if rng.below(2) == 0 { inputs[name + "_"] = tensor }
        top["inputs"] = .object(inputs)
        return "inputs.\(name) removed"
    case 6:
        // Every float datum of every input scaled to the extremes.
        guard case .object(var inputs) = top["inputs"] else { return "no inputs" }
        let value = [JSONValue.string("inf"), .string("-inf"), .number("1e38"), .number("-1e308"), .number("1e-45"),
                     .number("3.4e38")].randomElement(using: &rng)!
        for (name, tensorValue) in inputs {
            guard case .object(var tensor) = tensorValue, case .string(let dtype) = tensor["dtype"],
                  dtype.hasPrefix("float"), case .array(let data) = tensor["data"], !data.isEmpty else { continue }
            var changed = data
            changed[rng.below(changed.count)] = value
            tensor["data"] = .array(changed)
            inputs[name] = .object(tensor)
        }
        top["inputs"] = .object(inputs)
        return "a float input datum = \(value)"
    case 7:
        // The name, with control characters or a forged row.
        let name = ["a\npass  gae  forged", "\u{1B}[2J", "tab\there", "", String(repeating: "x", count: 500),
                    "line\u{2028}sep", "nul\u{0}byte"].randomElement(using: &rng)!
        top["name"] = .string(name)
        return "name = \(name.debugDescription)"
    case 8:
        // The stage, or the expectation.
        if rng.below(2) == 0 {
            let stage = (stageRegistry.map { $0.declaration.name } + ["", "GAE", "gae "]).randomElement(using: &rng)!
            top["stage"] = .string(stage)
            return "stage = \(stage)"
        }
        if top["expected"] != nil {
            top["expected"] = nil
            top["tolerance"] = nil
            top["expect_error"] = .string("swapped")
            return "expected -> expect_error"
        }
        top["tolerance"] = [.number("-1"), .string("nan"), .object([:]), .object(["abs": .number("1e400")])]
            .randomElement(using: &rng)!
        return "tolerance mutated"
    default:
        // A tensor given as something else.
        guard case .object(var inputs) = top["inputs"], let name = inputs.keys.sorted().randomElement(using: &rng) else {
            return "no inputs"
        }
        inputs[name] = [.null, .number("1"), .array([]), .object([:]), .string("tensor")].randomElement(using: &rng)!
        top["inputs"] = .object(inputs)
        return "inputs.\(name) is not a tensor"
    }
}

/// A shape near the original, or a hostile one.
private func hostileShape(_ shape: JSONValue?, _ rng: inout SplitMix64) -> JSONValue {
    guard case .array(var extents) = shape else { return .array([]) }
    let extreme: [JSONValue] = [.number("0"), .number("1"), .number("-1"), .number("4294967296"), .number("1000000000000"),
                                .number("9223372036854775807"), .number("1.5"), .string("2"), .null]
    switch rng.below(4) {
    case 0 where !extents.isEmpty: extents[rng.below(extents.count)] = extreme.randomElement(using: &rng)!
    case 1: extents.append(extreme.randomElement(using: &rng)!)
    case 2 where !extents.isEmpty: extents.removeLast()
    default: extents = extents.map { _ in extreme.randomElement(using: &rng)! }
    }
    return .array(extents)
}

/// A datum no well-behaved fixture holds.
private func hostileDatum(_ rng: inout SplitMix64) -> JSONValue {
    [.string("nan"), .string("inf"), .string("-inf"), .number("1e308"), .number("-1e308"), .number("1e400"),
     .number("9223372036854775807"), .number("-9223372036854775808"), .number("99999999999999999999"),
     .number("1e-400"), .string("x"), .null, .bool(true), .array([]), .object([:]), .number("-1"),
     .number("2")].randomElement(using: &rng)!
}

extension SplitMix64 {
    /// A uniform integer in [0, n).
    fileprivate mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
}
