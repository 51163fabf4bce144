"""Stage cpo_loss: TRL's CPO loss family (CPO, SimPO, AlphaPO, hinge, IPO) on
per-token log-probs, with its NLL term, metrics and gradients.

Re-implements, from shared/spec/v1.1-zoo.md (`cpo_loss`), TRL
trl/experimental/cpo/cpo_trainer.py (snapshot f2cd57710ae3): the sequence
log-prob of each completion is the masked sum of its token log-probs, or their
average for ipo and simpo; AlphaPO (alpha != 0) replaces the log-prob by
(1 - exp(logp)^(-alpha)) / alpha; the per-pair loss is cDPO (sigmoid), cDPO on a
margin shifted by simpo_gamma/beta (simpo), relu(1 - beta z) (hinge) or
(z - 1/(2 beta))^2 (ipo); the NLL is the token mean of -log p over every chosen
completion token, skipped when cpo_alpha is 0; the gradients are autograd's.
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, close_to, log_prob_like, mutated, randint
from ..fixture_format import F64, I64, V11_TOL
from ..reference import (leaf, need, need_float, need_mask, need_no_nan_result, need_shape,
                         same_float_dtype, with_defaults)

DEFAULTS = {"loss_type": "sigmoid", "beta": 0.1, "label_smoothing": 0.0, "simpo_gamma": 0.5, "cpo_alpha": 1.0,
            "alpha": 0.0}
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "simpo")
FLOATS = ["chosen_log_probs", "rejected_log_probs"]
MASKS = ["chosen_mask", "rejected_mask"]


def check_token_inputs(inp, pairs):
    """The per-token preference stages' inputs: [B,T] tensors of one shape, B >= 1,
    no NaN, 0/1 masks, and no +-inf where a mask is 0 (the peer's sum of l * m
    would hold inf * 0 = NaN). `pairs` lists (log-probs name, mask name)."""
    first = inp[FLOATS[0]]
    need(first.dim() == 2, f"{FLOATS[0]} must be [B,T]")
    masks = [m for _, m in pairs]
    for name in FLOATS[1:] + masks:
        need_shape(name, inp[name], first.shape)
    need(first.shape[0] > 0, "empty batch")
    for name in FLOATS:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in FLOATS})
    for name in masks:
        need_mask(name, inp[name])
    for values, mask in pairs:
        need(not bool((~torch.isfinite(inp[values]) & ~inp[mask].bool()).any()), f"+-inf in {values} where {mask} is 0")


def cpo_loss(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    check_token_inputs(inp, list(zip(FLOATS, MASKS)))
    loss_type, beta, eps = prm["loss_type"], prm["beta"], prm["label_smoothing"]
    gamma, cpo_alpha, alpha = prm["simpo_gamma"], prm["cpo_alpha"], prm["alpha"]
    need(loss_type in LOSS_TYPES, f"unknown loss_type {loss_type!r}")
    average = loss_type in ("ipo", "simpo")
    need(not (average and beta == 0), f"beta = 0 with {loss_type}, which divides by beta")
    keep_w, keep_l = inp["chosen_mask"].bool(), inp["rejected_mask"].bool()
    if average:
        need(bool((keep_w.sum(-1) > 0).all()), "a chosen row selects no token (the average is 0/0)")
        need(bool((keep_l.sum(-1) > 0).all()), "a rejected row selects no token (the average is 0/0)")
    need(cpo_alpha == 0 or int(keep_w.sum()) > 0, "no chosen completion token for the NLL (0/0)")

    chosen, rejected = leaf(inp["chosen_log_probs"]), leaf(inp["rejected_log_probs"])
    dtype = chosen.dtype
    # concatenated_forward -> get_batch_logps: masked sum, or its average for ipo/simpo.
    chosen_logps = (chosen * keep_w).sum(-1)
    rejected_logps = (rejected * keep_l).sum(-1)
    if average:
        chosen_logps = chosen_logps / keep_w.sum(-1)
        rejected_logps = rejected_logps / keep_l.sum(-1)
    # cpo_loss
    if alpha != 0.0:
        chosen_r = (1 - torch.exp(chosen_logps).pow(-alpha)) / alpha
        rejected_r = (1 - torch.exp(rejected_logps).pow(-alpha)) / alpha
        need(bool(torch.isfinite(chosen_r).all() and torch.isfinite(rejected_r).all()),
             "an AlphaPO reward (1 - p^(-alpha))/alpha is not finite (exp(logps) under- or overflows)")
    else:
        chosen_r, rejected_r = chosen_logps, rejected_logps
    logits = chosen_r - rejected_r
    if loss_type == "simpo":
        logits = logits - gamma / beta
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    elif loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * chosen_r.detach()
    rejected_rewards = beta * rejected_r.detach()
    # The NLL: CrossEntropyLoss's mean over the chosen completion tokens.
    if cpo_alpha == 0:
        nll = torch.tensor(0.0, dtype=dtype)
    else:
        nll = -(chosen * keep_w).sum() / keep_w.sum()
    loss = losses.mean() + cpo_alpha * nll
    outputs = {
        "chosen_logps": chosen_logps.detach(),
        "rejected_logps": rejected_logps.detach(),
        "losses": losses.detach(),
        "chosen_rewards": chosen_rewards,
        "rejected_rewards": rejected_rewards,
        "nll_loss": nll.detach(),
        "loss": loss.detach(),
        # TRL: .float().mean(); a float64 fixture keeps float64 (spec: no incidental float32 cast).
        "reward_accuracy": (chosen_rewards > rejected_rewards).to(dtype).mean(),
    }
    for name, t in outputs.items():
        need_no_nan_result(name, t)
        need(bool(torch.isfinite(t).all()), f"{name} is not finite")
    loss.backward()
    outputs["grad_chosen_log_probs"] = chosen.grad if chosen.grad is not None else torch.zeros_like(chosen)
    outputs["grad_rejected_log_probs"] = rejected.grad if rejected.grad is not None else torch.zeros_like(rejected)
    return outputs


# ---- cases ----

WHAT = "TRL CPOTrainer.cpo_loss semantics"


def batch_of(prompt, chosen_lengths, rejected_lengths, t, scale=1.0):
    """Per-token log-probs [B,T]: `prompt` masked positions (values kept, to show
    they are ignored), then each row's completion, then masked padding."""
    b = len(chosen_lengths)
    batch = {}
    for side, lengths in (("chosen", chosen_lengths), ("rejected", rejected_lengths)):
        values = log_prob_like(b, t) * scale
        mask = torch.zeros(b, t, dtype=I64)
        for i, n in enumerate(lengths):
            assert prompt + n <= t
            mask[i, prompt:prompt + n] = 1
            values[i, prompt + n:] = 0.0  # padding
        batch[f"{side}_log_probs"] = values
        batch[f"{side}_mask"] = mask
    return {n: batch[n] for n in FLOATS + MASKS}


