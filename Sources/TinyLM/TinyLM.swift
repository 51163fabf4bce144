#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TensorCore

// Shapes legend: B batch, L sequence length (<= contextLength), C width,
// H MLP hidden size, V vocabulary.

/// Everything one forward pass computed, kept for the backward pass.
///
/// All arrays are flat and row-major over `[B, L, ...]`.
public struct TinyLMActivations: Sendable {
    /// The config of the model that computed them: backward refuses another's.
    public let config: TinyLMConfig
    public let batchSize: Int
    public let length: Int
    public let inputIds: Tensor<Int64>
    /// x = token_embedding[ids] + position_embedding[t]. [B, L, C]
    var embedded: [Double]
    /// q, k, v = x · W_q, x · W_k, x · W_v. [B, L, C] each
    var queries: [Double], keys: [Double], attentionValues: [Double]
    /// attention[b, t, s] = softmax_s(q_t · k_s / √C) for s <= t, 0 for s > t. [B, L, L]
    public internal(set) var attention: [Double]
    /// z_t = Σ_s attention[t, s] · v_s. [B, L, C]
    var mixed: [Double]
    /// h = x + z · W_o. [B, L, C]
    var afterAttention: [Double]
    /// u = tanh(h · W_in + b_in). [B, L, H]
    var mlpHidden: [Double]
    /// g = h + u · W_out + b_out, the body's output. [B, L, C]
    var body: [Double]
    /// logits = g · W_lm + b_lm. [B, L, V]
    public internal(set) var logits: Tensor<Double>
    /// values = g · w_v (no bias, as DeepSpeed-Chat's `v_head`). [B, L]
    public internal(set) var values: Tensor<Double>
}

/// A tiny causal language model with an LM head and a value head, written out
/// with its own forward and backward passes.
///
/// ```
/// x      = token_embedding[ids] + position_embedding[0..<L]          [B, L, C]
/// q, k, v = x W_q, x W_k, x W_v                                       [B, L, C]
/// a[t, s] = softmax_{s <= t}(q_t · k_s / √C)      (causal: s > t is masked)
/// h      = x + (Σ_s a[t, s] v_s) W_o                                  [B, L, C]
/// g      = h + tanh(h W_in + b_in) W_out + b_out                      [B, L, C]
/// logits = g W_lm + b_lm                                              [B, L, V]
/// values = g · w_v                                                    [B, L]
/// ```
///
/// One block of single-head causal self-attention, then a tanh MLP, both with
/// residual connections; no layer norm (at this size, a 1/fan_in initialisation
/// keeps activations near unit scale without it).
///
/// Why attention and not a windowed MLP: the same body, through its value head,
/// is also the reward model and the critic, which must judge a whole answer from
/// its last token ("great but boring" is not "boring"). A window of K tokens sees
/// only the last K; attention sees every earlier token. It is causal, so the right
/// padding after an answer never changes a position before it: no attention mask
/// is needed, and masks are applied where DeepSpeed-Chat applies them, in the
/// losses.
///
/// The value head turns the body into a reward model or a critic, as
/// DeepSpeed-Chat's `RewardModel` puts `v_head = nn.Linear(n_embd, 1, bias=False)`
/// on a transformer's hidden states. Its forward and backward are checked against
/// PyTorch autograd by the `tiny_lm` golden fixtures (GoldenData/tiny_lm/).
public struct TinyLM: Sendable, Equatable {
    public var parameters: TinyLMParameters
    public var config: TinyLMConfig { parameters.config }

    public init(parameters: TinyLMParameters) {
        self.parameters = parameters
    }

    /// A fresh, randomly initialised model.
    ///
    /// - Throws: ``StageError`` for a config that cannot be built (a size below 1,
    ///   or beyond 2^31 weights), before anything is allocated.
    public init(config: TinyLMConfig, rng: inout SplitMix64) throws(StageError) {
        self.parameters = try TinyLMParameters(randomFor: config, rng: &rng)
    }

