#!/usr/bin/env python3
"""Golden-fixture generator for the Swift RLHF reference (format `rlhf-golden-v1`).

Run from the repository root:

    python3 GoldenData/generate.py          # (re)write every generated fixture
    python3 GoldenData/generate.py --list   # print the fixture table used in README.md

Each stage below has a small PyTorch (CPU) implementation of its reference
semantics: DeepSpeed-Chat for the reward-model and PPO stages, align-anything for
DPO. These are our own re-implementations of the semantics described in
GoldenData/README.md, not copies of either project's code. Where the reference code
asserts, or would quietly return NaN, our implementation raises GoldenError; the
`expect_error` fixtures are exactly the inputs for which it raises.

Every float case is written twice: `<case>-f64` (inputs drawn in float64) and
`<case>-f32` (the same inputs cast to float32, outputs computed by torch in
float32, no upcasting). Each case seeds torch from its own name, so adding or
removing a case never changes another case's numbers.

Before writing, the generator deletes the JSON files whose `source` starts with
"GoldenData/generate.py" and nothing else: hand-written fixtures survive. After
writing, it re-checks those other fixtures against the implementations below
and fails if one disagrees.
"""

import sys

import torch

REQUIRED_TORCH = "2.13.0+cpu"
if torch.__version__ != REQUIRED_TORCH:
    sys.exit(
        f"GoldenData/generate.py needs torch {REQUIRED_TORCH} (found {torch.__version__}).\n"
        f"The fixtures pin exact floating-point results, so another torch build may change\n"
        f"the last bits of every file. Install it with: pip install torch=={REQUIRED_TORCH}\n"
        f"  (from https://download.pytorch.org/whl/cpu)"
    )

import json
import math
import zlib
from pathlib import Path

import torch.nn.functional as F

torch.set_num_threads(1)  # one thread: reductions always add in the same order
torch.use_deterministic_algorithms(True)

FORMAT = "rlhf-golden-v1"
GOLDEN_DIR = Path(__file__).resolve().parent
SOURCE_PREFIX = "GoldenData/generate.py"
BASE_SEED = 20261121

F64, F32, I64 = torch.float64, torch.float32, torch.int64
DTYPE_NAMES = {F64: "float64", F32: "float32", I64: "int64", torch.bool: "bool"}
DTYPES_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}
SUFFIX = {F64: "f64", F32: "f32"}
DEFAULT_TOL = {F64: {"abs": 1e-10, "rel": 1e-9}, F32: {"abs": 1e-5, "rel": 1e-5}}

# Short names for the reference semantics, used in every `source` string.
DS_RM = "DeepSpeed-Chat RewardModel.forward"
DS_FV = "DeepSpeed-Chat RewardModel.forward_value"
DS_PPO = "DeepSpeed-Chat DeepSpeedPPOTrainer"
AA_DPO = "align-anything DPOTrainer.loss"


# =============================================================================
# Reference implementations. Each takes (inputs, params) dicts and returns the
# expected outputs as a dict of tensors, or raises GoldenError.
# =============================================================================


class GoldenError(Exception):
    """The input is one the project rejects with a thrown, typed error."""


def need(ok, why):
    if not ok:
        raise GoldenError(why)


def need_shape(name, t, shape):
    need(tuple(t.shape) == tuple(shape), f"{name} has shape {list(t.shape)}, expected {list(shape)}")


def need_float(name, t):
    need(t.is_floating_point(), f"{name} must be a float tensor")
    need(not bool(torch.isnan(t).any()), f"{name} contains NaN")


def need_mask(name, m):
    need(m.dtype in (I64, torch.bool), f"{name} must be int64 or bool")
    if m.dtype == I64:
        need(bool(((m == 0) | (m == 1)).all()), f"{name} holds a value other than 0 and 1")


def need_ids(name, t):
    need(t.dtype == I64, f"{name} must be int64")


def same_float_dtype(**tensors):
    dtypes = {t.dtype for t in tensors.values()}
    need(len(dtypes) == 1, f"float inputs {sorted(tensors)} mix dtypes {sorted(map(str, dtypes))}")


def leaf(t):
    """A copy of an input that autograd differentiates against, in the input's own dtype.

    Gradients are PyTorch autograd's, whatever it does at a kink (see
    check_autograd_rules and the README's "Gradients" section)."""
    return t.detach().clone().requires_grad_(True)


def gather_log_probs(inp, prm):
    logits, labels = inp["logits"], inp["labels"]
    grad_output = inp.get("grad_output")
    need(logits.dim() == 3, "logits must be [B,T,V]")
    need_float("logits", logits)
    need_ids("labels", labels)
    batch, steps, vocab = logits.shape
    need(vocab >= 1, "the vocabulary is empty")
    need_shape("labels", labels, (batch, steps))
    if grad_output is not None:
        need_shape("grad_output", grad_output, (batch, steps))
        need_float("grad_output", grad_output)
        same_float_dtype(logits=logits, grad_output=grad_output)
    if labels.numel() > 0:
        need(int(labels.min()) >= 0, "a label is negative")
        need(int(labels.max()) < vocab, "a label is >= V")
    x = leaf(logits)
    # log p(label) = log_softmax over the vocabulary, read at the label.
    log_p = torch.log_softmax(x, dim=-1)
    log_probs = torch.gather(log_p, 2, labels.unsqueeze(2)).squeeze(2)
    out = {"log_probs": log_probs.detach()}
    if grad_output is not None:
        # d(sum(log_probs * grad_output)) / d logits
        torch.sum(log_probs * grad_output).backward()
        out["grad_logits"] = x.grad
    return out


def nth_pad(row, pad_id, n, default):
    """Index of the (n+1)-th pad in `row`, or `default` when there are fewer."""
    hits = (row == pad_id).nonzero().flatten().tolist()
    return hits[n] if n < len(hits) else default


def reward_pairwise_loss(inp, prm):
    ids, rewards = inp["input_ids"], inp["rewards"]
    pad_id, skip = prm["pad_id"], prm["num_padding_at_beginning"]
    need_ids("input_ids", ids)
    need(ids.dim() == 2, "input_ids must be [2B,L]")
    need_shape("rewards", rewards, ids.shape)
    need_float("rewards", rewards)
    need(skip >= 0, "num_padding_at_beginning is negative")
    rows, length = ids.shape
    need(rows > 0 and rows % 2 == 0, f"input_ids has {rows} rows; chosen/rejected need an even, non-zero count")
    need(length >= 1, "sequences are empty")
    rewards = leaf(rewards)
    pairs = rows // 2
    total = None
    chosen_scores, rejected_scores = [], []
    for i in range(pairs):
        c_ids, r_ids = ids[i], ids[pairs + i]
        c_rew, r_rew = rewards[i], rewards[pairs + i]
        c_end = nth_pad(c_ids, pad_id, skip, length)
        differing = (c_ids != r_ids).nonzero().flatten().tolist()
        if differing:
            r_end = nth_pad(r_ids, pad_id, skip, length)
            window = (differing[0], max(c_end, r_end))
        else:
            # Identical ids: only the last position is compared; both scores
            # are read at the chosen row's end.
            r_end = c_end
            window = (length - 1, length)
        lo, hi = window
        need(lo > 0, f"pair {i}: chosen and rejected differ at position 0")
        need(lo < hi, f"pair {i}: empty loss window [{lo}, {hi}) (both rows end before they diverge)")
        gap = c_rew[lo:hi] - r_rew[lo:hi]
        term = -F.logsigmoid(gap).mean()
        total = term if total is None else total + term
        # c_end - 1 is -1 when c_end == 0: Python indexing reads the last
        # element, exactly as the reference does.
        chosen_scores.append(c_rew[c_end - 1])
        rejected_scores.append(r_rew[r_end - 1])
    loss = total / pairs
    loss.backward()
    return {
        "loss": loss.detach(),
        "chosen_mean_scores": torch.stack(chosen_scores).detach(),
        "rejected_mean_scores": torch.stack(rejected_scores).detach(),
        "grad_rewards": rewards.grad,   # zero outside each pair's loss window
    }


def reward_end_scores(inp, prm):
    ids, values = inp["input_ids"], inp["values"]
    pad_id, prompt_length = prm["pad_id"], prm["prompt_length"]
    need_ids("input_ids", ids)
    need(ids.dim() == 2, "input_ids must be [B,L]")
    need_shape("values", values, ids.shape)
    need_float("values", values)
    length = ids.shape[1]
    need(prompt_length >= 2, f"prompt_length {prompt_length} < 2")
    need(prompt_length < length, f"prompt_length {prompt_length} leaves no answer position in L={length}")
    scores = []
    for i in range(ids.shape[0]):
        pads_after_prompt = (ids[i, prompt_length:] == pad_id).nonzero().flatten().tolist()
        end = prompt_length + pads_after_prompt[0] if pads_after_prompt else length
        scores.append(values[i, end - 1])
    return {"end_scores": torch.stack(scores)}


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


def advantages_and_returns(values, rewards, start, gamma, lam):
    """GAE from `start` to the end of the row, walking backwards."""
    width = values.shape[1]
    decay = gamma * lam  # a Python float, as in the reference
    running = 0.0
    collected = []
    for t in range(width - 1, start - 1, -1):
        next_value = values[:, t + 1] if t + 1 < width else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + decay * running
        collected.append(running)
    collected.reverse()
    advantages = torch.stack(collected, dim=1)
    return advantages, advantages + values[:, start:]


def gae(inp, prm):
    values, rewards = inp["values"], inp["rewards"]
    need(values.dim() == 2, "values must be [B,N]")
    need_shape("rewards", rewards, values.shape)
    need_float("values", values)
    need_float("rewards", rewards)
    same_float_dtype(values=values, rewards=rewards)
    start, width = prm["start"], values.shape[1]
    need(0 <= start < width, f"start {start} is outside [0, N={width})")
    adv, ret = advantages_and_returns(values, rewards, start, prm["gamma"], prm["lambda"])
    return {"advantages": adv, "returns": ret}


def clipped_policy_loss(log_probs, old_log_probs, advantages, mask, cliprange):
    log_ratio = (log_probs - old_log_probs) * mask  # masked positions get ratio 1
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return torch.sum(torch.max(unclipped, clipped) * mask) / mask.sum()


def clipped_value_loss(values, old_values, returns, mask, cliprange_value):
    kept = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    err_raw = (values - returns) ** 2
    err_kept = (kept - returns) ** 2
    return 0.5 * torch.sum(torch.max(err_raw, err_kept) * mask) / mask.sum()


def check_loss_inputs(inp, float_names):
    first = inp[float_names[0]]
    need(first.dim() == 2, f"{float_names[0]} must be [B,M]")
    for name in float_names[1:]:
        need_shape(name, inp[name], first.shape)
    need_shape("mask", inp["mask"], first.shape)
    for name in float_names:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in float_names})
    need_mask("mask", inp["mask"])
    need(int(inp["mask"].sum()) > 0, "mask selects no element (the loss would divide by zero)")


