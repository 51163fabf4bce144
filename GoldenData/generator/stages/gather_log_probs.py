"""Stage gather_log_probs: the log-probability of each label under the logits.

Re-implements DeepSpeed-Chat dschat/rlhf/ppo_trainer.py :: gather_log_probs
(the same as align-anything align_anything/utils/tools.py :: gather_log_probabilities):
log_softmax over the vocabulary, read at the label. With a grad_output, also
autograd's gradient with respect to the logits.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, randint
from ..fixture_format import F64, I64
from ..reference import leaf, need, need_float, need_ids, need_shape, same_float_dtype


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


# ---- cases ----

WHAT = "DeepSpeed-Chat gather_log_probs semantics (log_softmax over V, read at the label)"
GRAD_WHAT = f"{WHAT}, with grad_output: grad_logits by autograd"


def random_batch():
    b, t, v = randint(1, 4), randint(1, 11), randint(2, 64)
    return {"logits": torch.randn(b, t, v, dtype=F64) * 3.0, "labels": torch.randint(0, v, (b, t))}


def vocab_1000():
    return {"logits": torch.randn(2, 2, 1000, dtype=F64) * 2.0, "labels": torch.randint(0, 1000, (2, 2))}


def masked_vocab():
    """-inf logits at a few vocabulary entries; the labels avoid them (sft_loss reuses this)."""
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


def large(scale):
    def build():
        b, t, v = 2, 3, 12
        logits = spread_logits(b, t, v, scale)
        labels = torch.randint(0, v, (b, t))
        labels[0, 0] = logits[0, 0].argmax()   # label on the largest logit
        labels[1, 2] = logits[1, 2].argmax()
        labels[1, 0] = logits[1, 0].argmin()   # label on the smallest logit
        return {"logits": logits, "labels": labels}
    return build


def large_near_ties(scale):
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


def equal_logits():
    return {"logits": torch.full((1, 3, 7), 2.5, dtype=F64), "labels": torch.tensor([[0, 3, 6]])}


def single():
    return {"logits": torch.tensor([[[0.25, -1.5]]], dtype=F64), "labels": torch.tensor([[1]])}


def with_grad_output(build):
    """A gather case plus an upstream gradient [B,T], so the fixture also pins grad_logits."""
    def built():
        batch = build()
        batch["grad_output"] = torch.randn(batch["labels"].shape, dtype=F64)
        return batch
    return built


def nan_logits():
    logits = torch.randn(2, 3, 5, dtype=F64)
    logits[1, 0, 2] = math.nan  # not the label's entry
    return {"logits": logits, "labels": torch.tensor([[0, 1, 2], [3, 1, 4]])}


CASES = [
    FloatCase("random-1", f"{WHAT}, random shapes", {}, random_batch),
    FloatCase("random-2", f"{WHAT}, random shapes", {}, random_batch),
    FloatCase("random-3", f"{WHAT}, random shapes", {}, random_batch),
    FloatCase("vocab-1000", f"{WHAT}, V=1000", {}, vocab_1000),
    FloatCase("masked-vocab-neg-inf", f"{WHAT}, -inf logits for masked vocabulary entries "
              "(never the label), log_probs stay finite", {}, masked_vocab),
    FloatCase("logits-1e4", f"{WHAT}, logits of magnitude 1e4, entries well apart", {}, large(1e4)),
    FloatCase("logits-1e6", f"{WHAT}, logits of magnitude 1e6, entries well apart", {}, large(1e6)),
    # Default tolerance in float32 too: the Swift implementation forms (x - max) - log(sum)
    # in torch's order, so it does not round logsumexp to the float32 grid first.
    FloatCase("logits-1e4-near-ties", f"{WHAT}, logits of magnitude 1e4 with entries 0.5, 1.25, 3 below "
              "the max; labels on the max and on the near ties", {}, large_near_ties(1e4)),
    FloatCase("logits-1e6-near-ties", f"{WHAT}, logits of magnitude 1e6 with entries 0.5, 1.25, 3 below "
              "the max; labels on the max and on the near ties", {}, large_near_ties(1e6)),
    FloatCase("equal-logits", f"{WHAT}, all logits equal (log_probs = -log V)", {}, equal_logits),
    FloatCase("single-position", f"{WHAT}, B=1, T=1, V=2", {}, single),

    FloatCase("grad-random-1", f"{GRAD_WHAT}, random shapes", {}, with_grad_output(random_batch)),
    FloatCase("grad-random-2", f"{GRAD_WHAT}, random shapes", {}, with_grad_output(random_batch)),
    FloatCase("grad-masked-vocab-neg-inf", f"{GRAD_WHAT}, -inf logits get exactly zero gradient", {},
              with_grad_output(masked_vocab)),
    FloatCase("grad-logits-1e4", f"{GRAD_WHAT}, logits of magnitude 1e4 (softmax is one-hot up to e^-20)", {},
              with_grad_output(large(1e4))),
    FloatCase("grad-equal-logits", f"{GRAD_WHAT}, all logits equal (gradient g * (1/V - onehot))", {},
              with_grad_output(equal_logits)),

    ErrorCase("labels-shape", "labels [B,T+1] do not match logits [B,T,V]", {},
              lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.randint(0, 5, (2, 4))}),
    ErrorCase("labels-batch", "labels [B+1,T] do not match logits [B,T,V]", {},
              lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.randint(0, 5, (3, 3))}),
    ErrorCase("label-too-large", "a label equals V (labels must lie in [0, V))", {},
              lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.tensor([[0, 1, 2], [3, 5, 4]])}),
    ErrorCase("label-negative", "a label is negative (labels must lie in [0, V))", {},
              lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.tensor([[0, 1, 2], [3, -1, 4]])}),
    ErrorCase("nan-logits", "NaN in logits (at an entry that is not the label)", {}, nan_logits, also_f32=True),
]

# GRAD_WHAT first: it starts with WHAT.
STAGE = Stage("gather_log_probs", gather_log_probs, CASES, catalog_prefixes=(GRAD_WHAT, WHAT))
