"""Stage ppo_losses_seq_mean: one align-anything PPO step's data flow and logged numbers.

Re-implements align-anything align_anything/trainers/text_to_text/ppo.py ::
PPOTrainer.rl_step (snapshot 3f9decc221be), with the actor's forward + gather and
the reward critic's forward replaced by the given new_log_probs and new_values:
s = prompt_length - 1, m = attention_mask[:, 1:], m_s = m[:, s:]; the rewards of
rewards_kl_end_clamped; advantages and returns of gae_masked on reward_values;
the actor loss of actor_loss_seq_mean on the answer columns; the critic loss of
critic_loss_seq_mean against the raw reward_values[:, s:] (not masked); the
statistics rl_step logs (one process). Two separate backward passes give the
gradients with respect to new_log_probs and new_values. The pieces are the other
stages' implementations, imported from their files.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, close_to, mutated, randint, random_params_case, rows_tensor
from ..fixture_format import F64, V11_TOL
from ..reference import (leaf, need, need_float, need_mask, need_no_nan_result, need_shape, same_float_dtype,
                         with_defaults)
from .actor_loss_seq_mean import masked_mean_over_rows, need_every_row, seq_mean_policy_loss
from .critic_loss_seq_mean import seq_mean_value_loss
from .gae_masked import masked_advantages_and_returns
from .ppo_losses import batch_of as ds_batch_of
from .ppo_losses import toy as ds_toy
from .rewards_kl_end_clamped import end_clamped_rewards

DEFAULTS = {"kl_coeff": 0.02, "clip_range_score": 50.0, "clip_range_ratio": 0.2, "clip_range_value": 5.0,
            "gamma": 1.0, "gae_lambda": 0.95}   # align-anything configs/train/text_to_text/ppo.yaml
FLOATS = ["log_probs", "ref_log_probs", "reward_values", "new_log_probs", "new_values"]


def check_inputs(inp, prm):
    """Shapes, dtypes, the mask, prompt_length and the params; returns (B, N)."""
    lp = inp["log_probs"]
    need(lp.dim() == 2, "log_probs must be [B,N]")
    batch, width = lp.shape
    for name in FLOATS[1:]:
        need_shape(name, inp[name], (batch, width))
    need_shape("attention_mask", inp["attention_mask"], (batch, width + 1))
    need_shape("reward", inp["reward"], (batch,))
    for name in FLOATS + ["reward"]:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in FLOATS + ["reward"]})
    need_mask("attention_mask", inp["attention_mask"])
    prompt_length = prm["prompt_length"]
    need(1 <= prompt_length <= width, f"prompt_length {prompt_length} is outside [1, N={width}]")
    need(all(math.isfinite(prm[k]) for k in DEFAULTS), "every coefficient must be finite")
    for k in ("clip_range_score", "clip_range_ratio", "clip_range_value"):
        need(prm[k] >= 0, f"{k} must be >= 0")
    return batch, width


def ppo_losses_seq_mean(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    batch, width = check_inputs(inp, prm)
    lp, ref, old_values, reward = inp["log_probs"], inp["ref_log_probs"], inp["reward_values"], inp["reward"]
    s = prm["prompt_length"] - 1
    m = inp["attention_mask"][:, 1:]
    m_s = m[:, s:]
    need_every_row(m_s, "attention_mask[:, 1:][:, s:]")

    rewards = end_clamped_rewards(reward, lp, ref, m, prm["kl_coeff"], prm["clip_range_score"])
    adv, ret = masked_advantages_and_returns(old_values, rewards, m, s, prm["gamma"], prm["gae_lambda"])

    new_lp = leaf(inp["new_log_probs"])
    actor = seq_mean_policy_loss(new_lp[:, s:], lp[:, s:], adv, m_s, prm["clip_range_ratio"])
    need_no_nan_result("actor_loss", actor)
    actor.backward()
    new_v = leaf(inp["new_values"])
    critic = seq_mean_value_loss(new_v[:, s:], old_values[:, s:], ret, m_s, prm["clip_range_value"])
    need_no_nan_result("critic_loss", critic)
    critic.backward()

    lengths = m_s.sum(dim=-1)
    dtype = lp.dtype
    outputs = {
        "rewards": rewards,
        "advantages": adv,
        "returns": ret,
        "actor_loss": actor.detach(),
        "critic_loss": critic.detach(),
        "reward_mean": reward.mean(),
        "reward_with_kl_penalty": (rewards[:, s:] * m_s).sum(dim=-1).mean(),
        "reward_advantage": masked_mean_over_rows(adv, m_s),
        "reward_return": masked_mean_over_rows(ret, m_s),
        "reward_value": masked_mean_over_rows(inp["new_values"][:, s:], m_s),
        "kl_divergence": ((lp - ref)[:, s:] * m_s).sum(dim=-1).mean(),
        # A ratio of counts: the exact fraction, rounded once to the fixture's dtype.
        "mean_generated_length": torch.tensor(int(lengths.sum()) / batch, dtype=dtype),
        "max_generated_length": torch.tensor(float(int(lengths.max())), dtype=dtype),
        "grad_new_log_probs": new_lp.grad,
        "grad_new_values": new_v.grad,
    }
    for name, value in outputs.items():
        need_no_nan_result(name, value)
    return outputs


# ---- cases ----

WHAT = ("align-anything PPOTrainer.rl_step data flow (add_kl_divergence_regularization, get_advantages_and_returns, "
        "actor_loss_fn, critic_loss_fn, logged statistics)")


def aa_names(batch):
    """A v1 ppo_losses batch under align-anything's input names."""
    batch["reward_values"] = batch.pop("values")
    batch["reward"] = batch.pop("reward_score")
    return batch