def actor_loss(inp, prm):
    check_loss_inputs(inp, ["log_probs", "old_log_probs", "advantages"])
    log_probs = leaf(inp["log_probs"])   # old_log_probs and advantages are constants
    loss = clipped_policy_loss(log_probs, inp["old_log_probs"], inp["advantages"], inp["mask"], prm["cliprange"])
    loss.backward()
    return {"loss": loss.detach(), "grad_log_probs": log_probs.grad}


def critic_loss(inp, prm):
    check_loss_inputs(inp, ["values", "old_values", "returns"])
    values = leaf(inp["values"])   # old_values and returns are constants
    loss = clipped_value_loss(values, inp["old_values"], inp["returns"], inp["mask"], prm["cliprange_value"])
    loss.backward()
    return {"loss": loss.detach(), "grad_values": values.grad}


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


def sft_loss(inp, prm):
    """Hugging Face's causal-LM loss, as DeepSpeed-Chat step 1 trains with it: the
    logits at t are scored against the label at t + 1, cross-entropy averaged over
    the labels that are not ignore_index."""
    logits, labels = inp["logits"], inp["labels"]
    ignore_index = prm.get("ignore_index", -100)
    need(logits.dim() == 3, "logits must be [B,L,V]")
    need_float("logits", logits)
    need_ids("labels", labels)
    batch, length, vocab = logits.shape
    need_shape("labels", labels, (batch, length))
    targets = labels[:, 1:]                 # the first label is never predicted
    counted = targets != ignore_index
    in_range = (targets >= 0) & (targets < vocab)
    need(bool((in_range | ~counted).all()), "a label outside [0, V) that is not ignore_index")
    need(int(counted.sum()) > 0, "no label left after ignoring (the mean would be 0/0)")
    x = leaf(logits)
    loss = F.cross_entropy(x[:, :-1].reshape(-1, vocab), targets.reshape(-1), ignore_index=ignore_index,
                           reduction="mean")
    loss.backward()
    return {"loss": loss.detach(), "grad_logits": x.grad}


TINY_LM_WEIGHTS = ["token_embedding", "position_embedding", "attention_query", "attention_key", "attention_value",
                   "attention_output", "mlp_in", "mlp_in_bias", "mlp_out", "mlp_out_bias", "lm_head", "lm_head_bias",
                   "value_head"]


def tiny_lm(inp, prm):
    """The Swift TinyLM's forward pass on given weights, and autograd's gradient of
    sum(logits * grad_logits) + sum(values * grad_values) with respect to every
    weight. One block of single-head causal self-attention and a tanh MLP, both
    residual, an LM head and a bias-free value head (as DeepSpeed-Chat's v_head).
    Written from the formulas in Sources/TinyLM/TinyLM.swift, float64 only."""
    for name in TINY_LM_WEIGHTS + ["grad_logits", "grad_values"]:
        need(name in inp, f"missing input {name}")
        need(inp[name].dtype == F64, f"{name}: the tiny_lm stage is float64 only")
        need(not bool(torch.isnan(inp[name]).any()), f"NaN in {name}")
    ids = inp["input_ids"]
    need_ids("input_ids", ids)
    need(ids.dim() == 2, "input_ids must be [B,L]")
    batch, length = ids.shape
    wte, wpe = inp["token_embedding"], inp["position_embedding"]
    vocab, width = wte.shape
    context, hidden = wpe.shape[0], inp["mlp_in"].shape[1]
    shapes = {"token_embedding": (vocab, width), "position_embedding": (context, width),
              "attention_query": (width, width), "attention_key": (width, width),
              "attention_value": (width, width), "attention_output": (width, width),
              "mlp_in": (width, hidden), "mlp_in_bias": (hidden,), "mlp_out": (hidden, width),
              "mlp_out_bias": (width,), "lm_head": (width, vocab), "lm_head_bias": (vocab,), "value_head": (width,)}
    for name, shape in shapes.items():
        need_shape(name, inp[name], shape)
    need(1 <= length <= context, "L must be in [1, context_length]")
    need(bool(((ids >= 0) & (ids < vocab)).all()), "an input id outside [0, V)")
    need_shape("grad_logits", inp["grad_logits"], (batch, length, vocab))
    need_shape("grad_values", inp["grad_values"], (batch, length))

    w = {name: leaf(inp[name]) for name in TINY_LM_WEIGHTS}
    x = w["token_embedding"][ids] + w["position_embedding"][:length]
    q, k, v = x @ w["attention_query"], x @ w["attention_key"], x @ w["attention_value"]
    scores = (q @ k.transpose(1, 2)) / math.sqrt(width)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    attention = torch.softmax(scores.masked_fill(~causal, -math.inf), dim=-1)
    h = x + (attention @ v) @ w["attention_output"]
    g = h + torch.tanh(h @ w["mlp_in"] + w["mlp_in_bias"]) @ w["mlp_out"] + w["mlp_out_bias"]
    logits = g @ w["lm_head"] + w["lm_head_bias"]
    values = g @ w["value_head"]
    ((logits * inp["grad_logits"]).sum() + (values * inp["grad_values"]).sum()).backward()
    outputs = {"logits": logits.detach(), "values": values.detach()}
    for name in TINY_LM_WEIGHTS:
        outputs[f"grad_{name}"] = w[name].grad
    return outputs


def check_autograd_rules():
    """The gradient fixtures are autograd's. At the losses' kinks autograd makes two
    choices our backward passes copy; fail loudly if a torch build ever changes them."""
    a = torch.tensor([1.5], dtype=F64, requires_grad=True)
    b = torch.tensor([1.5], dtype=F64, requires_grad=True)
    torch.max(a, b).sum().backward()
    assert a.grad.item() == 0.5 and b.grad.item() == 0.5, "torch.max(a, b) no longer splits a tie half/half"
    x = torch.tensor([0.8, 1.2], dtype=F64, requires_grad=True)
    torch.clamp(x, 0.8, 1.2).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0], "torch.clamp no longer passes the gradient at its bounds"


check_autograd_rules()


IMPLEMENTATIONS = {
    "gather_log_probs": gather_log_probs,
    "reward_pairwise_loss": reward_pairwise_loss,
    "reward_end_scores": reward_end_scores,
    "compute_rewards": compute_rewards,
    "gae": gae,
    "actor_loss": actor_loss,
    "critic_loss": critic_loss,
    "dpo_loss": dpo_loss,
    "ppo_losses": ppo_losses,
    "sft_loss": sft_loss,   # added after v1
    "tiny_lm": tiny_lm,     # added after v1: the end-to-end chapter's model
}


# =============================================================================
# JSON encoding
# =============================================================================


def encode_number(x):
    if isinstance(x, bool):
        return x
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def encode_tensor(t):
    data = [encode_number(x) for x in t.reshape(-1).tolist()]
    return {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data": data}


def decode_tensor(obj):
    dtype = DTYPES_BY_NAME[obj["dtype"]]
    data = [float(x) if isinstance(x, str) else x for x in obj["data"]]
    return torch.tensor(data, dtype=dtype).reshape(obj["shape"])


def render(obj):
    """Pretty but compact: one line per top-level field and per tensor."""
    def one_line(v):
        return json.dumps(v, ensure_ascii=False, allow_nan=False)

    lines = ["{"]
    keys = list(obj)
    for i, key in enumerate(keys):
        comma = "," if i + 1 < len(keys) else ""
        value = obj[key]
        if key in ("inputs", "expected"):
            lines.append(f" {one_line(key)}: {{")
            names = list(value)
            for j, name in enumerate(names):
                inner = "," if j + 1 < len(names) else ""
                lines.append(f"  {one_line(name)}: {one_line(value[name])}{inner}")
            lines.append(" }" + comma)
        else:
            lines.append(f" {one_line(key)}: {one_line(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# =============================================================================
# Case registry
# =============================================================================

FIXTURES = []   # (stage, name, fixture dict)
CATALOG = []    # (stage, fixture names, what) for --list


def case_seed(stage, case):
    return BASE_SEED + zlib.crc32(f"{stage}/{case}".encode()) % 100000


def source_line(seed, dtype, what):
    return f"{SOURCE_PREFIX} (torch {torch.__version__}, seed {seed}, {DTYPE_NAMES[dtype]}): {what}"


def cast_inputs(inputs, dtype):
    return {k: (v.to(dtype) if v.is_floating_point() else v.clone()) for k, v in inputs.items()}


def float_case(stage, case, what, params, build, loosen=None, check=None, dtypes=(F64, F32)):
    """One case, written as `<case>-f64` and `<case>-f32` (or only the dtypes given).

    build() draws the inputs in float64 (after seeding torch from the case name).
    loosen: optional {"float64": tol, "float32": tol, "why": text} for the rare case
    whose tolerance must be wider than the default (the source says why).
    check(outputs_f64): optional self-check against numbers known independently.
    """
    seed = case_seed(stage, case)
    torch.manual_seed(seed)
    base = build()
    names = []
    for dtype in dtypes:
        inputs = cast_inputs(base, dtype)
        outputs = IMPLEMENTATIONS[stage]({k: v.clone() for k, v in inputs.items()}, params)
        for out_name, out in outputs.items():
            assert out.dtype == dtype, (stage, case, out_name, out.dtype)
        if check is not None and dtype == F64:
            check(outputs)
        tolerance = dict(DEFAULT_TOL[dtype])
        src_what = what
        if loosen and DTYPE_NAMES[dtype] in loosen:
            tolerance = loosen[DTYPE_NAMES[dtype]]
            src_what = f"{what}; tolerance widened to abs {tolerance['abs']:g}: {loosen['why']}"
        name = f"{case}-{SUFFIX[dtype]}"
        names.append(name)
        FIXTURES.append((stage, name, {
            "format": FORMAT,
            "stage": stage,
            "name": name,
            "source": source_line(seed, dtype, src_what),
            "params": params,
            "inputs": {k: encode_tensor(v) for k, v in inputs.items()},
            "expected": {k: encode_tensor(v) for k, v in outputs.items()},
            "tolerance": tolerance,
        }))
    CATALOG.append((stage, names, what))


def error_case(stage, case, why, params, build, also_f32=False):
    """An `expect_error` fixture, `error-<case>` (float64 inputs), optionally also
    `error-<case>-f32`. Fails the generator if our implementation does not raise."""
    seed = case_seed(stage, f"error-{case}")
    torch.manual_seed(seed)
    base = build()
    names = []
    for dtype in (F64, F32) if also_f32 else (F64,):
        inputs = cast_inputs(base, dtype)
        try:
            IMPLEMENTATIONS[stage]({k: v.clone() for k, v in inputs.items()}, params)
        except GoldenError:
            pass
        else:
            raise AssertionError(f"{stage}/error-{case}: the reference implementation accepted the input")
        name = f"error-{case}" + ("-f32" if dtype == F32 else "")
        names.append(name)
        FIXTURES.append((stage, name, {
            "format": FORMAT,
            "stage": stage,
            "name": name,
            "source": source_line(seed, dtype, f"input the project rejects ({why})"),
            "params": params,
            "inputs": {k: encode_tensor(v) for k, v in inputs.items()},
            "expect_error": why,
        }))
    CATALOG.append((stage, names, f"error: {why}"))


def close_to(got, want, tol=1e-6):
    got = got.reshape(-1).tolist()
    want = list(want)
    assert len(got) == len(want) and all(abs(a - b) <= tol for a, b in zip(got, want)), (got, want)


# ---- small random helpers (all draw from torch's seeded global generator) ----


def randint(lo, hi):
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,)).item())


