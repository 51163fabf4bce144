"""Stage dpo_loss: the DPO loss, its reward statistics and its gradient.

Re-implements align-anything align_anything/trainers/text_to_text/dpo.py :: DPOTrainer.loss:
per pair, -logsigmoid(beta * ((better - ref_better) - (worse - ref_worse))) on
the summed, zero-padded per-token log-probs, averaged over the batch; autograd's
gradient with respect to the policy log-probs (the reference ones are constants).
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, close_to, log_prob_like, randint, random_params_case
from ..fixture_format import F64
from ..reference import leaf, need, need_float, need_shape, same_float_dtype

DPO_INPUTS = ["better_log_probs", "worse_log_probs", "ref_better_log_probs", "ref_worse_log_probs"]


def dpo_loss(inp, prm):
    first = inp[DPO_INPUTS[0]]
    need(first.dim() == 2, "better_log_probs must be [B,T]")
    for name in DPO_INPUTS[1:]:
        need_shape(name, inp[name], first.shape)
    for name in DPO_INPUTS:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in DPO_INPUTS})
    need(first.shape[0] > 0, "empty batch")
    beta = prm["beta"]
    better, worse, ref_better, ref_worse = (inp[n] for n in DPO_INPUTS)
    better, worse = leaf(better), leaf(worse)   # the reference log-probs are constants
    losses, better_rewards, worse_rewards = [], [], []
    for i in range(first.shape[0]):
        # Sequence log-prob = sum of the zero-padded per-token log-probs.
        better_ratio = better[i].sum() - ref_better[i].sum()
        worse_ratio = worse[i].sum() - ref_worse[i].sum()
        losses.append(-F.logsigmoid(beta * (better_ratio - worse_ratio)))
        better_rewards.append(beta * better_ratio)
        worse_rewards.append(beta * worse_ratio)
    loss = torch.stack(losses).mean()
    loss.backward()
    better_reward = torch.stack(better_rewards).detach()
    worse_reward = torch.stack(worse_rewards).detach()
    return {
        "loss": loss.detach(),
        "reward": better_reward + worse_reward,
        "better_sample_reward": better_reward,
        "worse_sample_reward": worse_reward,
        # align-anything calls .float(); we keep the fixture's float dtype
        # (the values are k/B, exact in both precisions).
        "reward_accuracy": (better_reward > worse_reward).to(first.dtype).mean(),
        "reward_margin": better_reward - worse_reward,
        # The sum over T gives every position of a row, padding included, the same gradient.
        "grad_better_log_probs": better.grad,
        "grad_worse_log_probs": worse.grad,
    }


# ---- cases ----

WHAT = "align-anything DPOTrainer.loss semantics"


def batch_of(lengths_better, lengths_worse, t):
    """Per-token log-probs, zero-padded right after each row's length."""
    b = len(lengths_better)
    batch = {}
    for name, lengths in (("better", lengths_better), ("worse", lengths_worse)):
        policy = log_prob_like(b, t)
        ref = policy + torch.randn(b, t, dtype=F64) * 0.2
        for i, n in enumerate(lengths):
            policy[i, n:] = 0.0
            ref[i, n:] = 0.0
        batch[f"{name}_log_probs"] = policy
        batch[f"ref_{name}_log_probs"] = ref
    return {n: batch[n] for n in DPO_INPUTS}


def policy_equals_reference():
    batch = batch_of([4, 6, 3], [5, 2, 6], 6)
    batch["ref_better_log_probs"] = batch["better_log_probs"].clone()
    batch["ref_worse_log_probs"] = batch["worse_log_probs"].clone()
    return batch


def policy_equals_reference_check(out):
    close_to(out["loss"], [math.log(2.0)], 1e-12)
    close_to(out["reward_accuracy"], [0.0], 0.0)


def gap_800():
    # beta 0.1: the policy puts one token 8000 nats below the reference, on the
    # worse answer in row 0 (margin +8000) and on the better one in row 1
    # (margin -8000), so beta * margin = +-800. Only one side moves, so
    # `reward` does not come from two large numbers cancelling.
    batch = batch_of([3, 4], [3, 4], 4)
    batch["worse_log_probs"][0, 0] -= 8000.0
    batch["better_log_probs"][1, 1] -= 8000.0
    return batch


