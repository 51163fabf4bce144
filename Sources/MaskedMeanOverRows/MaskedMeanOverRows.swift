import TensorCore

/// align-anything's `masked_mean`: each row's mean over its own mask, then the
/// plain mean of those B numbers.
///
/// ```
/// n_b  = Σ_t m[b,t]
/// mean = (1/B) · Σ_b ( Σ_t x[b,t]·m[b,t] / n_b )
/// ```
///
/// Shapes: `values` [B, T] float, `mask` [B, T] 0/1 -> [].
///
/// A row counts once whatever its length: a one-token row weighs as much as a
/// row of a hundred tokens, so its one token weighs a hundred times more than
/// each of theirs. With every row of the same length n it is the token mean
/// Σ_{b,t} x·m / (B·n) of DeepSpeed-Chat's losses.
///
/// The mask multiplies, as in the peer: a ±inf or NaN under a 0 of the mask gives
/// inf·0 = NaN, and so does the mean. A row that selects nothing gives 0/0 = NaN,
/// as in the peer. The stages check every row first (``InputCheck/everyRowSelects(_:_:describedAs:)``)
/// and their result after. Each row sum is accumulated in Double and rounded
/// once, as `maskedSum` does.
///
/// Matches align-anything `align_anything/utils/tools.py :: masked_mean` (with a mask).
@inlinable
public func maskedMeanOverRows<T: FloatScalar>(_ values: Tensor<T>, mask: Tensor<Int64>) -> T {
    let sums = maskedRowSums(values, mask: mask)
    let counts = rowCounts(mask)
    return meanOverRows((0..<sums.count).map { sums[$0] / T(counts[$0]) })
}

/// Each row's sum of `values · mask`: the `(x * mask).sum(dim=-1)` of the peer.
///
/// ```
/// sums[b] = Σ_t x[b,t]·m[b,t]
/// ```
///
/// Shapes: `values` [B, T] float, `mask` [B, T] 0/1 -> [B]. Every element is
/// multiplied by its mask value, the masked ones too (inf·0 = NaN, as in PyTorch).
/// Accumulated in Double, rounded once to `T`.
@inlinable
public func maskedRowSums<T: FloatScalar>(_ values: Tensor<T>, mask: Tensor<Int64>) -> [T] {
    let batchSize = values.shape[0], width = values.shape[1]
    return (0..<batchSize).map { row in
        var sum = 0.0
        for i in (row * width)..<((row + 1) * width) {
            sum += Double(values.scalars[i] * T(mask.scalars[i]))
        }
        return T(sum)
    }
}

/// How many elements each row of a 0/1 mask keeps: `mask.sum(dim=-1)`.
///
/// Shapes: `mask` [B, T] -> [B].
@inlinable
public func rowCounts(_ mask: Tensor<Int64>) -> [Int] {
    let width = mask.shape[1]
    return (0..<mask.shape[0]).map { row in
        mask.scalars[(row * width)..<((row + 1) * width)].reduce(0) { $0 + Int($1) }
    }
}

/// The plain mean of one number per row, `tensor.mean()` over [B]: accumulated
/// in Double, rounded once. Zero rows give 0/0 = NaN, as in PyTorch.
@inlinable
public func meanOverRows<T: FloatScalar>(_ rowValues: [T]) -> T {
    var sum = 0.0
    for x in rowValues {
        sum += Double(x)
    }
    return T(sum / Double(rowValues.count))
}

/// The gradient of a masked mean over rows, from the gradient of a token mean over
/// every element of the same per-element terms.
///
/// ```
/// token mean over all of [B, M]:  weight 1/(B·M) on each element
/// masked mean over rows:          weight m[b,t]/(B·n_b)
/// grad[b,t] = tokenMeanGradient[b,t] · (B·M) · m[b,t]/(B·n_b)
///           = tokenMeanGradient[b,t] · M/n_b · m[b,t]
/// ```
///
/// Shapes: `tokenMeanGradient` [B, M] float, `mask` [B, M] 0/1 -> [B, M].
///
/// The align-anything losses are v1's per-token terms under another reduction, so
/// their backward is v1's, called with a mask of ones, reweighted here. The mask
/// multiplies last, as autograd's `x * mask` backward does: a per-token
/// derivative that is ±inf or NaN under a 0 of the mask gives NaN, as in
/// PyTorch (the stages then throw).
@inlinable
public func maskedMeanOverRowsGradient<T: FloatScalar>(fromTokenMeanGradient tokenMeanGradient: Tensor<T>,
                                                       mask: Tensor<Int64>) -> Tensor<T> {
    let width = mask.shape[1]
    let counts = rowCounts(mask)
    var gradient = tokenMeanGradient
    for i in 0..<gradient.count {
        let rowWeight = T(width) / T(counts[i / width])
        gradient.scalars[i] = tokenMeanGradient.scalars[i] * rowWeight * T(mask.scalars[i])
    }
    return gradient
}

extension InputCheck {
    /// Throws `emptyMask` unless the batch has a row and every row of `mask`
    /// selects at least one element: the masked mean over rows divides each row's
    /// sum by the row's own count, and the mean over no rows is 0/0.
    ///
    /// `describedAs` names the mask in the message, e.g. `"mask"` or
    /// `"attention_mask[:, 1:][:, 2:]"`; the error names `argument`.
    @inlinable
    public func everyRowSelects(_ mask: Tensor<Int64>, _ argument: String, describedAs name: String) throws(StageError) {
        guard mask.shape[0] > 0 else {
            throw StageError(.emptyMask, stage: stage, argument: argument,
                             "\(name) \(describe(shape: mask.shape)) has no row; the mean over rows would be 0/0")
        }
        if let row = rowCounts(mask).firstIndex(of: 0) {
            throw StageError(.emptyMask, stage: stage, argument: argument,
                             "row \(row) of \(name) \(describe(shape: mask.shape)) selects nothing; its masked mean would be 0/0 (NaN in align-anything)")
        }
    }

    /// The checks of a loss that averages per-token terms by a masked mean over
    /// rows, in the order every stage runs them: the first float input's rank
    /// (and the size limit), every other float input and `mask` of its shape [B, M],
    /// a 0/1 mask that selects something in every row, and no NaN in a float input.
    @inlinable
    public func maskedLossInputs<T: FloatScalar>(_ floats: [(tensor: Tensor<T>, name: String)],
                                                 mask: Tensor<Int64>) throws(StageError) {
        guard let (first, firstName) = floats.first else { return }
        try rank(first, firstName, is: 2, legend: "[B, M]")
        for (tensor, name) in floats.dropFirst() {
            try shape(tensor, name, equals: first.shape, sameAs: "same as \(firstName)")
        }
        try shape(mask, "mask", equals: first.shape, sameAs: "same as \(firstName)")
        try binaryMask(mask, "mask")
        try everyRowSelects(mask, "mask", describedAs: "mask")
        for (tensor, name) in floats {
            try noNaN(tensor, name)
        }
    }

    /// Runs `body`, which calls another stage (a v1 stage these are built on), and
    /// re-throws that stage's error under this one, its detail saying which stage it
    /// came from (as `ppoLosses` does).
    @inlinable
    public func underThisStage<R>(_ body: () throws(StageError) -> R) throws(StageError) -> R {
        do {
            return try body()
        } catch {
            throw StageError(error.kind, stage: stage, argument: error.argument, "in \(error.stage): \(error.detail)")
        }
    }
}