def tokens(n, lo=3, hi=99):
    """n random token ids in [lo, hi] (never 0, 1 or 2, which serve as pads/BOS)."""
    return torch.randint(lo, hi + 1, (n,)).tolist()


def rows_tensor(rows):
    return torch.tensor(rows, dtype=I64)


def pad_to(row, length, pad_id):
    assert len(row) <= length
    return row + [pad_id] * (length - len(row))


def attention_rows(length, prompt_length, answer_lengths, left_pads=None):
    """Attention mask [B,L]: prompt (minus its left padding) and each answer are 1."""
    mask = torch.zeros(len(answer_lengths), length, dtype=I64)
    for j, n in enumerate(answer_lengths):
        assert prompt_length + n <= length
        left = left_pads[j] if left_pads else 0
        mask[j, left:prompt_length] = 1
        mask[j, prompt_length:prompt_length + n] = 1
    return mask


def log_prob_like(*shape):
    """Plausible per-token log-probs: negative, mostly between -4 and 0."""
    return -torch.rand(*shape, dtype=F64) * 4.0 - 0.01


# =============================================================================
# Stage: gather_log_probs
# =============================================================================

S = "gather_log_probs"
GL_WHAT = "DeepSpeed-Chat gather_log_probs semantics (log_softmax over V, read at the label)"


def gl_random():
    b, t, v = randint(1, 4), randint(1, 11), randint(2, 64)
    return {"logits": torch.randn(b, t, v, dtype=F64) * 3.0, "labels": torch.randint(0, v, (b, t))}


def gl_vocab_1000():
    return {"logits": torch.randn(2, 2, 1000, dtype=F64) * 2.0, "labels": torch.randint(0, 1000, (2, 2))}


def gl_masked_vocab():
    b, t, v = 2, 4, 10
    logits = torch.randn(b, t, v, dtype=F64) * 2.0
    logits[:, :, 3] = -math.inf                      # a banned token everywhere
    logits[0, 1, 7] = -math.inf                      # and a few scattered ones
    logits[1, 2, 0] = -math.inf
    logits[1, 3, 9] = -math.inf
    labels = torch.randint(0, v, (b, t))
    for i in range(b):
        for j in range(t):
            while math.isinf(float(logits[i, j, labels[i, j]])):
                labels[i, j] = (labels[i, j] + 1) % v
    return {"logits": logits, "labels": labels}


def spread_logits(b, t, v, scale):
    """Logits whose entries are at least about 2*scale/v apart (no near ties)."""
    logits = torch.empty(b, t, v, dtype=F64)
    for i in range(b):
        for j in range(t):
            levels = (torch.randperm(v).to(F64) - v / 2) * (2.0 / v)
            logits[i, j] = (levels + torch.rand(v, dtype=F64) * (0.2 / v)) * scale
    return logits


def gl_large(scale):
    def build():
        b, t, v = 2, 3, 12
        logits = spread_logits(b, t, v, scale)
        labels = torch.randint(0, v, (b, t))
        labels[0, 0] = logits[0, 0].argmax()   # label on the largest logit
        labels[1, 2] = logits[1, 2].argmax()
        labels[1, 0] = logits[1, 0].argmin()   # label on the smallest logit
        return {"logits": logits, "labels": labels}
    return build


def gl_large_near_ties(scale):
    def build():
        b, t, v = 2, 3, 12
        logits = spread_logits(b, t, v, scale)
        labels = torch.empty(b, t, dtype=I64)
        offsets = [0.5, 1.25, 3.0]
        for i in range(b):
            for j in range(t):
                order = logits[i, j].argsort(descending=True)
                top = logits[i, j, order[0]]
                for k, off in enumerate(offsets):      # three entries just below the max
                    logits[i, j, order[k + 1]] = top - off
                labels[i, j] = order[(i * t + j) % 4]  # on the max or one of the near ties
        return {"logits": logits, "labels": labels}
    return build


def gl_equal_logits():
    return {"logits": torch.full((1, 3, 7), 2.5, dtype=F64), "labels": torch.tensor([[0, 3, 6]])}


def gl_single():
    return {"logits": torch.tensor([[[0.25, -1.5]]], dtype=F64), "labels": torch.tensor([[1]])}


float_case(S, "random-1", f"{GL_WHAT}, random shapes", {}, gl_random)
float_case(S, "random-2", f"{GL_WHAT}, random shapes", {}, gl_random)
float_case(S, "random-3", f"{GL_WHAT}, random shapes", {}, gl_random)
float_case(S, "vocab-1000", f"{GL_WHAT}, V=1000", {}, gl_vocab_1000)
float_case(S, "masked-vocab-neg-inf", f"{GL_WHAT}, -inf logits for masked vocabulary entries "
           "(never the label), log_probs stay finite", {}, gl_masked_vocab)
float_case(S, "logits-1e4", f"{GL_WHAT}, logits of magnitude 1e4, entries well apart", {}, gl_large(1e4))
float_case(S, "logits-1e6", f"{GL_WHAT}, logits of magnitude 1e6, entries well apart", {}, gl_large(1e6))
float_case(S, "logits-1e4-near-ties", f"{GL_WHAT}, logits of magnitude 1e4 with entries 0.5, 1.25, 3 below "
           "the max; labels on the max and on the near ties", {}, gl_large_near_ties(1e4),
           loosen={"float32": {"abs": 1e-3, "rel": 1e-5},
                   "why": "an equally stable x - logsumexp(x) rounds logsumexp to the float32 grid at 1e4 "
                          "(ulp 9.8e-4, error up to half of it) before subtracting; torch's "
                          "(x - max) - log(sum) does not. float64 keeps the default (ulp 1.8e-12)"})
float_case(S, "logits-1e6-near-ties", f"{GL_WHAT}, logits of magnitude 1e6 with entries 0.5, 1.25, 3 below "
           "the max; labels on the max and on the near ties", {}, gl_large_near_ties(1e6),
           loosen={"float32": {"abs": 0.0625, "rel": 1e-5},
                   "why": "an equally stable x - logsumexp(x) rounds logsumexp to the float32 grid at 1e6 "
                          "(ulp 0.0625, error up to half of it) before subtracting; torch's "
                          "(x - max) - log(sum) does not. float64 keeps the default (ulp 1.2e-10, "
                          "half of it is inside abs 1e-10)"})
float_case(S, "equal-logits", f"{GL_WHAT}, all logits equal (log_probs = -log V)", {}, gl_equal_logits)
float_case(S, "single-position", f"{GL_WHAT}, B=1, T=1, V=2", {}, gl_single)


def with_grad_output(build):
    """A gather case plus an upstream gradient [B,T], so the fixture also pins grad_logits."""
    def built():
        batch = build()
        batch["grad_output"] = torch.randn(batch["labels"].shape, dtype=F64)
        return batch
    return built


GL_GRAD = f"{GL_WHAT}, with grad_output: grad_logits by autograd"
float_case(S, "grad-random-1", f"{GL_GRAD}, random shapes", {}, with_grad_output(gl_random))
float_case(S, "grad-random-2", f"{GL_GRAD}, random shapes", {}, with_grad_output(gl_random))
float_case(S, "grad-masked-vocab-neg-inf", f"{GL_GRAD}, -inf logits get exactly zero gradient", {},
           with_grad_output(gl_masked_vocab))
float_case(S, "grad-logits-1e4", f"{GL_GRAD}, logits of magnitude 1e4 (softmax is one-hot up to e^-20)", {},
           with_grad_output(gl_large(1e4)))
float_case(S, "grad-equal-logits", f"{GL_GRAD}, all logits equal (gradient g * (1/V - onehot))", {},
           with_grad_output(gl_equal_logits))

error_case(S, "labels-shape", "labels [B,T+1] do not match logits [B,T,V]", {},
           lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.randint(0, 5, (2, 4))})
error_case(S, "labels-batch", "labels [B+1,T] do not match logits [B,T,V]", {},
           lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.randint(0, 5, (3, 3))})
error_case(S, "label-too-large", "a label equals V (labels must lie in [0, V))", {},
           lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.tensor([[0, 1, 2], [3, 5, 4]])})
error_case(S, "label-negative", "a label is negative (labels must lie in [0, V))", {},
           lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.tensor([[0, 1, 2], [3, -1, 4]])})


def gl_nan():
    logits = torch.randn(2, 3, 5, dtype=F64)
    logits[1, 0, 2] = math.nan  # not the label's entry
    return {"logits": logits, "labels": torch.tensor([[0, 1, 2], [3, 1, 4]])}


error_case(S, "nan-logits", "NaN in logits (at an entry that is not the label)", {}, gl_nan, also_f32=True)


# =============================================================================
# Stage: reward_pairwise_loss
# =============================================================================

S = "reward_pairwise_loss"
RP_WHAT = f"{DS_RM} pairwise loss and end scores"


def with_rewards(chosen, rejected, scale=1.0):
    ids = rows_tensor(chosen + rejected)
    return {"input_ids": ids, "rewards": torch.randn(ids.shape, dtype=F64) * scale}


def rp_seed000():
    # Seed 000's worked-example rows, read as one chosen/rejected pair.
    return {
        "input_ids": rows_tensor([[101, 2009, 2003, 103, 0, 0], [101, 1996, 3075, 102, 0, 0]]),
        "rewards": torch.tensor([[0.1, 0.3, 0.5, 0.7, -0.2, -0.2], [0.2, 0.4, 0.6, 0.8, -0.1, -0.1]], dtype=F64),
    }


def rp_opt_style():
    # OPT: BOS == PAD == 2 at position 0, so the end is the second 2.
    L = 10
    chosen = [
        pad_to([2, 11, 12, 13, 21, 22, 23], L, 2),          # ends at 7
        [2, 14, 15, 41, 42, 43, 44, 45, 46, 47],            # no trailing pad: end = L
        pad_to([2, 16, 61], L, 2),                           # ends at 3 (shorter than its rejected)
    ]
    rejected = [
        pad_to([2, 11, 12, 13, 31, 32], L, 2),               # ends at 6
        pad_to([2, 14, 15, 51], L, 2),                       # ends at 4
        pad_to([2, 16, 71, 72, 73, 74], L, 2),               # ends at 6
    ]
    return with_rewards(chosen, rejected)


def rp_right_padded():
    L = 8
    chosen = [pad_to([5, 6, 7, 30, 31, 32, 33], L, 0), pad_to([8, 9, 40], L, 0)]
    rejected = [pad_to([5, 6, 7, 50], L, 0), pad_to([8, 9, 60, 61, 62], L, 0)]
    return with_rewards(chosen, rejected)


def rp_identical():
    L = 8
    same = pad_to([2, 10, 11, 12, 13, 14], L, 2)
    chosen = [same, same, pad_to([2, 10, 20, 21], L, 2)]
    rejected = [same, same, pad_to([2, 10, 30, 31, 32], L, 2)]
    batch = with_rewards(chosen, rejected)
    batch["rewards"][3] = batch["rewards"][0]   # pair 0: identical ids and rewards -> ln 2
    return batch                                # pair 1: identical ids, different rewards


