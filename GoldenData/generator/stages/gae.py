"""Stage gae: generalised advantage estimation and returns.

Re-implements DeepSpeed-Chat dschat/rlhf/ppo_trainer.py ::
DeepSpeedPPOTrainer.get_advantages_and_returns: from `start` to the end of the
row, walking backwards, delta = r_t + gamma * V_{t+1} - V_t (V past the end is 0)
and A_t = delta + gamma * lambda * A_{t+1}; returns = advantages + values.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, close_to, randint, random_params_case
from ..fixture_format import F64
from ..reference import need, need_float, need_shape, same_float_dtype


def advantages_and_returns(values, rewards, start, gamma, lam):
    """GAE from `start` to the end of the row, walking backwards."""
    width = values.shape[1]
    decay = gamma * lam  # a Python float, as in the reference
    running = 0.0
    collected = []
    for t in range(width - 1, start - 1, -1):
        next_value = values[:, t + 1] if t + 1 < width else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + decay * running
        collected.append(running)
    collected.reverse()
    advantages = torch.stack(collected, dim=1)
    return advantages, advantages + values[:, start:]


def gae(inp, prm):
    values, rewards = inp["values"], inp["rewards"]
    need(values.dim() == 2, "values must be [B,N]")
    need_shape("rewards", rewards, values.shape)
    need_float("values", values)
    need_float("rewards", rewards)
    same_float_dtype(values=values, rewards=rewards)
    start, width = prm["start"], values.shape[1]
    need(0 <= start < width, f"start {start} is outside [0, N={width})")
    adv, ret = advantages_and_returns(values, rewards, start, prm["gamma"], prm["lambda"])
    return {"advantages": adv, "returns": ret}


# ---- cases ----

WHAT = "DeepSpeed-Chat DeepSpeedPPOTrainer.get_advantages_and_returns semantics"


def batch_of(b, n):
    return {"values": torch.randn(b, n, dtype=F64), "rewards": torch.randn(b, n, dtype=F64) * 0.5}


def params_of(start, gamma=1.0, lam=0.95):
    return {"start": start, "gamma": gamma, "lambda": lam}


def toy():
    # peer-conventions section 11, after DS's zeroing past the end (one row, N = 6).
    return {"values": torch.tensor([[0.0, 0.5, 0.4, 0.3, 0.2, 0.0]], dtype=F64),
            "rewards": torch.tensor([[0.0, -0.01, 0.02, -0.03, 0.95, 0.0]], dtype=F64)}


def toy_check(out):
    close_to(out["advantages"], [0.339706, 0.473375, 0.5825, 0.75, 0.0])
    close_to(out["returns"], [0.839706, 0.873375, 0.8825, 0.95, 0.0])


def random_batch():
    b, n = randint(1, 4), randint(1, 11)
    batch = batch_of(b, n)
    gamma = [1.0, 0.99, 0.9][randint(0, 2)]
    lam = [0.95, 0.9, 0.5][randint(0, 2)]
    batch["_params"] = params_of(randint(0, n - 1), gamma, lam)
    return batch


def nan_before_start():
    batch = batch_of(2, 5)
    batch["values"][0, 0] = math.nan   # before start: never read
    return batch


CASES = [
    FloatCase("lambda-0", f"{WHAT}, lambda 0 (one-step TD)", params_of(2, 1.0, 0.0), lambda: batch_of(3, 7)),
    FloatCase("lambda-1", f"{WHAT}, lambda 1 (Monte Carlo minus value)", params_of(2, 1.0, 1.0),
              lambda: batch_of(3, 7)),
    FloatCase("gamma-0.9", f"{WHAT}, gamma 0.9, lambda 0.95", params_of(1, 0.9, 0.95), lambda: batch_of(2, 8)),
    FloatCase("gamma-0", f"{WHAT}, gamma 0 (advantage = reward - value)", params_of(1, 0.0, 0.95),
              lambda: batch_of(2, 5)),
    FloatCase("start-0", f"{WHAT}, start 0 (whole row)", params_of(0), lambda: batch_of(2, 6)),
    FloatCase("start-last", f"{WHAT}, start N-1 (only the last column)", params_of(5), lambda: batch_of(3, 6)),
    FloatCase("single-column", f"{WHAT}, N = 1, start 0", params_of(0), lambda: batch_of(2, 1)),
    FloatCase("peer-toy", f"{WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 "
              "(after DS zeroing; DS advantages 0.339706, 0.473375, 0.5825, 0.75, 0)", params_of(1, 1.0, 0.95),
              toy, check=toy_check),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, start, gamma, lambda", random_batch)
      for k in (1, 2, 3)],

    ErrorCase("start-negative", "start -1 is outside [0, N)", params_of(-1), lambda: batch_of(2, 5)),
    ErrorCase("start-at-n", "start = N is outside [0, N)", params_of(5), lambda: batch_of(2, 5)),
    ErrorCase("rewards-shape", "rewards [B,N+1] do not match values [B,N]", params_of(1),
              lambda: {"values": torch.randn(2, 5, dtype=F64), "rewards": torch.randn(2, 6, dtype=F64)}),
    ErrorCase("nan-values-before-start", "NaN in values before start (a column GAE never reads)", params_of(2),
              nan_before_start, also_f32=True),
]

STAGE = Stage("gae", gae, CASES, catalog_prefixes=(WHAT,))
