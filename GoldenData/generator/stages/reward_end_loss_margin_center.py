"""Stage reward_end_loss_margin_center: TRL's reward-model loss and its logged metrics.

Re-implements TRL trl/trainer/reward_trainer.py :: RewardTrainer.compute_loss
(training mode, one process): the [2B] rewards split into the B chosen rows c and
the B rejected rows r; loss = mean of -logsigmoid(c - r - margin) (margin 0 when
absent), plus center_rewards_coefficient * mean((c + r)^2) whenever the
coefficient is not None (0 and negative values included); accuracy = share of
pairs with c > r (strict); mean_margin = mean(c - r), without the margin input;
min, mean and max over all 2B rewards. The gradient is autograd's, with respect
to the rewards (the margin is data).
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, close_to, randint
from ..fixture_format import F64, V11_TOL
from ..reference import leaf, need, need_float, need_shape


def reward_end_loss_margin_center(inp, prm):
    rewards, margin = inp["rewards"], inp.get("margin")
    need(rewards.dim() == 1, "rewards must be [2B]")
    need(rewards.shape[0] % 2 == 0, f"rewards has {rewards.shape[0]} rows: not B chosen over B rejected")
    need(rewards.shape[0] > 0, "rewards has no pair (the mean would be 0/0)")
    pairs = rewards.shape[0] // 2
    kappa = prm.get("center_rewards_coefficient")
    need(kappa is None or math.isfinite(kappa), "center_rewards_coefficient must be finite")
    need_float("rewards", rewards)
    if margin is not None:
        need_shape("margin", margin, (pairs,))
        need_float("margin", margin)
    rewards = leaf(rewards)
    chosen, rejected = rewards[:pairs], rewards[pairs:]
    logits = chosen - rejected if margin is None else chosen - rejected - margin
    loss = (-F.logsigmoid(logits)).mean()
    if kappa is not None:   # `is not None`: 0 and negative coefficients still add their term
        loss = loss + kappa * ((chosen + rejected) ** 2).mean()
    need(not bool(torch.isnan(loss)), "the loss is NaN")
    loss.backward()
    detached = rewards.detach()
    correct = int((chosen > rejected).sum())
    outputs = {
        "loss": loss.detach(),
        # k/B divided once in the fixture's dtype (the peer's .float().mean() is float32).
        "accuracy": torch.tensor(float(correct), dtype=rewards.dtype) / pairs,
        "mean_margin": (chosen - rejected).detach().mean(),
        "min_reward": detached.min(),
        "mean_reward": detached.mean(),
        "max_reward": detached.max(),
        "grad_rewards": rewards.grad,
    }
    for name, value in outputs.items():
        need(not bool(torch.isnan(value).any()), f"{name} is NaN")
    return outputs


# ---- cases ----

WHAT = "TRL RewardTrainer.compute_loss semantics"


def stacked(chosen, rejected, margin=None):
    batch = {"rewards": torch.tensor(list(chosen) + list(rejected), dtype=F64)}
    if margin is not None:
        batch["margin"] = torch.tensor(margin, dtype=F64)
    return batch


def random_pairs(b, with_margin=False, spread=1.5):
    batch = {"rewards": torch.randn(2 * b, dtype=F64) * spread}
    if with_margin:
        batch["margin"] = torch.rand(b, dtype=F64) * 2.0
    return batch


def opposite_pairs():
    # Pairs 0 and 1 have c = -r: their sums are 0, so kappa adds nothing for them
    # however large the scores; pair 2 does not.
    return stacked([3.0, -2.5, 1.0], [-3.0, 2.5, 0.5])


def ties_with_margin():
    batch = random_pairs(4, with_margin=True)
    batch["rewards"][4] = batch["rewards"][0]   # pair 0 ties: counts as wrong
    batch["rewards"][6] = batch["rewards"][2]   # pair 2 too
    return batch


def by_hand_check(out):
    # c = [2, 0], r = [0, 0], kappa 0.01: (softplus(-2) + ln 2) / 2 + 0.01 · (4 + 0) / 2
    close_to(out["loss"], [(math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2 + 0.02], 1e-12)
    close_to(out["accuracy"], [0.5], 0.0)
    close_to(out["mean_margin"], [1.0], 0.0)
    close_to(out["mean_reward"], [0.5], 0.0)


def random_batch():
    batch = random_pairs(randint(1, 6), with_margin=randint(0, 1) == 1)
    batch["_params"] = {"center_rewards_coefficient": [None, 0.01, 0.0, -0.05][randint(0, 3)]}
    return batch


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


NULL = {"center_rewards_coefficient": None}

CASES = [
    case("default-no-margin", "no margin, center_rewards_coefficient left out (default null: no centering term)",
         {}, lambda: random_pairs(4)),
    case("margin", "a margin column: -logsigmoid(c - r - margin); mean_margin ignores it", NULL,
         lambda: random_pairs(4, with_margin=True)),
    case("kappa-0.01", "center_rewards_coefficient 0.01 (TRL's recommended value)",
         {"center_rewards_coefficient": 0.01}, lambda: random_pairs(4)),
    case("kappa-0", "center_rewards_coefficient 0: not null, adds 0 · mean((c + r)^2)",
         {"center_rewards_coefficient": 0.0}, lambda: random_pairs(3)),
    case("kappa-negative", "center_rewards_coefficient -0.05: a negative term, kept",
         {"center_rewards_coefficient": -0.05}, lambda: random_pairs(4, with_margin=True)),
    case("pair-sum-squared", "kappa 0.5 squares each pair's sum: pairs with c = -r add nothing",
         {"center_rewards_coefficient": 0.5}, opposite_pairs),
    case("ties-count-wrong", "two pairs whose rewards tie: accuracy counts them as wrong (strict >), with a margin",
         NULL, ties_with_margin),
    case("large-gap-800", "pairs with c - r - margin = +800 and -800: the terms saturate at 0 and 800",
         {"center_rewards_coefficient": 0.01}, lambda: stacked([400.0, -400.0], [-400.0, 400.0], margin=[0.0, 0.0])),
    case("one-pair", "B = 1 (two rows), with a margin", {"center_rewards_coefficient": 0.01},
         lambda: stacked([0.75], [-0.25], margin=[0.5])),
    case("by-hand", "c = [2, 0], r = [0, 0], kappa 0.01: loss (softplus(-2) + ln 2)/2 + 0.02, accuracy 1/2, "
         "mean_margin 1", {"center_rewards_coefficient": 0.01}, lambda: stacked([2.0, 0.0], [0.0, 0.0]),
         check=by_hand_check),
    *[FloatCase(f"random-{k}", f"{WHAT}, random B, margin or none, kappa (null, 0.01, 0 or -0.05)", None,
                random_batch, tolerance=V11_TOL) for k in (1, 2, 3)],

    ErrorCase("odd-rows", "3 rows (peer: splits them 2 + 1 and broadcasts silently)", NULL,
              lambda: {"rewards": torch.randn(3, dtype=F64)}),
    ErrorCase("one-row", "1 row: no pair (peer: chunk gives one half, unpacking fails)", NULL,
              lambda: {"rewards": torch.randn(1, dtype=F64)}),
    ErrorCase("no-rows", "0 rows: the mean over no pair would be 0/0", NULL,
              lambda: {"rewards": torch.zeros(0, dtype=F64)}),
    ErrorCase("margin-shape-1", "margin [1] for B = 2 (peer: broadcasts it silently)", NULL,
              lambda: stacked([1.0, 0.5], [0.0, 0.25], margin=[0.5])),
    ErrorCase("margin-shape-b-plus-1", "margin [B+1] does not match B pairs", NULL,
              lambda: stacked([1.0, 0.5], [0.0, 0.25], margin=[0.5, 0.5, 0.5])),
    ErrorCase("nan-rewards", "NaN in rewards", NULL, lambda: stacked([0.5, math.nan], [0.25, 1.0]), also_f32=True),
    ErrorCase("nan-margin", "NaN in margin", NULL, lambda: stacked([0.5, 1.0], [0.25, 1.0], margin=[0.0, math.nan])),
    ErrorCase("kappa-0-infinite-pair-sum", "center_rewards_coefficient 0 times an infinite mean (c + r)^2 = 0 · inf: "
              "the peer's loss is NaN", {"center_rewards_coefficient": 0.0},
              lambda: stacked([1e300], [1e300])),
]

STAGE = Stage("reward_end_loss_margin_center", reward_end_loss_margin_center, CASES, catalog_prefixes=(WHAT,))
