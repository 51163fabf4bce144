"""Stage sft_loss (added after v1): the supervised fine-tuning loss and its gradient.

Re-implements Hugging Face transformers' causal-LM loss (`model(**batch).loss`:
the shift, then CrossEntropyLoss(ignore_index=-100)) as DeepSpeed-Chat
training/step1_supervised_finetuning/main.py trains with it: the logits at t are
scored against the label at t + 1, cross-entropy averaged over the labels that
are not ignore_index; autograd's gradient with respect to the logits.
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, randint
from ..fixture_format import F64, I64
from ..reference import leaf, need, need_float, need_ids, need_shape
from .gather_log_probs import masked_vocab, spread_logits


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


# ---- cases ----

WHAT = "Hugging Face causal-LM loss (shifted cross-entropy, mean over kept labels) as DeepSpeed-Chat step 1 uses it"


def batch_of(b, l, v, prompt_lengths=None, answer_lengths=None, scale=2.0):
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


def random_batch():
    b, l, v = randint(1, 3), randint(2, 9), randint(2, 40)
    return batch_of(b, l, v, answer_lengths=[randint(2, l) for _ in range(b)])


def custom_ignore():
    batch = batch_of(2, 6, 9)
    batch["labels"][0, 4:] = 0           # the pad id 0 serves as the ignore index
    batch["labels"][1, 2] = 0
    return batch


def first_label_unused():
    batch = batch_of(2, 5, 7)
    batch["labels"][:, 0] = 1000         # out of range, but labels[:, 0] is never predicted
    return batch


def large():
    b, l, v = 2, 4, 12
    return {"logits": spread_logits(b, l, v, 1e4), "labels": torch.randint(0, v, (b, l))}


def masked_vocab_shifted():
    batch = masked_vocab()   # labels[b, t] avoid the -inf entries of logits[b, t]
    # SFT scores logits[:, t] against labels[:, t + 1]: shift the labels right by one.
    labels = torch.cat([torch.zeros(2, 1, dtype=I64), batch["labels"][:, :-1]], dim=1)
    return {"logits": batch["logits"], "labels": labels}


def nan_logits():
    batch = batch_of(2, 4, 5)
    batch["logits"][1, 3, 2] = math.nan   # the last position: its logits are never scored, still rejected
    return batch


CASES = [
    FloatCase("random-1", f"{WHAT}, random shapes, right padding labelled -100", {}, random_batch),
    FloatCase("random-2", f"{WHAT}, random shapes, right padding labelled -100", {}, random_batch),
    FloatCase("random-3", f"{WHAT}, random shapes, right padding labelled -100", {}, random_batch),
    FloatCase("every-label-kept", f"{WHAT}, no -100 label (DeepSpeed-Chat step 1 without padding)", {},
              lambda: batch_of(2, 5, 11)),
    FloatCase("prompt-ignored", f"{WHAT}, prompt and padding labelled -100 (align-anything's SFT labels)", {},
              lambda: batch_of(3, 8, 13, prompt_lengths=[3, 2, 4], answer_lengths=[8, 6, 7])),
    FloatCase("ignore-index-0", f"{WHAT}, ignore_index 0", {"ignore_index": 0}, custom_ignore),
    FloatCase("first-label-unused", f"{WHAT}, labels[:, 0] = 1000 is out of range but never predicted", {},
              first_label_unused),
    FloatCase("logits-1e4", f"{WHAT}, logits of magnitude 1e4, entries well apart", {}, large),
    FloatCase("masked-vocab-neg-inf", f"{WHAT}, -inf logits for masked vocabulary entries (never the label)",
              {}, masked_vocab_shifted),
    FloatCase("single-position", f"{WHAT}, B=1, L=2, V=3: one label counted", {},
              lambda: {"logits": torch.tensor([[[0.5, -1.0, 2.0], [9.0, 9.0, 9.0]]], dtype=F64),
                       "labels": torch.tensor([[-100, 1]])}),

    ErrorCase("no-label-left", "every label in labels[:, 1:] is ignore_index (the mean would be 0/0)", {},
              lambda: batch_of(2, 5, 7, answer_lengths=[1, 1])),
    ErrorCase("single-token", "L = 1 leaves no label to predict", {}, lambda: batch_of(2, 1, 7)),
    ErrorCase("label-too-large", "a label equals V", {},
              lambda: {"logits": torch.randn(1, 3, 5, dtype=F64), "labels": torch.tensor([[0, 1, 5]])}),
    ErrorCase("label-negative", "a label is negative and not ignore_index", {},
              lambda: {"logits": torch.randn(1, 3, 5, dtype=F64), "labels": torch.tensor([[0, -1, 2]])}),
    ErrorCase("labels-shape", "labels [B,L+1] do not match logits [B,L,V]", {},
              lambda: {"logits": torch.randn(2, 3, 5, dtype=F64), "labels": torch.randint(0, 5, (2, 4))}),
    ErrorCase("nan-logits", "NaN in logits (at the last position, which is never scored)", {}, nan_logits,
              also_f32=True),
]

STAGE = Stage("sft_loss", sft_loss, CASES, catalog_prefixes=(WHAT,))
