"""Stage gae_masked: align-anything's GAE on masked values and rewards.

Re-implements align-anything align_anything/trainers/text_to_text/ppo.py ::
PPOTrainer.get_advantages_and_returns (snapshot 3f9decc221be): values and rewards
are first multiplied by sequence_mask (every 0 becomes 0, holes included; an
infinity under a 0 becomes NaN), then the usual backward recursion from the last
column down to `start` (delta = r_t + gamma * v_{t+1} - v_t with v past the end 0,
A_t = delta + gamma * gae_lambda * A_{t+1}), which runs through holes without
restarting; returns = advantages + the masked values from `start` on. After the
masking it is the v1 `gae` recursion, so that file's implementation is reused.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, close_to, mutated, randint, random_params_case, rows_tensor
from ..fixture_format import F64, I64, V11_TOL
from ..reference import (need, need_float, need_mask, need_no_nan_result, need_shape, same_float_dtype,
                         with_defaults)
from .gae import advantages_and_returns

DEFAULTS = {"gamma": 1.0, "gae_lambda": 0.95}   # align-anything configs/train/text_to_text/ppo.yaml


def masked_advantages_and_returns(values, rewards, sequence_mask, start, gamma, gae_lambda):
    """Zero values and rewards wherever the mask is 0 (by multiplying), then GAE from start."""
    return advantages_and_returns(values * sequence_mask, rewards * sequence_mask, start, gamma, gae_lambda)


def gae_masked(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    values, rewards, mask = inp["values"], inp["rewards"], inp["sequence_mask"]
    need(values.dim() == 2, "values must be [B,N]")
    need_shape("rewards", rewards, values.shape)
    need_shape("sequence_mask", mask, values.shape)
    need_float("values", values)
    need_float("rewards", rewards)
    same_float_dtype(values=values, rewards=rewards)
    need_mask("sequence_mask", mask)
    start, width = prm["start"], values.shape[1]
    need(0 <= start < width, f"start {start} is outside [0, N={width})")
    need(math.isfinite(prm["gamma"]) and math.isfinite(prm["gae_lambda"]), "gamma and gae_lambda must be finite")
    adv, ret = masked_advantages_and_returns(values, rewards, mask, start, prm["gamma"], prm["gae_lambda"])
    need_no_nan_result("advantages", adv)
    need_no_nan_result("returns", ret)
    return {"advantages": adv, "returns": ret}


# ---- cases ----

WHAT = "align-anything PPOTrainer.get_advantages_and_returns semantics"


def lengths_mask(b, n, first, last):
    """Ones on [first[i], last[i]) of row i: a left-padded prompt part and a right-padded answer."""
    mask = torch.zeros(b, n, dtype=I64)
    for i in range(b):
        mask[i, first[i]:last[i]] = 1
    return mask


def batch_on(mask, garbage=0.0):
    """Random values and rewards; where the mask is 0 the values get `garbage` added, which the
    masking must remove."""
    b, n = mask.shape
    values = torch.randn(b, n, dtype=F64) + garbage * (1 - mask).to(F64)
    return {"values": values, "rewards": torch.randn(b, n, dtype=F64) * 0.5, "sequence_mask": mask}


def pitfalls_15():
    # shared/reference/pitfalls.md test 15: a garbage value 100 past the end must not leak in.
    return {"values": torch.tensor([[0.0, 0.0, 100.0]], dtype=F64), "rewards": torch.tensor([[0.0, 1.0, 0.0]], dtype=F64),
            "sequence_mask": rows_tensor([[1, 1, 0]])}


def pitfalls_15_check(out):
    close_to(out["advantages"], [0.95, 1.0, 0.0])
    close_to(out["returns"], [0.95, 1.0, 0.0])


def with_hole():
    mask = lengths_mask(2, 9, [0, 0], [9, 7])
    mask[0, 5] = 0
    mask[1, 3] = 0
    return batch_on(mask, garbage=10.0)


def bool_mask():
    batch = batch_on(lengths_mask(3, 7, [0, 1, 0], [7, 4, 5]), garbage=5.0)
    batch["sequence_mask"] = batch["sequence_mask"].bool()
    return batch


def toy():
    # peer-conventions section 11: the rewards rewards_kl_end_clamped gives (kl_coeff 0.1), the critic's values.
    return {"values": torch.tensor([[0.0, 0.5, 0.4, 0.3, 0.2, 0.1]], dtype=F64),
            "rewards": torch.tensor([[0.0, -0.01, 0.02, 0.97, -0.05, 0.04]], dtype=F64),
            "sequence_mask": rows_tensor([[1, 1, 1, 1, 0, 0]])}


def toy_check(out):
    close_to(out["advantages"], [0.418675, 0.5565, 0.67, 0.0, 0.0])
    close_to(out["returns"], [0.918675, 0.9565, 0.97, 0.0, 0.0])


def random_batch():
    b, n = randint(1, 4), randint(1, 11)
    start = randint(0, n - 1)
    first = [randint(0, start) for _ in range(b)]
    last = [randint(start, n) for _ in range(b)]
    batch = batch_on(lengths_mask(b, n, first, last), garbage=3.0)
    batch["_params"] = {"start": start, "gamma": [1.0, 0.99, 0.9][randint(0, 2)],
                        "gae_lambda": [0.95, 0.9, 0.5][randint(0, 2)]}
    return batch


def error_batch():
    return batch_on(lengths_mask(2, 6, [0, 1], [6, 4]))


def params_of(start, gamma=1.0, gae_lambda=0.95):
    return {"start": start, "gamma": gamma, "gae_lambda": gae_lambda}


CASES = [
    FloatCase("pitfalls-15", f"{WHAT}, shared/reference/pitfalls.md test 15: value 100 past the end is masked "
              "(advantages 0.95, 1, 0)", params_of(0), pitfalls_15, check=pitfalls_15_check),
    FloatCase("right-padded", f"{WHAT}, right-padded answers with garbage values (+20) past each end",
              params_of(2), lambda: batch_on(lengths_mask(3, 9, [0, 0, 0], [9, 5, 3]), garbage=20.0)),
    FloatCase("mask-with-hole", f"{WHAT}, a 0 inside a row: zeroed, and the recursion runs on through it",
              params_of(1), with_hole),
    FloatCase("left-padded-prompt", f"{WHAT}, zeros before start (left padding) next to a full row",
              params_of(3), lambda: batch_on(lengths_mask(2, 8, [2, 0], [6, 8]), garbage=7.0)),
    FloatCase("empty-answer-row", f"{WHAT}, a row whose mask is 0 from start on: advantages and returns 0",
              params_of(3), lambda: batch_on(lengths_mask(2, 7, [0, 0], [3, 6]), garbage=4.0)),
    FloatCase("lambda-0", f"{WHAT}, gae_lambda 0 (one-step TD on the masked values)", params_of(1, 1.0, 0.0),
              lambda: batch_on(lengths_mask(2, 7, [0, 0], [7, 4]), garbage=5.0)),
    FloatCase("lambda-1-gamma-0.9", f"{WHAT}, gae_lambda 1, gamma 0.9", params_of(1, 0.9, 1.0),
              lambda: batch_on(lengths_mask(2, 7, [0, 0], [5, 7]), garbage=5.0)),
    FloatCase("start-0", f"{WHAT}, start 0 (whole row)", params_of(0),
              lambda: batch_on(lengths_mask(2, 6, [0, 0], [6, 2]), garbage=2.0)),
    FloatCase("start-last", f"{WHAT}, start N-1 (only the last column)", params_of(5),
              lambda: batch_on(lengths_mask(3, 6, [0, 0, 0], [6, 5, 6]), garbage=2.0)),
    FloatCase("default-params", f"{WHAT}, gamma and gae_lambda left out (1.0 and 0.95)", {"start": 2},
              lambda: batch_on(lengths_mask(2, 8, [0, 0], [8, 5]), garbage=3.0)),
    FloatCase("bool-mask", f"{WHAT}, the mask given as bool", params_of(1), bool_mask),
    FloatCase("peer-toy", f"{WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 "
              "(AA advantages 0.418675, 0.5565, 0.67, 0, 0)", params_of(1), toy, check=toy_check),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, masks, start, gamma, gae_lambda", random_batch)
      for k in (1, 2, 3)],

    ErrorCase("start-negative", "start -1 is outside [0, N) (the peer silently wraps it)", params_of(-1),
              error_batch),
    ErrorCase("start-at-n", "start = N is outside [0, N) (the peer raises)", params_of(6), error_batch),
    ErrorCase("rewards-shape", "rewards [B,N+1] do not match values [B,N]", params_of(1),
              mutated(error_batch, lambda b: b.update(rewards=torch.randn(2, 7, dtype=F64)))),
    ErrorCase("sequence-mask-shape", "sequence_mask [B,N-1] does not match values [B,N]", params_of(1),
              mutated(error_batch, lambda b: b.update(sequence_mask=b["sequence_mask"][:, 1:].clone()))),
    ErrorCase("mask-value-2", "sequence_mask holds a 2", params_of(1),
              mutated(error_batch, lambda b: b["sequence_mask"].__setitem__((1, 2), 2))),
    ErrorCase("nan-values-masked", "NaN in values where sequence_mask is 0", params_of(1),
              mutated(error_batch, lambda b: b["values"].__setitem__((1, 5), math.nan)), also_f32=True),
    ErrorCase("masked-infinite-value", "values +inf where sequence_mask is 0, after start: the peer's "
              "values * sequence_mask is inf * 0 = NaN there", params_of(1),
              mutated(error_batch, lambda b: b["values"].__setitem__((1, 5), math.inf))),
]

STAGE = Stage("gae_masked", gae_masked, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
