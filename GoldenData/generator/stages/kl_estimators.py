"""Stage kl_estimators: Schulman's k1, k2 and k3 single-sample KL estimates per
token, clamped, and OpenRLHF's per-sequence masked mean of them.

Written from shared/spec/v1.1-zoo.md, section `kl_estimators`, which follows
OpenRLHF openrlhf/models/utils.py :: compute_approx_kl (snapshot 3c3be6234e0c) and
masked_mean as RemoteExperienceMaker.make_experience logs it; with clip_range null
it is TRL trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train's KL lines:

- r = log_probs - ref_log_probs at every position;
- k1 = r, k2 = r**2 / 2, k3 = exp(-r) - 1 + r, formed as the peer forms it: the
  log-ratio negated first, then exp(.) - 1 - (negated log-ratio);
- clamp(k, lo, hi) with clip_range = [lo, hi] (OpenRLHF: always [-10, 10]);
- with a mask: kl_mean[b] = sum_t kl * mask / sum_t mask; the mask leaves kl alone.

The float32 fixtures are the estimators evaluated in float32 (OpenRLHF's
`.float()`); the float64 ones the same formulas without that cast.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, log_prob_like, mutated, randint
from ..fixture_format import F64, I64, V11_TOL
from ..reference import need, need_float, need_mask, need_shape, same_float_dtype, with_defaults

DEFAULTS = {"estimator": "k1", "clip_range": [-10.0, 10.0]}
ESTIMATORS = ("k1", "k2", "k3")


def estimate(log_ratio, estimator):
    """One estimator on the log-ratio r = log pi - log pi_ref, in r's dtype."""
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return log_ratio ** 2 / 2.0
    negated = -log_ratio
    return negated.exp() - 1 - negated


def kl_estimators(inp, prm):
    p = with_defaults(prm, DEFAULTS)
    log_probs, ref = inp["log_probs"], inp["ref_log_probs"]
    need(log_probs.dim() == 2, "log_probs must be [B,T]")
    need_shape("ref_log_probs", ref, log_probs.shape)
    need(log_probs.shape[0] > 0, "the batch is empty (B = 0)")
    need_float("log_probs", log_probs)
    need_float("ref_log_probs", ref)
    same_float_dtype(log_probs=log_probs, ref_log_probs=ref)
    mask = inp.get("mask")
    if mask is not None:
        need_shape("mask", mask, log_probs.shape)
        need_mask("mask", mask)
    need(p["estimator"] in ESTIMATORS, f"estimator {p['estimator']!r} is not k1, k2 or k3")
    clip = p["clip_range"]
    if clip is not None:
        need(len(clip) == 2 and clip[0] <= clip[1], f"clip_range {clip} needs lo <= hi")

    kl = estimate(log_probs - ref, p["estimator"])
    if clip is not None:
        kl = kl.clamp(min=clip[0], max=clip[1])
    # The spec's catch-all (no fixture relies on it): a non-finite estimate is refused.
    need(bool(torch.isfinite(kl).all()), "an estimate is not finite")
    out = {"kl": kl}
    if mask is not None:
        counts = mask.sum(dim=-1)
        need(bool((counts > 0).all()), "a mask row holds no 1 (OpenRLHF's masked_mean gives 0/0)")
        out["kl_mean"] = (kl * mask).sum(dim=-1) / counts
    return out


# ---- cases ----

WHAT = "OpenRLHF compute_approx_kl + masked_mean semantics"


def pair(b, t, spread=0.5, lengths=None, with_mask=True):
    """Policy log-probs and reference log-probs that differ by about `spread`."""
    log_probs = log_prob_like(b, t)
    batch = {"log_probs": log_probs, "ref_log_probs": log_probs + torch.randn(b, t, dtype=F64) * spread}
    if with_mask:
        batch["mask"] = length_mask(b, t, lengths)
    return batch


