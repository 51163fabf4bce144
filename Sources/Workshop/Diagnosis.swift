import TensorCore
import Golden

/// What the kit can say about outputs that failed a fixture: the known mistakes
/// that reproduce them, or else where they first differ and what the right value
/// there is made of.
public struct Diagnosis: Sendable {
    /// The catalogued mistakes that reproduce the submitted outputs within the
    /// fixture's tolerance (usually one).
    public var named: [Mistake]
    /// When no mistake is named: the first element that differs.
    public var firstDifference: Difference?

    public init(named: [Mistake], firstDifference: Difference?) {
        self.named = named
        self.firstDifference = firstDifference
    }
}

/// The first element of the submitted outputs that is outside the tolerance.
public struct Difference: Sendable {
    public let output: String
    /// Its index in the output (nil when the shapes differ).
    public let index: [Int]?
    public let expected: Double?
    public let got: Double?
    /// Set when the shapes differ: "expected shape [2, 3], got [2, 4]".
    public let shapeProblem: String?
    /// What the right value at that index is made of, one line per part, where
    /// the stage can say.
    public let madeOf: [String]

    public init(output: String, index: [Int]?, expected: Double?, got: Double?, shapeProblem: String?, madeOf: [String]) {
        self.output = output
        self.index = index
        self.expected = expected
        self.got = got
        self.shapeProblem = shapeProblem
        self.madeOf = madeOf
    }
}

/// Whether `got` matches `want` within `tolerance`: the same shape, every element
/// within `abs + rel·|want|` (a float may stand for an int64 of the same value).
public func matches(_ got: FixtureTensor, _ want: FixtureTensor, tolerance: Tolerance) -> Bool {
    got.shape == want.shape && compare(got: got.doubles, expected: want.doubles, tolerance: tolerance).passed
}

/// The outputs of `submitted` that fail against `right`, in `order`.
func failingOutputs(_ submitted: [String: FixtureTensor], right: [String: FixtureTensor], tolerance: Tolerance,
                    order: [String]) -> [String] {
    order.filter { name in
        guard let got = submitted[name], let want = right[name] else { return false }
        return !matches(got, want, tolerance: tolerance)
    }
}

/// Whether `mistake` reproduces `submitted`: on every output the mistake gives
/// that was also submitted and has a right value, the submitted numbers match
/// the mistake's within `tolerance`, and at least one of those outputs fails the
/// right check. A mistake that gives the right numbers on this fixture (a mask of
/// all ones hides "mean over padding") is never named.
public func reproduces(_ mistake: Mistake, _ fixture: Fixture, submitted: [String: FixtureTensor],
                       right: [String: FixtureTensor], tolerance: Tolerance) -> Bool {
    stageAccepts(fixture) && reproducesOnValidInputs(mistake, fixture, submitted: submitted, right: right, tolerance: tolerance)
}

/// Whether the library's stage runs on the fixture's inputs: only then are the
/// mistakes run on them (they index the inputs as the stage checked them).
func stageAccepts(_ fixture: Fixture) -> Bool {
    (try? runStage(fixture)) != nil
}

func reproducesOnValidInputs(_ mistake: Mistake, _ fixture: Fixture, submitted: [String: FixtureTensor],
                             right: [String: FixtureTensor], tolerance: Tolerance) -> Bool {
    guard let arguments = try? FixtureArguments<Double>(fixture),
          let wrong = try? mistake.wrongOutputs(arguments) else { return false }
    let shared = wrong.keys.filter { submitted[$0] != nil && right[$0] != nil }.sorted()
    guard !shared.isEmpty else { return false }
    for name in shared where !matches(submitted[name]!, wrong[name]!, tolerance: tolerance) {
        return false
    }
    return shared.contains { !matches(submitted[$0]!, right[$0]!, tolerance: tolerance) }
}

/// Diagnoses `submitted` outputs of `fixture` against the `right` ones: runs the
/// stage's catalogue on the fixture's inputs and names every mistake that
/// reproduces the submitted numbers; if none does, finds the first differing
/// element and asks the stage what the right value there is made of.
///
/// `right` is the fixture's `expected` when an attendee's answers are checked,
/// and the library's outputs when a fixture written by the attendee's code is.
public func diagnose(_ fixture: Fixture, submitted: [String: FixtureTensor], right: [String: FixtureTensor],
                     tolerance: Tolerance) -> Diagnosis {
    let accepted = stageAccepts(fixture)
    let named = !accepted ? [] : mistakes(of: fixture.stage).filter {
        reproducesOnValidInputs($0, fixture, submitted: submitted, right: right, tolerance: tolerance)
    }
    if !named.isEmpty { return Diagnosis(named: named, firstDifference: nil) }

    let order = ((try? stageAdapter(named: fixture.stage))?.declaration.outputs ?? []) + right.keys.sorted()
    guard let name = failingOutputs(submitted, right: right, tolerance: tolerance, order: order).first,
          let got = submitted[name], let want = right[name] else {
        return Diagnosis(named: [], firstDifference: nil)
    }
    guard got.shape == want.shape else {
        return Diagnosis(named: [], firstDifference: Difference(
            output: name, index: nil, expected: nil, got: nil,
            shapeProblem: "expected shape \(describe(shape: want.shape)), got \(describe(shape: got.shape))", madeOf: []))
    }
    let comparison = compare(got: got.doubles, expected: want.doubles, tolerance: tolerance)
    guard let failure = comparison.firstFailure else { return Diagnosis(named: [], firstDifference: nil) }
    let index = Tensor<Double>.make(want.shape, want.doubles).index(ofFlat: failure.index)
    var madeOf = [String]()
    if accepted, let entry = mistakeCatalogue.first(where: { $0.stage == fixture.stage }),
       let arguments = try? FixtureArguments<Double>(fixture),
       let parts = try? entry.explain(arguments, name, index) {
        madeOf = parts
    }
    return Diagnosis(named: [], firstDifference: Difference(
        output: name, index: index, expected: failure.expected, got: failure.got, shapeProblem: nil, madeOf: madeOf))
}

/// The diagnosis as terminal lines, indented under a failed row.
public func diagnosisLines(_ diagnosis: Diagnosis, indent: String = "      ") -> [String] {
    var lines = [String]()
    for mistake in diagnosis.named {
        lines.append(indent + "known mistake \(mistake.id): \(mistake.title)")
        lines += wrap(mistake.explanation, width: 100 - indent.count - 4).map { indent + "    " + $0 }
        lines.append(indent + "    read: \(mistake.chapter)/README.md")
    }
    if let d = diagnosis.firstDifference {
        if let problem = d.shapeProblem {
            lines.append(indent + "no known mistake matches; '\(d.output)': \(problem)")
        } else if let index = d.index, let expected = d.expected, let got = d.got {
            lines.append(indent + "no known mistake matches; first difference: \(d.output)\(describe(shape: index)) "
                         + "is \(show(got)), the right value is \(show(expected))")
            if !d.madeOf.isEmpty {
                lines.append(indent + "    the right value is made of:")
                lines += d.madeOf.map { indent + "      " + $0 }
            }
        }
    }
    return lines
}

/// `text` broken into lines of at most `width` characters, at spaces.
public func wrap(_ text: String, width: Int) -> [String] {
    var lines = [String](), line = ""
    for word in text.split(separator: " ") {
        if !line.isEmpty && line.count + 1 + word.count > width {
            lines.append(line)
            line = ""
        }
        line += (line.isEmpty ? "" : " ") + word
    }
    if !line.isEmpty { lines.append(line) }
    return lines
}
