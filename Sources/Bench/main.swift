// rlhf-bench: times each stage at RLHF-sized shapes (run by `make bench`).
//
// Release build only (a debug build is 10-100x slower and says nothing). Each
// case makes its inputs from a seeded generator, runs once to warm up, then
// `runs` times (51 for a kernel under 10 ms); it prints the median time,
// elements/s, GB/s of the data the kernel must touch, and peak memory. Lines
// starting with `ROW` are for scripts (`make bench` joins them with
// Benchmarks/torch_baseline.py's rows).
//
// Peak memory: after a case's inputs exist, `5 > /proc/self/clear_refs` resets
// the kernel's high-water mark VmHWM to the current RSS; after the runs, VmHWM
// minus the RSS from before the inputs were made is what the case needed at its
// peak: its inputs, its outputs and anything the kernel allocated.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import TensorCore
import GatherLogProbs
import GAE
import ActorLoss
import CriticLoss
import ComputeRewards
import PPOStep
import FusedKernels
import TinyLM
import EndToEnd

// MARK: - Measuring

/// Seconds on a monotonic clock.
func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

/// User + system CPU seconds of this process so far, all threads.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
    let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
    return user + system
}

/// A field of /proc/self/status in bytes (VmRSS, VmHWM), or nil off Linux.
func procStatusBytes(_ field: String) -> Int? {
    guard let file = fopen("/proc/self/status", "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix(field + ":") {
            let kilobytes = text.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kilobytes * 1024
        }
    }
    return nil
}

/// Resets VmHWM to the current RSS; false where the kernel does not allow it.
func resetPeakMemory() -> Bool {
    guard let file = fopen("/proc/self/clear_refs", "w") else { return false }
    defer { fclose(file) }
    return fputs("5", file) >= 0
}

struct Measurement {
    var stage: String
    var shape: String
    var medianSeconds: Double
    var elements: Int
    var bytes: Int
    var peakBytes: Int?
    var inputBytes: Int
    /// User + system CPU time of the whole process per run (all threads).
    var cpuSeconds: Double
    var dtype = "float32"
}

var measurements: [Measurement] = []
let onlyStages = CommandLine.arguments.dropFirst().filter { !$0.hasPrefix("-") }

/// Times `kernel` (made by `setup`, which builds the inputs): one warm-up run,
/// then `runs` runs; records the median.
///
/// `elements` is what elements/s counts, `bytes` the data the kernel must read
/// and write at least once (for GB/s), `inputBytes` the size peak memory is
/// compared with. A run that does `per` steps (a training loop) is reported per
/// step.
@MainActor
func bench(_ stage: String, _ shape: [Int], elements: Int, bytes: Int, inputBytes: Int, runs: Int = 5,
           per: Int = 1, dtype: String = "float32", setup: () throws -> () throws -> Void) throws {
    guard onlyStages.isEmpty || onlyStages.contains(stage) else { return }
    let rssBefore = procStatusBytes("VmRSS")
    let kernel = try setup()
    let peakTracked = resetPeakMemory()
    let warmUpStart = now()
    try kernel()  // warm-up
    // A kernel under 10 ms gets 51 runs, so the median is not one noisy sample
    // (torch_baseline.py does the same).
    let runs = now() - warmUpStart < 0.01 ? 51 : runs
    var times: [Double] = []
    let cpuStart = cpuSeconds()
    for _ in 0..<runs {
        let start = now()
        try kernel()
        times.append(now() - start)
    }
    let cpu = (cpuSeconds() - cpuStart) / Double(runs * per)
    times = times.map { $0 / Double(per) }
    times.sort()
    var peak: Int?
    if peakTracked, let before = rssBefore, let high = procStatusBytes("VmHWM") {
        peak = high - before
    }
    let m = Measurement(stage: stage, shape: shape.map(String.init).joined(separator: "x"),
                        medianSeconds: times[times.count / 2], elements: elements, bytes: bytes,
                        peakBytes: peak, inputBytes: inputBytes, cpuSeconds: cpu, dtype: dtype)
    measurements.append(m)
    printDetail(m)
    fflush(nil)  // a line at a time through `tee`
}

