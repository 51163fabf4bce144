import TensorCore
import Golden

// Small helpers shared by the zoo stages' mistakes (v1.1).

/// Thrown by a mistake that does not apply to a fixture (another loss type, no
/// mask, ...): the diagnosis and the tests then skip it there.
struct NotApplicable: Error, CustomStringConvertible {
    let description: String
    init(_ reason: String) { description = reason }
}

/// `value`, or `NotApplicable` when it is missing.
func require<V>(_ value: V?, _ what: String = "a value") throws -> V {
    guard let value else { throw NotApplicable("\(what) is missing") }
    return value
}

/// The string param `name`, required to be one of `values` for the mistake to apply.
func requireParam(_ a: FixtureArguments<Double>, _ name: String, in values: Set<String>) throws -> String {
    let value = try a.string(name)
    guard values.contains(value) else { throw NotApplicable("\(name) = \(value)") }
    return value
}
