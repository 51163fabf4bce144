// The fused float32 gather_log_probs: one row of the vocabulary at a time, SIMD
// over the row, rows spread over the cores. No [B, T, V] intermediate.
//
// The plain `gatherLogProbs` beside it is the reference: same checks, same
// errors, and results equal to float32 round-off (FusedGatherLogProbsTests).

import Dispatch
import TensorCore
import GatherLogProbs
#if arch(x86_64) && os(Linux)
import _Builtin_intrinsics.intel  // _mm_stream_ps: clang's own module, shipped with the Swift toolchain
import Synchronization  // atomicMemoryFence
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The fused, multi-threaded `gatherLogProbs` for float32 logits.
///
/// ```
/// log_probs[b, t] = (logits[b, t, y] - m) - log Σ_v exp(logits[b, t, v] - m),
///   y = labels[b, t],  m = max_v logits[b, t, v]
/// ```
///
/// Shapes: `logits` [B, T, V] float32, `labels` [B, T] int64 -> `log_probs` [B, T].
/// B batch, T any token axis, V vocabulary.
///
/// Matches the plain `gatherLogProbs(logits:labels:)` to float32 round-off
/// (abs 1e-6 + rel 1e-6, see the tests), and through it DeepSpeed-Chat
/// `ppo_trainer.py :: gather_log_probs` (`F.log_softmax` then `gather`).
///
/// Each logit is read from memory once: ``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``
/// finds each row's max and Σ exp(x - m) in one streaming pass with the
/// running-max rescaling trick and a vectorised exp (``exponential(_:exactZeros:)``,
/// within 2.3 ulp). Only the label's logit is gathered; the log-softmax is never
/// formed. Rows are spread over all cores with `DispatchQueue.concurrentPerform`;
/// memory beyond the [B, T] result is a few bytes per chunk of rows. A row with a
/// NaN, a +inf or nothing but -inf is computed by the plain, scalar formula.
///
/// What limits it: the exp of every logit, about forty vector operations per 16
/// floats on AVX2 (27 instructions with AVX-512, -D RLHF_AVX512), against one
/// load per 16 floats for a plain read (`read_logits`); the logits are prefetched
/// two blocks ahead (``prefetchForReading(_:)``), so the memory reads overlap
/// that arithmetic.
///
/// - Throws: the same ``StageError``s as `gatherLogProbs`, in the same order:
///   shapes that do not agree, a label outside `[0, V)`, NaN in `logits` (found
///   by the row pass, then located by the plain check), or a row whose
///   log-softmax is NaN.
public func gatherLogProbsFused(logits: Tensor<Float>, labels: Tensor<Int64>) throws(StageError) -> Tensor<Float> {
    let check = InputCheck(stage: "gather_log_probs")
    // The O(B·T) checks here; NaN in the logits (O(B·T·V)) is found in the max pass.
    try checkGatherLogProbsInputs(logits: logits, labels: labels, check)
    let rows = logits.shape[0] * logits.shape[1]
    let vocabularySize = logits.shape[2]

    var logProbs = [Float](repeating: 0, count: rows)
    var sawNaN = false
    logits.scalars.withUnsafeBufferPointer { logitsBuffer in
        labels.scalars.withUnsafeBufferPointer { labelsBuffer in
            logProbs.withUnsafeMutableBufferPointer { outputBuffer in
                let input = UnsafeShared(logitsBuffer.baseAddress), output = UnsafeShared(outputBuffer.baseAddress)
                let labelsBase = UnsafeShared(labelsBuffer.baseAddress)
                sawNaN = forEachRowChunk(rows: rows, vocabularySize: vocabularySize) { rowRange in
                    var chunkSawNaN = false
                    for position in rowRange {
                        let row = input.pointer! + position * vocabularySize
                        let label = Int(labelsBase.pointer![position])
                        let sums = onlineRowPass(row, vocabularySize, divisor: nil, entropy: false, expInto: nil,
                                                 blockShifts: nil)
                        var (maximum, logSumShifted) = (sums.maximum, Float.log(Float(sums.sumOfExp)))
                        if !sums.isValid {
                            // A NaN, a +inf or nothing but -inf: the plain, scalar definition,
                            // which gives the NaN and inf results the plain version gives.
                            let plain = rowLogSumExpPartsPlain(row, vocabularySize, expInto: nil)
                            (maximum, logSumShifted) = (plain.maximum, plain.logSumShifted)
                            chunkSawNaN = chunkSawNaN || plain.hasNaN
                        }
                        output.pointer![position] = (row[label] - maximum) - logSumShifted
                    }
                    return chunkSawNaN
                }
            }
        }
    }
    if sawNaN {
        try check.noNaN(logits, "logits")  // throws, naming the first NaN as the plain version does
    }
    let result = Tensor.make([logits.shape[0], logits.shape[1]], logProbs)
    try check.noNaNInResult(result, "log_probs")
    return result
}