/// A kernel's time over `read_logits`' on the same logits: the median of `rounds`
/// ratios, each of one `read_logits` run and one kernel run made back to back.
///
/// Why pairs: on a shared machine the speed of memory drifts from minute to minute
/// (here `read_logits` took 23 ms in one run and 37 ms in the next), and the ratio
/// of two medians taken a minute apart carries that drift; two runs a few
/// milliseconds apart see the same machine.
func pairedRatio(rounds: Int = 9, read: () -> Void, kernel: () throws -> Void) rethrows -> Double {
    read()
    try kernel()  // warm-up, as in `bench`
    var ratios: [Double] = []
    for _ in 0..<rounds {
        let readStart = now()
        read()
        let readSeconds = now() - readStart
        let kernelStart = now()
        try kernel()
        ratios.append((now() - kernelStart) / readSeconds)
    }
    ratios.sort()
    return ratios[rounds / 2]
}

func fixed(_ value: Double, _ digits: Int) -> String {
    var scaled = value
    for _ in 0..<digits { scaled *= 10 }
    let rounded = scaled.rounded()
    let whole = Int(rounded) / Int(pow(10.0, Double(digits)))
    let fraction = abs(Int(rounded)) % Int(pow(10.0, Double(digits)))
    if digits == 0 { return String(Int(rounded)) }
    let fractionText = String(fraction)
    let sign = value < 0 && whole == 0 ? "-" : ""
    return sign + String(whole) + "." + String(repeating: "0", count: digits - fractionText.count) + fractionText
}

func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

func printDetail(_ m: Measurement) {
    let milliseconds = m.medianSeconds * 1e3
    let peak = m.peakBytes.map { fixed(Double($0) / 1e6, 1) + " MB" } ?? "-"
    // Against the inputs only where they are large: small cases reuse freed heap
    // pages, so their RSS barely moves.
    let ratio = m.inputBytes < 64_000_000 ? "" : m.peakBytes.map { fixed(Double($0) / Double(m.inputBytes), 2) + "x inputs" } ?? ""
    print(padded(m.stage, 28) + padded(m.shape, 16) + padded(fixed(milliseconds, 2) + " ms", 13)
          + padded(fixed(Double(m.elements) / m.medianSeconds / 1e9, 2) + " G elem/s", 17)
          + padded(fixed(Double(m.bytes) / m.medianSeconds / 1e9, 1) + " GB/s", 12)
          + padded("cpu " + fixed(m.cpuSeconds * 1e3, 1) + " ms", 16)
          + padded("peak " + peak, 17) + ratio)
}

// MARK: - Inputs

/// SplitMix64, for inputs that are the same on every run.
struct Generator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [low, high), from the top 24 bits.
    mutating func float(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(next() >> 40) * 0x1p-24
    }
    mutating func floats(_ count: Int, _ low: Float, _ high: Float) -> [Float] {
        (0..<count).map { _ in float(low, high) }
    }
    mutating func labels(_ count: Int, below limit: Int) -> [Int64] {
        (0..<count).map { _ in Int64(next() % UInt64(limit)) }
    }
}

var generator = Generator(state: 2026)

@MainActor
func randomLogits(_ b: Int, _ t: Int, _ v: Int) -> (Tensor<Float>, Tensor<Int64>) {
    (Tensor.make([b, t, v], generator.floats(b * t * v, -8, 8)), Tensor.make([b, t], generator.labels(b * t, below: v)))
}

/// Σ of all elements with SIMD over all cores: one plain read, the memory limit.
func sumAll(_ x: [Float]) -> Float {
    let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    let chunks = 8 * cores
    var partial = [Float](repeating: 0, count: chunks)
    x.withUnsafeBufferPointer { input in
        partial.withUnsafeMutableBufferPointer { output in
            nonisolated(unsafe) let inputBase = input.baseAddress!, outputBase = output.baseAddress!
            let count = input.count
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                var lanes = SIMD16<Float>()
                var i = count * chunk / chunks / 16 * 16
                let end = chunk == chunks - 1 ? count : count * (chunk + 1) / chunks / 16 * 16
                while i + 16 <= end {
                    lanes += UnsafeRawPointer(inputBase + i).loadUnaligned(as: SIMD16<Float>.self)
                    i += 16
                }
                var total = lanes.sum()
                while i < end { total += inputBase[i]; i += 1 }
                outputBase[chunk] = total
            }
        }
    }
    return partial.reduce(0, +)
}