def batch_of(length, prompt_length, answer_lengths, left_pads=None, scores=None):
    return aa_names(ds_batch_of(length, prompt_length, answer_lengths, left_pads, scores))


def from_ids(ids, pad_id):
    """align-anything's attention_mask: ids != pad."""
    batch = batch_of(len(ids[0]), 1, [len(ids[0]) - 1] * len(ids))
    batch["attention_mask"] = (rows_tensor(ids) != pad_id).to(torch.int64)
    return batch


def with_hole():
    batch = batch_of(10, 3, [6, 4])
    batch["attention_mask"][0, 5] = 0   # a generated pad inside the answer
    return batch


def garbage_past_end():
    batch = batch_of(9, 3, [2, 5, 6])
    past_end = 1 - batch["attention_mask"][:, 1:].to(F64)
    batch["reward_values"] = batch["reward_values"] + 50.0 * past_end   # GAE masks them; the critic's mask drops them
    return batch


def toy():
    # peer-conventions section 11: the inputs of v1's ppo_losses peer-toy.
    return aa_names(ds_toy())


def toy_check(out):
    close_to(out["rewards"], [0.0, -0.01, 0.02, 0.97, -0.05, 0.04])
    close_to(out["advantages"], [0.418675, 0.5565, 0.67, 0.0, 0.0])
    close_to(out["returns"], [0.918675, 0.9565, 0.97, 0.0, 0.0])
    close_to(out["kl_divergence"], [0.1 - 0.2 + 0.3])
    close_to(out["mean_generated_length"], [3.0])


def random_batch():
    b, length = randint(1, 4), randint(3, 12)
    prompt_length = randint(1, length - 1)
    answers = [randint(1, length - prompt_length) for _ in range(b)]
    batch = batch_of(length, prompt_length, answers, [randint(0, prompt_length - 1) for _ in range(b)])
    batch["reward"] = torch.randn(b, dtype=F64) * 4.0
    batch["_params"] = params_of(prompt_length, kl_coeff=[0.02, 0.1][randint(0, 1)],
                                 gamma=[1.0, 0.99][randint(0, 1)], gae_lambda=[0.95, 0.9][randint(0, 1)],
                                 clip_range_value=[5.0, 0.2][randint(0, 1)])
    return batch


def params_of(prompt_length, kl_coeff=0.05, clip_range_score=50.0, clip_range_ratio=0.2, clip_range_value=5.0,
              gamma=1.0, gae_lambda=0.95):
    return {"prompt_length": prompt_length, "kl_coeff": kl_coeff, "clip_range_score": clip_range_score,
            "clip_range_ratio": clip_range_ratio, "clip_range_value": clip_range_value, "gamma": gamma,
            "gae_lambda": gae_lambda}


def error_batch():
    return batch_of(7, 3, [2, 4])