/// The fused, multi-threaded `gatherLogProbsGradLogits` for float32 logits.
///
/// ```
/// grad_logits[b, t, v] = grad_output[b, t] · (1[v = y] - softmax(x)_v),
///   x = logits[b, t, :],  y = labels[b, t],
///   softmax(x)_v = exp(x_v - m) / Σ_u exp(x_u - m),  m = max_u x_u
/// ```
///
/// Shapes: `logits` [B, T, V] float32, `labels` [B, T] int64, `gradOutput`
/// [B, T] float32 -> `grad_logits` [B, T, V]. B batch, T any token axis, V
/// vocabulary.
///
/// Matches the plain `gatherLogProbsGradLogits(logits:labels:gradOutput:)` to
/// float32 round-off, and through it PyTorch autograd through DeepSpeed-Chat's
/// `gather_log_probs`. A `-inf` logit still gets exactly zero gradient.
///
/// Per row, each logit is read from memory once and each gradient written once:
/// one streaming pass (``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``)
/// finds the max m and Σ = Σ exp(x - m) with the running-max rescaling trick and
/// keeps exp(x - M_b) of each block in a per-thread row buffer (it stays in L2);
/// the row's gradient, `1[v = y]·g - exp(x - M_b)·e^(M_b - m)·(g / Σ)`, is then
/// written during the next row's pass, a vector per vector it reads
/// (``GradientWriteBehind``), so that each core reads and writes memory at once
/// (a pass of its own per row was 10-30% slower here: the writes waited for the
/// exp, the reads for the writes); a thread's last row gets a pass of its own. The
/// softmax is thus exp(x - m) / Σ rather than the plain exp(log_softmax): the
/// same number to a few ulp. The only [B, T, V] allocation is the result itself,
/// never zero-filled first and backed by 2 MB pages where the kernel allows
/// (``adviseHugePages(_:)``): 4 KB pages would cost a page fault every 1,024
/// floats written. Rows are spread over all cores.
///
/// What limits it: the exp of every logit (as the forward) plus writing the
/// [B, T, V] result: reading once and writing once is about 2x `read_logits`. A
/// fresh result's pages are also faulted in and cleared by the operating system
/// on first touch, before the kernel writes them (`rlhf-bench`'s `clear_pages`:
/// about another 2x `read_logits` on the machines measured); the
/// ``gatherLogProbsFusedGradLogits(logits:labels:gradOutput:into:)`` form reuses
/// a previous result's pages and skips that.
///
/// - Throws: the same ``StageError``s as `gatherLogProbsGradLogits`, in the same
///   order: every `gatherLogProbsFused` error first, then a `gradOutput` whose
///   shape is not [B, T] or that holds NaN, then an infinite `gradOutput`
///   (`nonFiniteResult` naming `grad_logits`).
public func gatherLogProbsFusedGradLogits(
    logits: Tensor<Float>, labels: Tensor<Int64>, gradOutput: Tensor<Float>
) throws(StageError) -> Tensor<Float> {
    try checkFusedGradInputs(logits: logits, labels: labels, gradOutput: gradOutput)
    var gradLogits: [Float] = []
    var failure: StageError?
    gradLogits = [Float](unsafeUninitializedCapacity: logits.count) { gradBuffer, initialized in
        adviseHugePages(gradBuffer)
        do throws(StageError) {
            try writeGradient(logits: logits, labels: labels, gradOutput: gradOutput, into: gradBuffer)
        } catch {
            failure = error
        }
        initialized = logits.count  // every element is written, error or not
    }
    if let failure { throw failure }
    return Tensor.make(logits.shape, gradLogits)
}