def default_batch():
    return batch_of(2, [3, 4, 2], [4, 2, 3], 7)


def one_token_rows():
    return batch_of(1, [1, 1, 1], [1, 1, 1], 4)


def hinge_kink():
    # z = (-0.5 - 0.25) - (-1.5 - 1.25) = 2 exactly, and beta z = 0.5 * 2 = 1: relu at 0
    # in both precisions (row 0). Row 1: z = -1, active. Row 2: z = 4, inactive.
    chosen = torch.tensor([[-3.0, -0.5, -0.25, 0.0], [-3.0, -2.0, -1.0, 0.0], [-3.0, -0.5, -0.5, 0.0]], dtype=F64)
    rejected = torch.tensor([[-3.0, -1.5, -1.25, 0.0], [-3.0, -1.0, -1.0, 0.0], [-3.0, -2.5, -2.5, 0.0]], dtype=F64)
    mask = torch.tensor([[0, 1, 1, 0]] * 3, dtype=I64)
    return {"chosen_log_probs": chosen, "rejected_log_probs": rejected, "chosen_mask": mask, "rejected_mask": mask.clone()}


def hinge_kink_check(out):
    # Row 0: relu(1 - 1) = 0 and no gradient; row 1: relu(1 + 0.5) = 1.5; row 2: relu(1 - 2) = 0.
    close_to(out["losses"], [0.0, 1.5, 0.0], 1e-15)
    assert out["grad_rejected_log_probs"][0].abs().sum() == 0 and out["grad_rejected_log_probs"][2].abs().sum() == 0


def margins_900():
    # One completion token per row: z = -100 - (-1000) = +900 and z = -1000 - (-100) = -900.
    chosen = torch.tensor([[-7.0, -100.0, 0.0], [-7.0, -1000.0, 0.0]], dtype=F64)
    rejected = torch.tensor([[-7.0, -1000.0, 0.0], [-7.0, -100.0, 0.0]], dtype=F64)
    mask = torch.tensor([[0, 1, 0], [0, 1, 0]], dtype=I64)
    return {"chosen_log_probs": chosen, "rejected_log_probs": rejected, "chosen_mask": mask, "rejected_mask": mask.clone()}


def margins_900_check(out):
    # beta = 1: losses = -logsigmoid(900) = 0 (to 1e-300) and -logsigmoid(-900) = 900.
    close_to(out["losses"], [0.0, 900.0], 1e-9)