def rp_identical_pad_first():
    # num_padding_at_beginning = 0 with an OPT-style BOS == PAD at position 0:
    # the end index is 0, so both scores are read at index -1 (the last element).
    L = 6
    a = pad_to([2, 10, 11, 12], L, 2)
    b = [2, 20, 21, 22, 23, 24]
    return with_rewards([a, b], [a, b])


def rp_no_padding():
    chosen = [[5, 6, 7, 30, 31, 32, 33], [8, 9, 40, 41, 42, 43, 44]]
    rejected = [[5, 6, 7, 50, 51, 52, 53], [8, 9, 60, 61, 62, 63, 64]]
    return with_rewards(chosen, rejected)


def rp_gap_800():
    L = 8
    chosen = [pad_to([5, 6, 30, 31, 32, 33], L, 0), pad_to([7, 8, 9, 40, 41], L, 0)]
    rejected = [pad_to([5, 6, 50, 51], L, 0), pad_to([7, 8, 9, 60, 61, 62, 63], L, 0)]
    batch = with_rewards(chosen, rejected)
    rewards = batch["rewards"]
    # chosen - rejected = +-800 everywhere; in the windows ([2,6) and [3,7))
    # the -800 terms give pair means of 200 and 400.
    signs = torch.tensor([[1, 1, -1, 1, 1, 1, -1, -1], [1, 1, 1, -1, -1, 1, 1, 1]], dtype=F64)
    rewards[:2] = rewards[2:] + 800.0 * signs
    return batch


def rp_shared_answer_prefix():
    L = 9
    chosen = [pad_to([2, 5, 6, 70, 71, 72, 73], L, 2), pad_to([2, 5, 80, 81, 82], L, 2)]
    rejected = [pad_to([2, 5, 6, 70, 71, 90], L, 2), pad_to([2, 5, 80, 81, 83, 84, 85, 86], L, 2)]
    return with_rewards(chosen, rejected)


def rp_random():
    pairs, L = randint(1, 4), randint(4, 12)
    pad_id = [0, 2][randint(0, 1)]
    skip = randint(0, 1)
    chosen, rejected = [], []
    for _ in range(pairs):
        head = [pad_id] if skip == 1 else []           # OPT-style BOS == PAD when skipping one
        prompt = head + tokens(randint(1, L - len(head) - 1))
        room = L - len(prompt)
        a_c, a_r = tokens(randint(1, room)), tokens(randint(1, room))
        while a_r[0] == a_c[0]:
            a_r[0] = tokens(1)[0]
        chosen.append(pad_to(prompt + a_c, L, pad_id))
        rejected.append(pad_to(prompt + a_r, L, pad_id))
    batch = with_rewards(chosen, rejected, scale=2.0)
    batch["_params"] = {"pad_id": pad_id, "num_padding_at_beginning": skip}
    return batch


def random_params_case(stage, case, what, build, fixed=None):
    """A case whose params are drawn with its inputs: build() returns them under "_params"."""
    seed = case_seed(stage, case)
    torch.manual_seed(seed)
    params = dict(build().pop("_params"))
    if fixed:
        params.update(fixed)

    def rebuild():
        batch = build()
        batch.pop("_params")
        return batch

    float_case(stage, case, what, params, rebuild)


def rp_seed000_check(out):
    close_to(out["loss"], [-F.logsigmoid(torch.tensor(-0.1, dtype=F64)).item()])
    close_to(out["chosen_mean_scores"], [0.7])
    close_to(out["rejected_mean_scores"], [0.8])


OPT = {"pad_id": 2, "num_padding_at_beginning": 1}
ZERO_PAD = {"pad_id": 0, "num_padding_at_beginning": 0}

float_case(S, "seed000-inputs", f"{RP_WHAT}, on the input_ids/values of seed 000's worked example "
           "(shared/seeds/000_699b68a8a39f82f2.txt) read as one chosen/rejected pair", ZERO_PAD, rp_seed000,
           check=rp_seed000_check)
float_case(S, "opt-style", f"{RP_WHAT}, OPT style BOS == PAD == 2 at position 0, pairs of different lengths, "
           "a chosen row with no trailing padding (end = L)", OPT, rp_opt_style)
float_case(S, "right-padded", f"{RP_WHAT}, pad 0, no leading pad, answers of different lengths", ZERO_PAD,
           rp_right_padded)
float_case(S, "identical-pair", f"{RP_WHAT}, identical ids with identical rewards (loss ln 2), identical ids "
           "with different rewards (window = last position only), and a normal pair", OPT, rp_identical)
float_case(S, "identical-pair-end-zero", f"{RP_WHAT}, identical pairs whose end index is 0 "
           "(BOS == PAD at position 0, num_padding_at_beginning 0): scores read at index -1, the last element",
           {"pad_id": 2, "num_padding_at_beginning": 0}, rp_identical_pad_first)
float_case(S, "no-padding", f"{RP_WHAT}, no padding anywhere (end = L)", ZERO_PAD, rp_no_padding)
float_case(S, "reward-gap-800", f"{RP_WHAT}, chosen - rejected rewards of +-800 (terms 0 and 800, finite)",
           ZERO_PAD, rp_gap_800)
float_case(S, "shared-answer-prefix", f"{RP_WHAT}, answers sharing their first tokens (divergence after the "
           "prompt)", OPT, rp_shared_answer_prefix)
for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{RP_WHAT}, random shapes, random pad_id and num_padding_at_beginning",
                       rp_random)

error_case(S, "odd-rows", "input_ids has an odd number of rows", ZERO_PAD,
           lambda: {"input_ids": rows_tensor([[5, 6, 7, 0], [5, 8, 0, 0], [5, 9, 9, 0]]),
                    "rewards": torch.randn(3, 4, dtype=F64)})
error_case(S, "diverge-at-0", "a chosen/rejected pair differs at position 0", ZERO_PAD,
           lambda: with_rewards([[5, 6, 7, 0]], [[9, 6, 8, 0]]))
error_case(S, "empty-loss-window", "both rows reach padding before they diverge, so the loss window "
           "[div, end) is empty (PyTorch gives NaN)", ZERO_PAD,
           lambda: with_rewards([[5, 6, 0, 7, 0, 0]], [[5, 6, 0, 8, 0, 0]]))
error_case(S, "rewards-shape", "rewards [2B,L-1] do not match input_ids [2B,L]", ZERO_PAD,
           lambda: {"input_ids": rows_tensor([[5, 6, 7, 0], [5, 8, 0, 0]]), "rewards": torch.randn(2, 3, dtype=F64)})


def rp_nan():
    batch = with_rewards([[5, 6, 7, 0, 0, 0]], [[5, 8, 0, 0, 0, 0]])
    batch["rewards"][0, 5] = math.nan   # in the padding, outside the loss window [1, 3)
    return batch


error_case(S, "nan-rewards", "NaN in rewards (in the padding, outside the loss window)", ZERO_PAD, rp_nan,
           also_f32=True)


# =============================================================================
# Stage: reward_end_scores
# =============================================================================

S = "reward_end_scores"
ES_WHAT = f"{DS_FV} chosen_end_scores semantics"


def es_batch(rows):
    ids = rows_tensor(rows)
    return {"input_ids": ids, "values": torch.randn(ids.shape, dtype=F64)}


def es_seed000():
    return {
        "input_ids": rows_tensor([[101, 2009, 2003, 103, 0, 0], [101, 1996, 3075, 102, 0, 0]]),
        "values": torch.tensor([[0.1, 0.3, 0.5, 0.7, -0.2, -0.2], [0.2, 0.4, 0.6, 0.8, -0.1, -0.1]], dtype=F64),
    }


def es_seed000_check(out):
    close_to(out["end_scores"], [0.7, 0.8])


float_case(S, "seed000-inputs", f"{ES_WHAT}, on seed 000's worked example inputs "
           "(shared/seeds/000_699b68a8a39f82f2.txt); expected [0.7, 0.8]", {"pad_id": 0, "prompt_length": 2},
           es_seed000, check=es_seed000_check)
float_case(S, "left-padded-prompt", f"{ES_WHAT}, prompts left-padded with pad_id (ignored: the search starts "
           "at prompt_length)", {"pad_id": 0, "prompt_length": 4},
           lambda: es_batch([[0, 0, 5, 6, 7, 8, 0, 0, 0], [0, 5, 6, 7, 8, 9, 10, 0, 0], [5, 6, 7, 8, 9, 0, 0, 0, 0]]))
float_case(S, "no-padding", f"{ES_WHAT}, a row without padding runs to L (score at L-1)",
           {"pad_id": 0, "prompt_length": 3},
           lambda: es_batch([[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9, 0, 0]]))
float_case(S, "pad-right-after-prompt", f"{ES_WHAT}, empty answer: the pad right after the prompt puts the "
           "score on the last prompt token", {"pad_id": 0, "prompt_length": 3},
           lambda: es_batch([[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 0, 0]]))
float_case(S, "opt-style", f"{ES_WHAT}, OPT style BOS == PAD == 2 at position 0 (inside the prompt, ignored)",
           {"pad_id": 2, "prompt_length": 3},
           lambda: es_batch([[2, 5, 6, 7, 8, 2, 2, 2], [2, 5, 6, 9, 10, 11, 12, 13], [2, 2, 5, 14, 2, 2, 2, 2]]))
float_case(S, "first-pad-wins", f"{ES_WHAT}, tokens after a pad in the answer: the first pad ends it",
           {"pad_id": 0, "prompt_length": 2},
           lambda: es_batch([[5, 6, 7, 0, 8, 9, 0], [5, 6, 7, 8, 0, 9, 0]]))
float_case(S, "answer-one-position", f"{ES_WHAT}, prompt_length = L-1 (one answer position)",
           {"pad_id": 0, "prompt_length": 4},
           lambda: es_batch([[5, 6, 7, 8, 9], [0, 6, 7, 8, 0]]))


def es_random():
    b, L = randint(1, 4), randint(4, 12)
    pad_id = [0, 2][randint(0, 1)]
    prompt_length = randint(2, L - 1)
    rows = []
    for _ in range(b):
        left = randint(0, prompt_length - 1)
        prompt = [pad_id] * left + tokens(prompt_length - left)
        rows.append(pad_to(prompt + tokens(randint(0, L - prompt_length)), L, pad_id))
    batch = es_batch(rows)
    batch["_params"] = {"pad_id": pad_id, "prompt_length": prompt_length}
    return batch


for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{ES_WHAT}, random shapes, left-padded prompts, random answer lengths",
                       es_random)

ES_ERR = lambda: es_batch([[5, 6, 7, 8, 0, 0], [5, 6, 9, 0, 0, 0]])  # noqa: E731
error_case(S, "prompt-length-1", "prompt_length 1 (< 2)", {"pad_id": 0, "prompt_length": 1}, ES_ERR)
error_case(S, "prompt-length-at-L", "prompt_length = L leaves no answer position", {"pad_id": 0, "prompt_length": 6},
           ES_ERR)