/// A fresh array of `count` copies of `value`, written with SIMD over all cores,
/// its pages backed by 2 MB pages where the kernel allows (as the fused backward
/// does for its result). With `touchOnly`, one float per 4 KB page is written
/// (`value`) and the rest is left as the kernel cleared it (zero): what is timed
/// is then the page faults and the clearing alone.
func fillFresh(count: Int, with value: Float, touchOnly: Bool = false) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        let base = buffer.baseAddress!
        let hugePage = 2 << 20
        let start = (UInt(bitPattern: base) + UInt(hugePage - 1)) & ~UInt(hugePage - 1)
        let end = UInt(bitPattern: base + count) & ~UInt(hugePage - 1)
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), Int(end - start), MADV_HUGEPAGE) }
        nonisolated(unsafe) let output = base
        let chunks = 8 * max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            var i = count * chunk / chunks / 16 * 16
            let end = chunk == chunks - 1 ? count : count * (chunk + 1) / chunks / 16 * 16
            if touchOnly {
                // Every float of a fresh mmap is already 0: one write per page
                // (1,024 floats) is what makes the kernel fault it in and clear it.
                if i < end { output[i] = value }
                i = (i / 1024 + 1) * 1024
                while i < end { output[i] = value; i += 1024 }
                return
            }
            while i + 16 <= end {
                UnsafeMutableRawPointer(output + i).storeBytes(of: SIMD16<Float>(repeating: value), as: SIMD16<Float>.self)
                i += 16
            }
            while i < end { output[i] = value; i += 1 }
        }
        initialized = count
    }
}

// MARK: - Cases

let threads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
print("rlhf-bench: release build, \(threads) threads (Dispatch over all cores), median of 5 runs (51 under 10 ms) after one warm-up")
print("GB/s counts the bytes a kernel must read and write once; peak is the case's RSS high-water mark above the")
print("RSS before its inputs were made (inputs + outputs + anything allocated); \"x read_logits (paired)\" is a fused")
print("kernel's time over read_logits' on the same logits, the median of 9 ratios of back-to-back runs")
print()

var sink: Float = 0  // keeps results alive so nothing is optimised away