def ties():
    batch = batch_of([3, 5, 4, 2], [4, 3, 4, 5], 5)
    batch["worse_log_probs"][1] = batch["better_log_probs"][1]           # row 1: same ids, same numbers:
    batch["ref_worse_log_probs"][1] = batch["ref_better_log_probs"][1]   # rewards tie, counts as wrong
    return batch


def toy():
    # peer-conventions section 11: sums -10, -14 (policy) and -11, -12 (reference).
    return {
        "better_log_probs": torch.tensor([[-2.5, -2.0, -1.5, -3.0, -1.0, 0.0, 0.0, 0.0]], dtype=F64),
        "worse_log_probs": torch.tensor([[-2.0, -1.5, -2.5, -1.0, -2.0, -1.75, -1.25, -2.0]], dtype=F64),
        "ref_better_log_probs": torch.tensor([[-3.0, -2.0, -2.5, -2.0, -1.5, 0.0, 0.0, 0.0]], dtype=F64),
        "ref_worse_log_probs": torch.tensor([[-1.5, -1.5, -1.5, -1.5, -1.5, -1.5, -1.5, -1.5]], dtype=F64),
    }


def toy_check(out):
    close_to(out["loss"], [0.554355])
    close_to(out["better_sample_reward"], [0.1])
    close_to(out["worse_sample_reward"], [-0.2])
    close_to(out["reward_margin"], [0.3])


def random_batch():
    b, t = randint(1, 4), randint(1, 11)
    batch = batch_of([randint(1, t) for _ in range(b)], [randint(1, t) for _ in range(b)], t)
    batch["_params"] = {"beta": [0.1, 0.05, 0.5][randint(0, 2)]}
    return batch


def nan_in_padding():
    batch = batch_of([2, 3], [3, 1], 4)
    batch["ref_worse_log_probs"][1, 3] = math.nan   # a zero-padded slot
    return batch


CASES = [
    FloatCase("policy-equals-reference", f"{WHAT}, policy == reference: loss ln 2, rewards 0, accuracy 0 "
              "(strict >)", {"beta": 0.1}, policy_equals_reference, check=policy_equals_reference_check),
    FloatCase("large-gap-800", f"{WHAT}, beta * (log-ratio margin) = +800 and -800 (logsigmoid saturates: "
              "terms 0 and 800)", {"beta": 0.1}, gap_800),
    FloatCase("zero-padded-rows", f"{WHAT}, zero-padded rows of different lengths", {"beta": 0.1},
              lambda: batch_of([2, 7, 4], [6, 3, 7], 7)),
    FloatCase("tie-counts-wrong", f"{WHAT}, a row whose better and worse rewards tie (accuracy counts it "
              "as wrong)", {"beta": 0.1}, ties),
    FloatCase("beta-2.5", f"{WHAT}, beta 2.5", {"beta": 2.5}, lambda: batch_of([3, 5], [4, 2], 5)),
    FloatCase("peer-toy", f"{WHAT}, on the toy pair of shared/reference/peer-conventions.md section 11 "
              "(loss 0.554355, rewards 0.1 / -0.2)", {"beta": 0.1}, toy, check=toy_check),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, lengths, beta", random_batch) for k in (1, 2, 3)],

    ErrorCase("ref-worse-shape", "ref_worse_log_probs [B,T+1] do not match better_log_probs [B,T]", {"beta": 0.1},
              lambda: {**batch_of([2, 3], [3, 1], 4), "ref_worse_log_probs": log_prob_like(2, 5)}),
    ErrorCase("batch-mismatch", "worse_log_probs [B+1,T] do not match better_log_probs [B,T]", {"beta": 0.1},
              lambda: {**batch_of([2, 3], [3, 1], 4), "worse_log_probs": log_prob_like(3, 4)}),
    ErrorCase("nan-ref-worse-padded", "NaN in ref_worse_log_probs (in a zero-padded slot)", {"beta": 0.1},
              nan_in_padding, also_f32=True),
]

STAGE = Stage("dpo_loss", dpo_loss, CASES, catalog_prefixes=(WHAT,))
