"""Stage tiny_lm (added after v1): the end-to-end chapter's model, forward and backward.

No peer function: re-implements the project's own Swift TinyLM
(Sources/TinyLM/TinyLM.swift) from its formulas, float64 only (see tiny_lm below).
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, mutated
from ..fixture_format import F64
from ..reference import leaf, need, need_ids, need_shape

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


# ---- cases ----

WHAT = "TinyLM forward (logits, values) and autograd gradients of every weight"


def batch_of(b, l, v, c, h, context=None, grad_logits=True, grad_values=True, scale=1.0):
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


def error_batch():
    return batch_of(2, 4, 7, 4, 6)


CASES = [
    FloatCase("random-1", f"{WHAT}, B=2, L=4, V=7, C=4, H=6", {}, lambda: batch_of(2, 4, 7, 4, 6),
              dtypes=(F64,)),
    FloatCase("random-2", f"{WHAT}, B=3, L=6, V=11, C=8, H=5, context 8 (L < context)", {},
              lambda: batch_of(3, 6, 11, 8, 5, context=8), dtypes=(F64,)),
    FloatCase("single-position", f"{WHAT}, L=1: each token attends only to itself", {},
              lambda: batch_of(2, 1, 5, 3, 4), dtypes=(F64,)),
    FloatCase("lm-head-only", f"{WHAT}, grad_values = 0 (an SFT, PPO-actor or DPO step)", {},
              lambda: batch_of(2, 5, 9, 6, 7, grad_values=False), dtypes=(F64,)),
    FloatCase("value-head-only", f"{WHAT}, grad_logits = 0 (a reward-model or critic step)", {},
              lambda: batch_of(2, 5, 9, 6, 7, grad_logits=False), dtypes=(F64,)),
    FloatCase("large-weights", f"{WHAT}, weights 4x the init scale (sharp attention, saturated tanh)", {},
              lambda: batch_of(2, 5, 8, 4, 6, scale=4.0), dtypes=(F64,)),

    ErrorCase("id-too-large", "an input id equals V", {},
              mutated(error_batch, lambda b: b["input_ids"].__setitem__((1, 2), 7))),
    ErrorCase("beyond-context", "L = 4 is longer than the position embedding's 3 rows", {},
              mutated(error_batch, lambda b: b.__setitem__("position_embedding", b["position_embedding"][:3]))),
    ErrorCase("grad-logits-shape", "grad_logits [B,L,V+1] do not match the logits [B,L,V]", {},
              mutated(error_batch, lambda b: b.__setitem__("grad_logits", torch.randn(2, 4, 8, dtype=F64)))),
    ErrorCase("nan-weight", "NaN in attention_key", {},
              mutated(error_batch, lambda b: b["attention_key"].__setitem__((0, 1), math.nan))),
]

STAGE = Stage("tiny_lm", tiny_lm, CASES, catalog_prefixes=(WHAT,))
