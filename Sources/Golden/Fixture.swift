import Foundation
import TensorCore

/// The format this package reads and writes.
public let goldenFormat = "rlhf-golden-v1"

/// What is wrong with a fixture file, naming the field: `inputs.logits.shape`.
public struct FixtureProblem: Error, Sendable, CustomStringConvertible {
    /// The dotted path of the field at fault, e.g. `params.start`, or `file`.
    public let field: String
    public let reason: String

    public init(field: String, _ reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "field '\(field)': \(reason)" }
}

/// An output tolerance: an element passes when `|got - expected| <= abs + rel * |expected|`.
public struct Tolerance: Sendable, Equatable, CustomStringConvertible {
    public var abs: Double
    public var rel: Double

    public init(abs: Double, rel: Double) {
        self.abs = abs
        self.rel = rel
    }

    public var description: String { "abs \(abs), rel \(rel)" }
}

/// One golden fixture: a stage, its params and inputs, and what it must give.
public struct Fixture: Sendable {
    /// What the fixture expects: outputs within a tolerance, or a thrown error.
    public enum Expectation: Sendable {
        case outputs([String: FixtureTensor], Tolerance)
        /// The fixture's reason why the input must be rejected.
        case error(String)
    }

    /// The file it was read from ("" when built in memory).
    public var path: String
    public var stage: String
    public var name: String
    public var source: String
    public var params: [String: JSONValue]
    public var inputs: [String: FixtureTensor]
    public var expectation: Expectation

    public init(path: String = "", stage: String, name: String, source: String, params: [String: JSONValue],
                inputs: [String: FixtureTensor], expectation: Expectation) {
        self.path = path
        self.stage = stage
        self.name = name
        self.source = source
        self.params = params
        self.inputs = inputs
        self.expectation = expectation
    }

    /// Reads and checks a fixture file. Every problem names the field at fault.
    public static func load(path: String) throws(FixtureProblem) -> Fixture {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FixtureProblem(field: "file", "cannot read \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw FixtureProblem(field: "file", "not UTF-8 text")
        }
        let document: JSONValue
        do {
            document = try parseJSON(text)
        } catch {
            throw FixtureProblem(field: "file", error.description)
        }
        var fixture = try decode(document)
        fixture.path = path
        return fixture
    }

    /// Checks a parsed document against format `rlhf-golden-v1`.
    public static func decode(_ document: JSONValue) throws(FixtureProblem) -> Fixture {
        guard case .object(let top) = document else {
            throw FixtureProblem(field: "file", "expected a JSON object at the top, got \(document.kindName)")
        }
        func string(_ key: String) throws(FixtureProblem) -> String {
            guard let value = top[key] else { throw FixtureProblem(field: key, "missing field") }
            guard case .string(let s) = value else { throw FixtureProblem(field: key, "expected a string, got \(value.kindName)") }
            return s
        }
        let format = try string("format")
        guard format == goldenFormat else {
            throw FixtureProblem(field: "format", "unknown format \"\(format)\"; this verifier reads \"\(goldenFormat)\"")
        }
        let stage = try string("stage")
        let name = try string("name")
        let source = try string("source")

        var params = [String: JSONValue]()
        if let value = top["params"] {
            switch value {
            case .object(let members): params = members
            case .null: break
            default: throw FixtureProblem(field: "params", "expected an object, got \(value.kindName)")
            }
        }

        guard let inputsValue = top["inputs"] else { throw FixtureProblem(field: "inputs", "missing field") }
        guard case .object(let inputMembers) = inputsValue else {
            throw FixtureProblem(field: "inputs", "expected an object of tensors, got \(inputsValue.kindName)")
        }
        var inputs = [String: FixtureTensor]()
        for (key, value) in inputMembers.sorted(by: { $0.key < $1.key }) {
            inputs[key] = try FixtureTensor.decode(value, field: "inputs.\(key)")
        }

        let expectation: Expectation
        switch (top["expected"], top["expect_error"]) {
        case (.some, .some):
            throw FixtureProblem(field: "expect_error", "a fixture holds either 'expected' + 'tolerance' or 'expect_error', not both")
        case (nil, .some(let reason)):
            guard case .string(let why) = reason else {
                throw FixtureProblem(field: "expect_error", "expected a string saying why, got \(reason.kindName)")
            }
            expectation = .error(why)
        case (.some(let expectedValue), nil):
            guard case .object(let outputMembers) = expectedValue else {
                throw FixtureProblem(field: "expected", "expected an object of tensors, got \(expectedValue.kindName)")
            }
            guard !outputMembers.isEmpty else { throw FixtureProblem(field: "expected", "names no output to compare") }
            var outputs = [String: FixtureTensor]()
            for (key, value) in outputMembers.sorted(by: { $0.key < $1.key }) {
                outputs[key] = try FixtureTensor.decode(value, field: "expected.\(key)")
            }
            expectation = .outputs(outputs, try decodeTolerance(top["tolerance"]))
        case (nil, nil):
            throw FixtureProblem(field: "expected", "missing field (a fixture holds 'expected' + 'tolerance', or 'expect_error')")
        }
        return Fixture(stage: stage, name: name, source: source, params: params, inputs: inputs, expectation: expectation)
    }
}

private func decodeTolerance(_ value: JSONValue?) throws(FixtureProblem) -> Tolerance {
    guard let value else { throw FixtureProblem(field: "tolerance", "missing field (required with 'expected')") }
    guard case .object(let members) = value else {
        throw FixtureProblem(field: "tolerance", "expected an object {abs, rel}, got \(value.kindName)")
    }
    guard members["abs"] != nil || members["rel"] != nil else {
        throw FixtureProblem(field: "tolerance", "names neither 'abs' nor 'rel'")
    }
    func bound(_ key: String) throws(FixtureProblem) -> Double {
        guard let member = members[key] else { return 0 }
        guard case .number(let text) = member, let x = Double(text), x.isFinite, x >= 0 else {
            throw FixtureProblem(field: "tolerance.\(key)", "expected a finite number >= 0, got \(describe(member))")
        }
        return x
    }
    return Tolerance(abs: try bound("abs"), rel: try bound("rel"))
}
