import Foundation

/// A small line-chart writer: a few series over a shared x axis, each panel with
/// its own y axis, written as a standalone SVG file. No dependencies.
///
/// ```
/// var plot = SVGPlot(title: "PPO", xLabel: "step")
/// plot.addPanel(title: "reward", series: [.init(name: "kl_ctl 0.1", values: rewards)])
/// try plot.write(to: "/tmp/ppo.svg")
/// ```
public struct SVGPlot: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var values: [Double]
        public var color: String
        public var dashed: Bool

        public init(name: String, values: [Double], color: String = "#1f77b4", dashed: Bool = false) {
            self.name = name
            self.values = values
            self.color = color
            self.dashed = dashed
        }
    }

    struct Panel: Sendable {
        var title: String
        var series: [Series]
    }

    public var title: String
    public var xLabel: String
    var panels: [Panel] = []

    public init(title: String, xLabel: String) {
        self.title = title
        self.xLabel = xLabel
    }

    /// Adds a panel below the others, with its own y axis.
    public mutating func addPanel(title: String, series: [Series]) {
        panels.append(Panel(title: title, series: series))
    }

    /// The whole document as text. Numbers are printed with fixed decimals, so the
    /// same data always gives the same bytes.
    public func rendered() -> String {
        let width = 720.0, panelHeight = 240.0, top = 40.0, left = 64.0, right = 170.0, gap = 56.0
        let plotWidth = width - left - right
        let height = top + Double(panels.count) * (panelHeight + gap)
        var out = [String]()
        out.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
                   + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">")
        out.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>")
        out.append("<text x=\"\(f(width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escaped(title))</text>")
        for (index, panel) in panels.enumerated() {
            let y0 = top + Double(index) * (panelHeight + gap) + 16, plotHeight = panelHeight - 24
            let all = panel.series.flatMap(\.values).filter(\.isFinite)
            let (low, high, step) = niceAxis(all.min() ?? 0, all.max() ?? 1)
            let count = max(panel.series.map(\.values.count).max() ?? 1, 2)
            func x(_ i: Int) -> Double { left + plotWidth * Double(i) / Double(count - 1) }
            func y(_ v: Double) -> Double { y0 + plotHeight * (1 - (v - low) / (high - low)) }

            out.append("<text x=\"\(f(left))\" y=\"\(f(y0 - 6))\" font-size=\"13\">\(escaped(panel.title))</text>")
            out.append("<rect x=\"\(f(left))\" y=\"\(f(y0))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" "
                       + "fill=\"none\" stroke=\"#999\"/>")
            let decimals = max(0, -Int((log10(step)).rounded(.down)))
            for tick in 0...Int(((high - low) / step).rounded()) {
                let value = low + step * Double(tick)
                out.append("<line x1=\"\(f(left))\" y1=\"\(f(y(value)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(value)))\" "
                           + "stroke=\"#eee\"/>")
                out.append("<text x=\"\(f(left - 6))\" y=\"\(f(y(value) + 4))\" text-anchor=\"end\">"
                           + "\(String(format: "%.\(decimals)f", value))</text>")
            }
            for tick in 0...4 {
                let i = (count - 1) * tick / 4
                out.append("<text x=\"\(f(x(i)))\" y=\"\(f(y0 + plotHeight + 16))\" text-anchor=\"middle\">\(i + 1)</text>")
            }
            out.append("<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(y0 + plotHeight + 32))\" text-anchor=\"middle\">"
                       + "\(escaped(xLabel))</text>")
            for (seriesIndex, series) in panel.series.enumerated() {
                let points = series.values.enumerated().filter { $0.element.isFinite }
                    .map { "\(f(x($0.offset))),\(f(y($0.element)))" }.joined(separator: " ")
                let dash = series.dashed ? " stroke-dasharray=\"6,4\"" : ""
                out.append("<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"2\"\(dash)/>")
                let legendY = y0 + 14 + Double(seriesIndex) * 18
                out.append("<line x1=\"\(f(left + plotWidth + 12))\" y1=\"\(f(legendY - 4))\" x2=\"\(f(left + plotWidth + 36))\" "
                           + "y2=\"\(f(legendY - 4))\" stroke=\"\(series.color)\" stroke-width=\"2\"\(dash)/>")
                out.append("<text x=\"\(f(left + plotWidth + 42))\" y=\"\(f(legendY))\">\(escaped(series.name))</text>")
            }
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// Writes the document to `path`, creating nothing but the file.
    public func write(to path: String) throws {
        try rendered().write(toFile: path, atomically: true, encoding: .utf8)
    }

    private func f(_ x: Double) -> String { String(format: "%.1f", x) }

    /// An axis from `low` to `high` on round numbers: a step of 1, 2 or 5 times a
    /// power of ten, giving 3 to 7 ticks, the ends rounded outwards to a step.
    private func niceAxis(_ low: Double, _ high: Double) -> (low: Double, high: Double, step: Double) {
        let span = high - low > 1e-12 ? high - low : max(abs(high), 1)
        let rough = span / 5
        let power = pow(10, (log10(rough)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= rough } ?? 10 * power
        let axisLow = (low / step).rounded(.down) * step
        var axisHigh = (high / step).rounded(.up) * step
        if axisHigh <= axisLow { axisHigh = axisLow + step }
        return (axisLow, axisHigh, step)
    }

    private func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
