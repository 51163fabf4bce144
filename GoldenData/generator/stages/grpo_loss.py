"""Stage grpo_loss: TRL's GRPO loss family, its KL and clip metrics, and the gradient
with respect to log_probs.

Written from shared/spec/v1.1-zoo.md (section `grpo_loss`), which follows TRL
trl/trainer/grpo_trainer.py :: GRPOTrainer._compute_loss and get_gamma_weights (TRL
snapshot f2cd57710ae3; one process, training, no vLLM correction, no off-policy or
entropy mask, no entropy bonus):

- d = log_probs - old_log_probs; w = d (token) or w_b = sum_t d*m / max(n_b, 1)
  (sequence, [B,1]); rho = exp(w), no clamp.
- beta != 0: k = exp(ref - lp) - (ref - lp) - 1, times rho with use_bias_correction_kl.
- grpo/bnpo/dr_grpo/dapo/luspo: rho_c = clamp(rho, 1-eps, 1+eps_high); rho <- min(rho,
  delta) when delta is set; q = -min(rho*A, rho_c*A). cispo: q = -sg(min(rho, eps_high))*A*lp.
  sapo: q = -(sigmoid(tau*(rho-1))*4/tau)*A. vespo: q = -sg(phi_b)*A*lp with TRL's gamma
  weight from the token-level sum of clamped log-ratios. q <- q + beta*k.
- reductions: grpo/sapo mean over rows of row means /GA; bnpo token mean /GA; dr_grpo
  sum/(B*max_completion_length) /GA; dapo/cispo/vespo sum/max(num_items_in_batch, 1);
  luspo mean over all entries of q*n_b /GA (over B*T entries, padding included, at token
  level). Every normaliser is clamped to >= 1: a fully masked batch has loss 0.
- kl = sum(k*m)/max(N, 1); clip metrics after the delta cap, masked token means, or the
  mean over B at sequence level. TRL's metric helper reads any one-column tensor as one
  value per sequence, so with T = 1 these are unmasked means over B at token level too
  (followed here, as TRL's code runs; the spec's masked formula differs only there).
Float64 fixtures drop TRL's incidental float32 casts (the SAPO/VESPO per-sign tables,
the metrics' .float() fractions). Autograd's gradient with respect to log_probs. Where
autograd's gradient is NaN although the loss is a number (0 * inf through the exp of a
ratio that overflowed in a branch the loss does not use), the fixture carries no
gradient: the true derivative there is 0, which the Swift backward pass gives.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, log_prob_like, mutated, randint, random_params_case
from ..fixture_format import F64, I64, V11_TOL
from ..reference import leaf, need, need_float, need_mask, need_shape, with_defaults
from .actor_loss import LOWER_LOG_RATIO, UPPER_LOG_RATIO, exp_of_dyadic

DEFAULTS = {"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": None, "delta": None, "beta": 0.0,
            "importance_sampling_level": "token", "max_completion_length": 512, "use_bias_correction_kl": False,
            "sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05, "vespo_k_pos": 2.0, "vespo_lambda_pos": 3.0,
            "vespo_k_neg": 3.0, "vespo_lambda_neg": 2.0, "gradient_accumulation_steps": 1,
            "num_items_in_batch": None}
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
CLIPPING = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")


def check_inputs(inp, prm):
    lp = inp["log_probs"]
    need(lp.dim() == 2, "log_probs must be [B,T]")
    floats = ["log_probs", "old_log_probs"] + (["ref_log_probs"] if "ref_log_probs" in inp else [])
    for name in floats[1:] + ["mask"]:
        need_shape(name, inp[name], lp.shape)
    need_shape("advantages", inp["advantages"], lp.shape[:1])
    need(lp.shape[0] > 0 and lp.shape[1] > 0, "empty batch")
    for name in floats + ["advantages"]:
        need_float(name, inp[name])
    need(len({inp[n].dtype for n in floats + ["advantages"]}) == 1, "float inputs mix dtypes")
    need_mask("mask", inp["mask"])
    need(prm["loss_type"] in LOSS_TYPES, f"unknown loss_type {prm['loss_type']!r}")
    need(prm["importance_sampling_level"] in ("token", "sequence"),
         f"unknown importance_sampling_level {prm['importance_sampling_level']!r}")
    need(prm["beta"] == 0.0 or "ref_log_probs" in inp, "beta != 0 without ref_log_probs")
    need(prm["loss_type"] != "dr_grpo" or prm["max_completion_length"] > 0, "dr_grpo with max_completion_length <= 0")
    need(prm["gradient_accumulation_steps"] >= 1, "gradient_accumulation_steps < 1")


def gamma_weights(adv, log_ratio, mask, prm):
    """TRL's get_gamma_weights without the vLLM term: phi_b per sequence, [B,1], detached.
    Its per-sign k and lambda tables are float32 in TRL; here they take the inputs' dtype."""
    with torch.no_grad():
        lower_clamp = math.log(1e-8)
        seq_log_ratio = torch.sum(torch.clamp(log_ratio, -20.0, 20.0) * mask, dim=-1, keepdim=True)
        log_w = torch.clamp(seq_log_ratio, lower_clamp, 20.0)
        w = torch.exp(log_w)
        nonneg = adv >= 0
        dt = log_ratio.dtype
        k = torch.where(nonneg, torch.tensor(prm["vespo_k_pos"], dtype=dt), torch.tensor(prm["vespo_k_neg"], dtype=dt))
        lam = torch.where(nonneg, torch.tensor(prm["vespo_lambda_pos"], dtype=dt),
                          torch.tensor(prm["vespo_lambda_neg"], dtype=dt)).clamp(min=1e-4)
        log_phi = lam + k * log_w - lam * w
        return torch.exp(log_phi).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def forward(lp, inp, prm):
    """The loss and the metrics (tensors of the inputs' dtype); lp may be a leaf."""
    old = inp["old_log_probs"]
    mask = inp["mask"].to(lp.dtype)
    adv = inp["advantages"].unsqueeze(1)
    eps_low = prm["epsilon"]
    eps_high = prm["epsilon_high"] if prm["epsilon_high"] is not None else prm["epsilon"]
    loss_type, beta, ga = prm["loss_type"], prm["beta"], prm["gradient_accumulation_steps"]

    log_ratio = lp - old
    if prm["importance_sampling_level"] == "token":
        log_w = log_ratio
    else:
        log_w = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_w)

    if beta != 0.0:
        ref = inp["ref_log_probs"]
        per_token_kl = torch.exp(ref - lp) - (ref - lp) - 1
        if prm["use_bias_correction_kl"]:
            per_token_kl = per_token_kl * coef_1

    if loss_type == "cispo":
        clamped = torch.clamp(coef_1, max=eps_high).detach()
        per_token_loss = -clamped * adv * lp
    elif loss_type in CLIPPING:
        coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
        if prm["delta"] is not None:
            coef_1 = torch.clamp(coef_1, max=prm["delta"])
        per_token_loss = -torch.min(coef_1 * adv, coef_2 * adv)
    elif loss_type == "sapo":
        dt = lp.dtype
        tau = torch.where(adv > 0, torch.tensor(prm["sapo_temperature_pos"], dtype=dt),
                          torch.tensor(prm["sapo_temperature_neg"], dtype=dt))
        per_token_loss = -(torch.sigmoid(tau * (coef_1 - 1)) * 4 / tau) * adv
    else:  # vespo
        phi = gamma_weights(adv, log_ratio.detach(), mask, prm)
        per_token_loss = -phi * adv * lp

    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl

    if loss_type in ("grpo", "sapo"):
        loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / ga
    elif loss_type == "bnpo":
        loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0) / ga
    elif loss_type == "dr_grpo":
        loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * prm["max_completion_length"]) / ga
    elif loss_type in ("dapo", "cispo", "vespo"):
        items = prm["num_items_in_batch"]
        items = mask.sum() if items is None else torch.tensor(float(items), dtype=lp.dtype)
        loss = (per_token_loss * mask).sum() / items.clamp(min=1.0)
    else:  # luspo
        loss = (per_token_loss * mask.sum(1, keepdim=True)).mean() / ga

    def global_masked_mean(x):
        if x.shape[1] == 1:
            return x.sum() / max(x.shape[0], 1)
        return (x * mask).sum() / mask.sum().clamp(min=1.0)

    out = {"loss": loss}
    if beta != 0.0:
        out["kl"] = global_masked_mean(per_token_kl.detach())
    if loss_type in CLIPPING:
        low = (coef_1 < 1 - eps_low) & (adv < 0)
        high = (coef_1 > 1 + eps_high) & (adv > 0)
        out["clip_ratio_low"] = global_masked_mean(low.to(lp.dtype))
        out["clip_ratio_high"] = global_masked_mean(high.to(lp.dtype))
        out["clip_ratio_region"] = global_masked_mean((low | high).to(lp.dtype))
    return out


