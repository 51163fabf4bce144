"""Stage orpo_loss: TRL's ORPO loss (the chosen NLL minus beta times the mean
log-sigmoid of the log odds ratio) on per-token log-probs, its metrics and its
gradients.

Re-implements, from shared/spec/v1.1-zoo.md (`orpo_loss`), TRL
trl/experimental/orpo/orpo_trainer.py (snapshot f2cd57710ae3): a and b are the
average completion-token log-probs of chosen and rejected; log_odds =
(a - b) - (log1mexp(a) - log1mexp(b)) with log1mexp branching at -ln 2;
losses = beta * logsigmoid(log_odds); the NLL is the token mean of -log p over
chosen_nll_mask (prompt and completion in TRL); loss = nll - mean(losses). TRL
casts a and b to float32 before the odds ratio: a float32 fixture is that run, a
float64 fixture leaves the cast out (spec conventions). Gradients are autograd's.
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, close_to, log_prob_like, mutated, randint
from ..fixture_format import F64, I64, V11_TOL
from ..reference import leaf, need, need_no_nan_result, with_defaults
from .cpo_loss import check_token_inputs

DEFAULTS = {"beta": 0.1}
FLOATS = ["chosen_log_probs", "rejected_log_probs"]
MASKS = ["chosen_mask", "rejected_mask", "chosen_nll_mask"]
INPUTS = FLOATS + MASKS


def log1mexp(x):
    """log(1 - e^x), branching at -ln 2 as TRL's log1mexp does."""
    t = -0.6931471805599453
    return torch.where(x < t, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo_loss(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    check_token_inputs(inp, [("chosen_log_probs", "chosen_mask"), ("rejected_log_probs", "rejected_mask"),
                             ("chosen_log_probs", "chosen_nll_mask")])
    beta = prm["beta"]
    keep_w, keep_l, keep_n = (inp[m].bool() for m in MASKS)
    need(bool((keep_w.sum(-1) > 0).all()), "a chosen row selects no completion token (the average is 0/0)")
    need(bool((keep_l.sum(-1) > 0).all()), "a rejected row selects no completion token (the average is 0/0)")
    need(int(keep_n.sum()) > 0, "chosen_nll_mask selects no token (the NLL is 0/0)")

    chosen, rejected = leaf(inp["chosen_log_probs"]), leaf(inp["rejected_log_probs"])
    # concatenated_forward: get_batch_logps(average_log_prob=True); the NLL over the nll mask.
    a = (chosen * keep_w).sum(-1) / keep_w.sum(-1)
    b = (rejected * keep_l).sum(-1) / keep_l.sum(-1)
    need(bool((a < 0).all() and (b < 0).all()), "an average log-prob >= 0: the odds p/(1-p) are undefined")
    nll = -(chosen * keep_n).sum() / keep_n.sum()
    # odds_ratio_loss (the .float() cast is a no-op for float32 and left out for float64)
    log_odds = (a - b) - (log1mexp(a) - log1mexp(b))
    ratio = F.logsigmoid(log_odds)
    losses = beta * ratio
    chosen_rewards = beta * a.detach()
    rejected_rewards = beta * b.detach()
    loss = nll - losses.mean()
    outputs = {
        "chosen_logps": a.detach(),
        "rejected_logps": b.detach(),
        "losses": losses.detach(),
        "chosen_rewards": chosen_rewards,
        "rejected_rewards": rejected_rewards,
        "log_odds_ratio": ratio.mean().detach(),
        "log_odds_chosen": log_odds.mean().detach(),
        "nll_loss": nll.detach(),
        "loss": loss.detach(),
        "reward_accuracy": (chosen_rewards > rejected_rewards).to(a.dtype).mean(),
    }
    for name, t in outputs.items():
        need_no_nan_result(name, t)
        need(bool(torch.isfinite(t).all()), f"{name} is not finite")
    loss.backward()
    outputs["grad_chosen_log_probs"] = chosen.grad
    outputs["grad_rejected_log_probs"] = rejected.grad
    return outputs


# ---- cases ----

WHAT = "TRL ORPOTrainer.odds_ratio_loss semantics"


def batch_of(prompt, chosen_lengths, rejected_lengths, t, scale=1.0):
    """Per-token log-probs [B,T]: `prompt` positions (in the NLL mask, not in the
    completion mask), then each completion, then padding (in neither)."""
    b = len(chosen_lengths)
    batch = {}
    for side, lengths in (("chosen", chosen_lengths), ("rejected", rejected_lengths)):
        values = log_prob_like(b, t) * scale
        mask = torch.zeros(b, t, dtype=I64)
        nll = torch.zeros(b, t, dtype=I64)
        for i, n in enumerate(lengths):
            assert prompt + n <= t
            mask[i, prompt:prompt + n] = 1
            nll[i, :prompt + n] = 1
            values[i, prompt + n:] = 0.0
        batch[f"{side}_log_probs"] = values
        batch[f"{side}_mask"] = mask
        if side == "chosen":
            batch["chosen_nll_mask"] = nll
    return {n: batch[n] for n in INPUTS}


def default_batch():
    return batch_of(2, [3, 4, 2], [4, 2, 3], 7)


_DEFAULTS_BATCH = {}


def defaults_batch():
    """default_batch(), kept for no_cast_check (the same draw the fixture holds)."""
    _DEFAULTS_BATCH["float64"] = default_batch()
    return _DEFAULTS_BATCH["float64"]


def no_cast_check(out_f64):
    """The float64 fixture leaves out TRL's float32 cast of a and b: with the cast,
    log_odds_chosen would move by more than the float64 tolerance."""
    batch = _DEFAULTS_BATCH["float64"]
    uncast = orpo_loss({k: v.clone() for k, v in batch.items()}, {})["log_odds_chosen"]
    assert uncast == out_f64["log_odds_chosen"], "no_cast_check must see the fixture's own inputs"
    a = (batch["chosen_log_probs"] * batch["chosen_mask"]).sum(-1) / batch["chosen_mask"].sum(-1)
    b = (batch["rejected_log_probs"] * batch["rejected_mask"]).sum(-1) / batch["rejected_mask"].sum(-1)
    a, b = a.float(), b.float()
    cast = ((a - b) - (log1mexp(a) - log1mexp(b))).mean().double()
    got, tol = out_f64["log_odds_chosen"], V11_TOL[F64]
    assert abs(got - cast) > tol["abs"] + tol["rel"] * abs(got), (float(got), float(cast))


def rows(chosen, rejected, prompt_value=-2.0):
    """One completion token per row with the given values, after one prompt token."""
    b = len(chosen)
    c = torch.tensor([[prompt_value, v, 0.0] for v in chosen], dtype=F64)
    r = torch.tensor([[prompt_value, v, 0.0] for v in rejected], dtype=F64)
    mask = torch.tensor([[0, 1, 0]] * b, dtype=I64)
    return {"chosen_log_probs": c, "rejected_log_probs": r, "chosen_mask": mask, "rejected_mask": mask.clone(),
            "chosen_nll_mask": torch.tensor([[1, 1, 0]] * b, dtype=I64)}


def near_zero():
    # Averages of -1e-3 and -0.05 take the log(-expm1) branch, -3 the log1p branch.
    return rows([-1e-3, -0.05, -3.0], [-0.5, -1e-3, -0.02])


def branch_point():
    # -ln 2 itself (rounded to each dtype) and its neighbours on either side.
    ln2 = math.log(2.0)
    return rows([-ln2, -ln2 + 1e-3, -ln2 - 1e-3], [-ln2 - 1e-3, -ln2, -1.5])


def branch_point_check(out):
    # Row 0: a = -ln 2, L(a) = log(1/2) = -ln 2; b = -ln 2 - 1e-3.
    ln2 = math.log(2.0)
    a, b = -ln2, -ln2 - 1e-3
    expected = (a - b) - (math.log(-math.expm1(a)) - math.log1p(-math.exp(b)))
    close_to(out["losses"][:1], [0.1 * -math.log1p(math.exp(-expected))], 1e-14)


def margins_900():
    # log_odds near +900 and -900: (a - b) = +-899, and L(a) - L(b) is below 0.5 in size.
    return rows([-1.0, -900.0], [-900.0, -1.0])


def margins_900_check(out):
    # Row 1: log_odds = -899 - (log1mexp(-900) - log1mexp(-1)) = -899 + log(1 - e^-1).
    lo = -899.0 + math.log1p(-math.exp(-1.0))
    close_to(out["losses"][1:], [0.1 * lo], 1e-9)


def ties():
    batch = batch_of(1, [2, 3, 1], [2, 3, 2], 5)
    for i in (0, 1):  # rows 0 and 1 tie exactly; a tie counts as wrong
        batch["rejected_log_probs"][i] = batch["chosen_log_probs"][i]
    return batch


def ties_check(out):
    ahead = int(out["chosen_rewards"][2] > out["rejected_rewards"][2])
    close_to(out["reward_accuracy"].reshape(1), [ahead / 3], 1e-15)
    close_to(out["losses"][:2], [0.1 * -math.log(2.0)] * 2, 1e-14)  # log_odds = 0 at a tie


def nll_completion_only():
    # The NLL mask equal to the completion mask (no prompt): ORPO then has CPO's NLL.
    batch = batch_of(2, [3, 2], [1, 4], 6)
    batch["chosen_nll_mask"] = batch["chosen_mask"].clone()
    return batch


def bool_masks():
    batch = batch_of(2, [3, 1], [2, 4], 6)
    for name in MASKS:
        batch[name] = batch[name].bool()
    return batch


def random_case():
    b, t = randint(1, 4), randint(3, 7)
    prompt = randint(0, 2)
    batch = batch_of(prompt, [randint(1, t - prompt) for _ in range(b)], [randint(1, t - prompt) for _ in range(b)], t,
                     scale=[0.25, 1.0][randint(0, 1)])
    batch["_params"] = {"beta": [0.1, 0.25, 1.0][randint(0, 2)]}
    return batch


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


def error_batch():
    return batch_of(1, [2, 3], [3, 1], 5)


def set_(name, index, value):
    return lambda b: b[name].__setitem__(index, value)


CASES = [
    case("defaults", "beta left out (0.1); NLL over prompt and completion; float64 without TRL's float32 cast",
         {}, defaults_batch, check=no_cast_check),
    case("beta-0.5", "beta 0.5", {"beta": 0.5}, default_batch),
    case("beta-2", "beta 2, longer rows", {"beta": 2.0}, lambda: batch_of(3, [4, 1, 2, 3], [2, 4, 3, 1], 8, scale=0.5)),
    case("near-zero-averages", "averages of -1e-3 to -0.05, where log(-expm1(v)) keeps the precision",
         {"beta": 0.1}, near_zero),
    case("branch-point", "averages at -ln 2, the log1mexp branch point, and next to it", {"beta": 0.1}, branch_point,
         check=branch_point_check),
    case("log-odds-900", "log odds of about +900 and -900 (logsigmoid must be stable)", {"beta": 0.1}, margins_900,
         check=margins_900_check),
    case("one-token", "one completion token per row", {"beta": 0.2},
         lambda: rows([-0.3, -1.2, -2.5], [-1.1, -0.4, -2.5])),
    case("ties", "chosen equal to rejected in two rows: log odds 0, a tie counts as wrong", {"beta": 0.1}, ties,
         check=ties_check),
    case("nll-completion-only", "chosen_nll_mask equal to chosen_mask (no prompt in the NLL)", {"beta": 0.1},
         nll_completion_only),
    case("bool-masks", "the masks given as bool", {"beta": 0.1}, bool_masks),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, scales and beta", None, random_case, tolerance=V11_TOL)
      for k in (1, 2, 3)],

    ErrorCase("shape-mismatch", "chosen_nll_mask [B,T-1] does not match [B,T]", {},
              mutated(error_batch, lambda b: b.update(chosen_nll_mask=b["chosen_nll_mask"][:, :-1].clone()))),
    ErrorCase("empty-batch", "B = 0", {}, lambda: batch_of(0, [], [], 4)),
    ErrorCase("nan-input", "NaN in rejected_log_probs", {},
              mutated(error_batch, set_("rejected_log_probs", (1, 1), math.nan)), also_f32=True),
    ErrorCase("mask-value-2", "rejected_mask holds a 2", {}, mutated(error_batch, set_("rejected_mask", (0, 2), 2))),
    ErrorCase("chosen-row-empty", "a chosen row whose mask has no 1 (the average is 0/0)", {},
              mutated(error_batch, set_("chosen_mask", (1,), 0))),
    ErrorCase("rejected-row-empty", "a rejected row whose mask has no 1 (the average is 0/0)", {},
              mutated(error_batch, set_("rejected_mask", (0,), 0))),
    ErrorCase("nll-mask-empty", "chosen_nll_mask with no 1 (the NLL is 0/0)", {},
              mutated(error_batch, lambda b: b["chosen_nll_mask"].zero_())),
    ErrorCase("average-zero", "a chosen average log-prob of exactly 0 (p = 1: log1mexp(0) = -inf)", {},
              lambda: rows([0.0, -1.0], [-2.0, -1.5])),
    ErrorCase("average-positive", "a rejected average log-prob of +0.3 (p > 1: log1mexp is NaN)", {},
              lambda: rows([-1.0, -0.5], [-2.0, 0.3]), also_f32=True),
    ErrorCase("inf-under-mask", "+inf in chosen_log_probs where both chosen masks are 0 (the masked sums give NaN)", {},
              mutated(error_batch, set_("chosen_log_probs", (0, 4), math.inf))),
]

STAGE = Stage("orpo_loss", orpo_loss, CASES, catalog_prefixes=(WHAT,))
