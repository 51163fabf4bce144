import TensorCore

/// The dtypes of format `rlhf-golden-v1`.
public enum DType: String, Sendable, CaseIterable {
    case float64, float32, int64, bool
}

/// One tensor of a fixture, in the dtype the file names.
public enum FixtureTensor: Sendable, Equatable {
    case float64(Tensor<Double>)
    case float32(Tensor<Float>)
    case int64(Tensor<Int64>)
    case bool(Tensor<Bool>)

    /// Wraps a stage's float output in the dtype of its precision.
    public init<T: FloatScalar>(_ tensor: Tensor<T>) {
        if let double = tensor as? Tensor<Double> {
            self = .float64(double)
        } else if let float = tensor as? Tensor<Float> {
            self = .float32(float)
        } else {
            self = .float64(tensor.converted(to: Double.self))
        }
    }

    /// Wraps a stage's scalar float output as a tensor of shape [].
    public init<T: FloatScalar>(scalar: T) {
        self.init(Tensor(scalar: scalar))
    }

    public var dtype: DType {
        switch self {
        case .float64: .float64
        case .float32: .float32
        case .int64: .int64
        case .bool: .bool
        }
    }

    public var shape: [Int] {
        switch self {
        case .float64(let t): t.shape
        case .float32(let t): t.shape
        case .int64(let t): t.shape
        case .bool(let t): t.shape
        }
    }

    public var isFloat: Bool { dtype == .float64 || dtype == .float32 }

    /// Every element as a Double (exact for float32, bool and int64 up to 2^53).
    public var doubles: [Double] {
        switch self {
        case .float64(let t): t.scalars
        case .float32(let t): t.scalars.map(Double.init)
        case .int64(let t): t.scalars.map(Double.init)
        case .bool(let t): t.scalars.map { $0 ? 1 : 0 }
        }
    }

    /// Decodes `{dtype, shape, data}`; `field` names the tensor in errors, e.g. `inputs.logits`.
    public static func decode(_ value: JSONValue, field: String) throws(FixtureProblem) -> FixtureTensor {
        guard case .object(let members) = value else {
            throw FixtureProblem(field: field, "expected an object {dtype, shape, data}, got \(value.kindName)")
        }
        guard let dtypeValue = members["dtype"] else { throw FixtureProblem(field: field + ".dtype", "missing field") }
        guard case .string(let dtypeName) = dtypeValue, let dtype = DType(rawValue: dtypeName) else {
            throw FixtureProblem(field: field + ".dtype", "unknown dtype \(describe(dtypeValue)); expected one of float64, float32, int64, bool")
        }
        guard let shapeValue = members["shape"] else { throw FixtureProblem(field: field + ".shape", "missing field") }
        guard case .array(let extents) = shapeValue else {
            throw FixtureProblem(field: field + ".shape", "expected an array of extents, got \(shapeValue.kindName)")
        }
        var shape = [Int]()
        for extent in extents {
            guard case .number(let text) = extent, let n = Int(text), n >= 0 else {
                throw FixtureProblem(field: field + ".shape", "extents are whole numbers >= 0, got \(describe(extent))")
            }
            shape.append(n)
        }
        // Counted without overflow, and refused beyond the limit before anything is
        // allocated for it.
        guard let count = TensorLimits.elementCount(shape) else {
            throw FixtureProblem(field: field + ".shape", TensorLimits.refusal(shape))
        }
        guard let dataValue = members["data"] else { throw FixtureProblem(field: field + ".data", "missing field") }
        // Flat per the format; nested lists (a tensor's tolist()) and a bare
        // number for shape [] are accepted too, but nesting must follow the shape.
        if case .array(let elements) = dataValue, elements.contains(where: \.isArray) {
            try checkNesting(dataValue, shape[...], field: field + ".data")
        }
        var data = [JSONValue]()
        flatten(dataValue, into: &data)
        guard data.count == count else {
            throw FixtureProblem(field: field + ".data", "shape \(TensorCore.describe(shape: shape)) holds \(count) elements, data has \(data.count)")
        }
        switch dtype {
        case .float64:
            return .float64(Tensor.make(shape, try data.enumerated().map { (i, v) throws(FixtureProblem) in try floatDatum(v, Double.self, field: field, index: i) }))
        case .float32:
            return .float32(Tensor.make(shape, try data.enumerated().map { (i, v) throws(FixtureProblem) in try floatDatum(v, Float.self, field: field, index: i) }))
        case .int64:
            return .int64(Tensor.make(shape, try data.enumerated().map { (i, v) throws(FixtureProblem) in try intDatum(v, field: field, index: i) }))
        case .bool:
            return .bool(Tensor.make(shape, try data.enumerated().map { (i, v) throws(FixtureProblem) in
                switch v {
                case .bool(let b): return b
                case .number("0"): return false
                case .number("1"): return true
                default: throw FixtureProblem(field: field + ".data[\(i)]", "expected true/false, got \(describe(v))")
                }
            }))
        }
    }
}