def extreme_ratios():
    """Log-ratios of exactly +-900 (and +-30, +-5) beside ordinary ones: k3 at -900
    is exp(900) = inf before the clamp, k2 at 900 is 405000."""
    log_probs = torch.tensor([[-900.5, -0.5, -31.25, -2.0], [-1.5, -3.0, -0.25, -7.0]], dtype=F64)
    ref = torch.tensor([[-0.5, -900.5, -1.25, -1.5], [-31.5, -8.0, -0.5, -1.0]], dtype=F64)
    return {"log_probs": log_probs, "ref_log_probs": ref, "mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=I64)}


def extreme_ratios_unclamped():
    """+-900 without a clamp, for the estimators that stay finite there (k1, k2)."""
    batch = extreme_ratios()
    return batch


def positive_extreme_only():
    """Log-ratios up to +900 only: k3 = 899 stays finite without a clamp (at -900 it
    would be inf, which the project refuses)."""
    log_probs = torch.tensor([[-0.5, -1.0, -2.0], [-3.0, -0.125, -0.75]], dtype=F64)
    ref = torch.tensor([[-900.5, -1.5, -1.25], [-2.5, -40.125, -0.75]], dtype=F64)
    return {"log_probs": log_probs, "ref_log_probs": ref, "mask": torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=I64)}


def tiny_ratios():
    """|r| between 1e-7 and 1e-3: float32's k3 cancels (exp(-r) - 1 keeps ~7 bits of
    r^2/2); the absolute error stays near 1e-8, far inside the tolerance."""
    log_probs = log_prob_like(2, 5)
    r = torch.tensor([[1e-3, -1e-3, 3e-5, -3e-5, 1e-7], [2.5e-4, -2.5e-4, 6e-6, -6e-6, -1e-7]], dtype=F64)
    return {"log_probs": log_probs, "ref_log_probs": log_probs - r, "mask": torch.ones(2, 5, dtype=I64)}


def one_token_rows():
    batch = pair(3, 5, spread=0.8)
    mask = torch.zeros(3, 5, dtype=I64)
    mask[0, 0] = 1
    mask[1, 4] = 1
    mask[2, 2] = 1
    batch["mask"] = mask
    return batch


def masked_values_large():
    """Masked positions hold ratios of +-25 (clamped k3 and k2 at 10): they appear
    in kl, untouched by the mask, and not in kl_mean."""
    batch = pair(2, 6, spread=0.3, lengths=[4, 2])
    batch["ref_log_probs"][0, 4] = batch["log_probs"][0, 4] + 25.0
    batch["ref_log_probs"][1, 5] = batch["log_probs"][1, 5] - 25.0
    return batch


def bool_mask():
    batch = pair(3, 4, lengths=[4, 1, 3])
    batch["mask"] = batch["mask"].bool()
    return batch


def equal_policies():
    """Policy = reference: every estimator is 0 exactly."""
    log_probs = log_prob_like(2, 4)
    return {"log_probs": log_probs, "ref_log_probs": log_probs.clone(), "mask": length_mask(2, 4, [4, 3])}


def random_batch():
    b, t = randint(1, 4), randint(1, 8)
    lengths = [randint(1, t) for _ in range(b)]
    batch = pair(b, t, spread=[0.1, 1.0, 4.0][randint(0, 2)], lengths=lengths, with_mask=bool(randint(0, 1)))
    clip = [[-10.0, 10.0], None, [-0.75, 2.5]][randint(0, 2)]
    batch["_params"] = {"estimator": ESTIMATORS[randint(0, 2)], "clip_range": clip}
    return batch


def error_batch():
    return pair(2, 4, lengths=[4, 2])


def case(name, what, params, build):
    return FloatCase(name, f"{WHAT}, {what}", params, build, tolerance=V11_TOL)


def per_estimator_cases(estimator):
    return [
        case(f"{estimator}-partial-mask", f"{estimator}, rows masked up to different lengths, default clamp",
             {"estimator": estimator}, lambda: pair(3, 6, lengths=[6, 2, 4])),
        case(f"{estimator}-no-mask", f"{estimator}, no mask (only kl), default clamp",
             {"estimator": estimator}, lambda: pair(2, 5, spread=1.5, with_mask=False)),
        case(f"{estimator}-extreme-ratios-clamped", f"{estimator}, log-ratios of +-900, +-30 clamped to [-10, 10]",
             {"estimator": estimator, "clip_range": [-10.0, 10.0]}, extreme_ratios),
        case(f"{estimator}-trl-no-clamp", f"{estimator}, clip_range null (TRL: no clamp), log-ratios up to +-3",
             {"estimator": estimator, "clip_range": None}, lambda: pair(3, 5, spread=1.5, lengths=[5, 3, 1])),
    ]