    /// The forward pass over a batch of token ids, keeping every activation.
    ///
    /// Shapes: `inputIds` [B, L] int64 with L <= contextLength -> `logits`
    /// [B, L, V], `values` [B, L]. Position t sees tokens 0...t only.
    ///
    /// Where PyTorch would return NaN (an infinite weight meeting a zero, or
    /// `inf - inf` in the attention's softmax), it throws instead, naming the output.
    ///
    /// - Throws: ``StageError`` for ids that are not [B, L], an L of 0 or beyond
    ///   the context length, an id outside `[0, V)`, a batch whose activations
    ///   would pass ``TensorLimits`` (`.tooLarge`), a weight storage of the wrong
    ///   length or holding NaN, or `.nonFiniteResult` naming `logits` or `values`
    ///   when they come out NaN (infinite or huge weights).
    public func forward(_ inputIds: Tensor<Int64>) throws(StageError) -> TinyLMActivations {
        let check = InputCheck(stage: "tiny_lm")
        try check.rank(inputIds, "input_ids", is: 2, legend: "[B, L]")
        let B = inputIds.shape[0], L = inputIds.shape[1]
        let C = config.width, H = config.hidden, V = config.vocabularySize
        try check.parameter("L", L, in: 1..<(config.contextLength + 1),
                            "input_ids \(describe(shape: inputIds.shape)) must have 1 to contextLength = \(config.contextLength) positions")
        try config.checkBatch(batchSize: B, length: L, check, argument: "input_ids")
        try check.labels(inputIds, "input_ids", vocabularySize: V)
        try parameters.checkWeights(check)

        let offsets = TinyLMParameters.offsets(config)
        let w = parameters.storage
        func at(_ weight: TinyLMWeight) -> Int { offsets[weight]! }
        let rows = B * L

        var x = [Double](repeating: 0, count: rows * C)
        // Each offset is looked up once, not per element: a lookup hashes the
        // weight's name, which took a fifth of a training step in these loops.
        let tokenEmbedding = at(.tokenEmbedding), positionEmbedding = at(.positionEmbedding)
        for b in 0..<B {
            for t in 0..<L {
                let token = Int(inputIds[b, t]), row = (b * L + t) * C
                for c in 0..<C {
                    x[row + c] = w[tokenEmbedding + token * C + c] + w[positionEmbedding + t * C + c]
                }
            }
        }
        let q = linear(x, rows: rows, inputs: C, w, at(.attentionQuery), outputs: C, bias: nil)
        let k = linear(x, rows: rows, inputs: C, w, at(.attentionKey), outputs: C, bias: nil)
        let v = linear(x, rows: rows, inputs: C, w, at(.attentionValue), outputs: C, bias: nil)

        let scale = 1 / Double(C).squareRoot()
        var attention = [Double](repeating: 0, count: B * L * L)
        var z = [Double](repeating: 0, count: rows * C)
        for b in 0..<B {
            for t in 0..<L {
                let a = (b * L + t) * L, qt = (b * L + t) * C
                // Softmax over s <= t with the max subtracted: q·k can be large, and
                // exp of a large score overflows; after the shift the largest term is 1.
                var maximum = -Double.infinity
                for s in 0...t {
                    var score = 0.0
                    let ks = (b * L + s) * C
                    for c in 0..<C { score += q[qt + c] * k[ks + c] }
                    attention[a + s] = score * scale
                    maximum = max(maximum, attention[a + s])
                }
                var sum = 0.0
                for s in 0...t {
                    attention[a + s] = exp(attention[a + s] - maximum)
                    sum += attention[a + s]
                }
                for s in 0...t {
                    attention[a + s] /= sum
                    let vs = (b * L + s) * C
                    for c in 0..<C { z[qt + c] += attention[a + s] * v[vs + c] }
                }
            }
        }
        var h = linear(z, rows: rows, inputs: C, w, at(.attentionOutput), outputs: C, bias: nil)
        for i in 0..<(rows * C) { h[i] += x[i] }
        var u = linear(h, rows: rows, inputs: C, w, at(.mlpIn), outputs: H, bias: at(.mlpInBias))
        for i in 0..<(rows * H) { u[i] = tanh(u[i]) }
        var g = linear(u, rows: rows, inputs: H, w, at(.mlpOut), outputs: C, bias: at(.mlpOutBias))
        for i in 0..<(rows * C) { g[i] += h[i] }
        let logits = linear(g, rows: rows, inputs: C, w, at(.lmHead), outputs: V, bias: at(.lmHeadBias))
        var values = [Double](repeating: 0, count: rows)
        let valueHead = at(.valueHead)
        for r in 0..<rows {
            var value = 0.0
            for c in 0..<C { value += g[r * C + c] * w[valueHead + c] }
            values[r] = value
        }
        let activations = TinyLMActivations(config: config, batchSize: B, length: L, inputIds: inputIds, embedded: x,
                                            queries: q, keys: k, attentionValues: v, attention: attention, mixed: z,
                                            afterAttention: h, mlpHidden: u, body: g,
                                            logits: Tensor.make([B, L, V], logits), values: Tensor.make([B, L], values))
        try check.noNaNInResult(activations.logits, "logits")
        try check.noNaNInResult(activations.values, "values")
        return activations
    }