error_case(S, "prompt-length-beyond-L", "prompt_length > L", {"pad_id": 0, "prompt_length": 8}, ES_ERR)
error_case(S, "values-shape", "values [B,L+1] do not match input_ids [B,L]", {"pad_id": 0, "prompt_length": 2},
           lambda: {"input_ids": rows_tensor([[5, 6, 7, 0], [5, 6, 0, 0]]), "values": torch.randn(2, 5, dtype=F64)})


def es_nan():
    batch = ES_ERR()
    batch["values"][1, 5] = math.nan   # in the padding, never read
    return batch


error_case(S, "nan-values", "NaN in values (in the padding, never read)", {"pad_id": 0, "prompt_length": 2}, es_nan,
           also_f32=True)


# =============================================================================
# Stage: compute_rewards
# =============================================================================

S = "compute_rewards"
CR_WHAT = f"{DS_PPO}.compute_rewards semantics"


def cr_batch(length, prompt_length, answer_lengths, left_pads=None, scores=None):
    attention = attention_rows(length, prompt_length, answer_lengths, left_pads)
    b, n = attention.shape[0], length - 1
    lp = log_prob_like(b, n)
    return {
        "log_probs": lp,
        "ref_log_probs": lp + torch.randn(b, n, dtype=F64) * 0.3,
        "reward_score": torch.tensor(scores, dtype=F64) if scores else torch.randn(b, dtype=F64) * 2.0,
        "action_mask": attention[:, 1:].clone(),
    }


def cr_params(prompt_length, kl_ctl=0.1, clip=5.0):
    return {"prompt_length": prompt_length, "kl_ctl": kl_ctl, "clip_reward_value": clip}


def cr_toy():
    # peer-conventions section 11: d = log_probs - ref = [0, .1, -.2, .3, .5, -.4], one row.
    d = torch.tensor([[0.0, 0.1, -0.2, 0.3, 0.5, -0.4]], dtype=F64)
    return {"log_probs": d - 2.0, "ref_log_probs": torch.full((1, 6), -2.0, dtype=F64),
            "reward_score": torch.tensor([1.0], dtype=F64),
            "action_mask": rows_tensor([[1, 1, 1, 1, 0, 0]])}


def cr_toy_check(out):
    close_to(out["rewards"][0, 1:], [-0.01, 0.02, -0.03, 0.95, 0.04])


def cr_hole():
    batch = cr_batch(10, 3, [6, 4])
    batch["action_mask"][0, 4] = 0   # a hole inside row 0's answer: 5 ones counted, not 6 positions
    return batch


float_case(S, "padded-answers", f"{CR_WHAT}, right-padded answers of different lengths: the score lands one "
           "past the last answer action", cr_params(4), lambda: cr_batch(10, 4, [2, 4, 5]))
float_case(S, "full-length-row", f"{CR_WHAT}, a row whose answer runs to L: the score lands at N-1",
           cr_params(3), lambda: cr_batch(9, 3, [6, 3]))
float_case(S, "score-clipped", f"{CR_WHAT}, scores +-7 clipped to +-5, and scores inside the clip",
           cr_params(3), lambda: cr_batch(8, 3, [3, 2, 5, 1], scores=[7.0, -7.0, 4.5, -5.0]))
float_case(S, "left-padded-prompt", f"{CR_WHAT}, prompts left-padded (zeros in action_mask before start, "
           "ignored)", cr_params(5), lambda: cr_batch(10, 5, [3, 5, 2], left_pads=[2, 0, 1]))
float_case(S, "empty-answer-row", f"{CR_WHAT}, a row with no answer action: the score lands at start",
           cr_params(4), lambda: cr_batch(8, 4, [0, 3]))
float_case(S, "mask-with-hole", f"{CR_WHAT}, a 0 inside an answer: the landing spot counts mask ones "
           "(start + sum), not positions", cr_params(3), cr_hole)
float_case(S, "prompt-length-1", f"{CR_WHAT}, prompt_length 1 (start 0)", cr_params(1), lambda: cr_batch(6, 1, [3, 5]))
float_case(S, "prompt-length-n", f"{CR_WHAT}, prompt_length = N (start N-1): every score lands at N-1",
           cr_params(6), lambda: cr_batch(7, 6, [1, 0]))
float_case(S, "peer-toy", f"{CR_WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 "
           "(DS rewards -0.01, 0.02, -0.03, 0.95 at t = 1..4)", cr_params(2, 0.1, 5.0), cr_toy, check=cr_toy_check)


def cr_random():
    b, L = randint(1, 4), randint(3, 12)
    prompt_length = randint(1, L - 1)
    answers = [randint(0, L - prompt_length) for _ in range(b)]
    lefts = [randint(0, prompt_length - 1) for _ in range(b)]
    batch = cr_batch(L, prompt_length, answers, lefts)
    batch["reward_score"] = torch.randn(b, dtype=F64) * 4.0
    kl = round(float(torch.rand(1)) * 0.5, 3)
    clip = [1.0, 3.0, 5.0][randint(0, 2)]
    batch["_params"] = cr_params(prompt_length, kl, clip)
    return batch


for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{CR_WHAT}, random shapes, prompt lengths, answer lengths, kl_ctl, clip",
                       cr_random)

CR_ERR = lambda: cr_batch(7, 3, [2, 4])  # noqa: E731


def cr_mutate(fn):
    def build():
        batch = CR_ERR()
        fn(batch)
        return batch
    return build


error_case(S, "ref-log-probs-shape", "ref_log_probs [B,N+1] do not match log_probs [B,N]", cr_params(3),
           cr_mutate(lambda b: b.update(ref_log_probs=torch.cat([b["ref_log_probs"], b["ref_log_probs"][:, :1]], 1))))
error_case(S, "reward-score-length", "reward_score has B+1 entries", cr_params(3),
           cr_mutate(lambda b: b.update(reward_score=torch.tensor([1.0, 2.0, 3.0], dtype=F64))))
error_case(S, "action-mask-shape", "action_mask [B,N-1] does not match log_probs [B,N]", cr_params(3),
           cr_mutate(lambda b: b.update(action_mask=b["action_mask"][:, :-1].clone())))
error_case(S, "prompt-length-beyond-n", "prompt_length N+1 puts start = N outside [0, N)", cr_params(7), CR_ERR)
error_case(S, "prompt-length-zero", "prompt_length 0 puts start = -1 outside [0, N)", cr_params(0), CR_ERR)
error_case(S, "nan-ref-log-probs-masked", "NaN in ref_log_probs at a position whose action_mask is 0",
           cr_params(3), cr_mutate(lambda b: b["ref_log_probs"].__setitem__((0, 5), math.nan)), also_f32=True)
error_case(S, "nan-reward-score", "NaN in reward_score", cr_params(3),
           cr_mutate(lambda b: b["reward_score"].__setitem__(1, math.nan)))
error_case(S, "mask-value-2", "action_mask holds a 2", cr_params(3),
           cr_mutate(lambda b: b["action_mask"].__setitem__((1, 3), 2)))


# =============================================================================
# Stage: gae
# =============================================================================

S = "gae"
GAE_WHAT = f"{DS_PPO}.get_advantages_and_returns semantics"


def gae_batch(b, n):
    return {"values": torch.randn(b, n, dtype=F64), "rewards": torch.randn(b, n, dtype=F64) * 0.5}


def gae_params(start, gamma=1.0, lam=0.95):
    return {"start": start, "gamma": gamma, "lambda": lam}


def gae_toy():
    # peer-conventions section 11, after DS's zeroing past the end (one row, N = 6).
    return {"values": torch.tensor([[0.0, 0.5, 0.4, 0.3, 0.2, 0.0]], dtype=F64),
            "rewards": torch.tensor([[0.0, -0.01, 0.02, -0.03, 0.95, 0.0]], dtype=F64)}


def gae_toy_check(out):
    close_to(out["advantages"], [0.339706, 0.473375, 0.5825, 0.75, 0.0])
    close_to(out["returns"], [0.839706, 0.873375, 0.8825, 0.95, 0.0])


float_case(S, "lambda-0", f"{GAE_WHAT}, lambda 0 (one-step TD)", gae_params(2, 1.0, 0.0), lambda: gae_batch(3, 7))
float_case(S, "lambda-1", f"{GAE_WHAT}, lambda 1 (Monte Carlo minus value)", gae_params(2, 1.0, 1.0),
           lambda: gae_batch(3, 7))
float_case(S, "gamma-0.9", f"{GAE_WHAT}, gamma 0.9, lambda 0.95", gae_params(1, 0.9, 0.95), lambda: gae_batch(2, 8))
float_case(S, "gamma-0", f"{GAE_WHAT}, gamma 0 (advantage = reward - value)", gae_params(1, 0.0, 0.95),
           lambda: gae_batch(2, 5))
float_case(S, "start-0", f"{GAE_WHAT}, start 0 (whole row)", gae_params(0), lambda: gae_batch(2, 6))
float_case(S, "start-last", f"{GAE_WHAT}, start N-1 (only the last column)", gae_params(5), lambda: gae_batch(3, 6))
float_case(S, "single-column", f"{GAE_WHAT}, N = 1, start 0", gae_params(0), lambda: gae_batch(2, 1))
float_case(S, "peer-toy", f"{GAE_WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 "
           "(after DS zeroing; DS advantages 0.339706, 0.473375, 0.5825, 0.75, 0)", gae_params(1, 1.0, 0.95),
           gae_toy, check=gae_toy_check)


def gae_random():
    b, n = randint(1, 4), randint(1, 11)
    batch = gae_batch(b, n)
    gamma = [1.0, 0.99, 0.9][randint(0, 2)]
    lam = [0.95, 0.9, 0.5][randint(0, 2)]
    batch["_params"] = gae_params(randint(0, n - 1), gamma, lam)
    return batch


for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{GAE_WHAT}, random shapes, start, gamma, lambda", gae_random)

error_case(S, "start-negative", "start -1 is outside [0, N)", gae_params(-1), lambda: gae_batch(2, 5))
error_case(S, "start-at-n", "start = N is outside [0, N)", gae_params(5), lambda: gae_batch(2, 5))
error_case(S, "rewards-shape", "rewards [B,N+1] do not match values [B,N]", gae_params(1),
           lambda: {"values": torch.randn(2, 5, dtype=F64), "rewards": torch.randn(2, 6, dtype=F64)})


def gae_nan():
    batch = gae_batch(2, 5)
    batch["values"][0, 0] = math.nan   # before start: never read
    return batch


error_case(S, "nan-values-before-start", "NaN in values before start (a column GAE never reads)", gae_params(2),
           gae_nan, also_f32=True)


# =============================================================================
# Stage: actor_loss
# =============================================================================

S = "actor_loss"
AL_WHAT = f"{DS_PPO}.actor_loss_fn semantics"


def al_batch(b, m, spread, lengths=None):
    old = log_prob_like(b, m)
    mask = torch.ones(b, m, dtype=I64)
    if lengths:
        for i, n in enumerate(lengths):
            mask[i, n:] = 0
    return {"log_probs": old + torch.randn(b, m, dtype=F64) * spread, "old_log_probs": old,
            "advantages": torch.randn(b, m, dtype=F64), "mask": mask}


