import TensorCore

/// The sizes of a tiny causal language model.
///
/// Legend: V vocabulary, C width (embedding size), H hidden size of the MLP,
/// `contextLength` the most positions a sequence may have (rows of the position
/// embedding).
public struct TinyLMConfig: Sendable, Equatable {
    public var vocabularySize: Int
    public var contextLength: Int
    public var width: Int
    public var hidden: Int

    public init(vocabularySize: Int, contextLength: Int, width: Int, hidden: Int) {
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        self.width = width
        self.hidden = hidden
    }
}

/// The named weight tensors of ``TinyLM``, in storage order, with the names the
/// golden fixtures use (`tiny_lm` stage: input `<name>`, output `grad_<name>`).
public enum TinyLMWeight: String, CaseIterable, Sendable {
    case tokenEmbedding = "token_embedding"          // [V, C]
    case positionEmbedding = "position_embedding"    // [contextLength, C]
    case attentionQuery = "attention_query"          // [C, C]
    case attentionKey = "attention_key"              // [C, C]
    case attentionValue = "attention_value"          // [C, C]
    case attentionOutput = "attention_output"        // [C, C]
    case mlpIn = "mlp_in"                            // [C, H]
    case mlpInBias = "mlp_in_bias"                   // [H]
    case mlpOut = "mlp_out"                          // [H, C]
    case mlpOutBias = "mlp_out_bias"                 // [C]
    case lmHead = "lm_head"                          // [C, V]
    case lmHeadBias = "lm_head_bias"                 // [V]
    case valueHead = "value_head"                    // [C]

    /// The tensor's shape under `config`.
    public func shape(_ config: TinyLMConfig) -> [Int] {
        let V = config.vocabularySize, C = config.width, H = config.hidden
        switch self {
        case .tokenEmbedding: return [V, C]
        case .positionEmbedding: return [config.contextLength, C]
        case .attentionQuery, .attentionKey, .attentionValue, .attentionOutput: return [C, C]
        case .mlpIn: return [C, H]
        case .mlpInBias: return [H]
        case .mlpOut: return [H, C]
        case .mlpOutBias: return [C]
        case .lmHead: return [C, V]
        case .lmHeadBias: return [V]
        case .valueHead: return [C]
        }
    }
}

/// Every weight of a ``TinyLM`` in one flat array, tensor after tensor in
/// ``TinyLMWeight`` order; gradients and Adam's moments use the same layout.
///
/// One flat array makes the optimizer a single loop and copying a model (the
/// frozen reference, the critic from the reward model) a single assignment.
public struct TinyLMParameters: Sendable, Equatable {
    public let config: TinyLMConfig
    /// All weights, flat, in ``TinyLMWeight`` order, each tensor row-major.
    public var storage: [Double]

    /// Where each tensor starts in `storage`.
    public static func offsets(_ config: TinyLMConfig) -> [TinyLMWeight: Int] {
        var offsets = [TinyLMWeight: Int]()
        var next = 0
        for weight in TinyLMWeight.allCases {
            offsets[weight] = next
            next += weight.shape(config).reduce(1, *)
        }
        return offsets
    }

    /// The number of scalars all tensors hold together.
    public static func count(_ config: TinyLMConfig) -> Int {
        TinyLMWeight.allCases.reduce(0) { $0 + $1.shape(config).reduce(1, *) }
    }

    /// All zeros: the layout of a gradient.
    public init(zerosFor config: TinyLMConfig) {
        self.config = config
        self.storage = [Double](repeating: 0, count: Self.count(config))
    }

    /// A fresh model: each matrix drawn from N(0, 1/fan_in) (embeddings from
    /// N(0, 1/C)), biases 0, the value head 0.
    ///
    /// Scaling by 1/fan_in keeps every activation near unit size, so tanh starts
    /// in its linear part and softmax starts near uniform.
    public init(randomFor config: TinyLMConfig, rng: inout SplitMix64) {
        self.init(zerosFor: config)
        let offsets = Self.offsets(config)
        for weight in TinyLMWeight.allCases {
            let shape = weight.shape(config)
            let scale: Double
            switch weight {
            case .mlpInBias, .mlpOutBias, .lmHeadBias, .valueHead: continue
            case .tokenEmbedding, .positionEmbedding: scale = (1 / Double(config.width)).squareRoot()
            default: scale = (1 / Double(shape[0])).squareRoot()
            }
            let start = offsets[weight]!
            for i in 0..<shape.reduce(1, *) {
                storage[start + i] = scale * rng.normal()
            }
        }
    }

    /// Builds a model from named tensors (a fixture's inputs), checking each shape.
    ///
    /// - Throws: ``StageError`` for a missing tensor or a shape that does not fit
    ///   the others (the config is read off `token_embedding`, `position_embedding`
    ///   and `mlp_in`).
    public init(named tensors: [String: Tensor<Double>], stage: String = "tiny_lm") throws(StageError) {
        let check = InputCheck(stage: stage)
        func tensor(_ weight: TinyLMWeight) throws(StageError) -> Tensor<Double> {
            guard let t = tensors[weight.rawValue] else {
                throw StageError(.shapeMismatch, stage: stage, argument: weight.rawValue, "missing weight tensor")
            }
            return t
        }
        let embedding = try tensor(.tokenEmbedding), position = try tensor(.positionEmbedding), mlpIn = try tensor(.mlpIn)
        try check.rank(embedding, TinyLMWeight.tokenEmbedding.rawValue, is: 2, legend: "[V, C]")
        try check.rank(position, TinyLMWeight.positionEmbedding.rawValue, is: 2, legend: "[contextLength, C]")
        try check.rank(mlpIn, TinyLMWeight.mlpIn.rawValue, is: 2, legend: "[C, H]")
        let config = TinyLMConfig(vocabularySize: embedding.shape[0], contextLength: position.shape[0],
                                  width: embedding.shape[1], hidden: mlpIn.shape[1])
        self.init(zerosFor: config)
        let offsets = Self.offsets(config)
        for weight in TinyLMWeight.allCases {
            let t = try tensor(weight)
            try check.shape(t, weight.rawValue, equals: weight.shape(config),
                            sameAs: "V = \(config.vocabularySize), C = \(config.width), H = \(config.hidden), context \(config.contextLength)")
            try check.noNaN(t, weight.rawValue)
            storage.replaceSubrange(offsets[weight]!..<(offsets[weight]! + t.count), with: t.scalars)
        }
    }

    /// One tensor, shaped, e.g. to print it or to write a fixture.
    public func tensor(_ weight: TinyLMWeight) -> Tensor<Double> {
        let start = Self.offsets(config)[weight]!
        let shape = weight.shape(config)
        return Tensor.make(shape, Array(storage[start..<(start + shape.reduce(1, *))]))
    }

    /// A 64-bit FNV-1a hash of every weight's bits, in hex: two runs gave the
    /// same model exactly when their fingerprints agree.
    public var fingerprint: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in storage {
            var bits = x.bitPattern
            for _ in 0..<8 {
                hash = (hash ^ (bits & 0xff)) &* 0x0000_0100_0000_01b3
                bits >>= 8
            }
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The Euclidean norm of all scalars, for a progress line.
    public var norm: Double {
        storage.reduce(0) { $0 + $1 * $1 }.squareRoot()
    }
}