    /// The backward pass: the gradient of `Σ logits · gradLogits + Σ values · gradValues`
    /// with respect to every weight, in the layout of ``TinyLMParameters``.
    ///
    /// ```
    /// dg      = dlogits W_lmᵀ + dvalues w_vᵀ
    /// du      = dg W_outᵀ,   dpre = du ⊙ (1 - u²)          (tanh' = 1 - tanh²)
    /// dh      = dg + dpre W_inᵀ
    /// dz      = dh W_oᵀ,     dx = dh + (dq W_qᵀ + dk W_kᵀ + dv W_vᵀ)
    /// da[t,s] = dz_t · v_s,  dv_s = Σ_t a[t,s] dz_t
    /// dscore[t,s] = a[t,s] (da[t,s] - Σ_s' a[t,s'] da[t,s'])  (softmax backward)
    /// dq_t = Σ_s dscore[t,s] k_s / √C,   dk_s = Σ_t dscore[t,s] q_t / √C
    /// dW = inputᵀ · d(output) for every matrix, db = Σ_rows d(output)
    /// ```
    ///
    /// Shapes: `gradLogits` [B, L, V] and `gradValues` [B, L] (either may be nil,
    /// meaning zeros) -> gradients of every weight. A loss that reads only the
    /// value head passes `gradLogits: nil`; one that reads only the LM head
    /// passes `gradValues: nil`.
    ///
    /// Where PyTorch's autograd would return NaN (an infinite weight or upstream
    /// gradient meeting a zero), it throws instead, naming the gradient.
    ///
    /// - Throws: ``StageError`` for activations of a model of another config,
    ///   upstream gradients of the wrong shape or with NaN, a weight storage of
    ///   the wrong length or holding NaN, or `.nonFiniteResult` naming the first
    ///   weight's gradient (`grad_<name>`) that comes out NaN.
    public func backward(_ activations: TinyLMActivations, gradLogits: Tensor<Double>?,
                         gradValues: Tensor<Double>?) throws(StageError) -> TinyLMParameters {
        let check = InputCheck(stage: "tiny_lm")
        guard activations.config == config else {
            throw StageError(.shapeMismatch, stage: check.stage, argument: "activations",
                             "activations of a model with \(activations.config), backward of one with \(config)")
        }
        try parameters.checkWeights(check)
        let B = activations.batchSize, L = activations.length
        let C = config.width, H = config.hidden, V = config.vocabularySize
        if let gradLogits {
            try check.shape(gradLogits, "grad_logits", equals: [B, L, V], sameAs: "[B, L, V] of the logits")
            try check.noNaN(gradLogits, "grad_logits")
        }
        if let gradValues {
            try check.shape(gradValues, "grad_values", equals: [B, L], sameAs: "[B, L] of the values")
            try check.noNaN(gradValues, "grad_values")
        }
        let offsets = TinyLMParameters.offsets(config)
        let w = parameters.storage
        func at(_ weight: TinyLMWeight) -> Int { offsets[weight]! }
        var grad = try TinyLMParameters(zerosFor: config)
        let rows = B * L
        let g = activations.body, h = activations.afterAttention, u = activations.mlpHidden
        let x = activations.embedded, q = activations.queries, k = activations.keys, v = activations.attentionValues
        let a = activations.attention, z = activations.mixed

        // Heads.
        var dg = [Double](repeating: 0, count: rows * C)
        if let gradLogits {
            linearBackward(x: g, dy: gradLogits.scalars, rows: rows, inputs: C, outputs: V, w, at(.lmHead),
                           bias: at(.lmHeadBias), into: &grad.storage, dx: &dg)
        }
        if let gradValues {
            let valueHead = at(.valueHead)
            for r in 0..<rows {
                let dValue = gradValues.scalars[r]
                for c in 0..<C {
                    grad.storage[valueHead + c] += g[r * C + c] * dValue
                    dg[r * C + c] += dValue * w[valueHead + c]
                }
            }
        }
        // MLP: g = h + tanh(h W_in + b_in) W_out + b_out.
        var du = [Double](repeating: 0, count: rows * H)
        linearBackward(x: u, dy: dg, rows: rows, inputs: H, outputs: C, w, at(.mlpOut), bias: at(.mlpOutBias),
                       into: &grad.storage, dx: &du)
        for i in 0..<(rows * H) { du[i] *= 1 - u[i] * u[i] }
        var dh = dg  // the residual path
        linearBackward(x: h, dy: du, rows: rows, inputs: C, outputs: H, w, at(.mlpIn), bias: at(.mlpInBias),
                       into: &grad.storage, dx: &dh)
        // Attention: h = x + z W_o.
        var dz = [Double](repeating: 0, count: rows * C)
        linearBackward(x: z, dy: dh, rows: rows, inputs: C, outputs: C, w, at(.attentionOutput), bias: nil,
                       into: &grad.storage, dx: &dz)
        var dq = [Double](repeating: 0, count: rows * C)
        var dk = [Double](repeating: 0, count: rows * C)
        var dv = [Double](repeating: 0, count: rows * C)
        let scale = 1 / Double(C).squareRoot()
        var da = [Double](repeating: 0, count: L)
        for b in 0..<B {
            for t in 0..<L {
                let row = (b * L + t) * L, zt = (b * L + t) * C
                var weighted = 0.0
                for s in 0...t {
                    let vs = (b * L + s) * C
                    var dot = 0.0
                    for c in 0..<C {
                        dot += dz[zt + c] * v[vs + c]
                        dv[vs + c] += a[row + s] * dz[zt + c]
                    }
                    da[s] = dot
                    weighted += a[row + s] * dot
                }
                for s in 0...t {
                    let dScore = a[row + s] * (da[s] - weighted) * scale
                    let ks = (b * L + s) * C
                    for c in 0..<C {
                        dq[zt + c] += dScore * k[ks + c]
                        dk[ks + c] += dScore * q[zt + c]
                    }
                }
            }
        }
        var dx = dh  // the residual path
        linearBackward(x: x, dy: dq, rows: rows, inputs: C, outputs: C, w, at(.attentionQuery), bias: nil,
                       into: &grad.storage, dx: &dx)
        linearBackward(x: x, dy: dk, rows: rows, inputs: C, outputs: C, w, at(.attentionKey), bias: nil,
                       into: &grad.storage, dx: &dx)
        linearBackward(x: x, dy: dv, rows: rows, inputs: C, outputs: C, w, at(.attentionValue), bias: nil,
                       into: &grad.storage, dx: &dx)
        // Embeddings: x = token_embedding[id] + position_embedding[t].
        let tokenEmbedding = at(.tokenEmbedding), positionEmbedding = at(.positionEmbedding)
        for b in 0..<B {
            for t in 0..<L {
                let token = Int(activations.inputIds[b, t]), row = (b * L + t) * C
                for c in 0..<C {
                    grad.storage[tokenEmbedding + token * C + c] += dx[row + c]
                    grad.storage[positionEmbedding + t * C + c] += dx[row + c]
                }
            }
        }
        if containsNaN(grad.storage), let flat = grad.storage.firstIndex(where: \.isNaN) {
            let (weight, index) = grad.locate(flat)
            throw StageError(.nonFiniteResult, stage: check.stage, argument: "grad_" + weight.rawValue,
                             "the result is NaN at index \(describe(shape: index)) (infinite weights or gradients?)")
        }
        return grad
    }
}