CASES = [
    FloatCase("right-padded-answers", f"{WHAT}, right-padded answers of different lengths (pad != eos: the EOS "
              "is attended)", params_of(4), lambda: batch_of(10, 4, [2, 4, 5])),
    FloatCase("pad-equals-eos", f"{WHAT}, attention_mask = ids != pad with pad == eos = 2: the EOS is not "
              "attended, the score sits on the token before it", params_of(3),
              lambda: from_ids([[7, 8, 9, 11, 12, 13, 2, 2], [7, 8, 9, 14, 2, 2, 2, 2]], pad_id=2)),
    FloatCase("full-length-answer", f"{WHAT}, an answer that fills the row (score on N-1) next to a padded one",
              params_of(3), lambda: batch_of(9, 3, [6, 2])),
    FloatCase("one-token-answer", f"{WHAT}, a one-token answer next to a long one: each row weighs 1/2 in "
              "both losses", params_of(3), lambda: batch_of(10, 3, [1, 7])),
    FloatCase("left-padded-prompts", f"{WHAT}, left-padded prompts and right-padded answers", params_of(5),
              lambda: batch_of(11, 5, [3, 6, 2], left_pads=[2, 0, 4])),
    FloatCase("mask-with-hole", f"{WHAT}, a 0 inside an answer: zeroed in GAE, the recursion runs through it, "
              "the losses divide by the count of ones", params_of(3), with_hole),
    FloatCase("scores-clamped", f"{WHAT}, kl_coeff 0.5 and clip_range_score 1: KL terms and score + KL "
              "clamped to +-1", params_of(3, kl_coeff=0.5, clip_range_score=1.0),
              lambda: batch_of(8, 3, [3, 5], scores=[0.875, -3.0])),
    FloatCase("garbage-values-past-end", f"{WHAT}, reward_values +50 past each answer's end: masked in GAE, and "
              "the raw old values the critic clips against are dropped by its mask", params_of(3), garbage_past_end),
    FloatCase("non-default-params", f"{WHAT}, gamma 0.9, gae_lambda 1, clip_range_ratio 0.1, clip_range_value 0.5",
              params_of(3, gamma=0.9, gae_lambda=1.0, clip_range_ratio=0.1, clip_range_value=0.5),
              lambda: batch_of(9, 3, [4, 6, 1])),
    FloatCase("default-params", f"{WHAT}, every param but prompt_length left out (align-anything's defaults)",
              {"prompt_length": 3}, lambda: batch_of(8, 3, [3, 5])),
    FloatCase("prompt-length-1", f"{WHAT}, prompt_length 1 (s = 0)", params_of(1), lambda: batch_of(6, 1, [3, 5])),
    FloatCase("prompt-length-n", f"{WHAT}, prompt_length N (s = N-1: one answer column)", params_of(6),
              lambda: batch_of(7, 6, [1, 1])),
    FloatCase("peer-toy", f"{WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 with "
              "kl_coeff 0.1 (AA advantages 0.418675, 0.5565, 0.67, 0, 0)", params_of(2, kl_coeff=0.1), toy,
              check=toy_check),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, prompt and answer lengths, left padding, params",
                         random_batch) for k in (1, 2, 3)],

    ErrorCase("prompt-length-zero", "prompt_length 0 puts s = -1 outside [0, N) (the peer wraps it)", params_of(0),
              error_batch),
    ErrorCase("prompt-length-at-L", "prompt_length = L puts s = N outside [0, N) (the peer raises)", params_of(7),
              error_batch),
    ErrorCase("empty-answer-row", "a row with no answer token (m_s all zero: the peer's per-row means are 0/0)",
              params_of(3), lambda: batch_of(7, 3, [0, 4])),
    ErrorCase("attention-mask-width", "attention_mask [B,N] is not of width N+1", params_of(3),
              mutated(error_batch, lambda b: b.update(attention_mask=b["attention_mask"][:, 1:].clone()))),
    ErrorCase("reward-length", "reward has B-1 entries", params_of(3),
              mutated(error_batch, lambda b: b.update(reward=b["reward"][:1].clone()))),
    ErrorCase("mask-value-2", "attention_mask holds a 2", params_of(3),
              mutated(error_batch, lambda b: b["attention_mask"].__setitem__((0, 2), 2))),
    ErrorCase("nan-new-values-masked", "NaN in new_values at a position past the answer's end", params_of(3),
              mutated(error_batch, lambda b: b["new_values"].__setitem__((0, 5), math.nan)), also_f32=True),
]

STAGE = Stage("ppo_losses_seq_mean", ppo_losses_seq_mean, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