def ties():
    batch = batch_of(1, [2, 3, 2, 1], [2, 3, 3, 1], 5)
    # Rows 0 and 3: rejected equals chosen, a tie that counts as wrong.
    for i in (0, 3):
        batch["rejected_log_probs"][i] = batch["chosen_log_probs"][i]
    batch["rejected_log_probs"][1] = batch["chosen_log_probs"][1] - 0.5  # chosen ahead
    return batch


def ties_check(out):
    # Row 1 ahead; row 2 is random; rows 0 and 3 tie and count as wrong.
    ahead = int(out["chosen_rewards"][2] > out["rejected_rewards"][2])
    close_to(out["reward_accuracy"].reshape(1), [(1 + ahead) / 4], 1e-15)


def bool_masks():
    batch = batch_of(2, [3, 1], [2, 4], 6)
    for name in MASKS:
        batch[name] = batch[name].bool()
    return batch


def alphapo_batch():
    # Sums between about -2 and -9, so exp(logp) stays normal in float32 too.
    return batch_of(1, [2, 3, 1], [3, 2, 2], 5, scale=0.6)


def random_case():
    b, t = randint(1, 4), randint(3, 7)
    prompt = randint(0, 2)
    chosen = [randint(1, t - prompt) for _ in range(b)]
    rejected = [randint(1, t - prompt) for _ in range(b)]
    batch = batch_of(prompt, chosen, rejected, t, scale=0.5)
    loss_type = LOSS_TYPES[randint(0, 3)]
    batch["_params"] = {"loss_type": loss_type, "beta": [0.1, 0.5, 2.0][randint(0, 2)],
                        "label_smoothing": [0.0, 0.1][randint(0, 1)], "simpo_gamma": [0.5, 1.4][randint(0, 1)],
                        "cpo_alpha": [0.0, 1.0, 0.3][randint(0, 2)], "alpha": [0.0, 0.0, 0.2][randint(0, 2)]}
    return batch


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


def error(name, why, params, build, also_f32=False):
    return ErrorCase(name, why, params, build, also_f32=also_f32)


def error_batch():
    return batch_of(1, [2, 3], [3, 1], 5)


def set_(name, index, value):
    return lambda b: b[name].__setitem__(index, value)


