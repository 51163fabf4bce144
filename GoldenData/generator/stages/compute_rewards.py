"""Stage compute_rewards: the per-token PPO reward.

Re-implements DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: DeepSpeedPPOTrainer.compute_rewards:
-kl_ctl * (log_probs - ref_log_probs) at every position, plus the reward score
clipped to +-clip_reward_value one past the last answer action.
"""

import math

import torch

from ..cases import (ErrorCase, FloatCase, Stage, attention_rows, close_to, log_prob_like, mutated, randint,
                     random_params_case, rows_tensor)
from ..fixture_format import F64
from ..reference import need, need_float, need_mask, need_shape, same_float_dtype


def shaped_rewards(log_probs, ref_log_probs, reward_score, action_mask, start, kl_ctl, clip_reward_value):
    """Per-token KL penalty plus the clipped score, one past the last answer action."""
    width = log_probs.shape[1]
    neg_kl = -kl_ctl  # a Python float, as in the reference
    rewards = neg_kl * (log_probs - ref_log_probs)
    clipped = torch.clamp(reward_score, -clip_reward_value, clip_reward_value)
    for j in range(log_probs.shape[0]):
        answer_actions = int(action_mask[j, start:].sum())
        # The reference adds to the last element of rewards[j, start:start+n+1];
        # slicing stops at the tensor's end, so the position is capped at N-1.
        where = min(start + answer_actions, width - 1)
        rewards[j, where] += clipped[j]
    return rewards


def compute_rewards(inp, prm):
    lp, ref, score, mask = inp["log_probs"], inp["ref_log_probs"], inp["reward_score"], inp["action_mask"]
    need(lp.dim() == 2, "log_probs must be [B,N]")
    batch, width = lp.shape
    need_shape("ref_log_probs", ref, (batch, width))
    need_shape("reward_score", score, (batch,))
    need_shape("action_mask", mask, (batch, width))
    for name in ("log_probs", "ref_log_probs", "reward_score"):
        need_float(name, inp[name])
    same_float_dtype(log_probs=lp, ref_log_probs=ref, reward_score=score)
    need_mask("action_mask", mask)
    prompt_length = prm["prompt_length"]
    start = prompt_length - 1
    need(prompt_length >= 1, f"prompt_length {prompt_length} < 1")
    need(start < width, f"start {start} = prompt_length - 1 is outside [0, N={width})")
    return {"rewards": shaped_rewards(lp, ref, score, mask, start, prm["kl_ctl"], prm["clip_reward_value"])}


# ---- cases ----

WHAT = "DeepSpeed-Chat DeepSpeedPPOTrainer.compute_rewards semantics"


def batch_of(length, prompt_length, answer_lengths, left_pads=None, scores=None):
    attention = attention_rows(length, prompt_length, answer_lengths, left_pads)
    b, n = attention.shape[0], length - 1
    lp = log_prob_like(b, n)
    return {
        "log_probs": lp,
        "ref_log_probs": lp + torch.randn(b, n, dtype=F64) * 0.3,
        "reward_score": torch.tensor(scores, dtype=F64) if scores else torch.randn(b, dtype=F64) * 2.0,
        "action_mask": attention[:, 1:].clone(),
    }


def params_of(prompt_length, kl_ctl=0.1, clip=5.0):
    return {"prompt_length": prompt_length, "kl_ctl": kl_ctl, "clip_reward_value": clip}


def toy():
    # peer-conventions section 11: d = log_probs - ref = [0, .1, -.2, .3, .5, -.4], one row.
    d = torch.tensor([[0.0, 0.1, -0.2, 0.3, 0.5, -0.4]], dtype=F64)
    return {"log_probs": d - 2.0, "ref_log_probs": torch.full((1, 6), -2.0, dtype=F64),
            "reward_score": torch.tensor([1.0], dtype=F64),
            "action_mask": rows_tensor([[1, 1, 1, 1, 0, 0]])}


def toy_check(out):
    close_to(out["rewards"][0, 1:], [-0.01, 0.02, -0.03, 0.95, 0.04])


def mask_with_hole():
    batch = batch_of(10, 3, [6, 4])
    batch["action_mask"][0, 4] = 0   # a hole inside row 0's answer: 5 ones counted, not 6 positions
    return batch