/// `gatherLogProbsFusedGradLogits` written into `result`, reusing its storage.
///
/// The same numbers and errors; `result` becomes a tensor of the logits' shape.
/// Where it already holds `logits.count` floats (the previous step's gradient, in
/// a training loop) and is not shared, its memory is overwritten in place: no
/// fresh [B, T, V] allocation, whose pages the kernel would clear on first touch
/// (at 4x512x50272 that costs about twice writing them). After a throw, `result`
/// holds no meaningful numbers.
///
/// - Throws: as ``gatherLogProbsFusedGradLogits(logits:labels:gradOutput:)``.
public func gatherLogProbsFusedGradLogits(
    logits: Tensor<Float>, labels: Tensor<Int64>, gradOutput: Tensor<Float>, into result: inout Tensor<Float>
) throws(StageError) {
    try checkFusedGradInputs(logits: logits, labels: labels, gradOutput: gradOutput)
    if result.shape != logits.shape {
        var storage = result.scalars
        result = Tensor.make([], [0])  // drop the reference, so `storage` is not shared
        if storage.count != logits.count {
            storage = [Float](unsafeUninitializedCapacity: logits.count) { buffer, initialized in
                adviseHugePages(buffer)
                for i in buffer.indices { buffer[i] = 0 }
                initialized = logits.count
            }
        }
        result = Tensor.make(logits.shape, storage)
    }
    var failure: StageError?
    result.scalars.withUnsafeMutableBufferPointer { gradBuffer in
        do throws(StageError) {
            try writeGradient(logits: logits, labels: labels, gradOutput: gradOutput, into: gradBuffer)
        } catch {
            failure = error
        }
    }
    if let failure { throw failure }
}

/// The backward's O(B·T) checks, in the plain version's order.
private func checkFusedGradInputs(
    logits: Tensor<Float>, labels: Tensor<Int64>, gradOutput: Tensor<Float>
) throws(StageError) {
    let check = InputCheck(stage: "gather_log_probs")
    // The O(B·T) checks here; NaN in the logits (O(B·T·V)) is found in the row pass.
    try checkGatherLogProbsInputs(logits: logits, labels: labels, check)
    if gradOutput.shape != labels.shape || gradOutput.scalars.contains(where: \.isNaN) {
        // The plain version checks the logits (NaN, NaN results) before grad_output.
        _ = try gatherLogProbsFused(logits: logits, labels: labels)
        try check.shape(gradOutput, "grad_output", equals: labels.shape, sameAs: "[B, T] from logits \(describe(shape: logits.shape))")
        try check.noNaN(gradOutput, "grad_output")
    }
}