/// y = x W (+ b): x [rows, inputs], W at `weights[offset...]` [inputs, outputs],
/// b at `weights[bias...]` [outputs] -> y [rows, outputs].
///
/// The inner loop runs over the output index, along a row of W, so it reads
/// memory in order.
func linear(_ x: [Double], rows: Int, inputs: Int, _ weights: [Double], _ offset: Int, outputs: Int,
            bias: Int?) -> [Double] {
    var y = [Double](repeating: 0, count: rows * outputs)
    for r in 0..<rows {
        if let bias {
            for j in 0..<outputs { y[r * outputs + j] = weights[bias + j] }
        }
        for i in 0..<inputs {
            let xi = x[r * inputs + i]
            let wRow = offset + i * outputs
            for j in 0..<outputs { y[r * outputs + j] += xi * weights[wRow + j] }
        }
    }
    return y
}

/// The backward pass of `linear`: accumulates dW = xᵀ dy and db = Σ_r dy into
/// `gradients` (same layout as `weights`), and dx += dy Wᵀ into `dx`.
func linearBackward(x: [Double], dy: [Double], rows: Int, inputs: Int, outputs: Int, _ weights: [Double],
                    _ offset: Int, bias: Int?, into gradients: inout [Double], dx: inout [Double]) {
    for r in 0..<rows {
        if let bias {
            for j in 0..<outputs { gradients[bias + j] += dy[r * outputs + j] }
        }
        for i in 0..<inputs {
            let xi = x[r * inputs + i]
            let wRow = offset + i * outputs
            var dxi = 0.0
            for j in 0..<outputs {
                let d = dy[r * outputs + j]
                gradients[wRow + j] += xi * d
                dxi += d * weights[wRow + j]
            }
            dx[r * inputs + i] += dxi
        }
    }
}