for (b, t, v) in [(4, 512, 50272), (8, 256, 32000), (1, 2048, 151936)] {
    let elements = b * t * v
    let logitsBytes = elements * 4
    try bench("read_logits", [b, t, v], elements: elements, bytes: logitsBytes, inputBytes: logitsBytes) {
        let (logits, _) = randomLogits(b, t, v)
        return { sink += sumAll(logits.scalars) }
    }
    // The floor for a kernel that returns a fresh [B, T, V] result: allocating it
    // and writing every element once (2 MB pages, as the backward asks for).
    try bench("write_logits", [b, t, v], elements: elements, bytes: logitsBytes, inputBytes: logitsBytes) {
        return { sink += fillFresh(count: elements, with: 0.5)[elements - 1] }
    }
    // What the kernel alone spends on a fresh [B, T, V] array before anyone writes
    // it: a page fault per page and clearing it. A kernel that returns a fresh
    // result pays it on top of reading the logits and writing the result once.
    try bench("clear_pages", [b, t, v], elements: elements, bytes: logitsBytes, inputBytes: logitsBytes) {
        return { sink += fillFresh(count: elements, with: 0.5, touchOnly: true)[elements - 1] }
    }
    try bench("gather_log_probs", [b, t, v], elements: elements, bytes: logitsBytes, inputBytes: logitsBytes) {
        let (logits, labels) = randomLogits(b, t, v)
        return { sink += try gatherLogProbsFused(logits: logits, labels: labels).scalars[0] }
    }
    try bench("gather_log_probs_grad", [b, t, v], elements: elements, bytes: 2 * logitsBytes, inputBytes: logitsBytes) {
        let (logits, labels) = randomLogits(b, t, v)
        let upstream = Tensor.make([b, t], generator.floats(b * t, -1, 1))
        return { sink += try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream).scalars[0] }
    }
    // The same backward into the previous call's result, as a training loop can
    // keep its gradient buffer: no fresh pages for the kernel to clear.
    try bench("gather_log_probs_grad_into", [b, t, v], elements: elements, bytes: 2 * logitsBytes,
              inputBytes: logitsBytes) {
        let (logits, labels) = randomLogits(b, t, v)
        let upstream = Tensor.make([b, t], generator.floats(b * t, -1, 1))
        var result = Tensor<Float>(shape: [0], repeating: 0)
        return {
            try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream, into: &result)
            sink += result.scalars[0]
        }
    }
    // TRL's PPO step: the new log-probs and the entropy of logits / (0.7 + 1e-7).
    try bench("log_probs_with_entropy", [b, t, v], elements: elements, bytes: logitsBytes, inputBytes: logitsBytes) {
        let (logits, labels) = randomLogits(b, t, v)
        return { sink += try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 0.7).entropy.scalars[0] }
    }
    // The targets of issue 15 are ratios to `read_logits`: each also measured in
    // back-to-back pairs on one set of logits (`pairedRatio`).
    if onlyStages.isEmpty || onlyStages.contains("paired") {
        let (logits, labels) = randomLogits(b, t, v)
        let upstream = Tensor.make([b, t], generator.floats(b * t, -1, 1))
        var result = Tensor<Float>(shape: [0], repeating: 0)
        let read = { sink += sumAll(logits.scalars) }
        let kernels: [(String, () throws -> Void)] = [
            ("clear_pages", { sink += fillFresh(count: logits.count, with: 0.5, touchOnly: true)[logits.count - 1] }),
            ("gather_log_probs", { sink += try gatherLogProbsFused(logits: logits, labels: labels).scalars[0] }),
            ("gather_log_probs_grad", {
                sink += try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream).scalars[0]
            }),
            ("gather_log_probs_grad_into", {
                try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream, into: &result)
                sink += result.scalars[0]
            }),
            ("log_probs_with_entropy", {
                sink += try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 0.7).entropy.scalars[0]
            }),
        ]
        for (stage, kernel) in kernels {
            let ratio = try pairedRatio(read: read, kernel: kernel)
            let line = padded(stage, 28) + padded("\(b)x\(t)x\(v)", 16) + fixed(ratio, 2) + "x read_logits (paired)"
            print(line)
        }
        fflush(nil)
    }
}

// The plain reference path, one thread, at a quarter of the first shape.
do {
    let (b, t, v) = (1, 512, 50272)
    let elements = b * t * v
    try bench("gather_log_probs_plain", [b, t, v], elements: elements, bytes: elements * 4, inputBytes: elements * 4) {
        let (logits, labels) = randomLogits(b, t, v)
        return { sink += try gatherLogProbs(logits: logits, labels: labels).scalars[0] }
    }
    try bench("gather_log_probs", [b, t, v], elements: elements, bytes: elements * 4, inputBytes: elements * 4) {
        let (logits, labels) = randomLogits(b, t, v)
        return { sink += try gatherLogProbsFused(logits: logits, labels: labels).scalars[0] }
    }
}