/// Writes every element of `grad_logits` into `gradBuffer` (logits.count floats),
/// then throws what the plain version throws for these (checked) inputs.
private func writeGradient(
    logits: Tensor<Float>, labels: Tensor<Int64>, gradOutput: Tensor<Float>,
    into gradBuffer: UnsafeMutableBufferPointer<Float>
) throws(StageError) {
    let check = InputCheck(stage: "gather_log_probs")
    let rows = logits.shape[0] * logits.shape[1]
    let vocabularySize = logits.shape[2]
    var logProbs = [Float](repeating: 0, count: rows)  // only to raise the plain version's NaN-result error
    var sawNaN = false
    logits.scalars.withUnsafeBufferPointer { logitsBuffer in
        labels.scalars.withUnsafeBufferPointer { labelsBuffer in
            gradOutput.scalars.withUnsafeBufferPointer { upstreamBuffer in
                logProbs.withUnsafeMutableBufferPointer { logProbsBuffer in
                    let input = UnsafeShared(logitsBuffer.baseAddress), grad = UnsafeShared(gradBuffer.baseAddress)
                    let labelsBase = UnsafeShared(labelsBuffer.baseAddress)
                    let upstreamBase = UnsafeShared(upstreamBuffer.baseAddress)
                    let logProbsBase = UnsafeShared(logProbsBuffer.baseAddress)
                    sawNaN = forEachRowChunk(rows: rows, vocabularySize: vocabularySize) { rowRange in
                        // Per chunk (one thread): two rows of exp(z - M_b) and of each
                        // block's factor, used in turn, so they stay in L2: row r's are
                        // filled while row r - 1's gradient is written from the others.
                        let blockCount = onlineBlockCount(vocabularySize)
                        let exps = UnsafeMutablePointer<Float>.allocate(capacity: 2 * vocabularySize)
                        let factors = UnsafeMutablePointer<Float>.allocate(capacity: 2 * blockCount)
                        defer { exps.deallocate(); factors.deallocate() }
                        var chunkSawNaN = false
                        defer { finishStreamingStores() }
                        var behind: GradientWriteBehind?  // the previous row, its gradient not yet written
                        for position in rowRange {
                            let offset = position * vocabularySize
                            let slot = (position - rowRange.lowerBound) & 1
                            let label = Int(labelsBase.pointer![position])
                            let row = exponentiateRowForGradient(
                                logits: input.pointer! + offset, vocabularySize, exps: exps + slot * vocabularySize,
                                factors: factors + slot * blockCount, label: label,
                                upstream: upstreamBase.pointer![position], logProb: logProbsBase.pointer! + position,
                                writingBehind: behind)
                            chunkSawNaN = chunkSawNaN || row.hasNaN
                            if let behind { writeLabelGradient(behind) }
                            behind = GradientWriteBehind(
                                exps: exps + slot * vocabularySize, factors: factors + slot * blockCount,
                                grad: grad.pointer! + offset, label: label, labelTerm: row.labelTerm)
                        }
                        if let behind {  // the chunk's last row: a pass of its own
                            for block in 0..<blockCount {
                                let start = block * onlineBlockLength
                                writeGradientBlock(behind, block, start, min(start + onlineBlockLength, vocabularySize))
                            }
                            writeLabelGradient(behind)
                        }
                        return chunkSawNaN
                    }
                }
            }
        }
    }
    if sawNaN {
        try check.noNaN(logits, "logits")
    }
    try check.noNaNInResult(Tensor.make(labels.shape, logProbs), "log_probs")
    // As the plain version: an infinite grad_output makes the label's gradient NaN.
    // Once the rows' log-softmax is NaN-free this is the only NaN the gradient can
    // hold, so the [B, T, V] result needs no scan of its own.
    try checkGatherGradOutputIsFinite(labels: labels, gradOutput: gradOutput, check)
}

// MARK: - One row

/// A row's max, log Σ exp(x - max), Σ exp(x - max) and whether it holds a NaN, by
/// the plain, scalar definition (libm exp, Double sum), for rows the online pass
/// cannot take (``OnlineRowSums/isValid``): it gives the NaN and inf results the
/// plain version gives.
func rowLogSumExpPartsPlain(
    _ row: UnsafePointer<Float>, _ count: Int, expInto store: UnsafeMutablePointer<Float>?
) -> (maximum: Float, logSumShifted: Float, sumOfExp: Double, hasNaN: Bool) {
    let values = UnsafeBufferPointer(start: row, count: count)
    let hasNaN = values.contains(where: \.isNaN)
    let (maximum, logSumShifted) = logSumExpParts(ArraySlice(values))
    var sumOfExp = 0.0
    for v in 0..<count {
        let e = Float.exp(row[v] - maximum)
        store?[v] = e
        sumOfExp += Double(e)
    }
    return (maximum, logSumShifted, sumOfExp, hasNaN)
}

