# RLHF math in pure Swift. `make test` is what CI runs.
#
#   make test     debug build, then every test (golden, known-answer, invariants)
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
	$(SWIFT) test --skip-build

verify:
	$(SWIFT) run -c release golden-verify GoldenData

golden:
	$(PYTHON) GoldenData/generate.py

clean:
	rm -rf .build
