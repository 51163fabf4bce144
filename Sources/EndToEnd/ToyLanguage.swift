import TensorCore
import SFTLoss

/// How a toy movie review feels; preferences rank positive over mixed over negative.
public enum Sentiment: Int, CaseIterable, Sendable, Comparable {
    case negative = 0, mixed = 1, positive = 2

    public static func < (a: Sentiment, b: Sentiment) -> Bool { a.rawValue < b.rawValue }
}

/// A toy movie-review language: a few dozen real words, prompts like "the plot
/// was", answers like "really brilliant and fun <eos>".
///
/// ```
/// prompt  = "the" SUBJECT ("was" | "is")                         3 tokens
/// answer  = [INTENSIFIER] WORD [("and" | "but") WORD] "<eos>"     2 to 5 tokens
/// positive: only positive words      ("very superb and fun")
/// negative: only negative words      ("dull and weak")
/// mixed:    one of each, with "but"  ("great but boring")
/// ```
///
/// Every prompt has the same length, so no prompt is left-padded; answers are
/// right-padded with `<pad>` to 5 tokens, so every sequence is L = 8 tokens and
/// N = 7 log-prob positions, with `start = prompt_length - 1 = 2`.
public enum ToyLanguage {
    public static let words: [String] = [
        "<pad>", "<eos>",
        "the", "movie", "film", "plot", "acting", "story", "was", "is",
        "great", "wonderful", "brilliant", "superb", "moving", "fun",
        "awful", "boring", "dull", "terrible", "weak", "bad",
        "very", "really", "so", "truly", "and", "but",
    ]
    public static let padId: Int64 = 0
    public static let endOfSequence: Int64 = 1
    public static let promptLength = 3
    public static let maxAnswerTokens = 5
    /// prompt + answer: every sequence of the pipeline has this length.
    public static let sequenceLength = promptLength + maxAnswerTokens

    static let subjects: [Int64] = [3, 4, 5, 6, 7]
    static let verbs: [Int64] = [8, 9]
    public static let positiveWords: [Int64] = Array(10...15)
    public static let negativeWords: [Int64] = Array(16...21)
    static let intensifiers: [Int64] = [22, 23, 24, 25]
    static let and: Int64 = 26, but: Int64 = 27

    /// The vocabulary size V.
    public static var vocabularySize: Int { words.count }

    /// Every prompt of the language, in a fixed order (10 of them).
    public static let prompts: [[Int64]] = subjects.flatMap { subject in verbs.map { [2, subject, $0] } }

    /// Token ids as text, pads dropped: "the plot was | really fun <eos>" when
    /// `answerFrom` marks where the answer begins.
    public static func text(_ ids: some Collection<Int64>, answerFrom: Int? = nil) -> String {
        var pieces = [String]()
        for (index, id) in ids.enumerated() where id != padId {
            if index == answerFrom { pieces.append("|") }
            pieces.append(id >= 0 && Int(id) < words.count ? words[Int(id)] : "?\(id)")
        }
        return pieces.joined(separator: " ")
    }

    /// A random answer of the given sentiment, without the end token.
    public static func answer(_ sentiment: Sentiment, rng: inout SplitMix64) -> [Int64] {
        func pick(_ list: [Int64]) -> Int64 { list[Int(rng.next() % UInt64(list.count))] }
        var tokens = [Int64]()
        if rng.next() % 2 == 0 { tokens.append(pick(intensifiers)) }
        switch sentiment {
        case .positive, .negative:
            let pool = sentiment == .positive ? positiveWords : negativeWords
            tokens.append(pick(pool))
            if rng.next() % 2 == 0 {
                tokens.append(and)
                tokens.append(pick(pool))
            }
        case .mixed:
            let positiveFirst = rng.next() % 2 == 0
            tokens.append(pick(positiveFirst ? positiveWords : negativeWords))
            tokens.append(but)
            tokens.append(pick(positiveFirst ? negativeWords : positiveWords))
        }
        return tokens
    }

    /// A random prompt.
    public static func prompt(rng: inout SplitMix64) -> [Int64] {
        prompts[Int(rng.next() % UInt64(prompts.count))]
    }