/// One row of the backward up to its gradient: its max m and S (one pass over
/// the logits, ``onlineRowPass(_:_:divisor:entropy:expInto:blockShifts:writingBehind:)``,
/// which leaves e^(x - M_b) in `exps` and writes the previous row's gradient,
/// `behind`, as it goes), its log-prob, and in `factors` each block's
/// -g·e^(M_b - m)/S, so that the gradient is
/// `1[v = y]·g - e^(x_v - M_b)·e^(M_b - m)·(g / S)` with one multiply per element.
/// Returns the label's element of the gradient and whether the row had a NaN.
@inline(__always)
private func exponentiateRowForGradient(
    logits row: UnsafePointer<Float>, _ count: Int, exps: UnsafeMutablePointer<Float>,
    factors: UnsafeMutablePointer<Float>, label: Int, upstream: Float, logProb: UnsafeMutablePointer<Float>,
    writingBehind behind: GradientWriteBehind?
) -> (labelTerm: Float, hasNaN: Bool) {
    // `factors` holds each block's M_b first, then its factor. Two calls, so
    // that each inlined copy of the pass knows whether it writes behind: one
    // test per vector fewer, and on AVX2 fewer values spilled.
    let sums = if let behind {
        onlineRowPass(row, count, divisor: nil, entropy: false, expInto: exps, blockShifts: factors,
                      writingBehind: behind)
    } else {
        onlineRowPass(row, count, divisor: nil, entropy: false, expInto: exps, blockShifts: factors)
    }
    var maximum = sums.maximum, sumOfExp = sums.sumOfExp
    var logSumShifted = Float.log(Float(sumOfExp))
    var hasNaN = false
    if !sums.isValid {
        // A NaN, a +inf, or nothing but -inf in the row (-inf entries among finite
        // ones, a masked vocabulary, are right above: exp gives 0 there): the plain,
        // scalar definition, which gives the NaN and inf results the plain version gives.
        let plain = rowLogSumExpPartsPlain(row, count, expInto: exps)
        (maximum, logSumShifted, sumOfExp, hasNaN) = (plain.maximum, plain.logSumShifted, plain.sumOfExp, plain.hasNaN)
        for block in 0..<onlineBlockCount(count) { factors[block] = maximum }
    }
    logProb.pointee = (row[label] - maximum) - logSumShifted
    // Each block's factor e^(M_b - m)·(-g / S), formed in Double and rounded once;
    // it is -g / S itself where M_b = m.
    let scale = Double(upstream) / sumOfExp
    for block in 0..<onlineBlockCount(count) {
        let shift = factors[block]
        factors[block] = Float(shift == maximum ? -scale : -scale * Double.exp(Double(shift) - Double(maximum)))
    }
    let labelTerm = upstream + exps[label] * factors[label / onlineBlockLength]
    return (labelTerm, hasNaN)
}

/// Asks the kernel to back `buffer` with 2 MB pages where it can (Linux, a
/// transparent-hugepage setting of `madvise` or `always`). A fresh [B, T, V]
/// result is otherwise faulted in 4 KB at a time on first write: at 4x512x50272
/// that is 100,000 page faults, which cost more than computing the gradient.
/// Only advice: where it is refused, nothing changes but the speed.
func adviseHugePages(_ buffer: UnsafeMutableBufferPointer<Float>) {
#if os(Linux)
    guard let base = buffer.baseAddress else { return }
    let hugePage = 2 << 20
    let start = (UInt(bitPattern: base) + UInt(hugePage - 1)) & ~UInt(hugePage - 1)
    let end = (UInt(bitPattern: base + buffer.count)) & ~UInt(hugePage - 1)
    guard end > start, let pointer = UnsafeMutableRawPointer(bitPattern: start) else { return }
    _ = madvise(pointer, Int(end - start), MADV_HUGEPAGE)
#endif
}

