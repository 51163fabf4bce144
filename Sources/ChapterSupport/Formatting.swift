import Foundation

/// A number with `digits` decimals, as a chapter prints it: `-0.0100`, `inf`, `nan`.
/// Negative zero prints as zero, so a table never shows `-0.0000`.
public func fmt(_ x: Double, _ digits: Int = 4) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    let text = String(format: "%.\(digits)f", x)
    if text.hasPrefix("-"), Double(text) == 0 { return String(text.dropFirst()) }
    return text
}

/// A number in scientific notation with `digits` decimals: `1.2346e+04`.
public func sci(_ x: Double, _ digits: Int = 4) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    return String(format: "%.\(digits)e", x)
}

/// A list of numbers in brackets: `[0.3397, 0.4734]`.
public func list(_ values: [Double], _ digits: Int = 4) -> String {
    "[" + values.map { fmt($0, digits) }.joined(separator: ", ") + "]"
}

/// A list of whole numbers in brackets: `[1, 1, 0]`.
public func list<I: BinaryInteger>(_ values: [I]) -> String {
    "[" + values.map { String($0) }.joined(separator: ", ") + "]"
}

/// Pads `text` on the left (right-aligned) or right (left-aligned, the default) to `width`.
public func padded(_ text: String, _ width: Int, rightAligned: Bool = false) -> String {
    let gap = max(0, width - text.count)
    return rightAligned ? String(repeating: " ", count: gap) + text : text + String(repeating: " ", count: gap)
}

/// The mean of a few numbers (a chapter's summary line, not a stage's mean).
public func mean(_ values: some Collection<Double>) -> Double {
    values.reduce(0, +) / Double(values.count)
}
