"""Stage ppo_losses: one PPO step's data flow, from log-probs to both losses.

Re-implements DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.train_rlhf:
compute_rewards, zeroing rewards and values past each answer's end, GAE, then the
actor and critic losses on the answer positions. The pieces are the other
stages' implementations, imported from their files.
"""

import math

import torch

from ..cases import (ErrorCase, FloatCase, Stage, attention_rows, close_to, log_prob_like, mutated, randint,
                     random_params_case, rows_tensor)
from ..fixture_format import F64
from ..reference import need, need_float, need_mask, need_shape, same_float_dtype
from .actor_loss import clipped_policy_loss
from .compute_rewards import shaped_rewards
from .critic_loss import clipped_value_loss
from .gae import advantages_and_returns

PPO_FLOATS = ["log_probs", "ref_log_probs", "values", "new_log_probs", "new_values"]


def ppo_losses(inp, prm):
    attention = inp["attention_mask"]
    need(attention.dim() == 2, "attention_mask must be [B,L]")
    lp = inp["log_probs"]
    need(lp.dim() == 2, "log_probs must be [B,N]")
    batch, width = lp.shape
    for name in PPO_FLOATS[1:]:
        need_shape(name, inp[name], (batch, width))
    need_shape("reward_score", inp["reward_score"], (batch,))
    need_shape("attention_mask", attention, (batch, width + 1))
    for name in PPO_FLOATS + ["reward_score"]:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in PPO_FLOATS + ["reward_score"]})
    need_mask("attention_mask", attention)
    prompt_length = prm["prompt_length"]
    start = prompt_length - 1
    need(prompt_length >= 1, f"prompt_length {prompt_length} < 1")
    need(start < width, f"prompt_length {prompt_length} leaves no answer position in L={width + 1}")
    action_mask = attention[:, 1:]
    answer_mask = action_mask[:, start:]
    need(int(answer_mask.sum()) > 0, "the answer mask attention_mask[:, 1:][:, start:] selects no element")

    rewards = shaped_rewards(lp, inp["ref_log_probs"], inp["reward_score"], action_mask, start,
                             prm["kl_ctl"], prm["clip_reward_value"])
    old_values = inp["values"].clone()
    for i in range(batch):
        end = start + int(answer_mask[i].sum()) + 1
        rewards[i, end:] = 0
        old_values[i, end:] = 0
    adv, ret = advantages_and_returns(old_values, rewards, start, prm["gamma"], prm["lambda"])
    a_loss = clipped_policy_loss(inp["new_log_probs"][:, start:], lp[:, start:], adv, answer_mask, prm["cliprange"])
    c_loss = clipped_value_loss(inp["new_values"][:, start:], old_values[:, start:], ret, answer_mask,
                                prm["cliprange_value"])
    return {
        "rewards": rewards,
        "old_values": old_values,
        "advantages": adv,
        "returns": ret,
        "actor_loss": a_loss,
        "critic_loss": c_loss,
    }


# ---- cases ----

WHAT = ("DeepSpeed-Chat DeepSpeedPPOTrainer.train_rlhf data flow (compute_rewards, zeroing past ends, GAE, "
        "actor and critic losses)")


def batch_of(length, prompt_length, answer_lengths, left_pads=None, scores=None):
    attention = attention_rows(length, prompt_length, answer_lengths, left_pads)
    b, n = attention.shape[0], length - 1
    lp = log_prob_like(b, n)
    values = torch.randn(b, n, dtype=F64)
    return {
        "attention_mask": attention,
        "log_probs": lp,
        "ref_log_probs": lp + torch.randn(b, n, dtype=F64) * 0.3,
        "values": values,
        "new_log_probs": lp + torch.randn(b, n, dtype=F64) * 0.3,
        "new_values": values + torch.randn(b, n, dtype=F64) * 0.3,
        "reward_score": torch.tensor(scores, dtype=F64) if scores else torch.randn(b, dtype=F64) * 2.0,
    }


def params_of(prompt_length, kl_ctl=0.1, clip=5.0, cliprange=0.2, cliprange_value=0.2, gamma=1.0, lam=0.95):
    return {"prompt_length": prompt_length, "kl_ctl": kl_ctl, "clip_reward_value": clip, "cliprange": cliprange,
            "cliprange_value": cliprange_value, "gamma": gamma, "lambda": lam}


