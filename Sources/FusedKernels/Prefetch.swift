// Asking for a cache line before the loop needs it: LLVM's prefetch intrinsic,
// which Swift has no spelling for.

/// LLVM's `llvm.prefetch` (address, read or write, locality 0-3, data or
/// instruction cache), declared by its symbol name: the compiler hands a call to
/// it to LLVM, which emits the CPU's prefetch instruction (x86-64 `prefetcht0`,
/// arm64 `prfm`). The last three arguments must be constants, which
/// ``prefetchForReading(_:)`` passes.
@_silgen_name("llvm.prefetch.p0")
private func llvmPrefetch(_ address: UnsafeRawPointer, _ write: Int32, _ locality: Int32, _ cacheType: Int32)

/// Starts loading the cache line holding `address` into every cache level, and
/// returns at once: the instruction retires without waiting for the line, never
/// faults (an address past the end of the logits is fine), and changes no result.
///
/// Why: a load that misses holds up every later instruction from retiring, so a
/// core that does some forty vector operations per cache line (the exp) keeps
/// only three or four lines in flight, and the reads overlap the arithmetic only
/// in part. A prefetch a block ahead keeps the next lines coming while the
/// current ones are exponentiated. The intrinsics module's `_m_prefetch` cannot
/// do it: it imports as a function without effects, and the compiler drops the
/// call, even at -Onone.
@_transparent
func prefetchForReading(_ address: UnsafeRawPointer) {
    llvmPrefetch(address, 0, 3, 1)  // read, keep in all levels, data
}
