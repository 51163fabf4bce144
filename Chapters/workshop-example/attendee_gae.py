"""A workshop attendee's GAE in PyTorch, with a well-known mistake: lambda is left
out of the recursion (A_t = delta_t + gamma * A_t+1). Run from the repository's root:

    python3 Chapters/workshop-example/attendee_gae.py
    swift run golden-verify --answers Chapters/workshop-example/answers

golden-verify names the mistake (gae.no-lambda) under every fixture it breaks.
The saved answers are committed, so the test suite checks this route without Python.
"""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "GoldenData"))
import workshop  # noqa: E402


def my_gae(values, rewards, start, gamma, lam):
    batch, n = values.shape
    advantages = torch.zeros(batch, n - start, dtype=values.dtype)
    last = torch.zeros(batch, dtype=values.dtype)
    for t in reversed(range(start, n)):
        next_value = values[:, t + 1] if t + 1 < n else torch.zeros(batch, dtype=values.dtype)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * last          # the mistake: gamma * lam * last
        advantages[:, t - start] = last
    return advantages, advantages + values[:, start:]


for case in workshop.cases("gae", ROOT / "GoldenData"):
    p = case.params
    advantages, returns = my_gae(case.inputs["values"], case.inputs["rewards"], p["start"], p["gamma"], p["lambda"])
    case.save(Path(__file__).resolve().parent / "answers", advantages=advantages, returns=returns)