def al_grid():
    # Every combination of log-ratio (inside and outside +-0.2) and advantage sign.
    deltas = [-0.9, -0.3, -0.1, 0.0, 0.1, 0.3, 0.9]
    old = log_prob_like(2, len(deltas))
    delta = torch.tensor([deltas, deltas], dtype=F64)
    adv = torch.tensor([[1.5] * len(deltas), [-1.5] * len(deltas)], dtype=F64)
    return {"log_probs": old + delta, "old_log_probs": old, "advantages": adv,
            "mask": torch.ones(2, len(deltas), dtype=I64)}


def al_masked_huge():
    batch = al_batch(2, 6, 0.3, lengths=[4, 3])
    batch["log_probs"][0, 5] = batch["old_log_probs"][0, 5] + 800.0   # masked: log-ratio forced to 0
    batch["log_probs"][1, 4] = batch["old_log_probs"][1, 4] - 800.0
    return batch


def al_bool():
    batch = al_batch(3, 5, 0.3, lengths=[5, 2, 4])
    batch["mask"] = batch["mask"].bool()
    return batch


float_case(S, "ratios-inside-clip", f"{AL_WHAT}, all ratios inside [1-0.2, 1+0.2]", {"cliprange": 0.2},
           lambda: al_batch(2, 6, 0.03))
float_case(S, "ratios-outside-clip", f"{AL_WHAT}, most ratios outside the clip range, advantages of both signs",
           {"cliprange": 0.2}, lambda: al_batch(3, 5, 0.8))
float_case(S, "advantage-sign-grid", f"{AL_WHAT}, log-ratios -0.9..0.9 against advantages +1.5 and -1.5",
           {"cliprange": 0.2}, al_grid)
float_case(S, "partial-mask", f"{AL_WHAT}, rows masked from different positions", {"cliprange": 0.2},
           lambda: al_batch(3, 7, 0.4, lengths=[7, 3, 5]))
float_case(S, "masked-huge-log-ratio", f"{AL_WHAT}, log-ratios of +-800 at masked positions (the mask zeroes "
           "them before exp)", {"cliprange": 0.2}, al_masked_huge)
float_case(S, "bool-mask", f"{AL_WHAT}, the mask given as bool", {"cliprange": 0.2}, al_bool)
float_case(S, "cliprange-0", f"{AL_WHAT}, cliprange 0", {"cliprange": 0.0}, lambda: al_batch(2, 4, 0.3))


def exp_of_dyadic(d):
    """e^d for a small dyadic d (exact in float32 and float64). For the d used below,
    torch's exp and the C library's exp/expf agree to the last bit in both precisions
    (checked when the cases were chosen), so a cliprange built from it puts the ratio
    exactly on the clip bound in both."""
    return math.exp(d)


def al_at_bound(log_ratio):
    """Tokens whose ratio e^log_ratio sits exactly on a clip bound, with A > 0 and
    A < 0, beside tokens inside the range. old and new log-probs are dyadic, so
    new - old is exact."""
    def build():
        old = torch.tensor([[-1.25, -2.5, -0.75, -3.0], [-1.5, -0.5, -2.25, -1.0]], dtype=F64)
        delta = torch.tensor([[log_ratio, log_ratio, 0.0, log_ratio / 2], [log_ratio, log_ratio, -log_ratio / 4, 0.0]],
                             dtype=F64)
        adv = torch.tensor([[1.5, -1.5, 0.75, -0.5], [-2.0, 2.0, 1.0, -1.0]], dtype=F64)
        return {"log_probs": old + delta, "old_log_probs": old, "advantages": adv,
                "mask": torch.ones(2, 4, dtype=I64)}
    return build


UPPER_LOG_RATIO, LOWER_LOG_RATIO = 5 / 32, -7 / 32
float_case(S, "kink-ratio-at-upper-bound", f"{AL_WHAT}, ratios exactly at 1 + eps (eps = e^(5/32) - 1): the two "
           "branches tie, autograd splits the max's gradient half/half and the clamp passes it at its bound",
           {"cliprange": exp_of_dyadic(UPPER_LOG_RATIO) - 1.0}, al_at_bound(UPPER_LOG_RATIO))
float_case(S, "kink-ratio-at-lower-bound", f"{AL_WHAT}, ratios exactly at 1 - eps (eps = 1 - e^(-7/32)): the two "
           "branches tie, autograd splits the max's gradient half/half and the clamp passes it at its bound",
           {"cliprange": 1.0 - exp_of_dyadic(LOWER_LOG_RATIO)}, al_at_bound(LOWER_LOG_RATIO))


def al_random():
    b, m = randint(1, 4), randint(1, 11)
    batch = al_batch(b, m, 0.4, lengths=[randint(1, m) for _ in range(b)])
    batch["_params"] = {"cliprange": [0.1, 0.2, 0.3][randint(0, 2)]}
    return batch


for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{AL_WHAT}, random shapes, masks, cliprange", al_random)

error_case(S, "empty-mask", "the mask selects no element (0/0)", {"cliprange": 0.2},
           lambda: al_batch(2, 4, 0.3, lengths=[0, 0]))


def al_mutate(fn):
    def build():
        batch = al_batch(2, 5, 0.3, lengths=[5, 3])
        fn(batch)
        return batch
    return build


error_case(S, "mask-value-2", "the mask holds a 2", {"cliprange": 0.2},
           al_mutate(lambda b: b["mask"].__setitem__((0, 1), 2)))
error_case(S, "advantages-shape", "advantages [B,M-1] do not match log_probs [B,M]", {"cliprange": 0.2},
           al_mutate(lambda b: b.update(advantages=b["advantages"][:, :-1].clone())))
error_case(S, "nan-old-log-probs-masked", "NaN in old_log_probs at a masked position", {"cliprange": 0.2},
           al_mutate(lambda b: b["old_log_probs"].__setitem__((1, 4), math.nan)), also_f32=True)


# =============================================================================
# Stage: critic_loss
# =============================================================================

S = "critic_loss"
CL_WHAT = f"{DS_PPO}.critic_loss_fn semantics"


def cl_batch(b, m, drift, lengths=None):
    old = torch.randn(b, m, dtype=F64)
    mask = torch.ones(b, m, dtype=I64)
    if lengths:
        for i, n in enumerate(lengths):
            mask[i, n:] = 0
    return {"values": old + torch.randn(b, m, dtype=F64) * drift, "old_values": old,
            "returns": old + torch.randn(b, m, dtype=F64) * 0.5, "mask": mask}


def cl_bool():
    batch = cl_batch(2, 6, 0.3, lengths=[6, 2])
    batch["mask"] = batch["mask"].bool()
    return batch


def cl_far_returns():
    batch = cl_batch(2, 5, 0.5)
    batch["returns"] = batch["old_values"] + torch.tensor([[3.0, -3.0, 0.05, -0.05, 1.0]] * 2, dtype=F64)
    return batch


float_case(S, "inside-clip", f"{CL_WHAT}, new values within cliprange_value of the old ones",
           {"cliprange_value": 0.2}, lambda: cl_batch(2, 6, 0.05))
float_case(S, "outside-clip", f"{CL_WHAT}, new values far from the old ones (clipped branch matters)",
           {"cliprange_value": 0.2}, lambda: cl_batch(3, 5, 1.0))
float_case(S, "returns-far", f"{CL_WHAT}, returns far above and below the old values, both branches win "
           "somewhere", {"cliprange_value": 0.2}, cl_far_returns)
float_case(S, "partial-mask", f"{CL_WHAT}, rows masked from different positions", {"cliprange_value": 0.2},
           lambda: cl_batch(3, 7, 0.5, lengths=[7, 2, 4]))
float_case(S, "bool-mask", f"{CL_WHAT}, the mask given as bool", {"cliprange_value": 0.2}, cl_bool)
float_case(S, "cliprange-5", f"{CL_WHAT}, cliprange_value 5 (align-anything's default size; nothing clips)",
           {"cliprange_value": 5.0}, lambda: cl_batch(2, 5, 0.7))


def cl_at_bound():
    """New values exactly at old +- 0.25 (dyadic, exact in both precisions): the
    clamp returns the value itself, the two errors tie."""
    old = torch.tensor([[0.5, 0.5, -1.0, -1.0, 2.0], [0.25, -0.5, 1.5, 0.0, 0.0]], dtype=F64)
    step = torch.tensor([[0.25, 0.25, -0.25, -0.25, 0.25], [-0.25, 0.25, 0.25, 0.1, -0.6]], dtype=F64)
    returns = torch.tensor([[1.5, -0.5, -2.0, 0.5, 2.0], [-1.0, 1.0, 0.0, 0.3, 1.0]], dtype=F64)
    return {"values": old + step, "old_values": old, "returns": returns, "mask": torch.ones(2, 5, dtype=I64)}


float_case(S, "kink-value-at-bound", f"{CL_WHAT}, new values exactly at old_values +- cliprange_value "
           "(the two errors tie; autograd splits the max half/half and the clamp passes the gradient at its "
           "bound), beside values inside and outside the band", {"cliprange_value": 0.25}, cl_at_bound)


def cl_random():
    b, m = randint(1, 4), randint(1, 11)
    batch = cl_batch(b, m, 0.5, lengths=[randint(1, m) for _ in range(b)])
    batch["_params"] = {"cliprange_value": [0.1, 0.2, 0.5][randint(0, 2)]}
    return batch


for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{CL_WHAT}, random shapes, masks, cliprange_value", cl_random)


def cl_mutate(fn):
    def build():
        batch = cl_batch(2, 5, 0.3, lengths=[5, 3])
        fn(batch)
        return batch
    return build


error_case(S, "empty-mask", "the mask selects no element (0/0)", {"cliprange_value": 0.2},
           lambda: cl_batch(2, 4, 0.3, lengths=[0, 0]))
error_case(S, "mask-value-2", "the mask holds a 2", {"cliprange_value": 0.2},
           cl_mutate(lambda b: b["mask"].__setitem__((1, 0), 2)))
error_case(S, "returns-shape", "returns [B+1,M] do not match values [B,M]", {"cliprange_value": 0.2},
           cl_mutate(lambda b: b.update(returns=torch.cat([b["returns"], b["returns"][:1]], 0))))
error_case(S, "nan-values-masked", "NaN in values at a masked position", {"cliprange_value": 0.2},
           cl_mutate(lambda b: b["values"].__setitem__((1, 4), math.nan)), also_f32=True)


# =============================================================================
# Stage: dpo_loss
# =============================================================================

S = "dpo_loss"
DPO_WHAT = f"{AA_DPO} semantics"


def dpo_batch(lengths_better, lengths_worse, t):
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


def dpo_equal():
    batch = dpo_batch([4, 6, 3], [5, 2, 6], 6)
    batch["ref_better_log_probs"] = batch["better_log_probs"].clone()
    batch["ref_worse_log_probs"] = batch["worse_log_probs"].clone()
    return batch


def dpo_equal_check(out):
    close_to(out["loss"], [math.log(2.0)], 1e-12)
    close_to(out["reward_accuracy"], [0.0], 0.0)


