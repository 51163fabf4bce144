"""Stage actor_loss_seq_mean: align-anything's clipped PPO policy loss and its gradient.

Re-implements align-anything align_anything/trainers/text_to_text/ppo.py ::
PPOTrainer.actor_loss_fn with align_anything/utils/tools.py :: masked_mean
(snapshot 3f9decc221be): ratio = exp(log_probs - old_log_probs), NOT masked;
surrogate = the smaller of A * ratio and A * clamp(ratio, 1 - eps, 1 + eps);
loss = minus the masked mean over rows of the surrogate: each row's sum of
surrogate * mask divided by the row's mask count, then the plain mean of the
rows. Autograd's gradient with respect to log_probs (old_log_probs and advantages
are constants). A row whose mask is empty is an error (the peer's 0/0 makes the
loss NaN); so is any NaN result (a masked surrogate of +-inf times 0).
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, log_prob_like, mutated, randint, random_params_case
from ..fixture_format import F64, V11_TOL
from ..reference import check_loss_inputs, leaf, need, need_no_nan_result, with_defaults
from .actor_loss import LOWER_LOG_RATIO, UPPER_LOG_RATIO, at_bound, exp_of_dyadic

DEFAULTS = {"clip_range_ratio": 0.2}   # align-anything configs/train/text_to_text/ppo.yaml


def masked_mean_over_rows(x, mask):
    """align-anything's masked_mean with a mask: per row, the sum of x * mask over the
    row's count of ones; then the plain mean over the rows (a row counts once)."""
    row_sums = (x * mask).sum(dim=-1)
    return (row_sums / mask.sum(dim=-1)).mean()


def need_every_row(mask, name="mask"):
    """The per-row mean divides by each row's own count: every row must keep a token."""
    need(mask.shape[0] > 0, f"{name} has no row (the mean over rows would be 0/0)")
    need(bool((mask.sum(dim=-1) > 0).all()), f"a row of {name} selects nothing (its mean would be 0/0)")


def seq_mean_policy_loss(log_probs, old_log_probs, advantages, mask, clip_range_ratio):
    """Minus the masked mean over rows of min(A * ratio, A * clamp(ratio)), the ratio unmasked."""
    ratio = torch.exp(log_probs - old_log_probs)
    kept = torch.clamp(ratio, 1.0 - clip_range_ratio, 1.0 + clip_range_ratio)
    surrogate = torch.minimum(advantages * ratio, advantages * kept)
    return -masked_mean_over_rows(surrogate, mask)


def check_seq_mean_loss(inp, float_names, clip_name, clip):
    """The inputs of a loss averaged by rows: v1's loss-input checks, a token in every
    row, and a clip range that is finite and >= 0."""
    check_loss_inputs(inp, float_names)
    need_every_row(inp["mask"])
    need(math.isfinite(clip) and clip >= 0, f"{clip_name} must be finite and >= 0")


def loss_and_gradient(inp, wrt, loss_of):
    """loss_of(x) for a leaf copy x of inp[wrt] (the other inputs are constants), and
    autograd's gradient with respect to it; a NaN in either is rejected."""
    x = leaf(inp[wrt])
    loss = loss_of(x)
    need_no_nan_result("loss", loss)
    loss.backward()
    need_no_nan_result(f"grad_{wrt}", x.grad)
    return {"loss": loss.detach(), f"grad_{wrt}": x.grad}


def actor_loss_seq_mean(inp, prm):
    eps = with_defaults(prm, DEFAULTS)["clip_range_ratio"]
    check_seq_mean_loss(inp, ["log_probs", "old_log_probs", "advantages"], "clip_range_ratio", eps)
    return loss_and_gradient(inp, "log_probs", lambda log_probs: seq_mean_policy_loss(
        log_probs, inp["old_log_probs"], inp["advantages"], inp["mask"], eps))


# ---- cases ----

WHAT = "align-anything PPOTrainer.actor_loss_fn + masked_mean semantics"


def batch_of(b, m, spread, lengths=None):
    old = log_prob_like(b, m)
    return {"log_probs": old + torch.randn(b, m, dtype=F64) * spread, "old_log_probs": old,
            "advantages": torch.randn(b, m, dtype=F64), "mask": length_mask(b, m, lengths)}


def sign_grid():
    # Log-ratios inside and outside +-0.2 against advantages of both signs; rows of different lengths.
    deltas = [-0.9, -0.3, -0.1, 0.0, 0.1, 0.3, 0.9]
    old = log_prob_like(2, len(deltas))
    return {"log_probs": old + torch.tensor([deltas, deltas], dtype=F64), "old_log_probs": old,
            "advantages": torch.tensor([[1.5] * 7, [-1.5] * 7], dtype=F64), "mask": length_mask(2, 7, [7, 4])}


def with_holes(build, holes):
    """build(), then a 0 in the mask at each (row, column) of holes."""
    return mutated(build, lambda batch: [batch["mask"].__setitem__(hole, 0) for hole in holes])


def as_bool_mask(build):
    """build(), with the mask given as bool."""
    return mutated(build, lambda batch: batch.update(mask=batch["mask"].bool()))


