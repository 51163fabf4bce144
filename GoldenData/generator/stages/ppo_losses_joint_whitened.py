"""Stage ppo_losses_joint_whitened: one TRL PPO update, from the rollout to the
joint policy + value loss, its gradients and the statistics TRL logs.

Re-implements TRL trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train, TRL
snapshot f2cd57710ae3: the rollout of rewards_kl_first_pad, then "6. compute
advantages and returns" (GAE from position 0 over the whole response with the
masked values, returns from the raw advantages, advantages whitened over the
response positions and zeroed past them), then the statements of one micro-batch
holding the whole batch in its order, with the model forward replaced by the
given new_logits and new_values: log-probs of the raw responses under
new_logits / (temperature + 1e-7) (gather minus logsumexp, TRL's float32/float64
path), filled with 1.0 past the response; values zeroed past the score position;
the clipped value loss over the positions up to the score position and the
clipped policy loss over the response positions, each a token mean; the loss
pg_loss + vf_coef * vf_loss and autograd's gradient of it with respect to
new_logits and new_values; the logged clip fractions (exact k/n), approxkl,
entropy and ratio means over every position, and the rollout's objective/* means.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, randint
from ..fixture_format import F32, F64, V11_TOL
from ..reference import leaf, need, need_float, need_shape, same_float_dtype
from .actor_loss import LOWER_LOG_RATIO, UPPER_LOG_RATIO, exp_of_dyadic
from .gae import advantages_and_returns
from .masked_whiten import whiten
from .rewards_kl_first_pad import (INVALID_LOGPROB, PAD_EQ_EOS, PAD_NE_EOS, ROLLOUT_FLOATS, response_row, rollout,
                                   rollout_tensors)

STEP_DEFAULTS = {"gamma": 1.0, "lam": 0.95, "cliprange": 0.2, "cliprange_value": 0.2, "vf_coef": 0.1,
                 "temperature": 0.7}


def token_mean(x, keep):
    """TRL's masked_mean over the whole micro-batch: sum of x * mask over the mask's count."""
    return (x * keep).sum() / keep.sum()


def exact_share(hits, keep, dtype):
    """The share k/n of the kept positions where `hits` holds, rounded once to dtype."""
    k, n = int((hits & keep).sum()), int(keep.sum())
    return torch.tensor(k / n, dtype=dtype)


def ppo_losses_joint_whitened(inp, prm):
    step = {name: prm.get(name, default) for name, default in STEP_DEFAULTS.items()}
    responses, new_logits, new_values = inp["responses"], inp["new_logits"], inp["new_values"]
    need(responses.dim() == 2, "responses must be [B,T]")
    need(new_logits.dim() == 3 and tuple(new_logits.shape[:2]) == tuple(responses.shape),
         f"new_logits {list(new_logits.shape)} is not [B,T,V] for responses {list(responses.shape)}")
    need(new_logits.shape[2] >= 1, "the vocabulary is empty")
    need_shape("new_values", new_values, responses.shape)
    for name in ("new_logits", "new_values"):
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in ROLLOUT_FLOATS + ["scores", "new_logits", "new_values"]})
    if responses.numel() > 0:
        need(int(responses.min()) >= 0 and int(responses.max()) < new_logits.shape[2],
             "a response token is outside [0, V)")
    divisor = step["temperature"] + 1e-7
    need(divisor > 0, "temperature + 1e-7 must be positive (transformers refuses the sampling temperature)")
    r = rollout(inp, prm)
    padding_mask, padding_mask_p1 = r["padding_mask"], r["padding_mask_p1"]
    policy_keep, value_keep = ~padding_mask, ~padding_mask_p1
    need(int(policy_keep.sum()) >= 2, "fewer than two response positions in the batch (whitening needs two)")
    dtype = new_values.dtype

    # 6. advantages and returns
    raw_advantages, returns = advantages_and_returns(r["masked_values"], r["rewards"], 0, step["gamma"], step["lam"])
    advantages = whiten(raw_advantages, policy_keep, shift_mean=True).masked_fill(padding_mask, 0.0)

    # the micro-batch: the whole batch, in its order
    logits = leaf(new_logits)
    z = logits / divisor
    picked = torch.gather(z, -1, responses.unsqueeze(-1)).squeeze(-1)
    new_logprobs = (picked - torch.logsumexp(z, dim=-1)).masked_fill(padding_mask, INVALID_LOGPROB)
    values_leaf = leaf(new_values)
    vpred = values_leaf.masked_fill(padding_mask_p1, 0.0)
    old_values = r["masked_values"]
    vpred_clipped = torch.clamp(vpred, old_values - step["cliprange_value"], old_values + step["cliprange_value"])
    value_errors = torch.square(vpred - returns)
    clipped_value_errors = torch.square(vpred_clipped - returns)
    vf_loss = 0.5 * token_mean(torch.max(value_errors, clipped_value_errors), value_keep)
    log_ratio = new_logprobs - r["logprobs"]
    ratio = torch.exp(log_ratio)
    policy_terms = -advantages * ratio
    clipped_policy_terms = -advantages * torch.clamp(ratio, 1.0 - step["cliprange"], 1.0 + step["cliprange"])
    pg_loss = token_mean(torch.max(policy_terms, clipped_policy_terms), policy_keep)
    loss = pg_loss + step["vf_coef"] * vf_loss
    loss.backward()

    with torch.no_grad():
        probabilities = torch.softmax(z, dim=-1)
        entropy = torch.logsumexp(z, dim=-1) - torch.sum(probabilities * z, dim=-1)
        objective_non_score_reward = r["non_score_reward"].sum(1).mean()
        objective_scores = r["penalized_scores"].mean()
        out = {name: r[name] for name in ("sequence_lengths", "padding_mask", "padding_mask_p1", "penalized_scores",
                                          "kl", "rewards", "masked_values")}
        out.update({
            "advantages": advantages,
            "returns": returns,
            "pg_loss": pg_loss.detach(),
            "vf_loss": vf_loss.detach(),
            "loss": loss.detach(),
            "pg_clipfrac": exact_share(clipped_policy_terms > policy_terms, policy_keep, dtype),
            "vf_clipfrac": exact_share(clipped_value_errors > value_errors, value_keep, dtype),
            "approxkl": 0.5 * (log_ratio ** 2).mean(),
            "policy_entropy": entropy.mean(),
            "ratio_mean": ratio.mean(),
            "objective_kl": r["kl"].sum(1).mean(),
            "objective_entropy": (-r["logprobs"]).sum(1).mean(),
            "objective_non_score_reward": objective_non_score_reward,
            "objective_rlhf_reward": objective_non_score_reward + objective_scores,
            "objective_scores": objective_scores,
            "num_eos_tokens": (responses == prm["eos_token_id"]).sum(),
            "grad_new_logits": logits.grad,
            "grad_new_values": values_leaf.grad,
        })
    return {name: t.detach() for name, t in out.items()}


# ---- cases ----

WHAT = ("TRL PPOTrainer.train update semantics (rollout, GAE from 0, whitened advantages, joint clipped loss, "
        "logged statistics; gradients by autograd)")
VOCABULARY = 7


def update_batch(rows, vocabulary=VOCABULARY, logit_scale=2.0):
    batch = rollout_tensors(rows)
    b, t = batch["responses"].shape
    batch["new_logits"] = torch.randn(b, t, vocabulary, dtype=F64) * logit_scale
    batch["new_values"] = batch["values"] + torch.randn(b, t, dtype=F64) * 0.4
    return batch


def rows_of(lengths, ids, length=6, eos=None, vocabulary=VOCABULARY):
    """Response rows with the given content lengths; eos[i] says whether row i ends in an EOS."""
    eos = eos or [n < length for n in lengths]
    return [response_row(length, n, ids, vocabulary, e) for n, e in zip(lengths, eos)]


def params(ids, **more):
    return {**ids, "stop_token_id": None, "missing_eos_penalty": None, "kl_coef": 0.05, "kl_estimator": "k1",
            "whiten_rewards": False, **STEP_DEFAULTS, **more}


def kink_batch(log_ratio):
    """Positions where the ratio sits exactly on a clip bound and predicted values exactly
    on old_values +- cliprange_value (0.25), beside ordinary ones.

    At the pg kinks all V = 4 logits are 0, so in both precisions the new log-prob is
    exactly -log 4 (torch's logsumexp and the C library's log agree there, asserted
    below); the old log-prob is -log 4 - log_ratio, exact because both lie in [1, 2),
    so the ratio is exactly e^log_ratio, the bound."""
    def build():
        ids = PAD_NE_EOS
        rows = rows_of([3, 4, 2], ids, length=5, vocabulary=4)
        batch = update_batch(rows, vocabulary=4)
        kinks = [(0, 0), (0, 2), (1, 1), (1, 3), (2, 0)]
        for b, j in kinks:
            batch["new_logits"][b, j] = 0.0
            batch["logprobs"][b, j] = -math.log(4.0) - log_ratio
        # predicted values on the value clip bounds (dyadic, so the bounds are exact)
        for (b, j), sign in zip([(0, 1), (1, 4), (2, 2), (2, 3)], [1, -1, 1, -1]):
            batch["values"][b, j] = [0.5, -0.75, 1.25, 0.25][j % 4]
            batch["new_values"][b, j] = batch["values"][b, j] + sign * 0.25
        for dtype in (F64, F32):
            z = torch.zeros(4, dtype=dtype)
            new = -torch.logsumexp(z, dim=0)
            old = batch["logprobs"][0, 0].to(dtype)
            assert new - old == torch.tensor(log_ratio, dtype=dtype), (dtype, new, old)
        return batch
    return build


def random_update():
    b, t = randint(2, 4), randint(2, 7)
    ids = dict(PAD_NE_EOS if randint(0, 1) else PAD_EQ_EOS)
    lengths = [randint(0, t) for _ in range(b)]
    lengths[0] = max(lengths[0], 2)
    rows = rows_of(lengths, ids, length=t, eos=[n < t and bool(randint(0, 3)) for n in lengths])
    batch = update_batch(rows)
    prm = params(ids)
    prm["kl_estimator"] = ["k1", "k3"][randint(0, 1)]
    prm["missing_eos_penalty"] = [None, 1.0][randint(0, 1)]
    prm["stop_token_id"] = [None, 4][randint(0, 1)]
    prm["whiten_rewards"] = bool(randint(0, 1))
    prm["gamma"] = [1.0, 0.99][randint(0, 1)]
    prm["lam"] = [0.95, 0.9][randint(0, 1)]
    prm["cliprange"] = [0.2, 0.1][randint(0, 1)]
    prm["temperature"] = [0.7, 1.0][randint(0, 1)]
    batch["responses"][0, :2] = torch.tensor([2, 3])  # row 0 keeps two response positions whatever the stop token
    batch["_params"] = prm
    return batch


def case(name, what, prm, build):
    return FloatCase(name, f"{WHAT}, {what}", prm, build, tolerance=V11_TOL)


def error_batch():
    return update_batch(rows_of([2, 3], PAD_NE_EOS))


def with_change(change):
    def build():
        batch = error_batch()
        change(batch)
        return batch
    return build


CASES = [
    case("pad-ne-eos", "pad 0, eos 1: the EOS is in the policy mask, the score on the pad after it",
         params(PAD_NE_EOS), lambda: update_batch(rows_of([2, 4, 1, 5], PAD_NE_EOS))),
    case("pad-eq-eos", "pad == eos: the EOS is the first pad, its log-prob filled, the score on it; padding counted "
         "in num_eos_tokens", params(PAD_EQ_EOS), lambda: update_batch(rows_of([3, 1, 5], PAD_EQ_EOS))),
    case("missing-eos-penalty", "pad == eos, missing_eos_penalty 1.0: a full row without EOS penalized",
         params(PAD_EQ_EOS, missing_eos_penalty=1.0),
         lambda: update_batch(rows_of([6, 2, 4], PAD_EQ_EOS, eos=[False, True, True]))),
    case("stop-token-before-eos", "stop_token_id 4 != eos: tokens after the stop are padded for the rollout but the "
         "raw responses are gathered for the new log-probs",
         params(PAD_NE_EOS, stop_token_id=4, missing_eos_penalty=0.5),
         lambda: update_batch([[3, 4, 5, 1, 0, 0], [2, 6, 1, 4, 3, 0], [5, 5, 2, 3, 6, 4]])),
    case("full-empty-one-token", "a full row (score on its last position), an empty row (score at 0), a one-token "
         "row", params(PAD_NE_EOS), lambda: update_batch(rows_of([6, 0, 1, 3], PAD_NE_EOS, eos=[False, False, True, True]))),
    case("k3", "the k3 estimator, kl_coef 0.1", params(PAD_NE_EOS, kl_estimator="k3", kl_coef=0.1),
         lambda: update_batch(rows_of([3, 5, 2], PAD_NE_EOS))),
    case("whiten-rewards", "whiten_rewards on (pad == eos, k3)", params(PAD_EQ_EOS, whiten_rewards=True, kl_estimator="k3"),
         lambda: update_batch(rows_of([2, 4, 3], PAD_EQ_EOS))),
    case("hyperparameters", "gamma 0.9, lam 0.8, cliprange 0.1, cliprange_value 0.5, vf_coef 0.5, temperature 1.0",
         params(PAD_NE_EOS, gamma=0.9, lam=0.8, cliprange=0.1, cliprange_value=0.5, vf_coef=0.5, temperature=1.0),
         lambda: update_batch(rows_of([4, 2, 5], PAD_NE_EOS))),
    case("peaked-logits", "logits of scale 20 (near one-hot softmax, large tempered logits)", params(PAD_NE_EOS),
         lambda: update_batch(rows_of([3, 4], PAD_NE_EOS), logit_scale=20.0)),
    case("kink-ratio-at-upper-bound", "ratios exactly at 1 + cliprange (cliprange = e^(5/32) - 1) and predicted "
         "values at old_values +- 0.25: ties split half/half, the clamps pass the gradient at their bounds, and ties "
         "do not count as clipped", params(PAD_NE_EOS, cliprange=exp_of_dyadic(UPPER_LOG_RATIO) - 1.0,
                                            cliprange_value=0.25), kink_batch(UPPER_LOG_RATIO)),
    case("kink-ratio-at-lower-bound", "ratios exactly at 1 - cliprange (cliprange = 1 - e^(-7/32)) and predicted "
         "values at old_values +- 0.25", params(PAD_NE_EOS, cliprange=1.0 - exp_of_dyadic(LOWER_LOG_RATIO),
                                                 cliprange_value=0.25), kink_batch(LOWER_LOG_RATIO)),
    case("defaults", "only pad_token_id and eos_token_id given (every other param at TRL's default)",
         dict(PAD_NE_EOS), lambda: update_batch(rows_of([3, 2], PAD_NE_EOS))),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, lengths, pad == eos or not, stop token, penalty, estimator, "
                "whitening, gamma, lam, cliprange, temperature", None, random_update, tolerance=V11_TOL)
      for k in (1, 2, 3)],

    ErrorCase("one-response-position", "one response position in the whole batch (whitening the advantages "
              "gives NaN)", params(PAD_NE_EOS), lambda: update_batch(rows_of([1, 0], PAD_NE_EOS, eos=[False, False]))),
    ErrorCase("no-response-position", "no response position (every row starts with a pad; TRL raises)",
              params(PAD_NE_EOS), lambda: update_batch(rows_of([0, 0], PAD_NE_EOS, eos=[False, False]))),
    ErrorCase("response-token-at-v", "a response token equals V", params(PAD_NE_EOS),
              with_change(lambda b: b["responses"].__setitem__((0, 0), VOCABULARY))),
    ErrorCase("new-logits-shape", "new_logits [B,T+1,V] do not match responses [B,T]", params(PAD_NE_EOS),
              with_change(lambda b: b.update(new_logits=torch.cat([b["new_logits"], b["new_logits"][:, :1]], 1)))),
    ErrorCase("new-values-shape", "new_values [B,T-1] do not match responses [B,T]", params(PAD_NE_EOS),
              with_change(lambda b: b.update(new_values=b["new_values"][:, :-1].clone()))),
    ErrorCase("kl-estimator-unknown", "kl_estimator 'kl' (TRL silently uses k3)",
              params(PAD_NE_EOS, kl_estimator="kl"), error_batch),
    ErrorCase("temperature-negative", "temperature -0.5 (transformers refuses a temperature that is not strictly "
              "positive)", params(PAD_NE_EOS, temperature=-0.5), error_batch),
    ErrorCase("nan-new-logits-padded", "NaN in new_logits at a padded position (the fill would hide its log-prob)",
              params(PAD_NE_EOS), with_change(lambda b: b["new_logits"].__setitem__((0, 5, 2), math.nan)),
              also_f32=True),
    ErrorCase("nan-new-values-padded", "NaN in new_values past the score position", params(PAD_NE_EOS),
              with_change(lambda b: b["new_values"].__setitem__((1, 5), math.nan))),
]

STAGE = Stage("ppo_losses_joint_whitened", ppo_losses_joint_whitened, CASES, catalog_prefixes=(WHAT,))