extension TinyLMConfig {
    /// Throws unless a forward pass over `batchSize` sequences of `length` tokens
    /// fits a model of this config: `1 <= length <= contextLength`, and every
    /// activation it allocates ([B, L, C], [B, L, H], [B, L, V] and the attention
    /// [B, L, L]) within ``TensorLimits``. `argument` names where the batch comes from.
    ///
    /// ``TinyLM/forward(_:)`` runs it before it allocates; `generate` and the
    /// training loops run it before their first step, so a batch the model cannot
    /// take fails before any work.
    ///
    /// - Throws: ``StageError`` `.parameterOutOfRange` for the length, `.tooLarge`
    ///   for the sizes, both naming `argument`.
    public func checkBatch(batchSize: Int, length: Int, _ check: InputCheck, argument: String) throws(StageError) {
        guard length >= 1, length <= contextLength else {
            throw StageError(.parameterOutOfRange, stage: check.stage, argument: argument,
                             "sequences of \(length) tokens: the model takes 1 to contextLength = \(contextLength)")
        }
        let widest = max(width, hidden, vocabularySize, length)
        guard TensorLimits.elementCount([batchSize, length, widest]) != nil else {
            throw StageError(.tooLarge, stage: check.stage, argument: argument,
                             "a batch of \(batchSize) x \(length) tokens needs activations of "
                             + TensorLimits.refusal([batchSize, length, widest]))
        }
    }
}