def masked_large():
    # Log-ratios of +-80 under the mask: the peer does not mask the ratio (e^80 is finite in
    # both precisions), the surrogate is large, and the mask multiplies it by 0 afterwards.
    batch = batch_of(2, 6, 0.3, lengths=[4, 3])
    batch["log_probs"][0, 5] = batch["old_log_probs"][0, 5] + 80.0
    batch["log_probs"][1, 4] = batch["old_log_probs"][1, 4] - 80.0
    batch["advantages"][0, 5] = -2.0
    return batch


def masked_kink(log_ratio):
    """v1's at-bound tokens (ratio exactly on a clip bound), with the second row shortened."""
    def build():
        batch = at_bound(log_ratio)()
        batch["mask"][1, 3] = 0
        return batch
    return build


def random_batch():
    b, m = randint(1, 4), randint(1, 11)
    batch = batch_of(b, m, 0.4, lengths=[randint(1, m) for _ in range(b)])
    batch["_params"] = {"clip_range_ratio": [0.1, 0.2, 0.3][randint(0, 2)]}
    return batch


def error_batch():
    return batch_of(2, 5, 0.3, lengths=[5, 3])


def masked_overflow(batch):
    # Under the mask, log-ratio 800: e^800 = inf, A < 0 so the surrogate is -inf, and inf * 0 = NaN.
    batch["log_probs"][1, 4] = batch["old_log_probs"][1, 4] + 800.0
    batch["advantages"][1, 4] = -1.0


PARAMS = {"clip_range_ratio": 0.2}

CASES = [
    FloatCase("ratios-inside-clip", f"{WHAT}, all ratios inside [1-0.2, 1+0.2]", PARAMS,
              lambda: batch_of(2, 6, 0.03, lengths=[6, 4])),
    FloatCase("ratios-outside-clip", f"{WHAT}, most ratios outside the clip range, advantages of both signs",
              PARAMS, lambda: batch_of(3, 5, 0.8, lengths=[5, 4, 2])),
    FloatCase("advantage-sign-grid", f"{WHAT}, log-ratios -0.9..0.9 against advantages +1.5 and -1.5", PARAMS,
              sign_grid),
    FloatCase("one-token-row", f"{WHAT}, a one-token row next to a row of 8: both rows weigh 1/2", PARAMS,
              lambda: batch_of(2, 8, 0.3, lengths=[1, 8])),
    FloatCase("partial-mask", f"{WHAT}, rows masked from different positions", PARAMS,
              lambda: batch_of(3, 7, 0.4, lengths=[7, 3, 5])),
    FloatCase("mask-with-hole", f"{WHAT}, zeros inside rows (each row divides by its count of ones)", PARAMS,
              with_holes(lambda: batch_of(3, 6, 0.4, lengths=[6, 5, 6]), [(0, 2), (2, 0), (2, 4)])),
    FloatCase("masked-large-log-ratio", f"{WHAT}, log-ratios of +-80 at masked positions (not masked before exp; "
              "the mask multiplies the surrogate)", PARAMS, masked_large),
    FloatCase("bool-mask", f"{WHAT}, the mask given as bool", PARAMS,
              as_bool_mask(lambda: batch_of(3, 5, 0.3, lengths=[5, 2, 4]))),
    FloatCase("default-params", f"{WHAT}, clip_range_ratio left out (0.2)", {},
              lambda: batch_of(3, 6, 0.5, lengths=[6, 2, 4])),
    FloatCase("kink-ratio-at-upper-bound", f"{WHAT}, ratios exactly at 1 + eps (eps = e^(5/32) - 1): the two "
              "branches tie, autograd splits the minimum's gradient half/half and the clamp passes it at its bound",
              {"clip_range_ratio": exp_of_dyadic(UPPER_LOG_RATIO) - 1.0}, masked_kink(UPPER_LOG_RATIO)),
    FloatCase("kink-ratio-at-lower-bound", f"{WHAT}, ratios exactly at 1 - eps (eps = 1 - e^(-7/32)): the two "
              "branches tie, autograd splits the minimum's gradient half/half and the clamp passes it at its bound",
              {"clip_range_ratio": 1.0 - exp_of_dyadic(LOWER_LOG_RATIO)}, masked_kink(LOWER_LOG_RATIO)),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, masks, clip_range_ratio", random_batch)
      for k in (1, 2, 3)],

    ErrorCase("empty-mask-row", "row 1 of the mask selects nothing (the peer's 0/0 makes the loss NaN)", PARAMS,
              lambda: batch_of(2, 4, 0.3, lengths=[4, 0])),
    ErrorCase("mask-value-2", "the mask holds a 2", PARAMS,
              mutated(error_batch, lambda b: b["mask"].__setitem__((0, 1), 2))),
    ErrorCase("advantages-shape", "advantages [B,M-1] do not match log_probs [B,M]", PARAMS,
              mutated(error_batch, lambda b: b.update(advantages=b["advantages"][:, :-1].clone()))),
    ErrorCase("nan-old-log-probs-masked", "NaN in old_log_probs at a masked position", PARAMS,
              mutated(error_batch, lambda b: b["old_log_probs"].__setitem__((1, 4), math.nan)), also_f32=True),
    ErrorCase("masked-ratio-overflow", "a masked log-ratio of 800 with A < 0: the unmasked ratio is inf, the "
              "surrogate -inf, and the peer's surrogate * mask is NaN", PARAMS,
              mutated(error_batch, masked_overflow)),
]

STAGE = Stage("actor_loss_seq_mean", actor_loss_seq_mean, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
