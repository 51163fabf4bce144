"""Stage group_advantages: one scalar advantage per completion from TRL's GRPO
(group mean, optionally divided by a group or batch std; or GDPO's
normalize-then-sum) and RLOO (leave-one-out mean, KL penalty inside the reward).

Written from shared/spec/v1.1-zoo.md (`group_advantages`), which follows TRL
snapshot f2cd57710ae3: trl/trainer/grpo_trainer.py and trl/trainer/rloo_trainer.py
:: _generate_and_score_completions, with trl/trainer/utils.py :: nanstd
(sqrt(mean((x - mean)^2) * n/(n - 1))). TRL keeps its reward weights in float32
and forms nanstd's n/(n - 1) as a float32 quotient; in a float32 fixture that is
what happens here too, and a float64 fixture removes both casts (the spec's
precision rule), so weights and factor are float64 there.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, close_to, length_mask, log_prob_like, mutated, randint
from ..fixture_format import F32, F64, I64, V11_TOL
from ..reference import need, need_float, need_mask, need_shape, with_defaults

DEFAULTS = {"reward_weights": None, "scale_rewards": "group", "multi_objective_aggregation": "sum_then_normalize",
            "beta": 0.05, "reward_clip_range": None, "normalize_advantages": False}
EPS = 1e-4


def std(x, dim=None, keepdim=False):
    """TRL's nanstd on NaN-free input (n >= 2): the mean of the squared deviations
    times n/(n - 1), a Python float here, which a float32 tensor rounds to float32."""
    n = x.numel() if dim is None else x.shape[dim]
    mean = x.mean() if dim is None else x.mean(dim=dim, keepdim=True)
    variance = ((x - mean) ** 2).mean() if dim is None else ((x - mean) ** 2).mean(dim=dim, keepdim=True)
    variance = variance * (n / (n - 1))
    out = torch.sqrt(variance)
    return out if keepdim or dim is None else out.squeeze(dim)


def check_inputs(inp, prm):
    need(prm.get("estimator") in ("grpo", "rloo"), f"unknown estimator {prm.get('estimator')!r}")
    need(prm["scale_rewards"] in ("group", "batch", "none"), f"unknown scale_rewards {prm['scale_rewards']!r}")
    need(prm["multi_objective_aggregation"] in ("sum_then_normalize", "normalize_then_sum"),
         f"unknown multi_objective_aggregation {prm['multi_objective_aggregation']!r}")
    rewards = inp["rewards"]
    need(rewards.dim() in (1, 2), "rewards must be [N] or [N,K]")
    need_float("rewards", rewards)
    table = rewards if rewards.dim() == 2 else rewards.unsqueeze(1)
    n, k = table.shape
    need(n > 0 and k > 0, "empty batch")
    g = prm["group_size"]
    need(g >= 1 and n % g == 0, f"group_size {g} must be >= 1 and divide N = {n}")
    weights = prm["reward_weights"] if prm["reward_weights"] is not None else [1.0] * k
    need(len(weights) == k, f"{len(weights)} reward weights for K = {k}")
    return table, torch.tensor(weights, dtype=rewards.dtype), n, g


def grpo(table, w, n, g, prm):
    if prm["multi_objective_aggregation"] == "sum_then_normalize":
        r = (table * w.unsqueeze(0)).sum(dim=1)
        mean = r.view(-1, g).mean(dim=1).repeat_interleave(g)
        if prm["scale_rewards"] in ("group", "none"):
            s = std(r.view(-1, g), dim=1).repeat_interleave(g) if g > 1 else torch.zeros_like(r)
        else:
            s = std(r).expand_as(r) if n > 1 else torch.zeros_like(r)
        a = r - mean
        if prm["scale_rewards"] != "none":
            a = a / (s + EPS)
        return a
    k = table.shape[1]
    grouped = table.view(-1, g, k)
    mean_k = grouped.mean(dim=1, keepdim=True)
    s_k = std(grouped, dim=1, keepdim=True) if g > 1 else torch.zeros_like(mean_k)
    z = ((grouped - mean_k) / (s_k + EPS)).view(-1, k)
    r = (z * w.unsqueeze(0)).sum(dim=1)
    s = std(r).expand_as(r) if n > 1 else torch.zeros_like(r)
    return (r - r.mean()) / (s + EPS)


def rloo(table, w, n, g, prm, inp):
    r = (table * w.unsqueeze(0)).sum(dim=1)
    clip = prm["reward_clip_range"]
    if clip is not None:
        need(clip[0] <= clip[1], f"reward_clip_range {clip} has lo > hi")
        r = r.clamp(min=clip[0], max=clip[1])
    if prm["beta"] != 0.0:
        for name in ("old_log_probs", "ref_log_probs", "completion_mask"):
            need(name in inp, f"rloo with beta != 0 needs {name}")
        old, ref, mask = inp["old_log_probs"], inp["ref_log_probs"], inp["completion_mask"]
        need(old.dim() == 2 and old.shape[0] == n, "old_log_probs must be [N,T]")
        need_shape("ref_log_probs", ref, old.shape)
        need_shape("completion_mask", mask, old.shape)
        need_float("old_log_probs", old)
        need_float("ref_log_probs", ref)
        need_mask("completion_mask", mask)
        kl = ((old - ref) * mask).sum(-1)
        r = r - prm["beta"] * kl
    if g > 1:
        grouped = r.view(-1, g)
        baselines = ((grouped.sum(dim=1, keepdim=True) - grouped) / (g - 1)).view(-1)
        a = r - baselines
    else:
        a = torch.zeros_like(r)
    if prm["normalize_advantages"]:
        # N = 1: TRL's std is NaN and nan_to_num turns the advantage into 0.
        a = (a - a.mean()) / (std(a) + EPS) if n > 1 else torch.zeros_like(a)
    return a


def group_advantages(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    table, w, n, g = check_inputs(inp, prm)
    a = grpo(table, w, n, g, prm) if prm["estimator"] == "grpo" else rloo(table, w, n, g, prm, inp)
    need(bool(torch.isfinite(a).all()), "a non-finite advantage")
    return {"advantages": a}


# ---- cases ----

WHAT = "TRL GRPO/RLOO advantage semantics"


def rewards_of(n, k=None, scale=1.0):
    shape = (n,) if k is None else (n, k)
    return {"rewards": torch.randn(*shape, dtype=F64) * scale}


def with_kl(batch, t, lengths=None):
    n = batch["rewards"].shape[0]
    batch["old_log_probs"] = log_prob_like(n, t)
    batch["ref_log_probs"] = log_prob_like(n, t)
    batch["completion_mask"] = length_mask(n, t, lengths)
    return batch


def fixed(values, **extra):
    def build():
        return {"rewards": torch.tensor(values, dtype=F64), **extra}
    return build


def one_zero_zero_one():
    return {"rewards": torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=F64)}


def hand_grpo_check(out):
    # μ = 1/2, deviations ±1/2, std = sqrt((4 · 1/4) / 3) = sqrt(1/3) = 0.57735...
    s = math.sqrt(1 / 3)
    a = 0.5 / (s + 1e-4)
    close_to(out["advantages"], [a, -a, -a, a], tol=1e-12)


def hand_rloo_check(out):
    # completion 0: 1 − (0 + 0 + 1)/3 = 2/3; completion 1: 0 − (1 + 0 + 1)/3 = −2/3.
    close_to(out["advantages"], [2 / 3, -2 / 3, -2 / 3, 2 / 3], tol=1e-12)


def exact_mean_groups():
    # Group 0 all 0.5 (std 0, mean exact); group 1 all -2; group 2 mixed.
    return {"rewards": torch.tensor([0.5, 0.5, 0.5, -2.0, -2.0, -2.0, 1.0, 0.25, -0.75], dtype=F64)}


def two_functions_exact():
    # K = 2: correctness (0/1) and a format score; group 1's first column is constant.
    return {"rewards": torch.tensor([[1.0, 0.5], [0.0, 0.25], [1.0, 0.0], [0.0, 1.0],
                                     [1.0, 0.5], [1.0, -0.5], [1.0, 0.75], [1.0, 0.0]], dtype=F64)}


def rloo_empty_and_one_token():
    batch = with_kl(rewards_of(6), 5, lengths=[5, 0, 1, 3, 1, 4])
    return batch


def rloo_bool_mask():
    batch = with_kl(rewards_of(4), 4, lengths=[4, 2, 1, 3])
    batch["completion_mask"] = batch["completion_mask"].bool()
    return batch


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


def grpo_params(g, **extra):
    return {"estimator": "grpo", "group_size": g, **extra}


def rloo_params(g, **extra):
    return {"estimator": "rloo", "group_size": g, **extra}


def error_batch():
    return with_kl(rewards_of(4), 3)


CASES = [
    # grpo, sum_then_normalize, scale_rewards group (the default)
    case("grpo-hand-1001", "grpo, one group of rewards [1, 0, 0, 1], scale group (worked by hand)",
         grpo_params(4), one_zero_zero_one, check=hand_grpo_check),
    case("grpo-group-default", "grpo, 3 groups of 4, every other param left out (scale group)",
         grpo_params(4), lambda: rewards_of(12)),
    case("grpo-group-zero-std", "grpo, scale group, two groups of equal rewards (std 0, exact mean: advantage 0)",
         grpo_params(3, scale_rewards="group"), exact_mean_groups),
    case("grpo-group-k2-weights", "grpo, scale group, K = 2 reward functions with weights [1.0, 0.5]",
         grpo_params(4, reward_weights=[1.0, 0.5]), two_functions_exact),
    case("grpo-group-of-one", "grpo, scale group, group_size 1 (TRL's eval path): every advantage 0",
         grpo_params(1), lambda: rewards_of(3)),
    case("grpo-group-weight-k1", "grpo, scale group, [N] rewards with one weight 2.5",
         grpo_params(2, reward_weights=[2.5]), lambda: rewards_of(6, scale=3.0)),
    # scale_rewards batch
    case("grpo-batch", "grpo, scale batch: group mean, batch std", grpo_params(4, scale_rewards="batch"),
         lambda: rewards_of(8)),
    case("grpo-batch-k2", "grpo, scale batch, K = 2 with weights [0.7, 1.3]",
         grpo_params(2, scale_rewards="batch", reward_weights=[0.7, 1.3]), lambda: rewards_of(6, k=2)),
    case("grpo-batch-n1", "grpo, scale batch, N = 1 (batch std 0): advantage 0",
         grpo_params(1, scale_rewards="batch"), fixed([0.75])),
    case("grpo-batch-zero-std-group", "grpo, scale batch, one group of equal rewards beside a mixed one",
         grpo_params(3, scale_rewards="batch"), fixed([2.0, 2.0, 2.0, 1.0, 0.0, 0.5])),
    # scale_rewards none (Dr. GRPO)
    case("grpo-none", "grpo, scale none (Dr. GRPO): the centred reward only", grpo_params(4, scale_rewards="none"),
         lambda: rewards_of(8, scale=2.0)),
    case("grpo-none-k2", "grpo, scale none, K = 2 with weights [1.0, -0.5]",
         grpo_params(3, scale_rewards="none", reward_weights=[1.0, -0.5]), lambda: rewards_of(6, k=2)),
    case("grpo-none-hand-1001", "grpo, scale none, rewards [1, 0, 0, 1]: ±1/2",
         grpo_params(4, scale_rewards="none"), one_zero_zero_one,
         check=lambda out: close_to(out["advantages"], [0.5, -0.5, -0.5, 0.5], tol=0)),
    # normalize_then_sum (GDPO)
    case("grpo-gdpo-k2", "grpo, normalize_then_sum, K = 2 with weights [1.0, 0.5]",
         grpo_params(4, multi_objective_aggregation="normalize_then_sum", reward_weights=[1.0, 0.5]),
         lambda: rewards_of(8, k=2)),
    case("grpo-gdpo-ignores-scale", "grpo, normalize_then_sum with scale_rewards none (ignored), K = 2 exact values",
         grpo_params(4, multi_objective_aggregation="normalize_then_sum", scale_rewards="none"), two_functions_exact),
    case("grpo-gdpo-k3-group-of-one", "grpo, normalize_then_sum, K = 3, group_size 1: every Z and advantage 0",
         grpo_params(1, multi_objective_aggregation="normalize_then_sum", reward_weights=[1.0, 2.0, 3.0]),
         lambda: rewards_of(4, k=3)),
    # rloo
    case("rloo-hand-1001", "rloo, beta 0, rewards [1, 0, 0, 1] (worked by hand)", rloo_params(4, beta=0.0),
         one_zero_zero_one, check=hand_rloo_check),
    case("rloo-default-beta", "rloo, beta left out (0.05): the summed k1 KL enters the reward",
         rloo_params(3), lambda: with_kl(rewards_of(6), 5, lengths=[5, 3, 4, 5, 2, 1])),
    case("rloo-beta-k2-weights", "rloo, beta 0.1, K = 2 with weights [1.0, 0.25]",
         rloo_params(2, beta=0.1, reward_weights=[1.0, 0.25]), lambda: with_kl(rewards_of(4, k=2), 3)),
    case("rloo-clip", "rloo, beta 0, reward_clip_range [-1, 1] with rewards beyond it",
         rloo_params(3, beta=0.0, reward_clip_range=[-1.0, 1.0]), lambda: rewards_of(6, scale=3.0)),
    case("rloo-clip-then-kl", "rloo, beta 0.2, clip [-0.5, 0.5] before the KL penalty",
         rloo_params(2, beta=0.2, reward_clip_range=[-0.5, 0.5]), lambda: with_kl(rewards_of(4, scale=2.0), 4)),
    case("rloo-normalize", "rloo, beta 0.05, normalize_advantages over the batch",
         rloo_params(4, beta=0.05, normalize_advantages=True), lambda: with_kl(rewards_of(8), 3)),
    case("rloo-normalize-n1", "rloo, normalize_advantages with N = 1: advantage 0 (TRL's NaN std, nan_to_num)",
         rloo_params(1, beta=0.0, normalize_advantages=True), fixed([3.0])),
    case("rloo-group-of-one", "rloo, beta 0.05, group_size 1: every advantage 0",
         rloo_params(1), lambda: with_kl(rewards_of(3), 2)),
    case("rloo-empty-and-one-token", "rloo, beta 0.05, an empty completion row and one-token rows",
         rloo_params(3), rloo_empty_and_one_token),
    case("rloo-bool-mask", "rloo, beta 0.05, completion_mask given as bool", rloo_params(2), rloo_bool_mask),
    case("rloo-exact-equal-group", "rloo, beta 0, a group of equal rewards: advantage 0 exactly",
         rloo_params(3, beta=0.0), fixed([0.5, 0.5, 0.5, 1.0, 2.0, 4.0])),

    ErrorCase("group-size-zero", "group_size 0 (below 1)", rloo_params(0), error_batch),
    ErrorCase("group-size-not-dividing", "group_size 3 does not divide N = 4", grpo_params(3), error_batch),
    ErrorCase("reward-weights-length", "two reward weights for K = 1", grpo_params(2, reward_weights=[1.0, 1.0]),
              error_batch),
    ErrorCase("rloo-missing-old-log-probs", "rloo with beta 0.05 (default) but no old_log_probs", rloo_params(2),
              mutated(error_batch, lambda b: b.pop("old_log_probs"))),
    ErrorCase("rloo-missing-kl-inputs", "rloo with beta 0.1 and none of the three KL inputs",
              rloo_params(2, beta=0.1), lambda: rewards_of(4)),
    ErrorCase("rloo-missing-completion-mask", "rloo with beta 0.05 but no completion_mask", rloo_params(2),
              mutated(error_batch, lambda b: b.pop("completion_mask"))),
    ErrorCase("rloo-ref-shape", "rloo, ref_log_probs [N,T-1] against old_log_probs [N,T]", rloo_params(2),
              mutated(error_batch, lambda b: b.update(ref_log_probs=b["ref_log_probs"][:, :-1].clone()))),
    ErrorCase("rloo-old-rows", "rloo, old_log_probs with N-1 rows", rloo_params(2),
              mutated(error_batch, lambda b: b.update(old_log_probs=b["old_log_probs"][:-1].clone(),
                                                      ref_log_probs=b["ref_log_probs"][:-1].clone(),
                                                      completion_mask=b["completion_mask"][:-1].clone()))),
    ErrorCase("rewards-rank-3", "rewards of rank 3", grpo_params(2),
              mutated(error_batch, lambda b: b.update(rewards=b["rewards"].reshape(4, 1, 1)))),
    ErrorCase("empty-batch", "N = 0", grpo_params(1), lambda: {"rewards": torch.zeros(0, dtype=F64)}),
    ErrorCase("nan-reward", "NaN in rewards", grpo_params(2),
              mutated(error_batch, lambda b: b["rewards"].__setitem__(2, math.nan)), also_f32=True),
    ErrorCase("nan-old-log-probs", "rloo, NaN in old_log_probs at a masked position", rloo_params(2),
              mutated(lambda: with_kl(rewards_of(4), 3, lengths=[3, 1, 2, 3]),
                      lambda b: b["old_log_probs"].__setitem__((1, 2), math.nan))),
    ErrorCase("unknown-estimator", "estimator 'ppo' is not grpo or rloo", {"estimator": "ppo", "group_size": 2},
              error_batch),
    ErrorCase("unknown-scale-rewards", "scale_rewards 'prompt' is not group, batch or none",
              grpo_params(2, scale_rewards="prompt"), error_batch),
    ErrorCase("unknown-aggregation", "multi_objective_aggregation 'sum' is not one of TRL's two",
              grpo_params(2, multi_objective_aggregation="sum"), error_batch),
    ErrorCase("mask-value-2", "rloo, completion_mask holds a 2", rloo_params(2),
              mutated(error_batch, lambda b: b["completion_mask"].__setitem__((0, 1), 2))),
    ErrorCase("clip-range-reversed", "rloo, reward_clip_range [1, -1] (lo > hi)",
              rloo_params(2, beta=0.0, reward_clip_range=[1.0, -1.0]), error_batch),
]

STAGE = Stage("group_advantages", group_advantages, CASES, catalog_prefixes=(WHAT,))
