# RLHF math in pure Swift. `make test` is what CI runs.
#
#   make chapters build once, then run every chapter of the book in order
#   make chapter N=4   run one chapter
#   make exercise N=4  build and grade the workshop exercise of chapter 4
#                      (Chapters/exercises/04-gae/Exercise.swift) on the chapter's fixtures
#   make test     debug build, golden-verify over GoldenData, a package that uses the libraries
#                 (Tests/LibraryConsumer), then every test; then the fused kernels' tests again
#                 with the code paths make bench turns on by the CPU (-D RLHF_FMA, and
#                 -D RLHF_AVX512 on a CPU with AVX-512)
#   make verify   golden-verify over GoldenData, release build
#   make golden   regenerate the PyTorch fixtures (needs torch==2.13.0+cpu)
#   make bench    release benchmarks of every stage, beside PyTorch CPU when installed
#   make fuzz     100,000 seeded hostile mutations of the fixtures through the verifier
#                 (make test runs 3,000; FUZZ_SEED=N for another sequence)

SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3

.PHONY: all build test verify golden chapters chapter exercise clean bench fuzz

all: test

build:
	$(SWIFT) build

test:
	$(SWIFT) build --build-tests
	.build/debug/golden-verify --failures-only GoldenData
	$(SWIFT) build --package-path Tests/LibraryConsumer
	Tests/LibraryConsumer/.build/debug/LibraryConsumer GoldenData
	$(SWIFT) test --skip-build
	@echo; echo "The fused kernels' tests again, with the code paths make bench turns on by the CPU:"
	$(SWIFT) build --build-tests $(KERNEL_FLAGS)
	$(SWIFT) test --skip-build $(KERNEL_FLAGS) --filter FusedKernelsTests

# The fused kernels' other code paths (-D RLHF_FMA, -D RLHF_AVX512: see `bench`),
# which `make bench` turns on by the CPU, in a build of their own, so `make test`
# checks them too. -D RLHF_FMA is portable code (only slower without FMA);
# -D RLHF_AVX512 needs AVX-512 instructions, so it is built and tested only on a
# CPU that has them, where `make bench` uses it.
KERNEL_FLAGS = --scratch-path .build/kernel-flags -Xswiftc -DRLHF_FMA \
	$(if $(HAS_AVX512),-Xswiftc -DRLHF_AVX512 -Xswiftc -target-cpu -Xswiftc native)

CHAPTERS := $(sort $(notdir $(wildcard Chapters/[0-9][0-9]-*)))

chapters:
	$(SWIFT) build
	@for chapter in $(CHAPTERS); do \
		echo; echo "### make chapter N=$${chapter%%-*}: .build/debug/ch$$chapter"; echo; \
		.build/debug/ch$$chapter || exit 1; \
	done

chapter:
	@test -n "$(N)" || { echo "usage: make chapter N=4"; exit 2; }
	$(SWIFT) build
	@chapter=$$(ls -d Chapters/$$(printf '%02d' $$((10#$(N))))-* 2>/dev/null | head -n 1); \
	test -n "$$chapter" || { echo "no chapter $(N) under Chapters/"; exit 2; }; \
	.build/debug/ch$$(basename $$chapter)

exercise:
	@test -n "$(N)" || { echo "usage: make exercise N=4"; exit 2; }
	@exercise=$$(ls -d Chapters/exercises/$$(printf '%02d' $$((10#$(N))))-* 2>/dev/null | head -n 1); \
	test -n "$$exercise" || { echo "no exercise $(N) under Chapters/exercises/ (there are: $$(ls Chapters/exercises | grep '^[0-9]' | tr '\n' ' '))"; exit 2; }; \
	$(SWIFT) build --product ex$$(basename $$exercise) && .build/debug/ex$$(basename $$exercise)

FUZZ_CASES ?= 100000
fuzz:
	$(SWIFT) build --build-tests
	FUZZ_CASES=$(FUZZ_CASES) $(SWIFT) test --skip-build --filter FixtureFuzzTests

verify:
	$(SWIFT) run -c release golden-verify GoldenData

golden:
	$(PYTHON) GoldenData/generate.py

# Both sides use every core: rlhf-bench through Dispatch, torch via --threads.
# rlhf-bench is built for this machine's CPU (AVX2 where there is one), as torch
# picks its AVX2/AVX-512 kernels at run time; `make bench BENCH_CPU=` builds it
# for the portable baseline (SSE2 on x86-64) instead.
BENCH_CPU ?= native
# With a CPU build on a CPU that has FMA, the vectorised exp fuses its
# multiply-adds too (-D RLHF_FMA, Sources/FusedKernels/VectorExponential.swift).
BENCH_FMA = $(if $(BENCH_CPU),$(shell grep -qw fma /proc/cpuinfo 2>/dev/null && echo -Xswiftc -DRLHF_FMA))
# With AVX-512 (-D RLHF_AVX512; only for BENCH_CPU=native on a CPU that has it,
# as the build needs AVX-512 instructions): the online row pass keeps its
# largest t and W in sixteen lanes, not eight, and the exp takes 2^(j/16) from a
# register (Sources/FusedKernels/OnlineRowPass.swift, VectorExponential.swift).
HAS_AVX512 := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo yes)
BENCH_AVX512 = $(if $(and $(filter native,$(BENCH_CPU)),$(HAS_AVX512)),-Xswiftc -DRLHF_AVX512)
# Both processes run with glibc's heap kept warm between runs. By default glibc
# hands the top of its heap back to the kernel once 128 KB or more is free there,
# so a stage whose results are a few hundred KB gets fresh pages on every run and
# pays a page fault (and a cleared page) per 4 KB: that alone moved actor_loss at
# 64x2048 between 0.3 and 1.6 ms in PyTorch and between 0.5 and 1.1 ms here. A
# training loop's heap stays warm; the same setting for both sides measures that.
# Blocks over 32 MB (the [B, T, V] logits and gradients) are still mapped fresh,
# so their peak memory reads as before; a small case's peak may read low, as it
# reuses heap a previous case freed.
BENCH_ENV = GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432
bench:
	$(SWIFT) build -c release --product rlhf-bench $(if $(BENCH_CPU),-Xswiftc -target-cpu -Xswiftc $(BENCH_CPU)) $(BENCH_FMA) $(BENCH_AVX512)
	@set -eo pipefail; threads=$$(nproc 2>/dev/null || echo 1); export $(BENCH_ENV); \
	.build/release/rlhf-bench | tee .build/bench-swift.txt; \
	if $(PYTHON) -c 'import torch' 2>/dev/null; then \
		echo; $(PYTHON) Benchmarks/torch_baseline.py --threads $$threads | tee .build/bench-torch.txt; \
	else \
		echo; echo "PyTorch is not installed: no torch column"; : > .build/bench-torch.txt; \
	fi; \
	echo; awk -f Benchmarks/join_rows.awk .build/bench-torch.txt .build/bench-swift.txt; \
	echo; echo "Each fused kernel, and clear_pages (the page faults and clearing a fresh [B, T, V] result costs before"; \
	echo "it is written), against read_logits, in back-to-back pairs on the same logits (median of 9):"; \
	grep -h ' (paired)$$' .build/bench-swift.txt || echo "(none: rlhf-bench printed no paired ratio)"

clean:
	rm -rf .build Tests/LibraryConsumer/.build
