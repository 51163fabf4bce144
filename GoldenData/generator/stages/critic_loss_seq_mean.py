"""Stage critic_loss_seq_mean: align-anything's clipped PPO value loss and its gradient.

Re-implements align-anything align_anything/trainers/text_to_text/ppo.py ::
PPOTrainer.critic_loss_fn with align_anything/utils/tools.py :: masked_mean
(snapshot 3f9decc221be): values clamped to [old_values - c, old_values + c]; the
larger of the two squared errors against the returns; half its masked mean over
rows. c = clip_range_value, 5.0 by default in align-anything. Autograd's gradient
with respect to values (old_values and returns are constants).
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, mutated, randint, random_params_case
from ..fixture_format import F64, V11_TOL
from ..reference import with_defaults
from .actor_loss_seq_mean import (as_bool_mask, check_seq_mean_loss, loss_and_gradient, masked_mean_over_rows,
                                  with_holes)
from .critic_loss import at_bound

DEFAULTS = {"clip_range_value": 5.0}   # align-anything configs/train/text_to_text/ppo.yaml


def seq_mean_value_loss(values, old_values, returns, mask, clip_range_value):
    """Half the masked mean over rows of max((V - R)^2, (clamp(V, old +- c) - R)^2)."""
    kept = torch.clamp(values, old_values - clip_range_value, old_values + clip_range_value)
    larger = torch.maximum(torch.square(values - returns), torch.square(kept - returns))
    return 0.5 * masked_mean_over_rows(larger, mask)


def critic_loss_seq_mean(inp, prm):
    c = with_defaults(prm, DEFAULTS)["clip_range_value"]
    check_seq_mean_loss(inp, ["values", "old_values", "returns"], "clip_range_value", c)
    return loss_and_gradient(inp, "values", lambda values: seq_mean_value_loss(
        values, inp["old_values"], inp["returns"], inp["mask"], c))


# ---- cases ----

WHAT = "align-anything PPOTrainer.critic_loss_fn + masked_mean semantics"


def batch_of(b, m, drift, lengths=None, returns_spread=0.5):
    old = torch.randn(b, m, dtype=F64)
    return {"values": old + torch.randn(b, m, dtype=F64) * drift, "old_values": old,
            "returns": old + torch.randn(b, m, dtype=F64) * returns_spread, "mask": length_mask(b, m, lengths)}


def far_returns():
    batch = batch_of(2, 5, 0.5, lengths=[5, 3])
    batch["returns"] = batch["old_values"] + torch.tensor([[3.0, -3.0, 0.05, -0.05, 1.0]] * 2, dtype=F64)
    return batch


def masked_kink():
    """v1's at-bound values (exactly old +- 0.25), the first row shortened."""
    batch = at_bound()
    batch["mask"][0, 4] = 0
    return batch


def random_batch():
    b, m = randint(1, 4), randint(1, 11)
    batch = batch_of(b, m, [0.5, 3.0][randint(0, 1)], lengths=[randint(1, m) for _ in range(b)],
                     returns_spread=[0.5, 4.0][randint(0, 1)])
    batch["_params"] = {"clip_range_value": [0.2, 0.5, 5.0][randint(0, 2)]}
    return batch


def error_batch():
    return batch_of(2, 5, 0.3, lengths=[5, 3])


def masked_infinite_return(batch):
    batch["returns"][1, 4] = math.inf   # (V - inf)^2 = inf under a 0 of the mask: inf * 0 = NaN


PARAMS = {"clip_range_value": 0.2}

CASES = [
    FloatCase("default-clip-5", f"{WHAT}, clip_range_value left out (align-anything's 5.0: nothing clips at this "
              "drift)", {}, lambda: batch_of(3, 6, 1.0, lengths=[6, 3, 5], returns_spread=2.0)),
    FloatCase("clip-5-binds", f"{WHAT}, clip_range_value 5 with new values 8 away from the old ones (the clip "
              "binds even at 5)", {"clip_range_value": 5.0}, lambda: batch_of(2, 5, 8.0, lengths=[5, 4],
                                                                              returns_spread=6.0)),
    FloatCase("inside-clip", f"{WHAT}, new values within 0.2 of the old ones", PARAMS,
              lambda: batch_of(2, 6, 0.05, lengths=[6, 4])),
    FloatCase("outside-clip", f"{WHAT}, new values far from the old ones (clipped branch matters)", PARAMS,
              lambda: batch_of(3, 5, 1.0, lengths=[5, 2, 4])),
    FloatCase("returns-far", f"{WHAT}, returns far above and below the old values, both branches win somewhere",
              PARAMS, far_returns),
    FloatCase("one-token-row", f"{WHAT}, a one-token row next to a row of 8: both rows weigh 1/2", PARAMS,
              lambda: batch_of(2, 8, 0.5, lengths=[8, 1])),
    FloatCase("mask-with-hole", f"{WHAT}, zeros inside rows (each row divides by its count of ones)", PARAMS,
              with_holes(lambda: batch_of(3, 6, 0.4, lengths=[6, 6, 3]), [(0, 1), (1, 5), (1, 2)])),
    FloatCase("bool-mask", f"{WHAT}, the mask given as bool", PARAMS,
              as_bool_mask(lambda: batch_of(2, 6, 0.3, lengths=[6, 2]))),
    FloatCase("kink-value-at-bound", f"{WHAT}, new values exactly at old_values +- 0.25 (the two errors tie; "
              "autograd splits the maximum half/half and the clamp passes the gradient at its bound)",
              {"clip_range_value": 0.25}, masked_kink),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, masks, clip_range_value", random_batch)
      for k in (1, 2, 3)],

    ErrorCase("empty-mask-row", "row 0 of the mask selects nothing (the peer's 0/0 makes the loss NaN)", PARAMS,
              lambda: batch_of(2, 4, 0.3, lengths=[0, 4])),
    ErrorCase("mask-value-2", "the mask holds a 2", PARAMS,
              mutated(error_batch, lambda b: b["mask"].__setitem__((1, 1), 2))),
    ErrorCase("returns-shape", "returns [B+1,M] do not match values [B,M]", PARAMS,
              mutated(error_batch, lambda b: b.update(returns=torch.randn(3, 5, dtype=F64)))),
    ErrorCase("nan-values-masked", "NaN in values at a masked position", PARAMS,
              mutated(error_batch, lambda b: b["values"].__setitem__((1, 3), math.nan)), also_f32=True),
    ErrorCase("masked-infinite-return", "returns +inf at a masked position: the squared error is inf, and the "
              "peer's error * mask is NaN", PARAMS, mutated(error_batch, masked_infinite_return)),
]

STAGE = Stage("critic_loss_seq_mean", critic_loss_seq_mean, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
