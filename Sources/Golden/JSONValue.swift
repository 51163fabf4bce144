/// A parsed JSON document, small and strict enough for fixture files.
///
/// Numbers keep their text, so a float32 datum is read straight into `Float`
/// (one rounding) rather than through `Double` (two). The reader also accepts
/// the bare tokens `NaN`, `Infinity` and `-Infinity` that Python's `json.dumps`
/// writes by default, so a workshop attendee's dump loads as it is.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's text, as written in the file.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// A short name of the kind, for error messages.
    /// Whether it is a JSON array.
    public var isArray: Bool {
        if case .array = self { return true }
        return false
    }

    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// Why a file is not JSON, with the line and column.
public struct JSONParseError: Error, CustomStringConvertible, Sendable {
    public let line: Int
    public let column: Int
    public let reason: String
    public var description: String { "not JSON at line \(line), column \(column): \(reason)" }
}

/// Parses a JSON document (UTF-8 text).
public func parseJSON(_ text: String) throws(JSONParseError) -> JSONValue {
    var reader = JSONReader(bytes: Array(text.utf8))
    reader.skipWhitespace()
    let value = try reader.readValue(depth: 0)
    reader.skipWhitespace()
    guard reader.position == reader.bytes.count else {
        throw reader.error("unexpected text after the document")
    }
    return value
}

private struct JSONReader {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    func error(_ reason: String) -> JSONParseError {
        var line = 1, column = 1
        for byte in bytes[..<min(position, bytes.count)] {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
        }
        return JSONParseError(line: line, column: column, reason: reason)
    }

    mutating func skipWhitespace() {
        while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) {
            position += 1
        }
    }

    func startsWith(_ word: String) -> Bool {
        let wordBytes = Array(word.utf8)
        return bytes.count - position >= wordBytes.count && Array(bytes[position..<(position + wordBytes.count)]) == wordBytes
    }

    mutating func readValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < 64 else { throw error("nested deeper than 64 levels") }
        guard position < bytes.count else { throw error("unexpected end of file") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try readObject(depth: depth)
        case UInt8(ascii: "["): return try readArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try readString())
        case UInt8(ascii: "t") where startsWith("true"): position += 4; return .bool(true)
        case UInt8(ascii: "f") where startsWith("false"): position += 5; return .bool(false)
        case UInt8(ascii: "n") where startsWith("null"): position += 4; return .null
        case UInt8(ascii: "N") where startsWith("NaN"): position += 3; return .number("nan")
        case UInt8(ascii: "I") where startsWith("Infinity"): position += 8; return .number("inf")
        case UInt8(ascii: "-") where startsWith("-Infinity"): position += 9; return .number("-inf")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try readNumber())
        default: throw error("unexpected character '\(Character(Unicode.Scalar(bytes[position])))'")
        }
    }

    mutating func readObject(depth: Int) throws(JSONParseError) -> JSONValue {
        position += 1
        var members = [String: JSONValue]()
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("expected a key in quotes") }
            let key = try readString()
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':' after key \"\(key)\"") }
            position += 1
            skipWhitespace()
            members[key] = try readValue(depth: depth + 1)
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of file in an object") }
            if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
            if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(members) }
            throw error("expected ',' or '}' in an object")
        }
    }

    mutating func readArray(depth: Int) throws(JSONParseError) -> JSONValue {
        position += 1
        var elements = [JSONValue]()
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") { position += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try readValue(depth: depth + 1))
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of file in an array") }
            if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
            if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(elements) }
            throw error("expected ',' or ']' in an array")
        }
    }

    mutating func readNumber() throws(JSONParseError) -> String {
        let begin = position
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        let allowed = Set("0123456789.eE+-".utf8)
        while position < bytes.count, allowed.contains(bytes[position]) { position += 1 }
        let text = String(decoding: bytes[begin..<position], as: UTF8.self)
        guard Double(text) != nil else { throw error("malformed number '\(text)'") }
        return text
    }

    mutating func readString() throws(JSONParseError) -> String {
        position += 1
        var scalars = [UInt8]()
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: scalars, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard position < bytes.count else { throw error("unexpected end of file in a string") }
                let escaped = bytes[position]
                position += 1
                switch escaped {
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "u"):
                    guard position + 4 <= bytes.count,
                          let code = UInt32(String(decoding: bytes[position..<(position + 4)], as: UTF8.self), radix: 16)
                    else { throw error("malformed \\u escape") }
                    position += 4
                    var scalar = Unicode.Scalar(code)
                    // A surrogate pair: \uD83D\uDE00.
                    if (0xD800..<0xDC00).contains(code), position + 6 <= bytes.count, bytes[position] == UInt8(ascii: "\\"),
                       let low = UInt32(String(decoding: bytes[(position + 2)..<(position + 6)], as: UTF8.self), radix: 16),
                       (0xDC00..<0xE000).contains(low) {
                        scalar = Unicode.Scalar(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
                        position += 6
                    }
                    scalars.append(contentsOf: Array(String(Character(scalar ?? "\u{FFFD}")).utf8))
                default: scalars.append(escaped)
                }
            default:
                scalars.append(byte)
            }
        }
        throw error("unexpected end of file in a string")
    }
}