/// Checks that nested `data` has the tensor's shape: `shape[0]` lists of
/// `shape[1]` lists, and so on, with numbers only at the last level.
private func checkNesting(_ value: JSONValue, _ shape: ArraySlice<Int>, field: String) throws(FixtureProblem) {
    guard let extent = shape.first else {
        if value.isArray {
            throw FixtureProblem(field: field, "nested deeper than the shape's \(shape.startIndex) axes")
        }
        return
    }
    guard case .array(let elements) = value else {
        throw FixtureProblem(field: field, "nested data stops at axis \(shape.startIndex), which has extent \(extent)")
    }
    guard elements.count == extent else {
        throw FixtureProblem(field: field, "axis \(shape.startIndex) has extent \(extent), the nested data holds \(elements.count)")
    }
    for element in elements {
        try checkNesting(element, shape.dropFirst(), field: field)
    }
}

private func flatten(_ value: JSONValue, into data: inout [JSONValue]) {
    if case .array(let elements) = value {
        for element in elements { flatten(element, into: &data) }
    } else {
        data.append(value)
    }
}

/// A float datum: a number, or one of the strings "nan", "inf", "-inf".
func floatDatum<T: FloatScalar>(_ value: JSONValue, _: T.Type, field: String, index: Int) throws(FixtureProblem) -> T {
    let text: String
    switch value {
    case .number(let t): text = t
    case .string(let t): text = t
    default: throw FixtureProblem(field: field + ".data[\(index)]", "expected a number, \"nan\", \"inf\" or \"-inf\", got \(value.kindName)")
    }
    switch text.lowercased() {
    case "nan": return .nan
    case "inf", "+inf", "infinity", "+infinity": return .infinity
    case "-inf", "-infinity": return -.infinity
    default:
        guard case .number = value, let parsed = T(text) else {
            throw FixtureProblem(field: field + ".data[\(index)]", "expected a number, \"nan\", \"inf\" or \"-inf\", got \(describe(value))")
        }
        return parsed
    }
}

/// An int64 datum: a whole number (`3` or `3.0`).
func intDatum(_ value: JSONValue, field: String, index: Int) throws(FixtureProblem) -> Int64 {
    if case .number(let text) = value {
        if let n = Int64(text) { return n }
        if let d = Double(text), d == d.rounded(), abs(d) < 9.2e18 { return Int64(d) }
    }
    throw FixtureProblem(field: field + ".data[\(index)]", "expected a whole number for int64, got \(describe(value))")
}

/// A short rendering of a JSON value for error messages.
func describe(_ value: JSONValue) -> String {
    switch value {
    case .null: "null"
    case .bool(let b): String(b)
    case .number(let t): t
    case .string(let s): "\"\(s.count > 40 ? String(s.prefix(40)) + "..." : s)\""
    case .array(let a): "an array of \(a.count)"
    case .object: "an object"
    }
}