    /// prompt + answer + `<eos>`, right-padded to `sequenceLength` (and cut there),
    /// through the library's DeepSpeed-Chat data preparation (`tokenizedSequence`).
    ///
    /// - Throws: ``StageError`` for a negative id, as `tokenizedSequence` does.
    public static func sequence(prompt: [Int64], answer: [Int64]) throws(StageError) -> TokenizedSequence {
        try tokenizedSequence(promptIds: prompt, answerIds: answer, endOfConversationIds: [endOfSequence],
                              maxSeqLen: sequenceLength, padId: padId)
    }
}

/// The data every phase trains and is judged on, drawn from one seed.
public struct ToyData: Sendable {
    /// SFT demonstrations: a third each positive, mixed and negative.
    public var demonstrations: [TokenizedSequence]
    /// Preference pairs for the reward model and DPO: same prompt, the answer of
    /// higher sentiment chosen.
    public var trainingPairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)]
    /// Pairs drawn separately, for held-out accuracy.
    public var heldOutPairs: [(chosen: TokenizedSequence, rejected: TokenizedSequence)]

    /// The chapter's data: 600 demonstrations, 400 training pairs, 200 held out.
    public init(seed: UInt64) {
        do {
            try self.init(seed: seed, demonstrations: 600, trainingPairs: 400, heldOutPairs: 200)
        } catch {
            preconditionFailure("internal: the default counts are in range: \(error)")
        }
    }

    /// Data of the given sizes, drawn from `seed`.
    ///
    /// - Throws: ``StageError`` (stage `toy_data`) for a count that is negative,
    ///   or whose sequences would pass ``TensorLimits`` (`count · L` tokens), before
    ///   anything is drawn.
    public init(seed: UInt64, demonstrations demonstrationCount: Int, trainingPairs trainingCount: Int,
                heldOutPairs heldOutCount: Int) throws(StageError) {
        let check = InputCheck(stage: "toy_data")
        for (name, count) in [("demonstrations", demonstrationCount), ("training_pairs", trainingCount),
                              ("held_out_pairs", heldOutCount)] {
            guard count >= 0 else {
                throw StageError(.parameterOutOfRange, stage: check.stage, argument: name, "\(name) = \(count) must be at least 0")
            }
            guard TensorLimits.elementCount([count, 2 * ToyLanguage.sequenceLength]) != nil else {
                throw StageError(.tooLarge, stage: check.stage, argument: name,
                                 "\(count) rows of \(ToyLanguage.sequenceLength) tokens (twice that for pairs) are beyond the limit of 2^31")
            }
        }
        var rng = SplitMix64(seed: seed)
        /// The language's own ids are never negative, so `sequence` cannot throw here.
        func sequence(_ prompt: [Int64], _ answer: [Int64]) -> TokenizedSequence {
            do {
                return try ToyLanguage.sequence(prompt: prompt, answer: answer)
            } catch {
                preconditionFailure("internal: the toy language's ids are >= 0: \(error)")
            }
        }
        demonstrations = (0..<demonstrationCount).map { index in
            let sentiment = Sentiment.allCases[index % 3]
            return sequence(ToyLanguage.prompt(rng: &rng), ToyLanguage.answer(sentiment, rng: &rng))
        }
        func pairs(_ count: Int) -> [(chosen: TokenizedSequence, rejected: TokenizedSequence)] {
            (0..<count).map { _ in
                let prompt = ToyLanguage.prompt(rng: &rng)
                // Two different sentiments; the better one is chosen.
                let first = Sentiment.allCases[Int(rng.next() % 3)]
                let second = Sentiment.allCases.filter { $0 != first }[Int(rng.next() % 2)]
                let better = max(first, second), worse = min(first, second)
                return (sequence(prompt, ToyLanguage.answer(better, rng: &rng)),
                        sequence(prompt, ToyLanguage.answer(worse, rng: &rng)))
            }
        }
        trainingPairs = pairs(trainingCount)
        heldOutPairs = pairs(heldOutCount)
    }
}