def random_batch():
    b, L = randint(1, 4), randint(3, 12)
    prompt_length = randint(1, L - 1)
    answers = [randint(0, L - prompt_length) for _ in range(b)]
    lefts = [randint(0, prompt_length - 1) for _ in range(b)]
    batch = batch_of(L, prompt_length, answers, lefts)
    batch["reward_score"] = torch.randn(b, dtype=F64) * 4.0
    kl = round(float(torch.rand(1)) * 0.5, 3)
    clip = [1.0, 3.0, 5.0][randint(0, 2)]
    batch["_params"] = params_of(prompt_length, kl, clip)
    return batch


def error_batch():
    return batch_of(7, 3, [2, 4])


CASES = [
    FloatCase("padded-answers", f"{WHAT}, right-padded answers of different lengths: the score lands one "
              "past the last answer action", params_of(4), lambda: batch_of(10, 4, [2, 4, 5])),
    FloatCase("full-length-row", f"{WHAT}, a row whose answer runs to L: the score lands at N-1",
              params_of(3), lambda: batch_of(9, 3, [6, 3])),
    FloatCase("score-clipped", f"{WHAT}, scores +-7 clipped to +-5, and scores inside the clip",
              params_of(3), lambda: batch_of(8, 3, [3, 2, 5, 1], scores=[7.0, -7.0, 4.5, -5.0])),
    FloatCase("left-padded-prompt", f"{WHAT}, prompts left-padded (zeros in action_mask before start, "
              "ignored)", params_of(5), lambda: batch_of(10, 5, [3, 5, 2], left_pads=[2, 0, 1])),
    FloatCase("empty-answer-row", f"{WHAT}, a row with no answer action: the score lands at start",
              params_of(4), lambda: batch_of(8, 4, [0, 3])),
    FloatCase("mask-with-hole", f"{WHAT}, a 0 inside an answer: the landing spot counts mask ones "
              "(start + sum), not positions", params_of(3), mask_with_hole),
    FloatCase("prompt-length-1", f"{WHAT}, prompt_length 1 (start 0)", params_of(1), lambda: batch_of(6, 1, [3, 5])),
    FloatCase("prompt-length-n", f"{WHAT}, prompt_length = N (start N-1): every score lands at N-1",
              params_of(6), lambda: batch_of(7, 6, [1, 0])),
    FloatCase("peer-toy", f"{WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 "
              "(DS rewards -0.01, 0.02, -0.03, 0.95 at t = 1..4)", params_of(2, 0.1, 5.0), toy, check=toy_check),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, prompt lengths, answer lengths, kl_ctl, clip",
                         random_batch) for k in (1, 2, 3)],

    ErrorCase("ref-log-probs-shape", "ref_log_probs [B,N+1] do not match log_probs [B,N]", params_of(3),
              mutated(error_batch, lambda b: b.update(
                  ref_log_probs=torch.cat([b["ref_log_probs"], b["ref_log_probs"][:, :1]], 1)))),
    ErrorCase("reward-score-length", "reward_score has B+1 entries", params_of(3),
              mutated(error_batch, lambda b: b.update(reward_score=torch.tensor([1.0, 2.0, 3.0], dtype=F64)))),
    ErrorCase("action-mask-shape", "action_mask [B,N-1] does not match log_probs [B,N]", params_of(3),
              mutated(error_batch, lambda b: b.update(action_mask=b["action_mask"][:, :-1].clone()))),
    ErrorCase("prompt-length-beyond-n", "prompt_length N+1 puts start = N outside [0, N)", params_of(7),
              error_batch),
    ErrorCase("prompt-length-zero", "prompt_length 0 puts start = -1 outside [0, N)", params_of(0), error_batch),
    ErrorCase("nan-ref-log-probs-masked", "NaN in ref_log_probs at a position whose action_mask is 0",
              params_of(3), mutated(error_batch, lambda b: b["ref_log_probs"].__setitem__((0, 5), math.nan)),
              also_f32=True),
    ErrorCase("nan-reward-score", "NaN in reward_score", params_of(3),
              mutated(error_batch, lambda b: b["reward_score"].__setitem__(1, math.nan))),
    ErrorCase("mask-value-2", "action_mask holds a 2", params_of(3),
              mutated(error_batch, lambda b: b["action_mask"].__setitem__((1, 3), 2))),
]

STAGE = Stage("compute_rewards", compute_rewards, CASES, catalog_prefixes=(WHAT,))