def dpo_gap():
    # beta 0.1: the policy puts one token 8000 nats below the reference, on the
    # worse answer in row 0 (margin +8000) and on the better one in row 1
    # (margin -8000), so beta * margin = +-800. Only one side moves, so
    # `reward` does not come from two large numbers cancelling.
    batch = dpo_batch([3, 4], [3, 4], 4)
    batch["worse_log_probs"][0, 0] -= 8000.0
    batch["better_log_probs"][1, 1] -= 8000.0
    return batch


def dpo_ties():
    batch = dpo_batch([3, 5, 4, 2], [4, 3, 4, 5], 5)
    batch["worse_log_probs"][1] = batch["better_log_probs"][1]           # row 1: same ids, same numbers:
    batch["ref_worse_log_probs"][1] = batch["ref_better_log_probs"][1]   # rewards tie, counts as wrong
    return batch


def dpo_toy():
    # peer-conventions section 11: sums -10, -14 (policy) and -11, -12 (reference).
    return {
        "better_log_probs": torch.tensor([[-2.5, -2.0, -1.5, -3.0, -1.0, 0.0, 0.0, 0.0]], dtype=F64),
        "worse_log_probs": torch.tensor([[-2.0, -1.5, -2.5, -1.0, -2.0, -1.75, -1.25, -2.0]], dtype=F64),
        "ref_better_log_probs": torch.tensor([[-3.0, -2.0, -2.5, -2.0, -1.5, 0.0, 0.0, 0.0]], dtype=F64),
        "ref_worse_log_probs": torch.tensor([[-1.5, -1.5, -1.5, -1.5, -1.5, -1.5, -1.5, -1.5]], dtype=F64),
    }


def dpo_toy_check(out):
    close_to(out["loss"], [0.554355])
    close_to(out["better_sample_reward"], [0.1])
    close_to(out["worse_sample_reward"], [-0.2])
    close_to(out["reward_margin"], [0.3])


float_case(S, "policy-equals-reference", f"{DPO_WHAT}, policy == reference: loss ln 2, rewards 0, accuracy 0 "
           "(strict >)", {"beta": 0.1}, dpo_equal, check=dpo_equal_check)
float_case(S, "large-gap-800", f"{DPO_WHAT}, beta * (log-ratio margin) = +800 and -800 (logsigmoid saturates: "
           "terms 0 and 800)", {"beta": 0.1}, dpo_gap)
float_case(S, "zero-padded-rows", f"{DPO_WHAT}, zero-padded rows of different lengths", {"beta": 0.1},
           lambda: dpo_batch([2, 7, 4], [6, 3, 7], 7))
float_case(S, "tie-counts-wrong", f"{DPO_WHAT}, a row whose better and worse rewards tie (accuracy counts it "
           "as wrong)", {"beta": 0.1}, dpo_ties)
float_case(S, "beta-2.5", f"{DPO_WHAT}, beta 2.5", {"beta": 2.5}, lambda: dpo_batch([3, 5], [4, 2], 5))
float_case(S, "peer-toy", f"{DPO_WHAT}, on the toy pair of shared/reference/peer-conventions.md section 11 "
           "(loss 0.554355, rewards 0.1 / -0.2)", {"beta": 0.1}, dpo_toy, check=dpo_toy_check)


def dpo_random():
    b, t = randint(1, 4), randint(1, 11)
    batch = dpo_batch([randint(1, t) for _ in range(b)], [randint(1, t) for _ in range(b)], t)
    batch["_params"] = {"beta": [0.1, 0.05, 0.5][randint(0, 2)]}
    return batch


for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{DPO_WHAT}, random shapes, lengths, beta", dpo_random)

error_case(S, "ref-worse-shape", "ref_worse_log_probs [B,T+1] do not match better_log_probs [B,T]", {"beta": 0.1},
           lambda: {**dpo_batch([2, 3], [3, 1], 4), "ref_worse_log_probs": log_prob_like(2, 5)})
error_case(S, "batch-mismatch", "worse_log_probs [B+1,T] do not match better_log_probs [B,T]", {"beta": 0.1},
           lambda: {**dpo_batch([2, 3], [3, 1], 4), "worse_log_probs": log_prob_like(3, 4)})


def dpo_nan():
    batch = dpo_batch([2, 3], [3, 1], 4)
    batch["ref_worse_log_probs"][1, 3] = math.nan   # a zero-padded slot
    return batch


error_case(S, "nan-ref-worse-padded", "NaN in ref_worse_log_probs (in a zero-padded slot)", {"beta": 0.1}, dpo_nan,
           also_f32=True)


# =============================================================================
# Stage: ppo_losses
# =============================================================================

S = "ppo_losses"
PPO_WHAT = f"{DS_PPO}.train_rlhf data flow (compute_rewards, zeroing past ends, GAE, actor and critic losses)"


def ppo_batch(length, prompt_length, answer_lengths, left_pads=None, scores=None):
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


def ppo_params(prompt_length, kl_ctl=0.1, clip=5.0, cliprange=0.2, cliprange_value=0.2, gamma=1.0, lam=0.95):
    return {"prompt_length": prompt_length, "kl_ctl": kl_ctl, "clip_reward_value": clip, "cliprange": cliprange,
            "cliprange_value": cliprange_value, "gamma": gamma, "lambda": lam}


def ppo_toy():
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


def ppo_toy_check(out):
    close_to(out["rewards"][0, 1:], [-0.01, 0.02, -0.03, 0.95, 0.0])
    close_to(out["advantages"], [0.339706, 0.473375, 0.5825, 0.75, 0.0])
    close_to(out["returns"], [0.839706, 0.873375, 0.8825, 0.95, 0.0])


float_case(S, "right-padded-answers", f"{PPO_WHAT}, right-padded answers of different lengths",
           ppo_params(4), lambda: ppo_batch(10, 4, [2, 4, 5]))
float_case(S, "no-padding-row", f"{PPO_WHAT}, a row whose answer runs to L (nothing zeroed) next to padded rows",
           ppo_params(3), lambda: ppo_batch(9, 3, [6, 2, 4]))
float_case(S, "left-padded-prompts", f"{PPO_WHAT}, left-padded prompts and right-padded answers",
           ppo_params(5), lambda: ppo_batch(11, 5, [3, 6, 2], left_pads=[2, 0, 4]))
float_case(S, "scores-clipped", f"{PPO_WHAT}, scores +-7 clipped to +-5", ppo_params(3),
           lambda: ppo_batch(8, 3, [3, 5], scores=[7.0, -7.0]))
float_case(S, "gamma-lambda", f"{PPO_WHAT}, gamma 0.9, lambda 1.0, cliprange 0.1, cliprange_value 0.5",
           ppo_params(3, gamma=0.9, lam=1.0, cliprange=0.1, cliprange_value=0.5), lambda: ppo_batch(9, 3, [4, 6, 1]))
float_case(S, "prompt-length-1", f"{PPO_WHAT}, prompt_length 1 (start 0)", ppo_params(1),
           lambda: ppo_batch(6, 1, [3, 5]))
float_case(S, "empty-answer-row", f"{PPO_WHAT}, one row with no answer next to a normal row (the batch mask is "
           "not empty)", ppo_params(3), lambda: ppo_batch(8, 3, [0, 4]))
float_case(S, "peer-toy", f"{PPO_WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 "
           "(DS advantages 0.339706, 0.473375, 0.5825, 0.75, 0)", ppo_params(2), ppo_toy, check=ppo_toy_check)


def ppo_random():
    b, L = randint(1, 4), randint(3, 12)
    prompt_length = randint(1, L - 1)
    answers = [randint(0, L - prompt_length) for _ in range(b)]
    answers[0] = max(answers[0], 1)   # keep the batch's answer mask non-empty
    batch = ppo_batch(L, prompt_length, answers, [randint(0, prompt_length - 1) for _ in range(b)])
    batch["reward_score"] = torch.randn(b, dtype=F64) * 4.0
    batch["_params"] = ppo_params(prompt_length, kl_ctl=[0.1, 0.05][randint(0, 1)],
                                  gamma=[1.0, 0.99][randint(0, 1)], lam=[0.95, 0.9][randint(0, 1)])
    return batch


for k in (1, 2, 3):
    random_params_case(S, f"random-{k}", f"{PPO_WHAT}, random shapes, prompt and answer lengths, left padding",
                       ppo_random)

PPO_ERR = lambda: ppo_batch(7, 3, [2, 4])  # noqa: E731


def ppo_mutate(fn):
    def build():
        batch = PPO_ERR()
        fn(batch)
        return batch
    return build


error_case(S, "empty-answer-mask", "attention_mask[:, 1:][:, start:] selects no element (every answer is empty)",
           ppo_params(3), lambda: ppo_batch(7, 3, [0, 0]))
error_case(S, "prompt-length-at-L", "prompt_length = L leaves no answer position (start = N)", ppo_params(7),
           PPO_ERR)
error_case(S, "prompt-length-zero", "prompt_length 0 puts start = -1 outside [0, N)", ppo_params(0), PPO_ERR)
error_case(S, "attention-mask-width", "attention_mask [B,N] is not of width N+1", ppo_params(3),
           ppo_mutate(lambda b: b.update(attention_mask=b["attention_mask"][:, 1:].clone())))
error_case(S, "reward-score-length", "reward_score has B-1 entries", ppo_params(3),
           ppo_mutate(lambda b: b.update(reward_score=b["reward_score"][:1].clone())))
error_case(S, "mask-value-2", "attention_mask holds a 2", ppo_params(3),
           ppo_mutate(lambda b: b["attention_mask"].__setitem__((0, 2), 2)))
error_case(S, "nan-new-values-masked", "NaN in new_values at a position past the answer's end", ppo_params(3),
           ppo_mutate(lambda b: b["new_values"].__setitem__((0, 5), math.nan)), also_f32=True)


# =============================================================================
# Stage: sft_loss (added after v1)
# =============================================================================

S = "sft_loss"
SFT_WHAT = "Hugging Face causal-LM loss (shifted cross-entropy, mean over kept labels) as DeepSpeed-Chat step 1 uses it"


def sft_batch(b, l, v, prompt_lengths=None, answer_lengths=None, scale=2.0):
    """Logits [B,L,V] and labels [B,L]: ids where the row is real, -100 on padding
    (DeepSpeed-Chat) and, when prompt_lengths is given, on the prompt too
    (align-anything)."""
    logits = torch.randn(b, l, v, dtype=F64) * scale
    labels = torch.randint(0, v, (b, l))
    for i in range(b):
        if answer_lengths is not None:
            labels[i, answer_lengths[i]:] = -100
        if prompt_lengths is not None:
            labels[i, :prompt_lengths[i]] = -100
    return {"logits": logits, "labels": labels}


def sft_random():
    b, l, v = randint(1, 3), randint(2, 9), randint(2, 40)
    return sft_batch(b, l, v, answer_lengths=[randint(2, l) for _ in range(b)])


def sft_custom_ignore():
    batch = sft_batch(2, 6, 9)
    batch["labels"][0, 4:] = 0           # the pad id 0 serves as the ignore index
    batch["labels"][1, 2] = 0
    return batch


def sft_first_label_unused():
    batch = sft_batch(2, 5, 7)
    batch["labels"][:, 0] = 1000         # out of range, but labels[:, 0] is never predicted
    return batch


