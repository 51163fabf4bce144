"""Stage ppo_policy_loss: OpenRLHF's PPO policy loss, its metrics, the KL loss, and
the gradient with respect to log_probs.

Written from shared/spec/v1.1-zoo.md (section `ppo_policy_loss`), which follows
OpenRLHF openrlhf/models/loss.py :: PolicyLoss.forward with aggregate_loss, and the
KL-loss lines of openrlhf/trainer/ray/ppo_actor.py :: ActorPPOTrainer.training_step
(OpenRLHF snapshot 3c3be6234e0c; one micro-batch on one rank, no vLLM correction).

- ppo: ratio = exp(clamp(d, -20, 20)) with d = log_probs - old_log_probs;
  gspo: ratio[b,t] = exp(sum_t d*m / max(sum_t m, 1)) * m[b,t], no clamp.
- s1 = ratio*A, s2 = clamp(ratio, 1-low, 1+high)*A, q = -min(s1, s2); with dual_clip c
  and A < 0: q = -max(min(s1, s2), c*A).
- token level: sum(q*m)/sum(m); sample level (gspo always): per row sum_t q*m/(n_b+1e-8),
  then the mean over rows with n_b > 0.
- clip_ratio = sum([s2 < s1]*m)/sum(m); ppo_kl = sum(-d*m)/sum(m).
- use_kl_loss: k = clamp(estimator(log_probs - ref_log_probs), -10, 10) if kl_coef > 0
  else 0; kl_loss = sum(k*m)/sum(m) (token level always); loss = policy + kl_loss*kl_coef.
Float64 fixtures drop the peer's incidental float32 casts (the KL estimator's .float(),
the metrics' .float() fractions). Autograd's gradient with respect to log_probs.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, log_prob_like, mutated, randint, random_params_case
from ..fixture_format import F64, I64, V11_TOL
from ..reference import leaf, need, need_float, need_mask, need_no_nan_result, need_shape, with_defaults
from .actor_loss import LOWER_LOG_RATIO, UPPER_LOG_RATIO, exp_of_dyadic

DEFAULTS = {"policy_loss_type": "ppo", "clip_eps_low": 0.2, "clip_eps_high": 0.2, "dual_clip": None,
            "token_level_loss": True, "use_kl_loss": False, "kl_coef": 0.01, "kl_estimator": "k1"}
FLOATS = ["log_probs", "old_log_probs", "advantages"]


def check_inputs(inp, prm):
    lp = inp["log_probs"]
    need(lp.dim() == 2, "log_probs must be [B,T]")
    names = FLOATS + (["ref_log_probs"] if "ref_log_probs" in inp else [])
    for name in names[1:] + ["action_mask"]:
        need_shape(name, inp[name], lp.shape)
    need(lp.shape[0] > 0 and lp.shape[1] > 0, "empty batch")
    for name in names:
        need_float(name, inp[name])
    need(len({inp[n].dtype for n in names}) == 1, "float inputs mix dtypes")
    need_mask("action_mask", inp["action_mask"])
    need(prm["policy_loss_type"] in ("ppo", "gspo"), f"unknown policy_loss_type {prm['policy_loss_type']!r}")
    need(prm["kl_estimator"] in ("k1", "k2", "k3"), f"unknown kl_estimator {prm['kl_estimator']!r}")
    need(int(inp["action_mask"].sum()) > 0, "action_mask holds no 1 (every normaliser is 0/0)")
    need(prm["dual_clip"] is None or prm["dual_clip"] > 1.0, "dual_clip must be > 1 (OpenRLHF asserts it)")
    need(not prm["use_kl_loss"] or "ref_log_probs" in inp, "use_kl_loss without ref_log_probs")


def kl_estimate(r, estimator):
    """The kl_estimators formula, unclamped: k1 = r, k2 = r^2/2, k3 = (exp(-r) - 1) + r."""
    if estimator == "k1":
        return r
    if estimator == "k2":
        return r ** 2 / 2.0
    return (-r).exp() - 1 + r


def forward(log_probs, inp, prm):
    """Every output of the stage (tensors of the inputs' dtype); log_probs may be a leaf."""
    old, adv = inp["old_log_probs"], inp["advantages"]
    mask = inp["action_mask"].to(log_probs.dtype)
    raw = log_probs - old
    if prm["policy_loss_type"] == "ppo":
        ratio = raw.clamp(min=-20.0, max=20.0).exp()
    else:
        ratio = (raw * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
        ratio = ratio.exp().unsqueeze(-1) * mask
    surr1 = ratio * adv
    surr2 = ratio.clamp(1 - prm["clip_eps_low"], 1 + prm["clip_eps_high"]) * adv
    if prm["dual_clip"] is None:
        loss = -torch.min(surr1, surr2)
    else:
        clip1 = torch.min(surr1, surr2)
        clip2 = torch.max(clip1, prm["dual_clip"] * adv)
        loss = -torch.where(adv < 0, clip2, clip1)

    token_level = prm["token_level_loss"] and prm["policy_loss_type"] == "ppo"
    if token_level:
        policy_loss = (loss * mask).sum() / mask.sum()
    else:
        counts = mask.sum(dim=-1)
        seq_loss = (loss * mask).sum(dim=-1) / (counts + 1e-8)
        seq_mask = (counts > 0).to(log_probs.dtype)
        policy_loss = (seq_loss * seq_mask).sum() / seq_mask.sum()
    out = {"policy_loss": policy_loss,
           "clip_ratio": (torch.lt(surr2, surr1).to(log_probs.dtype) * mask).sum() / mask.sum(),
           "ppo_kl": (-raw.detach() * mask).sum() / mask.sum()}
    total = policy_loss
    if prm["use_kl_loss"]:
        if prm["kl_coef"] > 0:
            k = kl_estimate(log_probs - inp["ref_log_probs"], prm["kl_estimator"]).clamp(min=-10, max=10)
        else:
            k = torch.zeros_like(log_probs)
        kl_loss = (k * mask).sum() / mask.sum()
        out["kl_loss"] = kl_loss
        total = policy_loss + kl_loss * prm["kl_coef"]
    out["loss"] = total
    return out


def ppo_policy_loss(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    check_inputs(inp, prm)
    x = leaf(inp["log_probs"])
    out = forward(x, inp, prm)
    for name, value in out.items():
        need(bool(torch.isfinite(value).all()), f"{name} is not finite (an overflowed ratio or infinite inputs)")
    out["loss"].backward()
    need_no_nan_result("grad_log_probs", x.grad)
    order = ["loss", "policy_loss", "clip_ratio", "ppo_kl", "kl_loss"]
    result = {name: out[name].detach() for name in order if name in out}
    result["grad_log_probs"] = x.grad
    return result


# ---- cases ----

WHAT = "OpenRLHF PolicyLoss + aggregate_loss semantics"


def batch_of(b, t, spread, lengths=None, with_ref=False):
    old = log_prob_like(b, t)
    batch = {"log_probs": old + torch.randn(b, t, dtype=F64) * spread, "old_log_probs": old,
             "advantages": torch.randn(b, t, dtype=F64), "action_mask": length_mask(b, t, lengths)}
    if with_ref:
        batch["ref_log_probs"] = old + torch.randn(b, t, dtype=F64) * 0.5
    return batch


def dual_clip_batch():
    # Negative advantages with ratios far above 1: min(s1, s2) = ratio*A < 3*A, so the dual clip binds.
    batch = batch_of(2, 6, 0.3, lengths=[6, 4])
    batch["log_probs"][0, :3] = batch["old_log_probs"][0, :3] + torch.tensor([1.5, 2.0, 0.5], dtype=F64)
    batch["advantages"][0, :3] = torch.tensor([-1.0, -0.5, -2.0], dtype=F64)
    return batch


def huge_log_ratios():
    # d = +-900 (clamped to +-20 for ppo): the ratio is e^20 or e^-20, and nothing passes the clamp.
    batch = batch_of(2, 5, 0.3, lengths=[5, 4])
    batch["log_probs"][0, 1] = batch["old_log_probs"][0, 1] + 900.0
    batch["advantages"][0, 1] = 0.75
    batch["log_probs"][1, 2] = batch["old_log_probs"][1, 2] - 900.0
    batch["advantages"][1, 2] = -1.25
    batch["log_probs"][1, 0] = batch["old_log_probs"][1, 0] + 900.0
    batch["advantages"][1, 0] = -0.5
    return batch


def at_bounds():
    """Ratios exactly at 1 + high (e^(5/32)) and 1 - low (e^(-7/32)) with A of both signs:
    the two surrogates tie, autograd splits the minimum half/half, the clamp passes at its bound.
    old and new log-probs are dyadic, so d is exact."""
    up, down = UPPER_LOG_RATIO, LOWER_LOG_RATIO
    old = torch.tensor([[-1.25, -2.5, -0.75, -3.0, -0.5], [-1.5, -0.5, -2.25, -1.0, -2.0]], dtype=F64)
    delta = torch.tensor([[up, up, down, down, 0.0], [up, down, up / 2, down / 2, 0.0]], dtype=F64)
    adv = torch.tensor([[1.5, -1.5, 0.75, -0.5, 1.0], [-2.0, 2.0, 1.0, -1.0, 0.0]], dtype=F64)
    return {"log_probs": old + delta, "old_log_probs": old, "advantages": adv,
            "action_mask": torch.ones(2, 5, dtype=I64)}


BOUND_PARAMS = {"clip_eps_low": 1.0 - exp_of_dyadic(LOWER_LOG_RATIO),
                "clip_eps_high": exp_of_dyadic(UPPER_LOG_RATIO) - 1.0}


def kl_batch(clamped):
    def build():
        batch = batch_of(3, 5, 0.3, lengths=[5, 3, 4], with_ref=True)
        if clamped:
            # r = -15 and +15: k3 = e^15 - 16 and k2 = 112.5 clamp at 10 (nothing passes there); k1 at -10/10.
            batch["ref_log_probs"][0, 1] = batch["log_probs"][0, 1] + 15.0
            batch["ref_log_probs"][2, 0] = batch["log_probs"][2, 0] - 15.0
        return batch
    return build


def with_empty_row(build, row):
    def built():
        batch = build()
        batch["action_mask"][row] = 0
        return batch
    return built


def one_token_rows():
    batch = batch_of(4, 5, 0.4, lengths=[1, 5, 0, 1])
    batch["action_mask"][3] = torch.tensor([0, 0, 1, 0, 0])
    return batch


def as_bool_mask(build):
    return mutated(build, lambda batch: batch.update(action_mask=batch["action_mask"].bool()))


def random_batch():
    b, t = randint(1, 4), randint(1, 8)
    batch = batch_of(b, t, 0.4, lengths=[randint(1, t) for _ in range(b)], with_ref=True)
    batch["_params"] = {"policy_loss_type": ["ppo", "gspo"][randint(0, 1)],
                        "clip_eps_low": [0.1, 0.2][randint(0, 1)], "clip_eps_high": [0.2, 0.28][randint(0, 1)],
                        "dual_clip": [None, 3.0][randint(0, 1)], "token_level_loss": [True, False][randint(0, 1)],
                        "use_kl_loss": True, "kl_coef": 0.05, "kl_estimator": ["k1", "k2", "k3"][randint(0, 2)]}
    return batch


def error_batch():
    return batch_of(2, 4, 0.3, lengths=[4, 2], with_ref=True)


def gspo_overflow(batch):
    # A row's mean log-ratio of 900: exp(900) = inf (no clamp in gspo); with A < 0, s1 = -inf and q = +inf.
    batch["log_probs"][0] = batch["old_log_probs"][0] + 900.0
    batch["advantages"][0] = -1.0


GSPO = {"policy_loss_type": "gspo"}
KL = {"use_kl_loss": True, "kl_coef": 0.1}

CASES = [
    FloatCase("ppo-defaults", f"{WHAT}, every param left out (ppo, clip 0.2/0.2, token level, no KL loss)", {},
              lambda: batch_of(3, 6, 0.4, lengths=[6, 4, 2])),
    FloatCase("ppo-asymmetric-clip", f"{WHAT}, ppo with clip_eps_low 0.2 and clip_eps_high 0.28 (clip-higher), "
              "ratios on both sides of the range", {"clip_eps_low": 0.2, "clip_eps_high": 0.28},
              lambda: batch_of(3, 5, 0.6, lengths=[5, 5, 3])),
    FloatCase("ppo-dual-clip", f"{WHAT}, ppo with dual_clip 3: negative advantages whose ratio*A is below 3*A",
              {"dual_clip": 3.0}, dual_clip_batch),
    FloatCase("ppo-sample-level", f"{WHAT}, ppo with token_level_loss false: row means over n_b + 1e-8, a fully "
              "masked row left out of the mean", {"token_level_loss": False},
              with_empty_row(lambda: batch_of(3, 5, 0.4, lengths=[5, 2, 4]), 1)),
    FloatCase("ppo-log-ratio-900", f"{WHAT}, ppo with log-ratios of +-900: clamped to +-20 before exp, no "
              "gradient through the clamp", {}, huge_log_ratios),
    FloatCase("ppo-ratio-at-clip-bounds", f"{WHAT}, ratios exactly at 1 - clip_eps_low and 1 + clip_eps_high: s1 = s2 "
              "(a tie, autograd splits the min half/half; the clamp passes at its bounds; strict clip_ratio)",
              BOUND_PARAMS, at_bounds),
    FloatCase("ppo-kl-k1", f"{WHAT}, ppo with use_kl_loss, kl_estimator k1, kl_coef 0.1", {**KL, "kl_estimator": "k1"},
              kl_batch(False)),
    FloatCase("ppo-kl-k2-clamped", f"{WHAT}, ppo with use_kl_loss, k2, estimates beyond +-10 clamped (no gradient there)",
              {**KL, "kl_estimator": "k2"}, kl_batch(True)),
    FloatCase("ppo-kl-k3-clamped", f"{WHAT}, ppo with use_kl_loss, k3, estimates beyond 10 clamped (no gradient there)",
              {**KL, "kl_estimator": "k3"}, kl_batch(True)),
    FloatCase("ppo-kl-coef-zero", f"{WHAT}, use_kl_loss with kl_coef 0: k = 0, kl_loss = 0",
              {"use_kl_loss": True, "kl_coef": 0.0, "kl_estimator": "k3"}, kl_batch(False)),
    FloatCase("ppo-bool-mask", f"{WHAT}, the action_mask given as bool", {},
              as_bool_mask(lambda: batch_of(2, 5, 0.3, lengths=[5, 3]))),
    FloatCase("gspo-basic", f"{WHAT}, gspo: one ratio per row (mean log-ratio), sample level although "
              "token_level_loss is true", {**GSPO, "token_level_loss": True},
              lambda: batch_of(3, 6, 0.2, lengths=[6, 3, 5])),
    FloatCase("gspo-clipped", f"{WHAT}, gspo with clip 0.1/0.15 and larger log-ratios: row ratios outside the range",
              {**GSPO, "clip_eps_low": 0.1, "clip_eps_high": 0.15}, lambda: batch_of(4, 4, 0.5, lengths=[4, 2, 3, 4])),
    FloatCase("gspo-one-token-and-empty-rows", f"{WHAT}, gspo with one-token rows and a fully masked row (ratio 0 "
              "there, left out of the mean)", GSPO, one_token_rows),
    FloatCase("gspo-kl-k3-dual-clip", f"{WHAT}, gspo with dual_clip 2 and the k3 KL loss (token level while the "
              "policy term is sample level)", {**GSPO, **KL, "kl_estimator": "k3", "dual_clip": 2.0},
              kl_batch(False)),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, masks and params", random_batch) for k in (1, 2, 3)],

    ErrorCase("dual-clip-not-above-1", "dual_clip = 1.0 (OpenRLHF asserts dual_clip > 1)", {"dual_clip": 1.0},
              error_batch),
    ErrorCase("action-mask-all-zero", "an action_mask with no 1 (every normaliser is 0/0)", {},
              mutated(error_batch, lambda b: b["action_mask"].zero_())),
    ErrorCase("kl-loss-without-ref", "use_kl_loss without ref_log_probs", {"use_kl_loss": True},
              mutated(error_batch, lambda b: b.pop("ref_log_probs"))),
    ErrorCase("advantages-shape", "advantages [B,T-1] do not match log_probs [B,T]", {},
              mutated(error_batch, lambda b: b.update(advantages=b["advantages"][:, :-1].clone()))),
    ErrorCase("empty-batch", "a batch of B = 0 rows", {},
              lambda: {k: v[:0].clone() for k, v in error_batch().items()}),
    ErrorCase("nan-log-probs", "NaN in log_probs", {},
              mutated(error_batch, lambda b: b["log_probs"].__setitem__((1, 1), math.nan)), also_f32=True),
    ErrorCase("unknown-policy-loss-type", "policy_loss_type \"grpo\" is not one of ppo, gspo",
              {"policy_loss_type": "grpo"}, error_batch),
    ErrorCase("unknown-kl-estimator", "kl_estimator \"k4\" is not one of k1, k2, k3",
              {"use_kl_loss": True, "kl_estimator": "k4"}, error_batch),
    ErrorCase("mask-value-2", "the action_mask holds a 2", {},
              mutated(error_batch, lambda b: b["action_mask"].__setitem__((0, 1), 2))),
    ErrorCase("gspo-ratio-overflow", "gspo with a row's mean log-ratio of 900 and A < 0: exp overflows (no "
              "clamp) and the peer's loss is inf", GSPO, mutated(error_batch, gspo_overflow)),
]

STAGE = Stage("ppo_policy_loss", ppo_policy_loss, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