// What is timed is what the tests check: fused = plain, in this very build (which
// may differ from the tests' build: -target-cpu, -D RLHF_FMA). Same tolerances as
// Tests/FusedKernelsTests: abs 1e-6 + rel 1e-6, and for the entropy 4 float32 ulp
// of max|z| on top (FusedLogProbsWithEntropyTests.swift).
/// Prints whether `fused` equals `plain` within abs `absolute` + rel 1e-6; exits if not.
func checkFusedEqualsPlain(_ what: String, _ fused: [Float], _ plain: [Float], absolute: Float = 1e-6) {
    var largest: Float = 0
    var outside = 0
    for (got, expected) in zip(fused, plain) {
        largest = max(largest, abs(got - expected))
        if !(abs(got - expected) <= absolute + 1e-6 * abs(expected)) { outside += 1 }
    }
    print("check: \(what) fused = plain within abs \(absolute) + rel 1e-6: "
          + "\(outside == 0 ? "yes" : "NO, \(outside) outside"), largest difference \(largest)")
    guard outside == 0 else { exit(1) }
}
if onlyStages.isEmpty || onlyStages.contains("gather_log_probs") {
    let (logits, labels) = randomLogits(1, 512, 50272)
    checkFusedEqualsPlain("gather_log_probs 1x512x50272", try gatherLogProbsFused(logits: logits, labels: labels).scalars,
                          try gatherLogProbs(logits: logits, labels: labels).scalars)
}
if onlyStages.isEmpty || onlyStages.contains("gather_log_probs_grad") || onlyStages.contains("gather_log_probs_grad_into") {
    let (logits, labels) = randomLogits(1, 64, 50272)
    let upstream = Tensor.make([1, 64], generator.floats(64, -1, 1))
    checkFusedEqualsPlain("gather_log_probs_grad 1x64x50272",
                          try gatherLogProbsFusedGradLogits(logits: logits, labels: labels, gradOutput: upstream).scalars,
                          try gatherLogProbsGradLogits(logits: logits, labels: labels, gradOutput: upstream).scalars)
}
if onlyStages.isEmpty || onlyStages.contains("log_probs_with_entropy") {
    let (logits, labels) = randomLogits(1, 128, 50272)
    let fused = try logProbsWithEntropyFused(logits: logits, labels: labels, temperature: 0.7)
    let plain = try logProbsWithEntropy(logits: logits, labels: labels, temperature: 0.7)
    checkFusedEqualsPlain("log_probs_with_entropy 1x128x50272, log-probs", fused.logProbs.scalars, plain.logProbs.scalars)
    let largestZ = logits.scalars.reduce(Float(0)) { max($0, abs($1)) } / Float(0.7 + 1e-7)
    checkFusedEqualsPlain("log_probs_with_entropy 1x128x50272, entropy", fused.entropy.scalars, plain.entropy.scalars,
                          absolute: 1e-6 + 4 * Float.ulpOfOne * largestZ)
}

for (b, n) in [(64, 1024), (64, 2048)] {
    let elements = b * n
    // Reads values and rewards, writes advantages, returns and deltas.
    try bench("gae", [b, n], elements: elements, bytes: elements * 4 * 5, inputBytes: elements * 8) {
        let values = Tensor.make([b, n], generator.floats(elements, -1, 1))
        let rewards = Tensor.make([b, n], generator.floats(elements, -1, 1))
        return { sink += try gae(values: values, rewards: rewards, start: 0, gamma: 1.0, lambda: 0.95).advantages.scalars[0] }
    }
}

for (b, n) in [(64, 2048)] {
    let elements = b * n
    let mask = Tensor.make([b, n], (0..<elements).map { Int64($0 % 7 == 0 ? 0 : 1) })
    // Three float inputs and the mask read, two float outputs written.
    let bytes = elements * (4 * 3 + 8 + 4 * 2)
    try bench("actor_loss", [b, n], elements: elements, bytes: bytes, inputBytes: elements * 20) {
        let logProbs = Tensor.make([b, n], generator.floats(elements, -3, 0))
        let oldLogProbs = Tensor.make([b, n], generator.floats(elements, -3, 0))
        let advantages = Tensor.make([b, n], generator.floats(elements, -1, 1))
        return { sink += try actorLoss(logProbs: logProbs, oldLogProbs: oldLogProbs, advantages: advantages,
                                       mask: mask, cliprange: 0.2).loss }
    }
    try bench("critic_loss", [b, n], elements: elements, bytes: bytes, inputBytes: elements * 20) {
        let values = Tensor.make([b, n], generator.floats(elements, -1, 1))
        let oldValues = Tensor.make([b, n], generator.floats(elements, -1, 1))
        let returns = Tensor.make([b, n], generator.floats(elements, -1, 1))
        return { sink += try criticLoss(values: values, oldValues: oldValues, returns: returns, mask: mask,
                                        cliprangeValue: 0.2).loss }
    }
    // Two float inputs, the score and the mask read, the rewards written.
    try bench("compute_rewards", [b, n], elements: elements, bytes: elements * (4 * 2 + 8 + 4), inputBytes: elements * 16) {
        let logProbs = Tensor.make([b, n], generator.floats(elements, -3, 0))
        let refLogProbs = Tensor.make([b, n], generator.floats(elements, -3, 0))
        let rewardScore = Tensor.make([b], generator.floats(b, -1, 1))
        return { sink += try computeRewards(logProbs: logProbs, refLogProbs: refLogProbs, rewardScore: rewardScore,
                                            actionMask: mask, promptLength: 1, klCtl: 0.1,
                                            clipRewardValue: 5).scalars[0] }
    }
}