CASES = [
    *per_estimator_cases("k1"),
    *per_estimator_cases("k2"),
    *per_estimator_cases("k3"),
    case("defaults", "estimator and clip_range left out (k1, [-10, 10])", {}, lambda: pair(2, 6, spread=6.0,
                                                                                                lengths=[6, 3])),
    case("k1-extreme-ratios-no-clamp", "k1, log-ratios of +-900 without a clamp stay +-900",
         {"estimator": "k1", "clip_range": None}, extreme_ratios_unclamped),
    case("k2-extreme-ratios-no-clamp", "k2, log-ratios of +-900 without a clamp: 405000",
         {"estimator": "k2", "clip_range": None}, extreme_ratios_unclamped),
    case("k3-plus-900-no-clamp", "k3, log-ratios up to +900 without a clamp: 899",
         {"estimator": "k3", "clip_range": None}, positive_extreme_only),
    case("k3-tiny-ratios", "k3, |r| from 1e-7 to 1e-3 (float32 cancellation in exp(-r) - 1 + r)",
         {"estimator": "k3"}, tiny_ratios),
    case("k1-custom-clip", "k1, clip_range [-0.3, 0.7] (bounds rounded to float32 in the f32 fixture)",
         {"estimator": "k1", "clip_range": [-0.3, 0.7]}, lambda: pair(3, 5, spread=1.0, lengths=[5, 4, 2])),
    case("k3-clip-lo-equals-hi", "k3, clip_range [0.25, 0.25]: every estimate is 0.25",
         {"estimator": "k3", "clip_range": [0.25, 0.25]}, lambda: pair(2, 3, lengths=[3, 1])),
    case("k2-one-token-rows", "k2, each row's mask selects one token", {"estimator": "k2"}, one_token_rows),
    case("k3-masked-positions-kept", "k3, ratios of +-25 at masked positions: clamped in kl, left out of kl_mean",
         {"estimator": "k3"}, masked_values_large),
    case("k1-bool-mask", "k1, the mask given as bool", {"estimator": "k1"}, bool_mask),
    case("k3-equal-policies", "k3, policy equal to the reference: every estimate 0", {"estimator": "k3"},
         equal_policies),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, masks, estimators and clip ranges", None, random_batch,
                tolerance=V11_TOL) for k in (1, 2, 3)],

    ErrorCase("clip-lo-above-hi", "clip_range [1, -1] has lo > hi", {"estimator": "k1", "clip_range": [1.0, -1.0]},
              error_batch),
    ErrorCase("mask-row-empty", "a mask row holds no 1 (OpenRLHF's per-row mean is 0/0 = NaN)", {"estimator": "k3"},
              mutated(error_batch, lambda b: b["mask"][1].zero_())),
    ErrorCase("unknown-estimator", "estimator \"k4\" is not k1, k2 or k3", {"estimator": "k4"}, error_batch),
    ErrorCase("ref-shape", "ref_log_probs [B,T-1] does not match log_probs [B,T]", {"estimator": "k1"},
              mutated(error_batch, lambda b: b.update(ref_log_probs=b["ref_log_probs"][:, :-1].clone()))),
    ErrorCase("mask-shape", "mask [B-1,T] does not match log_probs [B,T]", {"estimator": "k2"},
              mutated(error_batch, lambda b: b.update(mask=b["mask"][:-1].clone()))),
    ErrorCase("empty-batch", "an empty batch (B = 0)", {"estimator": "k1"},
              lambda: {"log_probs": torch.zeros(0, 4, dtype=F64), "ref_log_probs": torch.zeros(0, 4, dtype=F64)}),
    ErrorCase("nan-log-probs", "NaN in log_probs", {"estimator": "k3"},
              mutated(error_batch, lambda b: b["log_probs"].__setitem__((0, 2), math.nan)), also_f32=True),
    ErrorCase("nan-ref-masked", "NaN in ref_log_probs at a masked position", {"estimator": "k1"},
              mutated(error_batch, lambda b: b["ref_log_probs"].__setitem__((1, 3), math.nan))),
    ErrorCase("mask-value-2", "the mask holds a 2", {"estimator": "k1"},
              mutated(error_batch, lambda b: b["mask"].__setitem__((0, 1), 2))),
]

STAGE = Stage("kl_estimators", kl_estimators, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
