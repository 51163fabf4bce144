// FusedKernels: the only place in the package with SIMD, unsafe pointers or
// threads. Everything else is plain loops that a reader can follow.
//
// A fused kernel computes exactly what one plain stage computes, in one pass over
// memory and without the intermediates the plain loops form, because at RLHF sizes
// (a vocabulary of 32k-150k, so 10^8 logits a step) the plain loops are too slow
// or too large. What each kernel equals, and how that is tested:
//
// | kernel                            | equals                               | tested in                                   |
// |-----------------------------------|--------------------------------------|---------------------------------------------|
// | `gatherLogProbsFused`             | `gatherLogProbs` (GatherLogProbs)    | Tests/FusedKernelsTests: against the plain  |
// | `gatherLogProbsFusedGradLogits`   | `gatherLogProbsGradLogits`           | stage on random inputs of awkward sizes     |
// |                                   |                                      | (V = 1 to 4099, rows split over threads,    |
// |                                   |                                      | NaN, inf and all -inf rows, a max in a late |
// |                                   |                                      | block, leading all -inf blocks) within abs  |
// |                                   |                                      | 1e-6 + rel 1e-6, the same errors, and every |
// |                                   |                                      | float32 golden fixture                      |
// | `logProbsWithEntropyFused`        | `logProbsWithEntropy`                | the same sizes, temperatures 0.5 to 2,      |
// |                                   | (GatherLogProbs: TRL's PPO step's    | V = 1, a known answer, logits of ±1e4 and   |
// |                                   | new log-probs and per-token entropy) | ±3e38, the plain stage's errors for -inf,   |
// |                                   |                                      | +inf, NaN                                   |
// | `exponential(_:exactZeros:)`      | e^x on [-86.5, 4] within 2.3 ulp     | VectorExponentialTests (sampled against     |
// | (internal, SIMD)                  | (1 ulp with -D RLHF_AVX512, by       | Double exp), and through the kernels above  |
// |                                   | `exponentialBySixteenths`); 0 below  |                                             |
// |                                   | with `exactZeros`                    |                                             |
// | `storeVectorStreaming(_:_:)`      | a plain store (x86-64: `movntps`,    | through the backward's tests above          |
// |                                   | which skips reading the line first)  |                                             |
// | `prefetchForReading(_:)`          | nothing: a hint to start loading a   | through all three kernels' tests above      |
// |                                   | cache line (LLVM's `llvm.prefetch`)  |                                             |
//
// What limits each (the README's "Performance" table has the numbers): the
// forward and the log-probs with entropy are bound by the exp of every logit
// (the memory reads, prefetched two blocks ahead, overlap it); the backward by that plus writing its [B, T, V]
// result once (non-temporal stores from `_Builtin_intrinsics.intel`, the
// compiler's own intrinsics module: no C code), and a fresh result also by the
// operating system's clearing of its pages on first touch (`rlhf-bench`'s
// `clear_pages`), which the `into:` form avoids. Each reads every logit once.
//
// Why no fused GAE or fused losses: with `@inlinable` stages, the plain loops are
// specialised for Float in the caller and run at memory speed (see `make bench`);
// a separate kernel is kept only where the algorithm really differs (here: one
// streaming pass per vocabulary row, SIMD lanes, rows over the cores).
//
// Two compile-time switches pick faster forms of the same math on some CPUs:
// -D RLHF_FMA (fused multiply-adds in the exp and W) and -D RLHF_AVX512 (the row
// pass keeps its max and W in sixteen lanes, not eight, and the exp is
// `exponentialBySixteenths`, which needs AVX-512 instructions). `make bench`
// passes each where /proc/cpuinfo shows the feature (RLHF_AVX512 only with
// BENCH_CPU=native); `make test` runs Tests/FusedKernelsTests twice, as built by
// default and with -D RLHF_FMA, plus -D RLHF_AVX512 on a CPU that has AVX-512.
//
// `make bench` (Sources/Bench) times these kernels against PyTorch and, before
// timing, checks in that very build that each fused kernel equals its plain stage.
