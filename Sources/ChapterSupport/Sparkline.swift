/// A series as one line of block characters, lowest value `▁`, highest `█`.
///
/// ```
/// sparkline([0, 1, 2, 3, 4, 5, 6, 7])   // "▁▂▃▄▅▆▇█"
/// ```
///
/// `range` fixes the scale (to draw two series on the same one); by default it
/// runs from the series' own minimum to its maximum. A flat series draws `▄`.
/// Longer series than `width` are averaged in equal buckets first.
public func sparkline(_ values: [Double], width: Int = 60, range: ClosedRange<Double>? = nil) -> String {
    let levels = Array("▁▂▃▄▅▆▇█")
    guard !values.isEmpty else { return "" }
    var series = values
    if values.count > width {
        series = (0..<width).map { bucket in
            let from = bucket * values.count / width, to = (bucket + 1) * values.count / width
            return values[from..<to].reduce(0, +) / Double(to - from)
        }
    }
    let low = range?.lowerBound ?? series.min()!, high = range?.upperBound ?? series.max()!
    guard high > low else { return String(repeating: "▄", count: series.count) }
    return String(series.map { value in
        let level = Int(((value - low) / (high - low) * Double(levels.count - 1)).rounded())
        return levels[min(max(level, 0), levels.count - 1)]
    })
}