def toy():
    # peer-conventions section 11: L = 7, P = 2, three answer tokens, V and d as listed there.
    d = torch.tensor([[0.0, 0.1, -0.2, 0.3, 0.5, -0.4]], dtype=F64)
    values = torch.tensor([[0.0, 0.5, 0.4, 0.3, 0.2, 0.1]], dtype=F64)
    return {
        "attention_mask": rows_tensor([[1, 1, 1, 1, 1, 0, 0]]),
        "log_probs": d - 2.0,
        "ref_log_probs": torch.full((1, 6), -2.0, dtype=F64),
        "values": values,
        "new_log_probs": d - 2.0 + torch.tensor([[0.0, 0.1, -0.3, 0.05, 0.0, 0.0]], dtype=F64),
        "new_values": values + torch.tensor([[0.0, 0.3, -0.1, 0.1, 0.0, 0.0]], dtype=F64),
        "reward_score": torch.tensor([1.0], dtype=F64),
    }


def toy_check(out):
    close_to(out["rewards"][0, 1:], [-0.01, 0.02, -0.03, 0.95, 0.0])
    close_to(out["advantages"], [0.339706, 0.473375, 0.5825, 0.75, 0.0])
    close_to(out["returns"], [0.839706, 0.873375, 0.8825, 0.95, 0.0])


def random_batch():
    b, L = randint(1, 4), randint(3, 12)
    prompt_length = randint(1, L - 1)
    answers = [randint(0, L - prompt_length) for _ in range(b)]
    answers[0] = max(answers[0], 1)   # keep the batch's answer mask non-empty
    batch = batch_of(L, prompt_length, answers, [randint(0, prompt_length - 1) for _ in range(b)])
    batch["reward_score"] = torch.randn(b, dtype=F64) * 4.0
    batch["_params"] = params_of(prompt_length, kl_ctl=[0.1, 0.05][randint(0, 1)],
                                 gamma=[1.0, 0.99][randint(0, 1)], lam=[0.95, 0.9][randint(0, 1)])
    return batch


def error_batch():
    return batch_of(7, 3, [2, 4])


CASES = [
    FloatCase("right-padded-answers", f"{WHAT}, right-padded answers of different lengths",
              params_of(4), lambda: batch_of(10, 4, [2, 4, 5])),
    FloatCase("no-padding-row", f"{WHAT}, a row whose answer runs to L (nothing zeroed) next to padded rows",
              params_of(3), lambda: batch_of(9, 3, [6, 2, 4])),
    FloatCase("left-padded-prompts", f"{WHAT}, left-padded prompts and right-padded answers",
              params_of(5), lambda: batch_of(11, 5, [3, 6, 2], left_pads=[2, 0, 4])),
    FloatCase("scores-clipped", f"{WHAT}, scores +-7 clipped to +-5", params_of(3),
              lambda: batch_of(8, 3, [3, 5], scores=[7.0, -7.0])),
    FloatCase("gamma-lambda", f"{WHAT}, gamma 0.9, lambda 1.0, cliprange 0.1, cliprange_value 0.5",
              params_of(3, gamma=0.9, lam=1.0, cliprange=0.1, cliprange_value=0.5),
              lambda: batch_of(9, 3, [4, 6, 1])),
    FloatCase("prompt-length-1", f"{WHAT}, prompt_length 1 (start 0)", params_of(1),
              lambda: batch_of(6, 1, [3, 5])),
    FloatCase("empty-answer-row", f"{WHAT}, one row with no answer next to a normal row (the batch mask is "
              "not empty)", params_of(3), lambda: batch_of(8, 3, [0, 4])),
    FloatCase("peer-toy", f"{WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 "
              "(DS advantages 0.339706, 0.473375, 0.5825, 0.75, 0)", params_of(2), toy, check=toy_check),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, prompt and answer lengths, left padding",
                         random_batch) for k in (1, 2, 3)],

    ErrorCase("empty-answer-mask", "attention_mask[:, 1:][:, start:] selects no element (every answer is empty)",
              params_of(3), lambda: batch_of(7, 3, [0, 0])),
    ErrorCase("prompt-length-at-L", "prompt_length = L leaves no answer position (start = N)", params_of(7),
              error_batch),
    ErrorCase("prompt-length-zero", "prompt_length 0 puts start = -1 outside [0, N)", params_of(0), error_batch),
    ErrorCase("attention-mask-width", "attention_mask [B,N] is not of width N+1", params_of(3),
              mutated(error_batch, lambda b: b.update(attention_mask=b["attention_mask"][:, 1:].clone()))),
    ErrorCase("reward-score-length", "reward_score has B-1 entries", params_of(3),
              mutated(error_batch, lambda b: b.update(reward_score=b["reward_score"][:1].clone()))),
    ErrorCase("mask-value-2", "attention_mask holds a 2", params_of(3),
              mutated(error_batch, lambda b: b["attention_mask"].__setitem__((0, 2), 2))),
    ErrorCase("nan-new-values-masked", "NaN in new_values at a position past the answer's end", params_of(3),
              mutated(error_batch, lambda b: b["new_values"].__setitem__((0, 5), math.nan)), also_f32=True),
]

STAGE = Stage("ppo_losses", ppo_losses, CASES, catalog_prefixes=(WHAT,))
