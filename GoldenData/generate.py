#!/usr/bin/env python3
"""Golden-fixture generator for the Swift RLHF reference (format `rlhf-golden-v1`).

Run from the repository root:

    python3 GoldenData/generate.py          # (re)write every generated fixture
    python3 GoldenData/generate.py --stage gae --stage dpo_loss   # only those folders
    python3 GoldenData/generate.py --list   # print the fixture table used in README.md

This file checks the torch build and hands over to the `generator` package beside
it: generator/stages/<stage>.py holds each stage's PyTorch reference
implementation and cases, generator/cli.py the writing (see generator/__init__.py
and GoldenData/README.md, "Regenerating").
"""

import sys

import torch

REQUIRED_TORCH = "2.13.0+cpu"
if torch.__version__ != REQUIRED_TORCH:
    sys.exit(
        f"GoldenData/generate.py needs torch {REQUIRED_TORCH} (found {torch.__version__}).\n"
        f"The fixtures pin exact floating-point results, so another torch build may change\n"
        f"the last bits of every file. Install it with: pip install torch=={REQUIRED_TORCH}\n"
        f"  (from https://download.pytorch.org/whl/cpu)"
    )

sys.dont_write_bytecode = True  # no __pycache__ among the fixtures

from generator.cli import main  # noqa: E402  (only once the torch build is the right one)

if __name__ == "__main__":
    sys.exit(main())
