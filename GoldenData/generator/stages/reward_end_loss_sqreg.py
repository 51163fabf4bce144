"""Stage reward_end_loss_sqreg: align-anything's reward-model loss on end scores.

Re-implements align-anything align_anything/trainers/text_to_text/rm.py :: RMTrainer.loss:
the [2B] end scores split into the B better rows h and the B worse rows l;
loss = mean of -logsigmoid(h - l), plus regularization * (mean of the 2B squared
scores) only when regularization > 0 (a negative value is ignored); accuracy =
share of pairs with h > l (strict). The gradient is autograd's, with respect to
the end scores.
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, close_to, randint
from ..fixture_format import F64, V11_TOL
from ..reference import leaf, need, need_float

DEFAULT_REGULARIZATION = 0.001   # configs/train/text_to_text/rm.yaml


def reward_end_loss_sqreg(inp, prm):
    scores = inp["end_scores"]
    need(scores.dim() == 1, "end_scores must be [2B]")
    need(scores.shape[0] % 2 == 0, f"end_scores has {scores.shape[0]} rows: not B better over B worse")
    need(scores.shape[0] > 0, "end_scores has no pair (the mean would be 0/0)")
    regularization = prm.get("regularization", DEFAULT_REGULARIZATION)
    need(math.isfinite(regularization), "regularization must be finite")
    need_float("end_scores", scores)
    pairs = scores.shape[0] // 2
    scores = leaf(scores)
    better, worse = scores[:pairs], scores[pairs:]
    loss = (-F.logsigmoid(better - worse)).mean()
    if regularization > 0:   # the peer's test: zero and negative values add nothing
        loss = loss + regularization * torch.cat([better, worse]).pow(2).mean()
    need(not bool(torch.isnan(loss)), "the loss is NaN")
    loss.backward()
    correct = int((better > worse).sum())
    return {
        "loss": loss.detach(),
        "higher_end_reward": better.detach().clone(),
        "lower_end_reward": worse.detach().clone(),
        # k/B divided once in the fixture's dtype (the peer's .float().mean() is float32).
        "accuracy": torch.tensor(float(correct), dtype=scores.dtype) / pairs,
        "grad_end_scores": scores.grad,
    }


# ---- cases ----

WHAT = "align-anything RMTrainer.loss semantics"


def stacked(better, worse):
    return {"end_scores": torch.tensor(list(better) + list(worse), dtype=F64)}


def random_pairs(b, spread=1.5):
    return {"end_scores": torch.randn(2 * b, dtype=F64) * spread}


def ties():
    batch = random_pairs(4)
    batch["end_scores"][5] = batch["end_scores"][1]   # pair 1 ties: counts as wrong
    batch["end_scores"][7] = batch["end_scores"][3]   # pair 3 too
    return batch


def by_hand_check(out):
    # h = [2, 0], l = [0, 0], λ = 0.1: (softplus(-2) + ln 2) / 2 + 0.1 · 4 / 4
    close_to(out["loss"], [(math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2 + 0.1], 1e-12)
    close_to(out["accuracy"], [0.5], 0.0)


def random_batch():
    batch = random_pairs(randint(1, 6))
    batch["_params"] = {"regularization": [0.001, 0.01, 0.0, -0.1][randint(0, 3)]}
    return batch


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


CASES = [
    case("default-regularization", "regularization left out: the default 0.001 applies", {},
         lambda: random_pairs(4)),
    case("regularization-0", "regularization 0: no square term", {"regularization": 0.0}, lambda: random_pairs(4)),
    case("regularization-negative", "regularization -0.5 is ignored, not subtracted (the peer adds the term only "
         "when > 0)", {"regularization": -0.5}, lambda: random_pairs(4)),
    case("regularization-0.5", "regularization 0.5: the square term dominates the gradient", {"regularization": 0.5},
         lambda: random_pairs(3, spread=3.0)),
    case("ties-count-wrong", "two pairs whose scores tie: accuracy counts them as wrong (strict >)",
         {"regularization": 0.001}, ties),
    case("large-gap-800", "pairs with h - l = +800 and -800: the pairwise terms saturate at 0 and 800",
         {"regularization": 0.001}, lambda: stacked([400.0, -400.0], [-400.0, 400.0])),
    case("one-pair", "B = 1 (two rows)", {"regularization": 0.001}, lambda: stacked([0.75], [-0.25])),
    case("by-hand", "h = [2, 0], l = [0, 0], regularization 0.1: loss (softplus(-2) + ln 2)/2 + 0.1, accuracy 1/2",
         {"regularization": 0.1}, lambda: stacked([2.0, 0.0], [0.0, 0.0]), check=by_hand_check),
    *[FloatCase(f"random-{k}", f"{WHAT}, random B and regularization (0.001, 0.01, 0 or -0.1)", None, random_batch,
                tolerance=V11_TOL) for k in (1, 2, 3)],

    ErrorCase("odd-rows", "3 rows do not split into B better over B worse (peer: batch size assertion)",
              {"regularization": 0.001}, lambda: {"end_scores": torch.randn(3, dtype=F64)}),
    ErrorCase("one-row", "1 row: no pair (peer: chunk gives one half, unpacking fails)", {"regularization": 0.001},
              lambda: {"end_scores": torch.randn(1, dtype=F64)}),
    ErrorCase("no-rows", "0 rows: the mean over no pair would be 0/0", {"regularization": 0.001},
              lambda: {"end_scores": torch.zeros(0, dtype=F64)}),
    ErrorCase("end-scores-rank", "end_scores [2B,1] instead of [2B]", {"regularization": 0.001},
              lambda: {"end_scores": torch.randn(4, 1, dtype=F64)}),
    ErrorCase("nan-end-scores", "NaN in end_scores", {"regularization": 0.001},
              lambda: stacked([0.5, math.nan], [0.25, 1.0]), also_f32=True),
]

STAGE = Stage("reward_end_loss_sqreg", reward_end_loss_sqreg, CASES, catalog_prefixes=(WHAT,))