for (b, l) in [(16, 1024), (64, 2048)] {
    let n = l - 1
    let elements = b * n
    let promptLength = l / 4
    // Answers of different lengths: row r ends after promptLength + (r+1)·(l - promptLength)/b tokens.
    var attention = [Int64](repeating: 0, count: b * l)
    for row in 0..<b {
        for t in 0..<(promptLength + (row + 1) * (l - promptLength) / b) { attention[row * l + t] = 1 }
    }
    let attentionMask = Tensor.make([b, l], attention)
    // Six float inputs and the mask read; rewards, values, advantages, returns and
    // the losses' per-token terms written.
    try bench("ppo_step", [b, l], elements: elements, bytes: elements * (4 * 5 + 8 + 4 * 8), inputBytes: elements * 28) {
        let inputs = (0..<5).map { _ in Tensor.make([b, n], generator.floats(elements, -2, 0)) }
        let rewardScore = Tensor.make([b], generator.floats(b, -1, 1))
        return {
            let result = try ppoLosses(attentionMask: attentionMask, logProbs: inputs[0], refLogProbs: inputs[1],
                                       values: inputs[2], newLogProbs: inputs[3], newValues: inputs[4],
                                       rewardScore: rewardScore, promptLength: promptLength, klCtl: 0.1,
                                       clipRewardValue: 5, cliprange: 0.2, cliprangeValue: 0.2, gamma: 1.0,
                                       lambda: 0.95)
            sink += result.actor.loss + result.critic.loss
        }
    }
}

// Chapter 10's toy pipeline (Sources/EndToEnd on the TinyLM, float64, one thread):
// milliseconds per training step of SFT, the reward model and PPO, at the
// chapter's default sizes; Benchmarks/toy_pipeline.py is the same in PyTorch.
do {
    let settings = PipelineSettings()
    let data = ToyData(seed: settings.dataSeed)
    let L = ToyLanguage.sequenceLength
    let steps = 10
    try bench("toy_sft_step", [settings.sftBatchSize, L], elements: settings.sftBatchSize * L, bytes: 0, inputBytes: 0,
              per: steps, dtype: "float64") {
        var rng = SplitMix64(seed: 1)
        var model = try TinyLM(config: settings.model, rng: &rng)
        return {
            sink += Float(try supervisedFineTuning(model: &model, demonstrations: data.demonstrations, steps: steps,
                                                   batchSize: settings.sftBatchSize,
                                                   learningRate: settings.sftLearningRate, rng: &rng).last!)
        }
    }
    try bench("toy_reward_step", [2 * settings.rewardBatchSize, L], elements: 2 * settings.rewardBatchSize * L, bytes: 0,
              inputBytes: 0, per: steps, dtype: "float64") {
        var rng = SplitMix64(seed: 2)
        var model = try TinyLM(config: settings.model, rng: &rng)
        return {
            sink += Float(try trainRewardModel(model: &model, pairs: data.trainingPairs, steps: steps,
                                               batchSize: settings.rewardBatchSize,
                                               learningRate: settings.rewardLearningRate, rng: &rng).last!)
        }
    }
    var ppoSettings = settings.ppo
    ppoSettings.steps = 2
    try bench("toy_ppo_step", [ppoSettings.batchSize, L], elements: ppoSettings.batchSize * L, bytes: 0, inputBytes: 0,
              per: ppoSettings.steps, dtype: "float64") {
        var rng = SplitMix64(seed: 3)
        let sft = try TinyLM(config: settings.model, rng: &rng)
        let rewardModel = try TinyLM(config: settings.model, rng: &rng)
        var models = PPOModels(actor: sft, reference: sft, rewardModel: rewardModel, critic: rewardModel)
        return {
            sink += Float(try proximalPolicyOptimization(models: &models, settings: ppoSettings, rng: &rng).last!.actorLoss)
        }
    }
}

print()
for m in measurements {
    print("ROW \(m.stage) \(m.shape) \(m.dtype) \(fixed(m.medianSeconds * 1e3, 2))")
}
if sink.isNaN { print("(sink \(sink))") }