CASES = [
    case("sigmoid-defaults", "every param left out: sigmoid, beta 0.1, cpo_alpha 1 (CPO + NLL on summed log-probs)",
         {}, default_batch),
    case("sigmoid-label-smoothing", "sigmoid with label_smoothing 0.1 (cDPO), beta 0.5", {"label_smoothing": 0.1, "beta": 0.5},
         default_batch),
    case("sigmoid-no-nll", "sigmoid with cpo_alpha 0: nll_loss 0, not computed", {"cpo_alpha": 0.0, "beta": 0.3},
         lambda: batch_of(1, [2, 4, 3, 1], [1, 3, 4, 2], 6)),
    case("sigmoid-margins-900", "one-token rows with margins +900 and -900, beta 1 (logsigmoid must be stable)",
         {"loss_type": "sigmoid", "beta": 1.0}, margins_900, check=margins_900_check),
    case("sigmoid-ties", "chosen equal to rejected in two rows: a tie counts as wrong in reward_accuracy",
         {"loss_type": "sigmoid"}, ties, check=ties_check),
    case("sigmoid-bool-masks", "the masks given as bool", {"loss_type": "sigmoid", "cpo_alpha": 0.5}, bool_masks),
    case("hinge-basic", "hinge, beta 0.5; label_smoothing 0.3 is ignored", {"loss_type": "hinge", "beta": 0.5,
                                                                             "label_smoothing": 0.3}, default_batch),
    case("hinge-kink", "hinge with beta z = 1 exactly in one row: relu at 0 passes no gradient",
         {"loss_type": "hinge", "beta": 0.5, "cpo_alpha": 0.0}, hinge_kink, check=hinge_kink_check),
    case("hinge-large-beta", "hinge, beta 2, cpo_alpha 0.25", {"loss_type": "hinge", "beta": 2.0, "cpo_alpha": 0.25},
         lambda: batch_of(2, [1, 3, 2], [2, 2, 3], 6, scale=0.5)),
    case("ipo-basic", "ipo on averaged log-probs, beta 0.1", {"loss_type": "ipo"}, default_batch),
    case("ipo-beta-2", "ipo, beta 2, label_smoothing 0.1 ignored, cpo_alpha 0.5",
         {"loss_type": "ipo", "beta": 2.0, "label_smoothing": 0.1, "cpo_alpha": 0.5}, default_batch),
    case("ipo-one-token", "ipo with one completion token per row (the average is that token)",
         {"loss_type": "ipo", "beta": 0.5}, one_token_rows),
    case("simpo-pure", "SimPO: simpo with cpo_alpha 0, beta 2.5, simpo_gamma 1.4",
         {"loss_type": "simpo", "beta": 2.5, "simpo_gamma": 1.4, "cpo_alpha": 0.0}, default_batch),
    case("simpo-defaults", "simpo with the other params left out (beta 0.1, gamma 0.5, cpo_alpha 1)",
         {"loss_type": "simpo"}, default_batch),
    case("simpo-label-smoothing", "simpo with label_smoothing 0.15, beta 2",
         {"loss_type": "simpo", "beta": 2.0, "label_smoothing": 0.15, "cpo_alpha": 0.0}, default_batch),
    case("simpo-one-token", "simpo with one completion token per row", {"loss_type": "simpo", "beta": 1.0},
         one_token_rows),
    case("simpo-margins-900", "simpo with one-token rows at margins +900 and -900, beta 1, gamma 0.5",
         {"loss_type": "simpo", "beta": 1.0, "cpo_alpha": 0.0}, margins_900),
    case("alphapo-simpo", "AlphaPO: simpo with alpha 0.25, cpo_alpha 0, beta 2.5, gamma 1",
         {"loss_type": "simpo", "alpha": 0.25, "cpo_alpha": 0.0, "beta": 2.5, "simpo_gamma": 1.0}, alphapo_batch),
    case("alphapo-sigmoid", "AlphaPO on summed log-probs: sigmoid with alpha 0.1",
         {"loss_type": "sigmoid", "alpha": 0.1, "beta": 0.5}, alphapo_batch),
    case("alphapo-negative-alpha", "AlphaPO with alpha -0.5 under ipo", {"loss_type": "ipo", "alpha": -0.5, "beta": 0.5},
         alphapo_batch),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, loss types and params", None, random_case, tolerance=V11_TOL)
      for k in (1, 2, 3)],

    error("shape-mismatch", "rejected_mask [B,T-1] does not match [B,T]", {},
          mutated(error_batch, lambda b: b.update(rejected_mask=b["rejected_mask"][:, :-1].clone()))),
    error("rejected-shape", "rejected_log_probs with one row fewer", {},
          mutated(error_batch, lambda b: b.update(rejected_log_probs=b["rejected_log_probs"][:1].clone(),
                                                  rejected_mask=b["rejected_mask"][:1].clone()))),
    error("empty-batch", "B = 0", {}, lambda: batch_of(0, [], [], 4)),
    error("nan-input", "NaN in chosen_log_probs", {}, mutated(error_batch, set_("chosen_log_probs", (0, 2), math.nan)),
          also_f32=True),
    error("unknown-loss-type", "loss_type \"alphapo\" (TRL's config alias, not a loss type here)",
          {"loss_type": "alphapo"}, error_batch),
    error("mask-value-2", "chosen_mask holds a 2", {}, mutated(error_batch, set_("chosen_mask", (1, 2), 2))),
    error("ipo-empty-row", "ipo with a rejected row whose mask has no 1 (the average is 0/0)", {"loss_type": "ipo"},
          mutated(error_batch, set_("rejected_mask", (1,), 0))),
    error("simpo-empty-row", "simpo with a chosen row whose mask has no 1 (the average is 0/0)",
          {"loss_type": "simpo", "cpo_alpha": 0.0}, mutated(error_batch, set_("chosen_mask", (0,), 0))),
    error("nll-no-chosen-token", "cpo_alpha 1 and a chosen mask with no 1 at all (the NLL is 0/0)",
          {"loss_type": "sigmoid"}, mutated(error_batch, lambda b: b["chosen_mask"].zero_())),
    error("beta-zero-ipo", "beta = 0 with ipo (1/(2 beta))", {"loss_type": "ipo", "beta": 0.0}, error_batch),
    error("beta-zero-simpo", "beta = 0 with simpo (gamma/beta)", {"loss_type": "simpo", "beta": 0.0}, error_batch),
    error("alphapo-underflow", "alpha 0.5 with a summed log-prob of -800: exp underflows to 0 and 0^(-0.5) = inf",
          {"loss_type": "sigmoid", "alpha": 0.5},
          mutated(error_batch, set_("chosen_log_probs", (0, 1), -800.0)), also_f32=True),
    error("inf-under-mask", "-inf in rejected_log_probs where rejected_mask is 0 (the peer's masked sum gives NaN)", {},
          mutated(error_batch, set_("rejected_log_probs", (0, 0), -math.inf))),
]

STAGE = Stage("cpo_loss", cpo_loss, CASES, catalog_prefixes=(WHAT,))
