/// An aligned text table that fits a terminal of `Table.maximumWidth` columns.
///
/// Long axes are elided in the middle: past `maximumRows` rows, the middle rows
/// become one `⋮` row; columns that would not fit become one `…` column.
///
/// ```
/// var table = Table(["t", "r_t", "V_t"])
/// table.add(["1", "-0.0100", "0.5000"])
/// print(table.rendered())
/// ```
public struct Table: Sendable {
    /// The widest a chapter's line may be.
    public static let maximumWidth = 100

    public var headers: [String]
    public var rows: [[String]] = []
    /// Columns aligned left (labels); all others align right (numbers).
    public var leftAligned: Set<Int>

    public init(_ headers: [String], leftAligned: Set<Int> = [0]) {
        self.headers = headers
        self.leftAligned = leftAligned
    }

    /// Adds a row. Precondition (a trap): one cell per header; the chapters build
    /// their rows from the same column lists as their headers.
    public mutating func add(_ cells: [String]) {
        precondition(cells.count == headers.count, "a row of \(cells.count) cells in a table of \(headers.count) columns")
        rows.append(cells)
    }

    /// The table as lines of text, indented by `indent` spaces.
    public func rendered(indent: Int = 2, maximumRows: Int = 14) -> String {
        // Rows: keep the first and last few, one marker row between.
        var shownRows = rows
        var elidedRowIndex: Int?
        if rows.count > maximumRows {
            let head = (maximumRows - 1) / 2, tail = maximumRows - 1 - head
            elidedRowIndex = head
            shownRows = Array(rows[..<head]) + [headers.map { _ in "⋮" }] + Array(rows[(rows.count - tail)...])
        }
        // Columns: drop middle columns until the table fits, one marker column between.
        var columns = Array(headers.indices)
        func width(of column: Int) -> Int {
            max(headers[column].count, shownRows.map { $0[column].count }.max() ?? 0)
        }
        func totalWidth(_ kept: [Int], marker: Bool) -> Int {
            indent + kept.map(width).reduce(0, +) + 2 * (kept.count - 1) + (marker ? 3 : 0)
        }
        var markerAfter: Int?
        if totalWidth(columns, marker: false) > Table.maximumWidth {
            var left = [columns[0]], right = [Int]()
            var remaining = Array(columns.dropFirst())
            var takeRight = true
            while let next = takeRight ? remaining.last : remaining.first {
                let candidate = takeRight ? left + [next] + right : left + [next] + right
                if totalWidth(candidate.sorted(), marker: true) > Table.maximumWidth { break }
                if takeRight { right.insert(next, at: 0); remaining.removeLast() } else { left.append(next); remaining.removeFirst() }
                takeRight.toggle()
            }
            columns = left + right
            markerAfter = left.count - 1
        }
        var lines = [String]()
        func line(_ cells: [String], isMarkerRow: Bool) -> String {
            var parts = [String]()
            for (position, column) in columns.enumerated() {
                let rightAligned = !leftAligned.contains(column)
                parts.append(padded(cells[column], width(of: column), rightAligned: rightAligned && !isMarkerRow))
                if position == markerAfter { parts.append("…") }
            }
            let text = String(repeating: " ", count: indent) + parts.joined(separator: "  ")
            return String(text.reversed().drop(while: { $0 == " " }).reversed())
        }
        lines.append(line(headers, isMarkerRow: false))
        lines.append(String(repeating: " ", count: indent)
                     + String(repeating: "-", count: totalWidth(columns, marker: markerAfter != nil) - indent))
        for (index, row) in shownRows.enumerated() {
            lines.append(line(row, isMarkerRow: index == elidedRowIndex))
        }
        return lines.joined(separator: "\n")
    }
}
