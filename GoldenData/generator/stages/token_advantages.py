"""Stage token_advantages: OpenRLHF's per-token advantages and returns from one
scalar reward per completion (gae, reinforce, rloo, reinforce_baseline,
group_norm, dr_grpo).

Written from shared/spec/v1.1-zoo.md (`token_advantages`), which follows OpenRLHF
snapshot 3c3be6234e0c: openrlhf/trainer/ppo_utils/experience_maker.py ::
RemoteExperienceMaker.compute_advantages_and_returns (with get_advantages_and_returns
and get_cumulative_returns) and openrlhf/models/utils.py :: compute_reward, for one
rollout batch on one rank with the length penalties off. OpenRLHF whitens in
float32 whatever the dtype; a float32 fixture does exactly that, a float64 fixture
whitens in float64 (the spec's precision rule removes the incidental cast).
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, close_to, length_mask, mutated
from ..fixture_format import F64, I64, V11_TOL
from ..reference import need, need_float, need_mask, need_shape, with_defaults

ESTIMATORS = ("gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo")
BASELINES = ("rloo", "reinforce_baseline", "group_norm", "dr_grpo")
WHITENED = ("gae", "reinforce", "reinforce_baseline")
DEFAULTS = {"estimator": "gae", "n_samples_per_prompt": 1, "kl_coef": 0.01, "reward_clip_range": [-10.0, 10.0],
            "gamma": 1.0, "lambd": 1.0, "no_std_norm": False}


def check_inputs(inp, prm):
    est = prm["estimator"]
    need(est in ESTIMATORS, f"unknown estimator {est!r}")
    rewards, kl, mask = inp["rewards"], inp["kl"], inp["action_mask"]
    need(rewards.dim() == 1 and rewards.shape[0] > 0, "rewards must be [N], N >= 1")
    need(kl.dim() == 2 and kl.shape[0] == rewards.shape[0] and kl.shape[1] > 0, "kl must be [N,T], T >= 1")
    need_shape("action_mask", mask, kl.shape)
    if "values" in inp:
        need_shape("values", inp["values"], kl.shape)
        need_float("values", inp["values"])
    need_mask("action_mask", mask)
    need_float("rewards", rewards)
    need_float("kl", kl)
    n = prm["n_samples_per_prompt"]
    need(n >= 1 and rewards.shape[0] % n == 0, f"n_samples_per_prompt {n} must be >= 1 and divide N")
    need(not (est in BASELINES and n == 1), f"{est} needs n_samples_per_prompt >= 2")
    need(est != "gae" or "values" in inp, "gae needs values")
    clip = prm["reward_clip_range"]
    need(clip is None or clip[0] <= clip[1], f"reward_clip_range {clip} has lo > hi")
    need(est not in WHITENED or int(mask.sum()) > 0, "a whitened estimator needs at least one action token")


def shaped(rewards, est, n):
    r = rewards.reshape(-1, n)
    if est == "rloo":
        r = r - (r.sum(-1, keepdim=True) - r) / (n - 1)
    elif est in ("reinforce_baseline", "dr_grpo"):
        r = r - r.mean(-1, keepdim=True)
    elif est == "group_norm":
        r = (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-9)
    return r.reshape(-1)


def token_rewards(s, kl_coef, kl, mask, clip):
    c = kl_coef if kl_coef > 0.0 else 0.0
    if clip is not None:
        s = s.clamp(min=clip[0], max=clip[1])
    kl_reward = -c * kl
    # The last column holding a 1; for a row without one, argmax over the flipped
    # row is 0, so the reward lands on column T - 1 (and is masked away below).
    ends = mask.size(1) - 1 - mask.long().fliplr().argmax(dim=1, keepdim=True)
    last = torch.zeros_like(kl).scatter_(dim=1, index=ends, src=s.unsqueeze(1).to(kl.dtype))
    return last + kl_reward


def gae(values, rewards, mask, gamma, lambd):
    values, rewards = mask * values, mask * rewards
    t_max = rewards.size(1)
    last, out = 0, []
    for t in reversed(range(t_max)):
        nextvalues = values[:, t + 1] if t < t_max - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        last = delta + gamma * lambd * last
        out.append(last)
    advantages = torch.stack(out[::-1], dim=1)
    return advantages, advantages + values


def cumulative(rewards, mask, gamma):
    rewards = mask * rewards
    returns = torch.zeros_like(rewards)
    g = torch.zeros(rewards.size(0), dtype=rewards.dtype)
    for t in reversed(range(rewards.size(1))):
        g = rewards[:, t] + gamma * g
        returns[:, t] = g
    return returns


def whiten(a, mask, no_std_norm):
    count = mask.sum()
    mean = (a * mask).sum() / count
    if no_std_norm:
        return a - mean
    var = ((a - mean).pow(2) * mask).sum() / count
    return (a - mean) * var.clamp(min=1e-8).rsqrt()


def token_advantages(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    check_inputs(inp, prm)
    est = prm["estimator"]
    rewards, kl, mask = inp["rewards"], inp["kl"], inp["action_mask"]
    s = shaped(rewards, est, prm["n_samples_per_prompt"])
    r = token_rewards(s, prm["kl_coef"], kl, mask, prm["reward_clip_range"])
    if est == "gae":
        advantages, returns = gae(inp["values"], r, mask, prm["gamma"], prm["lambd"])
    else:
        gamma = 1.0 if est in BASELINES else prm["gamma"]
        returns = cumulative(r, mask, gamma)
        advantages = returns.clone()
    if est in WHITENED:
        advantages = whiten(advantages, mask, prm["no_std_norm"])
    out = {"shaped_rewards": s, "token_rewards": r, "returns": returns, "advantages": advantages}
    for name, t in out.items():
        need(bool(torch.isfinite(t).all()), f"{name} is not finite")
    return out


# ---- cases ----

WHAT = "OpenRLHF advantage-estimator semantics"


def batch(n, t, lengths=None, with_values=False, scale=1.0):
    b = {"rewards": torch.randn(n, dtype=F64) * scale, "kl": torch.randn(n, t, dtype=F64) * 0.1,
         "action_mask": length_mask(n, t, lengths)}
    if with_values:
        b["values"] = torch.randn(n, t, dtype=F64) * 0.5
    return b


def with_hole(b):
    """A 0 inside row 0's mask (a masked position before action tokens)."""
    b["action_mask"][0, 1] = 0
    return b