@inline(__always)
func load(_ pointer: UnsafePointer<Float>) -> FloatVector {
    UnsafeRawPointer(pointer).loadUnaligned(as: FloatVector.self)
}

@inline(__always)
func storeVector(_ vector: FloatVector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: FloatVector.self)
}

/// Stores `vector` at `pointer` without reading its cache lines first (a
/// non-temporal store), where the CPU has one and `pointer` is 16-byte aligned.
///
/// Why: a plain store to a line that is not in cache first reads the line from
/// memory (for ownership), so writing a [B, T, V] result moves it over the memory
/// bus twice; at 4x512x50272 that read was a third of the backward. A
/// non-temporal store (x86-64's `movntps`, from the compiler's own intrinsics
/// module, no C code) writes whole lines straight to memory. The data then is not
/// in cache, which a result of hundreds of MB would not be anyway. Such stores
/// are weakly ordered: ``finishStreamingStores()`` fences them before the work is
/// handed back. Elsewhere (another CPU, an unaligned row) it is a plain store.
@inline(__always)
func storeVectorStreaming(_ vector: FloatVector, _ pointer: UnsafeMutablePointer<Float>) {
#if arch(x86_64) && os(Linux)
    if UInt(bitPattern: pointer) & 15 == 0 {
        _mm_stream_ps(pointer, vector.lowHalf.lowHalf)
        _mm_stream_ps(pointer + 4, vector.lowHalf.highHalf)
        _mm_stream_ps(pointer + 8, vector.highHalf.lowHalf)
        _mm_stream_ps(pointer + 12, vector.highHalf.highHalf)
        return
    }
#endif
    storeVector(vector, pointer)
}

/// Makes this thread's non-temporal stores visible to every other thread before
/// its work is reported done (a full memory fence: `mfence` on x86-64).
@inline(__always)
func finishStreamingStores() {
#if arch(x86_64) && os(Linux)
    atomicMemoryFence(ordering: .sequentiallyConsistent)
#endif
}

// MARK: - Threads

/// A pointer handed to the worker threads; each thread touches only its own rows.
struct UnsafeShared<Pointee>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Pointee>?

    init(_ pointer: UnsafeMutablePointer<Pointee>?) { self.pointer = pointer }
    init(_ pointer: UnsafePointer<Pointee>?) { self.pointer = UnsafeMutablePointer(mutating: pointer) }
}

/// How many chunks of rows the kernels split `rows` rows of `vocabularySize` into:
/// 1 for small work (a thread hand-off costs more than it saves), else about
/// eight chunks per core so an uneven finish costs little.
func fusedRowChunkCount(rows: Int, vocabularySize: Int) -> Int {
    let minimumElementsPerChunk = 8_192
    let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    let byWork = rows * max(vocabularySize, 1) / minimumElementsPerChunk
    return max(1, min(rows, byWork, 8 * cores))
}

/// Runs `body` on consecutive chunks of `0..<rows`, the chunks spread over the
/// cores; returns whether any chunk returned true.
func forEachRowChunk(rows: Int, vocabularySize: Int, _ body: (Range<Int>) -> Bool) -> Bool {
    let chunks = fusedRowChunkCount(rows: rows, vocabularySize: vocabularySize)
    if chunks == 1 {
        return body(0..<rows)
    }
    var flags = [Bool](repeating: false, count: chunks)
    flags.withUnsafeMutableBufferPointer { flagsBuffer in
        let shared = UnsafeShared(flagsBuffer.baseAddress)
        withoutActuallyEscaping(body) { body in
            let work = UnsafeSendableClosure(body)
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let lower = rows * chunk / chunks, upper = rows * (chunk + 1) / chunks
                shared.pointer![chunk] = work.body(lower..<upper)
            }
        }
    }
    return flags.contains(true)
}

/// The per-chunk work, handed to the threads: it writes disjoint rows only.
struct UnsafeSendableClosure: @unchecked Sendable {
    let body: (Range<Int>) -> Bool
    init(_ body: @escaping (Range<Int>) -> Bool) { self.body = body }
}
