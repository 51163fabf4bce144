"""Stage actor_loss: the clipped PPO policy loss and its gradient.

Re-implements DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.actor_loss_fn:
ratio = exp((log_probs - old_log_probs) * mask), loss = masked mean of
max(-A * ratio, -A * clamp(ratio, 1 - eps, 1 + eps)); autograd's gradient with
respect to log_probs (old_log_probs and advantages are constants).
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, log_prob_like, mutated, randint, random_params_case
from ..fixture_format import F64, I64
from ..reference import check_loss_inputs, leaf


def clipped_policy_loss(log_probs, old_log_probs, advantages, mask, cliprange):
    """The masked mean of the clipped surrogate (ppo_losses uses it too)."""
    log_ratio = (log_probs - old_log_probs) * mask  # masked positions get ratio 1
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return torch.sum(torch.max(unclipped, clipped) * mask) / mask.sum()


def actor_loss(inp, prm):
    check_loss_inputs(inp, ["log_probs", "old_log_probs", "advantages"])
    log_probs = leaf(inp["log_probs"])   # old_log_probs and advantages are constants
    loss = clipped_policy_loss(log_probs, inp["old_log_probs"], inp["advantages"], inp["mask"], prm["cliprange"])
    loss.backward()
    return {"loss": loss.detach(), "grad_log_probs": log_probs.grad}


# ---- cases ----

WHAT = "DeepSpeed-Chat DeepSpeedPPOTrainer.actor_loss_fn semantics"


def batch_of(b, m, spread, lengths=None):
    old = log_prob_like(b, m)
    mask = length_mask(b, m, lengths)
    return {"log_probs": old + torch.randn(b, m, dtype=F64) * spread, "old_log_probs": old,
            "advantages": torch.randn(b, m, dtype=F64), "mask": mask}


def sign_grid():
    # Every combination of log-ratio (inside and outside +-0.2) and advantage sign.
    deltas = [-0.9, -0.3, -0.1, 0.0, 0.1, 0.3, 0.9]
    old = log_prob_like(2, len(deltas))
    delta = torch.tensor([deltas, deltas], dtype=F64)
    adv = torch.tensor([[1.5] * len(deltas), [-1.5] * len(deltas)], dtype=F64)
    return {"log_probs": old + delta, "old_log_probs": old, "advantages": adv,
            "mask": torch.ones(2, len(deltas), dtype=I64)}


def masked_huge():
    batch = batch_of(2, 6, 0.3, lengths=[4, 3])
    batch["log_probs"][0, 5] = batch["old_log_probs"][0, 5] + 800.0   # masked: log-ratio forced to 0
    batch["log_probs"][1, 4] = batch["old_log_probs"][1, 4] - 800.0
    return batch


def bool_mask():
    batch = batch_of(3, 5, 0.3, lengths=[5, 2, 4])
    batch["mask"] = batch["mask"].bool()
    return batch


def exp_of_dyadic(d):
    """e^d for a small dyadic d (exact in float32 and float64). For the d used below,
    torch's exp and the C library's exp/expf agree to the last bit in both precisions
    (checked when the cases were chosen), so a cliprange built from it puts the ratio
    exactly on the clip bound in both."""
    return math.exp(d)


def at_bound(log_ratio):
    """Tokens whose ratio e^log_ratio sits exactly on a clip bound, with A > 0 and
    A < 0, beside tokens inside the range. old and new log-probs are dyadic, so
    new - old is exact."""
    def build():
        old = torch.tensor([[-1.25, -2.5, -0.75, -3.0], [-1.5, -0.5, -2.25, -1.0]], dtype=F64)
        delta = torch.tensor([[log_ratio, log_ratio, 0.0, log_ratio / 2], [log_ratio, log_ratio, -log_ratio / 4, 0.0]],
                             dtype=F64)
        adv = torch.tensor([[1.5, -1.5, 0.75, -0.5], [-2.0, 2.0, 1.0, -1.0]], dtype=F64)
        return {"log_probs": old + delta, "old_log_probs": old, "advantages": adv,
                "mask": torch.ones(2, 4, dtype=I64)}
    return build


UPPER_LOG_RATIO, LOWER_LOG_RATIO = 5 / 32, -7 / 32


def random_batch():
    b, m = randint(1, 4), randint(1, 11)
    batch = batch_of(b, m, 0.4, lengths=[randint(1, m) for _ in range(b)])
    batch["_params"] = {"cliprange": [0.1, 0.2, 0.3][randint(0, 2)]}
    return batch


def error_batch():
    return batch_of(2, 5, 0.3, lengths=[5, 3])


CASES = [
    FloatCase("ratios-inside-clip", f"{WHAT}, all ratios inside [1-0.2, 1+0.2]", {"cliprange": 0.2},
              lambda: batch_of(2, 6, 0.03)),
    FloatCase("ratios-outside-clip", f"{WHAT}, most ratios outside the clip range, advantages of both signs",
              {"cliprange": 0.2}, lambda: batch_of(3, 5, 0.8)),
    FloatCase("advantage-sign-grid", f"{WHAT}, log-ratios -0.9..0.9 against advantages +1.5 and -1.5",
              {"cliprange": 0.2}, sign_grid),
    FloatCase("partial-mask", f"{WHAT}, rows masked from different positions", {"cliprange": 0.2},
              lambda: batch_of(3, 7, 0.4, lengths=[7, 3, 5])),
    FloatCase("masked-huge-log-ratio", f"{WHAT}, log-ratios of +-800 at masked positions (the mask zeroes "
              "them before exp)", {"cliprange": 0.2}, masked_huge),
    FloatCase("bool-mask", f"{WHAT}, the mask given as bool", {"cliprange": 0.2}, bool_mask),
    FloatCase("cliprange-0", f"{WHAT}, cliprange 0", {"cliprange": 0.0}, lambda: batch_of(2, 4, 0.3)),
    FloatCase("kink-ratio-at-upper-bound", f"{WHAT}, ratios exactly at 1 + eps (eps = e^(5/32) - 1): the two "
              "branches tie, autograd splits the max's gradient half/half and the clamp passes it at its bound",
              {"cliprange": exp_of_dyadic(UPPER_LOG_RATIO) - 1.0}, at_bound(UPPER_LOG_RATIO)),
    FloatCase("kink-ratio-at-lower-bound", f"{WHAT}, ratios exactly at 1 - eps (eps = 1 - e^(-7/32)): the two "
              "branches tie, autograd splits the max's gradient half/half and the clamp passes it at its bound",
              {"cliprange": 1.0 - exp_of_dyadic(LOWER_LOG_RATIO)}, at_bound(LOWER_LOG_RATIO)),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, masks, cliprange", random_batch)
      for k in (1, 2, 3)],

    ErrorCase("empty-mask", "the mask selects no element (0/0)", {"cliprange": 0.2},
              lambda: batch_of(2, 4, 0.3, lengths=[0, 0])),
    ErrorCase("mask-value-2", "the mask holds a 2", {"cliprange": 0.2},
              mutated(error_batch, lambda b: b["mask"].__setitem__((0, 1), 2))),
    ErrorCase("advantages-shape", "advantages [B,M-1] do not match log_probs [B,M]", {"cliprange": 0.2},
              mutated(error_batch, lambda b: b.update(advantages=b["advantages"][:, :-1].clone()))),
    ErrorCase("nan-old-log-probs-masked", "NaN in old_log_probs at a masked position", {"cliprange": 0.2},
              mutated(error_batch, lambda b: b["old_log_probs"].__setitem__((1, 4), math.nan)), also_f32=True),
]

STAGE = Stage("actor_loss", actor_loss, CASES, catalog_prefixes=(WHAT,))