def one_token_equal():
    # Every row: reward 0.5 on one action token (column 2), no KL. The returns are
    # 0.5 up to column 2 and 0 after; over the action tokens all equal, so μ = 0.5
    # exactly, v = 0, rstd = 1/sqrt(1e-8) = 1e4: selected positions 0, positions
    # past the end (0 - 0.5)·1e4 = -5000, positions before it 0.
    mask = torch.zeros(3, 4, dtype=I64)
    mask[:, 2] = 1
    return {"rewards": torch.full((3,), 0.5, dtype=F64), "kl": torch.zeros(3, 4, dtype=F64), "action_mask": mask}


def one_token_check(out):
    close_to(out["advantages"], [0.0, 0.0, 0.0, -5000.0] * 3, tol=1e-9)


def hand_rloo():
    # One prompt, n = 4, rewards [1, 0, 0, 1], no KL, T = 2 with both tokens acted.
    return {"rewards": torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=F64), "kl": torch.zeros(4, 2, dtype=F64),
            "action_mask": torch.ones(4, 2, dtype=I64)}


def hand_rloo_check(out):
    a = 2 / 3
    close_to(out["shaped_rewards"], [a, -a, -a, a], tol=1e-12)
    close_to(out["advantages"], [a, a, -a, -a, -a, -a, a, a], tol=1e-12)


def exact_groups():
    # group 0 all 1.5 (std 0, exact mean 1.5), group 1 mixed.
    b = batch(8, 4, lengths=[4, 3, 2, 4, 1, 4, 3, 2])
    b["rewards"] = torch.tensor([1.5, 1.5, 1.5, 1.5, 1.0, 0.0, -0.5, 2.0], dtype=F64)
    return b


def big_rewards(b):
    b["rewards"] = torch.tensor([25.0, -40.0, 3.0, -12.0, 9.5, 11.0][: b["rewards"].shape[0]], dtype=F64)
    return b


def empty_row(build, row):
    def built():
        b = build()
        b["action_mask"][row] = 0
        return b
    return built


def bool_mask(b):
    b["action_mask"] = b["action_mask"].bool()
    return b


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


def error_batch():
    return batch(4, 3, lengths=[3, 2, 3, 1], with_values=True)