def grpo_loss(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    check_inputs(inp, prm)
    x = leaf(inp["log_probs"])
    out = forward(x, inp, prm)
    for name, value in out.items():
        need(bool(torch.isfinite(value).all()), f"{name} is not finite (an overflowed ratio or infinite inputs)")
    out["loss"].backward()
    result = {name: value.detach() for name, value in out.items()}
    if not bool(torch.isnan(x.grad).any()):
        result["grad_log_probs"] = x.grad
    return result


# ---- cases ----

WHAT = "TRL GRPOTrainer._compute_loss semantics"


def batch_of(b, t, spread, lengths=None, with_ref=False):
    old = log_prob_like(b, t)
    batch = {"log_probs": old + torch.randn(b, t, dtype=F64) * spread, "old_log_probs": old,
             "advantages": torch.randn(b, dtype=F64), "mask": length_mask(b, t, lengths)}
    if with_ref:
        batch["ref_log_probs"] = old + torch.randn(b, t, dtype=F64) * 0.3
    return batch


def plain(lengths=(5, 3, 4), spread=0.3, t=5):
    return lambda: batch_of(len(lengths), t, spread, lengths=list(lengths))


def with_ref(lengths=(5, 2, 4), spread=0.3, t=5):
    return lambda: batch_of(len(lengths), t, spread, lengths=list(lengths), with_ref=True)


def with_empty_row(build, row):
    def built():
        batch = build()
        batch["mask"][row] = 0
        return batch
    return built


def at_bounds():
    """Ratios exactly at 1 + eps_high (e^(5/32)) and 1 - eps (e^(-7/32)), per token, with
    A of both signs and 0: ties between the two surrogates; the strict clip metrics."""
    up, down = UPPER_LOG_RATIO, LOWER_LOG_RATIO
    old = torch.tensor([[-1.25, -2.5, -0.75, -3.0], [-1.5, -0.5, -2.25, -1.0], [-0.25, -1.75, -2.0, -0.5]],
                       dtype=F64)
    delta = torch.tensor([[up, down, 0.0, up / 2], [up, down, down / 2, 0.0], [up, down, up, down]], dtype=F64)
    return {"log_probs": old + delta, "old_log_probs": old, "advantages": torch.tensor([1.5, -2.0, 0.0], dtype=F64),
            "mask": torch.ones(3, 4, dtype=I64)}


BOUND_PARAMS = {"epsilon": 1.0 - exp_of_dyadic(LOWER_LOG_RATIO), "epsilon_high": exp_of_dyadic(UPPER_LOG_RATIO) - 1.0}


def huge_log_ratios(sign_up):
    """Token log-ratios of +900 (rho = inf) with A > 0 and -900 (rho = 0) with A < 0."""
    def build():
        batch = batch_of(2, 4, 0.3, lengths=[4, 3])
        batch["advantages"] = torch.tensor([1.25 if sign_up else -0.5, -0.75], dtype=F64)
        batch["log_probs"][0, 1] = batch["old_log_probs"][0, 1] + 900.0
        batch["log_probs"][1, 2] = batch["old_log_probs"][1, 2] - 900.0
        return batch
    return build


def delta_batch():
    # Log-ratios up to ~1.2: ratios above delta = 1.5 with A > 0 are capped (and counted as clipped high).
    batch = batch_of(3, 5, 0.2, lengths=[5, 4, 5])
    batch["log_probs"][0, :3] = batch["old_log_probs"][0, :3] + torch.tensor([0.6, 1.2, -0.4], dtype=F64)
    batch["log_probs"][2, 1:3] = batch["old_log_probs"][2, 1:3] + torch.tensor([0.9, -0.7], dtype=F64)
    batch["advantages"] = torch.tensor([1.0, -0.5, -1.5], dtype=F64)
    return batch


def vespo_overflow():
    # Row 0: S = 5 * 3 = 15, vespo_k_pos = 100: log phi = 1e-4 + 1500 - 1e-4 * e^15 > 709, exp = inf -> phi = 0.
    batch = batch_of(2, 5, 0.3, lengths=[5, 4])
    batch["log_probs"][0] = batch["old_log_probs"][0] + 3.0
    batch["advantages"] = torch.tensor([0.5, -1.0], dtype=F64)
    return batch


def vespo_signs():
    # A = 0 uses the positive table (A >= 0); a negative and a positive row; a sum beyond 20 clamped.
    batch = batch_of(3, 4, 0.4, lengths=[4, 2, 3])
    batch["advantages"] = torch.tensor([0.0, -1.25, 0.75], dtype=F64)
    batch["log_probs"][2, :3] = batch["old_log_probs"][2, :3] + torch.tensor([9.0, 8.0, 7.5], dtype=F64)
    return batch


def one_token_rows():
    batch = batch_of(4, 5, 0.4, lengths=[1, 5, 0, 1])
    batch["mask"][3] = torch.tensor([0, 0, 1, 0, 0])
    return batch


def fully_masked():
    batch = batch_of(2, 3, 0.4, lengths=[0, 0], with_ref=True)
    return batch


def one_column():
    batch = batch_of(3, 1, 0.5, lengths=[1, 0, 1], with_ref=True)
    batch["log_probs"][:, 0] = batch["old_log_probs"][:, 0] + torch.tensor([0.5, -0.6, -0.4], dtype=F64)
    batch["advantages"] = torch.tensor([1.0, -1.0, -0.5], dtype=F64)
    return batch


def same_length_rows():
    return batch_of(3, 4, 0.4)


def random_batch():
    b, t = randint(1, 4), randint(1, 7)
    batch = batch_of(b, t, 0.4, lengths=[randint(0, t) for _ in range(b)], with_ref=True)
    loss_type = LOSS_TYPES[randint(0, len(LOSS_TYPES) - 1)]
    batch["_params"] = {"loss_type": loss_type, "epsilon": 0.2, "epsilon_high": [None, 0.28, 5.0][randint(0, 2)],
                        "beta": [0.0, 0.04][randint(0, 1)],
                        "importance_sampling_level": ["token", "sequence"][randint(0, 1)],
                        "use_bias_correction_kl": [False, True][randint(0, 1)],
                        "gradient_accumulation_steps": randint(1, 3), "max_completion_length": 8}
    return batch


def error_batch():
    return batch_of(2, 4, 0.3, lengths=[4, 2], with_ref=True)


def dapo_overflow(batch):
    # rho = e^900 = inf with A < 0: min(-inf, 0.8*A) = -inf, the loss is +inf.
    batch["log_probs"][0, 0] = batch["old_log_probs"][0, 0] + 900.0
    batch["advantages"][0] = -1.0


SEQ = {"importance_sampling_level": "sequence"}
KL = {"beta": 0.04}


def typed(loss_type, **extra):
    return {"loss_type": loss_type, **extra}


def three_cases(loss_type, token_params, seq_params, kl_params, lengths=(5, 3, 4)):
    """The three cases every loss type gets: token level, sequence level, and with the KL term."""
    return [
        FloatCase(f"{loss_type}-token", f"{WHAT}, {loss_type}, token-level ratios, rows of different lengths",
                  typed(loss_type, **token_params), plain(lengths)),
        FloatCase(f"{loss_type}-sequence", f"{WHAT}, {loss_type}, sequence-level ratios (GSPO), a fully masked row",
                  typed(loss_type, **SEQ, **seq_params), with_empty_row(plain((5, 4, 2), spread=0.4), 1)),
        FloatCase(f"{loss_type}-kl", f"{WHAT}, {loss_type}, beta 0.04 with the k3 KL, "
                  f"{', '.join(f'{k} {v}' for k, v in kl_params.items()) or 'defaults otherwise'}",
                  typed(loss_type, **KL, **kl_params), with_ref()),
    ]


CASES = [
    FloatCase("dapo-defaults", f"{WHAT}, every param left out (dapo, eps 0.2, token level, beta 0)", {},
              plain((5, 2, 4))),
    *three_cases("grpo", {"epsilon_high": 0.28}, {}, {"gradient_accumulation_steps": 2}),
    *three_cases("bnpo", {}, {"epsilon_high": 0.28}, {"gradient_accumulation_steps": 3}),
    *three_cases("dr_grpo", {"max_completion_length": 8}, {"max_completion_length": 6},
                 {"max_completion_length": 5, "gradient_accumulation_steps": 2}),
    *three_cases("dapo", {"epsilon_high": 0.28}, {"num_items_in_batch": 40},
                 {"use_bias_correction_kl": True, "num_items_in_batch": 7}),
    *three_cases("cispo", {"epsilon_high": 5.0}, {"epsilon_high": 1.1}, {"use_bias_correction_kl": True}),
    *three_cases("sapo", {}, {"sapo_temperature_pos": 0.5, "sapo_temperature_neg": 2.0},
                 {"gradient_accumulation_steps": 2}),
    *three_cases("luspo", {}, {}, {"gradient_accumulation_steps": 2}),
    *three_cases("vespo", {}, {"vespo_k_pos": 1.5, "vespo_lambda_neg": 1.0}, {"num_items_in_batch": 12}),
    FloatCase("cispo-default-cap", f"{WHAT}, cispo with epsilon_high null: the absolute cap is epsilon = 0.2",
              typed("cispo"), plain((4, 4, 2), spread=0.5, t=4)),
    FloatCase("luspo-sequence-kl-bias", f"{WHAT}, luspo, sequence level with beta 0.04 and the bias-corrected KL: "
              "q is [B,T], the mean runs over all B*T entries", typed("luspo", **SEQ, **KL, use_bias_correction_kl=True),
              with_ref((4, 2, 3))),
    FloatCase("grpo-sequence-kl-bias", f"{WHAT}, grpo, sequence level with the bias-corrected KL (rho_b reaches "
              "every unmasked token of its row through both terms)",
              typed("grpo", **SEQ, **KL, use_bias_correction_kl=True), with_ref((5, 3, 4))),
    FloatCase("dapo-delta-cap", f"{WHAT}, dapo with delta 1.5 and epsilon_high 0.28: the cap of the unclipped "
              "ratio, after rho_c; the clip metrics see the capped ratio",
              typed("dapo", delta=1.5, epsilon_high=0.28), delta_batch),
    FloatCase("grpo-ratio-at-clip-bounds", f"{WHAT}, grpo with ratios exactly at 1 - epsilon and 1 + epsilon_high: "
              "ties between rho*A and rho_c*A (autograd splits the min), strict clip metrics", typed("grpo", **BOUND_PARAMS),
              at_bounds),
    FloatCase("dapo-log-ratio-900", f"{WHAT}, dapo with token log-ratios of +900 (rho = inf, A > 0, the clipped "
              "branch wins) and -900 (rho = 0); autograd's gradient is 0 * inf = NaN there, so no gradient output",
              typed("dapo"), huge_log_ratios(True)),
    FloatCase("cispo-log-ratio-900", f"{WHAT}, cispo with token log-ratios of +-900: c = min(rho, 5) is detached, "
              "the gradient is -c*A through the explicit log_probs", typed("cispo", epsilon_high=5.0),
              huge_log_ratios(True)),
    FloatCase("vespo-log-ratio-900", f"{WHAT}, vespo with token log-ratios of +-900: clamped to +-20 before the "
              "sum, phi detached", typed("vespo"), huge_log_ratios(False)),
    FloatCase("vespo-phi-overflow-to-zero", f"{WHAT}, vespo with vespo_k_pos 100 and vespo_lambda_pos -1 (clamped to "
              "1e-4): a row's log phi overflows and nan_to_num makes phi 0",
              typed("vespo", vespo_k_pos=100.0, vespo_lambda_pos=-1.0), vespo_overflow),
    FloatCase("vespo-advantage-signs", f"{WHAT}, vespo with A = 0 (positive table), A < 0 and a log-ratio sum "
              "above 20 (clamped)", typed("vespo"), vespo_signs),
    FloatCase("sapo-sequence-kl", f"{WHAT}, sapo at sequence level with beta 0.04", typed("sapo", **SEQ, **KL),
              with_ref((3, 5, 1))),
    FloatCase("grpo-one-token-rows", f"{WHAT}, grpo with one-token rows and an empty row", typed("grpo"),
              one_token_rows),
    FloatCase("dapo-fully-masked-batch", f"{WHAT}, dapo with beta 0.04 and every mask 0: every normaliser is "
              "clamped to 1, loss, kl and the clip metrics are 0", typed("dapo", **KL), fully_masked),
    FloatCase("luspo-fully-masked-batch", f"{WHAT}, luspo with every mask 0: n_b = 0, loss 0", typed("luspo"),
              lambda: batch_of(2, 3, 0.4, lengths=[0, 0])),
    FloatCase("dapo-one-column-metrics", f"{WHAT}, dapo with beta 0.04 and T = 1, a masked row among three: TRL's "
              "metric helper reads a one-column tensor as per-sequence, so kl and the clip metrics are unmasked "
              "means over B", typed("dapo", **KL), one_column),
    FloatCase("bnpo-same-length-rows", f"{WHAT}, bnpo with every row of the same length (equals grpo there)",
              typed("bnpo"), same_length_rows),
    FloatCase("grpo-same-length-rows", f"{WHAT}, grpo with every row of the same length (equals bnpo there)",
              typed("grpo"), same_length_rows),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, masks, loss types and params", random_batch)
      for k in (1, 2, 3, 4)],

    ErrorCase("beta-without-ref", "beta = 0.04 without ref_log_probs", {"beta": 0.04},
              mutated(error_batch, lambda b: b.pop("ref_log_probs"))),
    ErrorCase("dr-grpo-max-completion-length-0", "dr_grpo with max_completion_length = 0 (its normaliser)",
              {"loss_type": "dr_grpo", "max_completion_length": 0}, error_batch),
    ErrorCase("gradient-accumulation-steps-0", "gradient_accumulation_steps = 0",
              {"gradient_accumulation_steps": 0}, error_batch),
    ErrorCase("advantages-length", "advantages of length B + 1", {},
              mutated(error_batch, lambda b: b.update(advantages=torch.cat([b["advantages"], b["advantages"][:1]])))),
    ErrorCase("old-log-probs-shape", "old_log_probs [B,T-1] do not match log_probs [B,T]", {},
              mutated(error_batch, lambda b: b.update(old_log_probs=b["old_log_probs"][:, :-1].clone()))),
    ErrorCase("empty-batch", "a batch of B = 0 rows", {},
              lambda: {k: v[:0].clone() for k, v in error_batch().items()}),
    ErrorCase("nan-old-log-probs", "NaN in old_log_probs at a masked position", {},
              mutated(error_batch, lambda b: b["old_log_probs"].__setitem__((1, 3), math.nan)), also_f32=True),
    ErrorCase("unknown-loss-type", "loss_type \"ppo\" is not one of TRL's eight", {"loss_type": "ppo"}, error_batch),
    ErrorCase("unknown-importance-sampling-level", "importance_sampling_level \"batch\" is not token or sequence",
              {"importance_sampling_level": "batch"}, error_batch),
    ErrorCase("mask-value-2", "the mask holds a 2", {}, mutated(error_batch, lambda b: b["mask"].__setitem__((0, 1), 2))),
    ErrorCase("dapo-ratio-overflow", "a token log-ratio of 900 with A < 0: rho = inf, the loss is +inf", {},
              mutated(error_batch, dapo_overflow)),
]

STAGE = Stage("grpo_loss", grpo_loss, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