def sft_large():
    b, l, v = 2, 4, 12
    return {"logits": spread_logits(b, l, v, 1e4), "labels": torch.randint(0, v, (b, l))}


def sft_masked_vocab():
    batch = gl_masked_vocab()   # labels[b, t] avoid the -inf entries of logits[b, t]
    # SFT scores logits[:, t] against labels[:, t + 1]: shift the labels right by one.
    labels = torch.cat([torch.zeros(2, 1, dtype=I64), batch["labels"][:, :-1]], dim=1)
    return {"logits": batch["logits"], "labels": labels}


float_case(S, "random-1", f"{SFT_WHAT}, random shapes, right padding labelled -100", {}, sft_random)
float_case(S, "random-2", f"{SFT_WHAT}, random shapes, right padding labelled -100", {}, sft_random)
float_case(S, "random-3", f"{SFT_WHAT}, random shapes, right padding labelled -100", {}, sft_random)
float_case(S, "every-label-kept", f"{SFT_WHAT}, no -100 label (DeepSpeed-Chat step 1 without padding)", {},
           lambda: sft_batch(2, 5, 11))
float_case(S, "prompt-ignored", f"{SFT_WHAT}, prompt and padding labelled -100 (align-anything's SFT labels)", {},
           lambda: sft_batch(3, 8, 13, prompt_lengths=[3, 2, 4], answer_lengths=[8, 6, 7]))
float_case(S, "ignore-index-0", f"{SFT_WHAT}, ignore_index 0", {"ignore_index": 0}, sft_custom_ignore)
float_case(S, "first-label-unused", f"{SFT_WHAT}, labels[:, 0] = 1000 is out of range but never predicted", {},
           sft_first_label_unused)
float_case(S, "logits-1e4", f"{SFT_WHAT}, logits of magnitude 1e4, entries well apart", {}, sft_large)
float_case(S, "masked-vocab-neg-inf", f"{SFT_WHAT}, -inf logits for masked vocabulary entries (never the label)",
           {}, sft_masked_vocab)
float_case(S, "single-position", f"{SFT_WHAT}, B=1, L=2, V=3: one label counted", {},
           lambda: {"logits": torch.tensor([[[0.5, -1.0, 2.0], [9.0, 9.0, 9.0]]], dtype=F64),
                    "labels": torch.tensor([[-100, 1]])})


def sft_nan():
    batch = sft_batch(2, 4, 5)
    batch["logits"][1, 3, 2] = math.nan   # the last position: its logits are never scored, still rejected
    return batch


error_case(S, "no-label-left", "every label in labels[:, 1:] is ignore_index (the mean would be 0/0)", {},
           lambda: sft_batch(2, 5, 7, answer_lengths=[1, 1]))
error_case(S, "single-token", "L = 1 leaves no label to predict", {}, lambda: sft_batch(2, 1, 7))
error_case(S, "label-too-large", "a label equals V", {},
           lambda: {"logits": torch.randn(1, 3, 5, dtype=F64), "labels": torch.tensor([[0, 1, 5]])})
error_case(S, "label-negative", "a label is negative and not ignore_index", {},
           lambda: {"logits": torch.randn(1, 3, 5, dtype=F64), "labels": torch.tensor([[0, -1, 2]])})
error_case(S, "labels-shape", "labels [B,L+1] do not match logits [B,L,V]", {},
           lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.randint(0, 5, (2, 4))})
error_case(S, "nan-logits", "NaN in logits (at the last position, which is never scored)", {}, sft_nan,
           also_f32=True)


# =============================================================================
# Stage: tiny_lm (added after v1): the end-to-end chapter's model, forward and backward
# =============================================================================

S = "tiny_lm"
TL_WHAT = "TinyLM forward (logits, values) and autograd gradients of every weight"


def tl_batch(b, l, v, c, h, context=None, grad_logits=True, grad_values=True, scale=1.0):
    """Weights drawn like the Swift init (N(0, 1/fan_in), times `scale`), random ids,
    random upstream gradients (or zeros, for a head no loss reads)."""
    context = context or l
    fan = {"token_embedding": c, "position_embedding": c, "attention_query": c, "attention_key": c,
           "attention_value": c, "attention_output": c, "mlp_in": c, "mlp_out": h, "lm_head": c}
    shapes = {"token_embedding": (v, c), "position_embedding": (context, c), "attention_query": (c, c),
              "attention_key": (c, c), "attention_value": (c, c), "attention_output": (c, c), "mlp_in": (c, h),
              "mlp_in_bias": (h,), "mlp_out": (h, c), "mlp_out_bias": (c,), "lm_head": (c, v), "lm_head_bias": (v,),
              "value_head": (c,)}
    batch = {"input_ids": torch.randint(0, v, (b, l))}
    for name in TINY_LM_WEIGHTS:
        batch[name] = torch.randn(*shapes[name], dtype=F64) * scale / math.sqrt(fan.get(name, c))
    batch["grad_logits"] = torch.randn(b, l, v, dtype=F64) if grad_logits else torch.zeros(b, l, v, dtype=F64)
    batch["grad_values"] = torch.randn(b, l, dtype=F64) if grad_values else torch.zeros(b, l, dtype=F64)
    return batch


float_case(S, "random-1", f"{TL_WHAT}, B=2, L=4, V=7, C=4, H=6", {}, lambda: tl_batch(2, 4, 7, 4, 6),
           dtypes=(F64,))
float_case(S, "random-2", f"{TL_WHAT}, B=3, L=6, V=11, C=8, H=5, context 8 (L < context)", {},
           lambda: tl_batch(3, 6, 11, 8, 5, context=8), dtypes=(F64,))
float_case(S, "single-position", f"{TL_WHAT}, L=1: each token attends only to itself", {},
           lambda: tl_batch(2, 1, 5, 3, 4), dtypes=(F64,))
float_case(S, "lm-head-only", f"{TL_WHAT}, grad_values = 0 (an SFT, PPO-actor or DPO step)", {},
           lambda: tl_batch(2, 5, 9, 6, 7, grad_values=False), dtypes=(F64,))
float_case(S, "value-head-only", f"{TL_WHAT}, grad_logits = 0 (a reward-model or critic step)", {},
           lambda: tl_batch(2, 5, 9, 6, 7, grad_logits=False), dtypes=(F64,))
float_case(S, "large-weights", f"{TL_WHAT}, weights 4x the init scale (sharp attention, saturated tanh)", {},
           lambda: tl_batch(2, 5, 8, 4, 6, scale=4.0), dtypes=(F64,))


def tl_mutate(change, **kwargs):
    def build():
        batch = tl_batch(2, 4, 7, 4, 6, **kwargs)
        change(batch)
        return batch
    return build


error_case(S, "id-too-large", "an input id equals V", {}, tl_mutate(lambda b: b["input_ids"].__setitem__((1, 2), 7)))
error_case(S, "beyond-context", "L = 4 is longer than the position embedding's 3 rows", {},
           tl_mutate(lambda b: b.__setitem__("position_embedding", b["position_embedding"][:3])))
error_case(S, "grad-logits-shape", "grad_logits [B,L,V+1] do not match the logits [B,L,V]", {},
           tl_mutate(lambda b: b.__setitem__("grad_logits", torch.randn(2, 4, 8, dtype=F64))))
error_case(S, "nan-weight", "NaN in attention_key", {},
           tl_mutate(lambda b: b["attention_key"].__setitem__((0, 1), math.nan)))


# =============================================================================
# Writing and checking
# =============================================================================


def generated(path):
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and str(obj.get("source", "")).startswith(SOURCE_PREFIX)


def within(got, want, tol):
    if got.shape != want.shape:
        return False
    for a, b in zip(got.reshape(-1).tolist(), want.reshape(-1).tolist()):
        if math.isnan(b) or math.isnan(a):
            if not (math.isnan(a) and math.isnan(b)):
                return False
        elif math.isinf(b) or math.isinf(a):
            if a != b:
                return False
        elif abs(a - b) > tol["abs"] + tol["rel"] * abs(b):
            return False
    return True


def check_other_fixtures():
    """Re-check hand-written (or third-party) fixtures against our implementations."""
    problems, checked = [], 0
    for path in sorted(GOLDEN_DIR.glob("*/*.json")):
        if generated(path):
            continue
        rel = path.relative_to(GOLDEN_DIR.parent)
        try:
            fx = json.loads(path.read_text(encoding="utf-8"))
            impl = IMPLEMENTATIONS[fx["stage"]]
            inputs = {k: decode_tensor(v) for k, v in fx["inputs"].items()}
        except (KeyError, ValueError, TypeError) as err:
            problems.append(f"{rel}: cannot read ({err!r})")
            continue
        checked += 1
        try:
            outputs = impl(inputs, fx["params"])
        except GoldenError as err:
            if "expect_error" not in fx:
                problems.append(f"{rel}: our implementation rejects it ({err})")
            continue
        if "expect_error" in fx:
            problems.append(f"{rel}: expects an error, our implementation accepts it")
            continue
        for name, want in fx["expected"].items():
            if name not in outputs or not within(outputs[name], decode_tensor(want), fx["tolerance"]):
                problems.append(f"{rel}: output {name} disagrees with our implementation")
    return checked, problems


def print_catalog():
    prefixes = [GL_GRAD, GL_WHAT, RP_WHAT, ES_WHAT, CR_WHAT, GAE_WHAT, AL_WHAT, CL_WHAT, DPO_WHAT, PPO_WHAT,
                SFT_WHAT, TL_WHAT]
    current = None
    for stage, names, what in CATALOG:
        if stage != current:
            print(f"\n### `{stage}`\n\n| fixture | covers |\n|---|---|")
            current = stage
        for prefix in prefixes:
            if what.startswith(prefix + ", "):
                what = what[len(prefix) + 2:]
        if names[0].endswith("-f64") and len(names) > 1:
            shown = f"`{names[0][:-4]}-{{f64,f32}}`"
        else:
            shown = f"`{names[0]}`" + (" (+ `-f32`)" if len(names) > 1 else "")
        print(f"| {shown} | {what.replace('|', '/')} |")


def main():
    if "--list" in sys.argv[1:]:
        print_catalog()
        return 0
    removed = 0
    for path in sorted(GOLDEN_DIR.glob("*/*.json")):
        if generated(path):
            path.unlink()
            removed += 1
    seen = set()
    counts = {}
    total_bytes = 0
    for stage, name, obj in FIXTURES:
        assert (stage, name) not in seen, (stage, name)
        seen.add((stage, name))
        folder = GOLDEN_DIR / stage
        folder.mkdir(exist_ok=True)
        text = render(obj)
        (folder / f"{name}.json").write_text(text, encoding="utf-8")
        counts[stage] = counts.get(stage, 0) + 1
        total_bytes += len(text.encode("utf-8"))
    print(f"removed {removed} generated files, wrote {len(FIXTURES)} ({total_bytes / 1024:.0f} KiB):")
    for stage, n in counts.items():
        print(f"  {stage:22s} {n:3d}")
    checked, problems = check_other_fixtures()
    print(f"re-checked {checked} hand-written fixture(s) against the reference implementations")
    for p in problems:
        print(f"  MISMATCH {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
