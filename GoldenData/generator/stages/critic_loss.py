"""Stage critic_loss: the clipped PPO value loss and its gradient.

Re-implements DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.critic_loss_fn:
0.5 * masked mean of max((V - R)^2, (clamp(V, V_old - eps, V_old + eps) - R)^2);
autograd's gradient with respect to the values (old_values and returns are constants).
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, mutated, randint, random_params_case
from ..fixture_format import F64, I64
from ..reference import check_loss_inputs, leaf


def clipped_value_loss(values, old_values, returns, mask, cliprange_value):
    """Half the masked mean of the larger squared error (ppo_losses uses it too)."""
    kept = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    err_raw = (values - returns) ** 2
    err_kept = (kept - returns) ** 2
    return 0.5 * torch.sum(torch.max(err_raw, err_kept) * mask) / mask.sum()


def critic_loss(inp, prm):
    check_loss_inputs(inp, ["values", "old_values", "returns"])
    values = leaf(inp["values"])   # old_values and returns are constants
    loss = clipped_value_loss(values, inp["old_values"], inp["returns"], inp["mask"], prm["cliprange_value"])
    loss.backward()
    return {"loss": loss.detach(), "grad_values": values.grad}


# ---- cases ----

WHAT = "DeepSpeed-Chat DeepSpeedPPOTrainer.critic_loss_fn semantics"


def batch_of(b, m, drift, lengths=None):
    old = torch.randn(b, m, dtype=F64)
    mask = length_mask(b, m, lengths)
    return {"values": old + torch.randn(b, m, dtype=F64) * drift, "old_values": old,
            "returns": old + torch.randn(b, m, dtype=F64) * 0.5, "mask": mask}


def bool_mask():
    batch = batch_of(2, 6, 0.3, lengths=[6, 2])
    batch["mask"] = batch["mask"].bool()
    return batch


def far_returns():
    batch = batch_of(2, 5, 0.5)
    batch["returns"] = batch["old_values"] + torch.tensor([[3.0, -3.0, 0.05, -0.05, 1.0]] * 2, dtype=F64)
    return batch


def at_bound():
    """New values exactly at old +- 0.25 (dyadic, exact in both precisions): the
    clamp returns the value itself, the two errors tie."""
    old = torch.tensor([[0.5, 0.5, -1.0, -1.0, 2.0], [0.25, -0.5, 1.5, 0.0, 0.0]], dtype=F64)
    step = torch.tensor([[0.25, 0.25, -0.25, -0.25, 0.25], [-0.25, 0.25, 0.25, 0.1, -0.6]], dtype=F64)
    returns = torch.tensor([[1.5, -0.5, -2.0, 0.5, 2.0], [-1.0, 1.0, 0.0, 0.3, 1.0]], dtype=F64)
    return {"values": old + step, "old_values": old, "returns": returns, "mask": torch.ones(2, 5, dtype=I64)}


def random_batch():
    b, m = randint(1, 4), randint(1, 11)
    batch = batch_of(b, m, 0.5, lengths=[randint(1, m) for _ in range(b)])
    batch["_params"] = {"cliprange_value": [0.1, 0.2, 0.5][randint(0, 2)]}
    return batch


def error_batch():
    return batch_of(2, 5, 0.3, lengths=[5, 3])


CASES = [
    FloatCase("inside-clip", f"{WHAT}, new values within cliprange_value of the old ones",
              {"cliprange_value": 0.2}, lambda: batch_of(2, 6, 0.05)),
    FloatCase("outside-clip", f"{WHAT}, new values far from the old ones (clipped branch matters)",
              {"cliprange_value": 0.2}, lambda: batch_of(3, 5, 1.0)),
    FloatCase("returns-far", f"{WHAT}, returns far above and below the old values, both branches win "
              "somewhere", {"cliprange_value": 0.2}, far_returns),
    FloatCase("partial-mask", f"{WHAT}, rows masked from different positions", {"cliprange_value": 0.2},
              lambda: batch_of(3, 7, 0.5, lengths=[7, 2, 4])),
    FloatCase("bool-mask", f"{WHAT}, the mask given as bool", {"cliprange_value": 0.2}, bool_mask),
    FloatCase("cliprange-5", f"{WHAT}, cliprange_value 5 (align-anything's default size; nothing clips)",
              {"cliprange_value": 5.0}, lambda: batch_of(2, 5, 0.7)),
    FloatCase("kink-value-at-bound", f"{WHAT}, new values exactly at old_values +- cliprange_value "
              "(the two errors tie; autograd splits the max half/half and the clamp passes the gradient at its "
              "bound), beside values inside and outside the band", {"cliprange_value": 0.25}, at_bound),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, masks, cliprange_value", random_batch)
      for k in (1, 2, 3)],

    ErrorCase("empty-mask", "the mask selects no element (0/0)", {"cliprange_value": 0.2},
              lambda: batch_of(2, 4, 0.3, lengths=[0, 0])),
    ErrorCase("mask-value-2", "the mask holds a 2", {"cliprange_value": 0.2},
              mutated(error_batch, lambda b: b["mask"].__setitem__((1, 0), 2))),
    ErrorCase("returns-shape", "returns [B+1,M] do not match values [B,M]", {"cliprange_value": 0.2},
              mutated(error_batch, lambda b: b.update(returns=torch.cat([b["returns"], b["returns"][:1]], 0)))),
    ErrorCase("nan-values-masked", "NaN in values at a masked position", {"cliprange_value": 0.2},
              mutated(error_batch, lambda b: b["values"].__setitem__((1, 4), math.nan)), also_f32=True),
]

STAGE = Stage("critic_loss", critic_loss, CASES, catalog_prefixes=(WHAT,))
