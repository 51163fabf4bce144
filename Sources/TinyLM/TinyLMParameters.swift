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

    /// The number of weights a model of this config holds, after checking that it
    /// can be built: every size at least 1, and each weight tensor and all of them
    /// together within ``TensorLimits/maximumElements``, counted without overflow.
    ///
    /// ```
    /// count = V·C + context·C + 4·C² + C·H + H + H·C + C + C·V + V + C
    /// ```
    ///
    /// Every initializer of ``TinyLMParameters`` calls it before it allocates, so a
    /// config of absurd sizes is refused instead of asking for terabytes.
    ///
    /// - Throws: ``StageError`` `.parameterOutOfRange` naming the size below 1
    ///   (`vocabularySize`, `contextLength`, `width`, `hidden`), or `.tooLarge`
    ///   naming the first weight tensor at which the count passes the limit.
    public func checkedWeightCount(stage: String) throws(StageError) -> Int {
        for (name, size) in [("vocabularySize", vocabularySize), ("contextLength", contextLength),
                             ("width", width), ("hidden", hidden)] where size < 1 {
            throw StageError(.parameterOutOfRange, stage: stage, argument: name,
                             "\(name) = \(size) must be at least 1")
        }
        var total = 0
        for weight in TinyLMWeight.allCases {
            let shape = weight.shape(self)
            // Both terms are at most 2^31, so the sum cannot overflow.
            guard let count = TensorLimits.elementCount(shape), total + count <= TensorLimits.maximumElements else {
                throw StageError(.tooLarge, stage: stage, argument: weight.rawValue,
                                 "\(weight.rawValue) \(describe(shape: shape)) takes the model past the limit of 2^31 weights "
                                 + "(V = \(vocabularySize), C = \(width), H = \(hidden), context \(contextLength))")
            }
            total += count
        }
        return total
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
///
/// Every initializer checks the config first (``TinyLMConfig/checkedWeightCount(stage:)``),
/// so `config` always describes a model that fits ``TensorLimits``.
public struct TinyLMParameters: Sendable, Equatable {
    public let config: TinyLMConfig
    /// All weights, flat, in ``TinyLMWeight`` order, each tensor row-major.
    ///
    /// Settable, so a caller may replace it; ``TinyLM/forward(_:)``, ``TinyLM/backward(_:gradLogits:gradValues:)``
    /// and ``Adam`` check that it still holds `count(config)` weights before using it.
    public var storage: [Double]

    /// Where each tensor starts in `storage`.
    ///
    /// Precondition (a trap): `config` passes ``TinyLMConfig/checkedWeightCount(stage:)``,
    /// else a size can overflow. A `TinyLMParameters`' own config always does
    /// (every initializer checks it), and the package, `golden-verify` and the
    /// chapters call this only with such a config.
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
    ///
    /// Precondition (a trap): as for ``offsets(_:)``; for a config from outside,
    /// use the throwing ``TinyLMConfig/checkedWeightCount(stage:)``. Chapter 10
    /// calls it with its fixed config, which no flag changes.
    public static func count(_ config: TinyLMConfig) -> Int {
        TinyLMWeight.allCases.reduce(0) { $0 + $1.shape(config).reduce(1, *) }
    }

    /// All zeros: the layout of a gradient.
    ///
    /// - Throws: ``StageError`` for a config that cannot be built (see
    ///   ``TinyLMConfig/checkedWeightCount(stage:)``), before anything is allocated.
    public init(zerosFor config: TinyLMConfig) throws(StageError) {
        let count = try config.checkedWeightCount(stage: "tiny_lm")
        self.config = config
        self.storage = [Double](repeating: 0, count: count)
    }

    /// A fresh model: each matrix drawn from N(0, 1/fan_in) (embeddings from
    /// N(0, 1/C)), biases 0, the value head 0.
    ///
    /// Scaling by 1/fan_in keeps every activation near unit size, so tanh starts
    /// in its linear part and softmax starts near uniform.
    ///
    /// - Throws: ``StageError`` for a config that cannot be built (see
    ///   ``TinyLMConfig/checkedWeightCount(stage:)``), before anything is allocated.
    public init(randomFor config: TinyLMConfig, rng: inout SplitMix64) throws(StageError) {
        try self.init(zerosFor: config)
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

    /// Builds a model from named tensors (a fixture's inputs), checking every
    /// tensor before it allocates anything.
    ///
    /// The config is read off `token_embedding` [V, C], `position_embedding`
    /// [context, C] and `mlp_in` [C, H]; then every tensor must be present, of its
    /// shape under that config, and free of NaN, and the model within
    /// ``TensorLimits``. Infinite weights are taken as they are: the forward and
    /// backward passes throw `.nonFiniteResult` where they turn into NaN.
    ///
    /// - Throws: ``StageError`` for a missing tensor, a size of 0 in the three
    ///   tensors the config comes from, a shape that does not fit the others, a
    ///   NaN, or a model beyond 2^31 weights.
    public init(named tensors: [String: Tensor<Double>], stage: String = "tiny_lm") throws(StageError) {
        let check = InputCheck(stage: stage)
        func tensor(_ weight: TinyLMWeight) throws(StageError) -> Tensor<Double> {
            guard let t = tensors[weight.rawValue] else {
                throw StageError(.shapeMismatch, stage: stage, argument: weight.rawValue, "missing weight tensor")
            }
            return t
        }
        let embedding = try tensor(.tokenEmbedding), position = try tensor(.positionEmbedding), mlpIn = try tensor(.mlpIn)
        for (t, weight, legend) in [(embedding, TinyLMWeight.tokenEmbedding, "[V, C]"),
                                    (position, .positionEmbedding, "[contextLength, C]"), (mlpIn, .mlpIn, "[C, H]")] {
            try check.rank(t, weight.rawValue, is: 2, legend: legend)
            guard t.shape.allSatisfy({ $0 >= 1 }) else {
                throw StageError(.shapeMismatch, stage: stage, argument: weight.rawValue,
                                 "expected \(legend) with every size at least 1, got \(describe(shape: t.shape))")
            }
        }
        let config = TinyLMConfig(vocabularySize: embedding.shape[0], contextLength: position.shape[0],
                                  width: embedding.shape[1], hidden: mlpIn.shape[1])
        for weight in TinyLMWeight.allCases {
            try check.shape(try tensor(weight), weight.rawValue, equals: weight.shape(config),
                            sameAs: "V = \(config.vocabularySize), C = \(config.width), H = \(config.hidden), context \(config.contextLength)")
        }
        let count = try config.checkedWeightCount(stage: stage)
        for weight in TinyLMWeight.allCases {
            try check.noNaN(try tensor(weight), weight.rawValue)
        }
        self.config = config
        var storage = [Double]()
        storage.reserveCapacity(count)
        for weight in TinyLMWeight.allCases {
            storage += try tensor(weight).scalars
        }
        self.storage = storage
    }

    /// The weight tensor that flat index `flat` of `storage` falls in, and the
    /// index within it (for an error message).
    func locate(_ flat: Int) -> (weight: TinyLMWeight, index: [Int]) {
        var start = 0
        for weight in TinyLMWeight.allCases {
            let shape = weight.shape(config), size = shape.reduce(1, *)
            if flat < start + size {
                let offset = flat - start  // shapes are [n] or [rows, columns]
                return (weight, shape.count == 2 ? [offset / shape[1], offset % shape[1]] : [offset])
            }
            start += size
        }
        return (.valueHead, [flat])  // past the end: not reached for an index of `storage`
    }

    /// Throws unless `storage` holds exactly the weights of `config`, none NaN:
    /// what every pass over the weights checks first.
    ///
    /// - Throws: ``StageError`` `.shapeMismatch` naming `argument` for a storage of
    ///   another length, `.notANumber` naming the weight tensor that holds a NaN.
    public func checkWeights(_ check: InputCheck, _ argument: String = "parameters") throws(StageError) {
        let expected = Self.count(config)
        guard storage.count == expected else {
            throw StageError(.shapeMismatch, stage: check.stage, argument: argument,
                             "storage holds \(storage.count) weights, the config (V = \(config.vocabularySize), "
                             + "C = \(config.width), H = \(config.hidden), context \(config.contextLength)) needs \(expected)")
        }
        if containsNaN(storage), let flat = storage.firstIndex(where: \.isNaN) {
            let (weight, index) = locate(flat)
            throw StageError(.notANumber, stage: check.stage, argument: weight.rawValue,
                             "NaN at index \(describe(shape: index)) of \(weight.rawValue) \(describe(shape: weight.shape(config)))")
        }
    }

    /// One tensor, shaped, e.g. to print it or to write a fixture.
    ///
    /// Precondition (a trap): `storage` holds `count(config)` weights. It does
    /// unless a caller replaced it with an array of another length
    /// (``checkWeights(_:_:)`` tells); `golden-verify` and chapter 10 call it on
    /// parameters an initializer or ``TinyLM/backward(_:gradLogits:gradValues:)`` made.
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
