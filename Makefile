# RLHF math in pure Swift. `make test` is what CI runs.
#
#   make test     debug build, golden-verify over GoldenData, then every test
#   make verify   golden-verify over GoldenData, release build
#   make golden   regenerate the PyTorch fixtures (needs torch==2.13.0+cpu)

SWIFT ?= swift
PYTHON ?= python3

.PHONY: all build test verify golden clean

all: test

build:
	$(SWIFT) build

test:
	$(SWIFT) build --build-tests
	.build/debug/golden-verify --failures-only GoldenData
	$(SWIFT) test --skip-build

verify:
	$(SWIFT) run -c release golden-verify GoldenData

golden:
	$(PYTHON) GoldenData/generate.py

clean:
	rm -rf .build