CASES = [
    # gae
    case("gae-defaults", "gae with every param left out (n 1, kl_coef 0.01, clip [-10, 10], gamma = lambd = 1)", {},
         lambda: batch(3, 5, lengths=[5, 3, 4], with_values=True)),
    case("gae-gamma-lambda", "gae, gamma 0.99, lambd 0.95, kl_coef 0.05",
         {"estimator": "gae", "gamma": 0.99, "lambd": 0.95, "kl_coef": 0.05},
         lambda: batch(3, 6, lengths=[6, 2, 5], with_values=True)),
    case("gae-no-std-norm-hole", "gae, no_std_norm (mean only), a hole inside a mask row",
         {"estimator": "gae", "no_std_norm": True, "gamma": 0.9, "lambd": 0.8},
         lambda: with_hole(batch(2, 5, lengths=[5, 4], with_values=True))),
    case("gae-empty-row", "gae, a row with no action token (reward written to column T-1, then masked)",
         {"estimator": "gae", "lambd": 0.95}, empty_row(lambda: batch(3, 4, lengths=[4, 2, 3], with_values=True), 1)),
    # reinforce (REINFORCE++)
    case("reinforce-default", "reinforce, n 1, defaults otherwise", {"estimator": "reinforce"},
         lambda: batch(4, 5, lengths=[5, 2, 4, 3])),
    case("reinforce-gamma", "reinforce, gamma 0.9 (not forced to 1 for reinforce)",
         {"estimator": "reinforce", "gamma": 0.9, "kl_coef": 0.1}, lambda: batch(3, 6, lengths=[6, 4, 1])),
    case("reinforce-no-std-norm", "reinforce, no_std_norm, n 2", {"estimator": "reinforce", "no_std_norm": True,
                                                                  "n_samples_per_prompt": 2},
         lambda: batch(4, 4, lengths=[4, 3, 2, 4])),
    case("reinforce-clip", "reinforce, rewards beyond the default clip [-10, 10]", {"estimator": "reinforce"},
         lambda: big_rewards(batch(4, 3, lengths=[3, 3, 2, 1]))),
    case("reinforce-one-token-equal", "reinforce, one-token masks with equal rewards (v = 0, rstd 1e4)",
         {"estimator": "reinforce", "kl_coef": 0.0}, one_token_equal, check=one_token_check),
    case("reinforce-empty-row-bool-mask", "reinforce, an empty row and the mask given as bool",
         {"estimator": "reinforce"}, lambda: bool_mask(empty_row(lambda: batch(3, 4, lengths=[4, 3, 2]), 2)())),
    # rloo
    case("rloo-hand-1001", "rloo, n 4, rewards [1, 0, 0, 1], no KL (worked by hand)",
         {"estimator": "rloo", "n_samples_per_prompt": 4, "kl_coef": 0.0}, hand_rloo, check=hand_rloo_check),
    case("rloo-gamma-forced", "rloo, n 2, gamma 0.5 given but forced to 1",
         {"estimator": "rloo", "n_samples_per_prompt": 2, "gamma": 0.5}, lambda: batch(4, 5, lengths=[5, 3, 4, 1])),
    case("rloo-clip-null", "rloo, n 3, reward_clip_range null with large shaped rewards, negative kl_coef (read as 0)",
         {"estimator": "rloo", "n_samples_per_prompt": 3, "reward_clip_range": None, "kl_coef": -0.5},
         lambda: big_rewards(batch(6, 3, lengths=[3, 2, 3, 1, 3, 2]))),
    # reinforce_baseline
    case("reinforce-baseline", "reinforce_baseline, n 3, gamma 0.8 forced to 1, whitened",
         {"estimator": "reinforce_baseline", "n_samples_per_prompt": 3, "gamma": 0.8},
         lambda: batch(6, 4, lengths=[4, 2, 3, 4, 1, 3])),
    case("reinforce-baseline-empty-row", "reinforce_baseline, n 2, an empty row",
         {"estimator": "reinforce_baseline", "n_samples_per_prompt": 2, "kl_coef": 0.05},
         empty_row(lambda: batch(4, 3, lengths=[3, 2, 3, 1]), 3)),
    case("reinforce-baseline-no-std-norm", "reinforce_baseline, n 2, no_std_norm, clip [-0.5, 0.5]",
         {"estimator": "reinforce_baseline", "n_samples_per_prompt": 2, "no_std_norm": True,
          "reward_clip_range": [-0.5, 0.5]}, lambda: batch(4, 4, lengths=[4, 3, 2, 4], scale=2.0)),
    # group_norm
    case("group-norm", "group_norm, n 4, a zero-std group with an exact mean and a mixed group",
         {"estimator": "group_norm", "n_samples_per_prompt": 4}, exact_groups),
    case("group-norm-random", "group_norm, n 3, gamma 0.7 forced to 1",
         {"estimator": "group_norm", "n_samples_per_prompt": 3, "gamma": 0.7},
         lambda: batch(6, 4, lengths=[4, 3, 1, 2, 4, 4])),
    case("group-norm-n2-empty-row", "group_norm, n 2 (each sample gets ±1/sqrt(2)·...), an empty row",
         {"estimator": "group_norm", "n_samples_per_prompt": 2, "kl_coef": 0.02},
         empty_row(lambda: batch(4, 3, lengths=[3, 2, 3, 3]), 0)),
    # dr_grpo
    case("dr-grpo", "dr_grpo, n 4, mean baseline, no std, not whitened",
         {"estimator": "dr_grpo", "n_samples_per_prompt": 4}, lambda: batch(8, 3, lengths=[3, 2, 1, 3, 3, 2, 2, 1])),
    case("dr-grpo-gamma-forced", "dr_grpo, n 2, gamma 0.5 forced to 1, kl_coef 0.1",
         {"estimator": "dr_grpo", "n_samples_per_prompt": 2, "gamma": 0.5, "kl_coef": 0.1},
         lambda: batch(4, 4, lengths=[4, 1, 3, 2])),
    case("dr-grpo-exact-groups", "dr_grpo, n 4, a group of equal rewards: shaped reward 0", 
         {"estimator": "dr_grpo", "n_samples_per_prompt": 4}, exact_groups),

    ErrorCase("n-samples-zero", "n_samples_per_prompt 0", {"estimator": "reinforce", "n_samples_per_prompt": 0},
              error_batch),
    ErrorCase("n-samples-not-dividing", "n_samples_per_prompt 3 does not divide N = 4",
              {"estimator": "reinforce", "n_samples_per_prompt": 3}, error_batch),
    ErrorCase("rloo-n1", "rloo with n_samples_per_prompt 1", {"estimator": "rloo"}, error_batch),
    ErrorCase("reinforce-baseline-n1", "reinforce_baseline with n_samples_per_prompt 1",
              {"estimator": "reinforce_baseline", "n_samples_per_prompt": 1}, error_batch),
    ErrorCase("group-norm-n1", "group_norm with n_samples_per_prompt 1", {"estimator": "group_norm"}, error_batch),
    ErrorCase("dr-grpo-n1", "dr_grpo with n_samples_per_prompt 1", {"estimator": "dr_grpo"}, error_batch),
    ErrorCase("gae-without-values", "gae without values", {"estimator": "gae"},
              mutated(error_batch, lambda b: b.pop("values"))),
    ErrorCase("reinforce-empty-mask", "reinforce (whitened) with an action_mask of no 1", {"estimator": "reinforce"},
              mutated(error_batch, lambda b: b["action_mask"].zero_())),
    ErrorCase("gae-empty-mask", "gae (whitened) with an action_mask of no 1", {"estimator": "gae"},
              mutated(error_batch, lambda b: b["action_mask"].zero_())),
    ErrorCase("clip-range-reversed", "reward_clip_range [5, -5] (lo > hi)",
              {"estimator": "reinforce", "reward_clip_range": [5.0, -5.0]}, error_batch),
    ErrorCase("mask-shape", "action_mask [N,T-1] against kl [N,T]", {"estimator": "reinforce"},
              mutated(error_batch, lambda b: b.update(action_mask=b["action_mask"][:, :-1].clone()))),
    ErrorCase("values-shape", "values [N-1,T] against kl [N,T]", {"estimator": "gae"},
              mutated(error_batch, lambda b: b.update(values=b["values"][:-1].clone()))),
    ErrorCase("rewards-length", "rewards [N-1] against kl [N,T]", {"estimator": "reinforce"},
              mutated(error_batch, lambda b: b.update(rewards=b["rewards"][:-1].clone()))),
    ErrorCase("empty-batch", "N = 0", {"estimator": "reinforce"},
              lambda: {"rewards": torch.zeros(0, dtype=F64), "kl": torch.zeros(0, 3, dtype=F64),
                       "action_mask": torch.zeros(0, 3, dtype=I64)}),
    ErrorCase("nan-reward", "NaN in rewards", {"estimator": "reinforce"},
              mutated(error_batch, lambda b: b["rewards"].__setitem__(1, math.nan)), also_f32=True),
    ErrorCase("nan-kl-masked", "NaN in kl at a masked position", {"estimator": "dr_grpo", "n_samples_per_prompt": 2},
              mutated(error_batch, lambda b: b["kl"].__setitem__((3, 2), math.nan))),
    ErrorCase("unknown-estimator", "estimator 'remax' is not one of OpenRLHF's", {"estimator": "remax"},
              error_batch),
    ErrorCase("mask-value-2", "action_mask holds a 2", {"estimator": "reinforce"},
              mutated(error_batch, lambda b: b["action_mask"].__setitem__((0, 0), 2))),
]

STAGE = Stage("token_advantages", token_advantages, CASES, catalog_prefixes=(WHAT,))
