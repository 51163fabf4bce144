"""Stage reward_end_scores_seqcls: the score a sequence-classification head pools.

Re-implements transformers src/transformers/modeling_layers.py ::
GenericForSequenceClassification.forward (the head of
AutoModelForSequenceClassification(num_labels=1), which TRL's RewardTrainer
trains), with the pooling rule of transformers PR #35911: per row, the last
position whose id is not pad_token_id; a row of pad ids only gets 0 (the peer's
argmax over all zeros); pad_token_id None only for a batch of one row, scored at
L - 1. The attention mask plays no part.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, pad_to, randint, rows_tensor, tokens
from ..fixture_format import EXACT_TOL, F64, I64
from ..reference import need, need_float, need_ids, need_shape

GPT2_EOS = 50256   # the seed article's model: GPT-2, whose pad is set to its EOS


def reward_end_scores_seqcls(inp, prm):
    ids, scores = inp["input_ids"], inp["scores"]
    pad = prm["pad_token_id"]
    need_ids("input_ids", ids)
    need(ids.dim() == 2, "input_ids must be [B,L]")
    need_shape("scores", scores, ids.shape)
    batch, length = ids.shape
    need(length >= 1, "input_ids has no position (the peer's argmax over none raises)")
    if pad is None:
        need(batch == 1, "pad_token_id is None: only a batch of one row can be scored")
        ends = [length - 1]
    else:
        ends = []
        for b in range(batch):
            kept = (ids[b] != pad).nonzero().flatten().tolist()
            ends.append(kept[-1] if kept else 0)
    need_float("scores", scores)
    end_index = torch.tensor(ends, dtype=I64).reshape(batch)
    return {"end_index": end_index, "end_scores": scores[torch.arange(batch), end_index]}


# ---- cases ----

WHAT = "transformers GenericForSequenceClassification.forward pooling semantics (last non-pad token, PR #35911)"


def batch_of(rows):
    ids = rows_tensor(rows)
    return {"input_ids": ids, "scores": torch.randn(ids.shape, dtype=F64)}


def case(name, what, params, build):
    return FloatCase(name, f"{WHAT}, {what}", params, build, tolerance=EXACT_TOL)


def trl_article_batch():
    # pad = eos = 50256. Row 0: text + the EOS RewardTrainer appends, then pads (EOS too).
    # Row 1: an EOS inside the prompt (an ordinary token) and the appended EOS.
    # Row 2: the appended EOS is the last position: it still counts as padding.
    e = GPT2_EOS
    return batch_of([[464, 3290, 318, 257, e, e, e, e],
                     [464, e, 318, 1049, 3797, 13, e, e],
                     [40, 588, 340, 13, 9, 8, 11, e]])


def random_batch():
    b, length = randint(1, 4), randint(2, 12)
    pad = [0, GPT2_EOS][randint(0, 1)]
    rows = []
    for _ in range(b):
        left = randint(0, 2)
        body = tokens(randint(0, length - left))
        rows.append(pad_to([pad] * left + body, length, pad))
    batch = batch_of(rows)
    batch["_params"] = {"pad_token_id": pad}
    return batch


def nan_at_pad():
    batch = batch_of([[5, 6, 7, 0, 0], [5, 6, 0, 0, 0]])
    batch["scores"][1, 4] = math.nan
    return batch


CASES = [
    case("right-padded", "right-padded rows, pad 0", {"pad_token_id": 0},
         lambda: batch_of([[5, 6, 7, 8, 0, 0, 0], [5, 6, 0, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10, 0]])),
    case("left-padded", "left-padded rows, pad 0: every row ends at L-1", {"pad_token_id": 0},
         lambda: batch_of([[0, 0, 5, 6, 7, 8], [0, 0, 0, 0, 5, 6], [0, 5, 6, 7, 8, 9]])),
    case("pad-equals-eos-trl-article", "pad == eos = 50256 (the seed article's GPT-2 setup, RewardTrainer appends "
         "an EOS): the trailing EOS counts as padding and the token before it is scored; an EOS inside the prompt "
         "is an ordinary token", {"pad_token_id": GPT2_EOS}, trl_article_batch),
    case("no-padding", "rows that fill L (no pad) beside a padded row", {"pad_token_id": 0},
         lambda: batch_of([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0], [9, 8, 7, 6, 5]])),
    case("pad-inside-row", "pad ids inside a row are skipped: the last non-pad token counts", {"pad_token_id": 0},
         lambda: batch_of([[5, 0, 6, 0, 0, 0], [0, 5, 0, 6, 7, 0], [5, 6, 0, 0, 0, 7]])),
    case("all-pad-row", "a row of pad ids only gets index 0 (argmax over zeros), beside normal rows",
         {"pad_token_id": 0}, lambda: batch_of([[5, 6, 7, 0, 0], [0, 0, 0, 0, 0], [5, 6, 0, 0, 0]])),
    case("only-first-token", "a row whose only non-pad id is at position 0 (index 0, like an all-pad row)",
         {"pad_token_id": 2}, lambda: batch_of([[7, 2, 2, 2], [2, 2, 2, 2], [7, 8, 9, 2]])),
    case("single-position", "L = 1: index 0 whether the id is a pad or not", {"pad_token_id": 0},
         lambda: batch_of([[5], [0]])),
    case("pad-null-one-row", "pad_token_id null and one row: end_index = L-1 (even where the last id is the EOS)",
         {"pad_token_id": None}, lambda: batch_of([[464, 3290, 318, GPT2_EOS, GPT2_EOS]])),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, pad 0 or 50256, left and right padding", None, random_batch,
                tolerance=EXACT_TOL) for k in (1, 2, 3)],

    ErrorCase("pad-null-two-rows", "pad_token_id null with more than one row (peer: ValueError)",
              {"pad_token_id": None}, lambda: batch_of([[5, 6, 7], [5, 6, 0]])),
    ErrorCase("scores-shape", "scores [B,L+1] do not match input_ids [B,L]", {"pad_token_id": 0},
              lambda: {"input_ids": rows_tensor([[5, 6, 0], [5, 0, 0]]), "scores": torch.randn(2, 4, dtype=F64)}),
    ErrorCase("zero-length", "input_ids [B,0]: no position to pool (peer: argmax over nothing raises)",
              {"pad_token_id": 0},
              lambda: {"input_ids": torch.zeros(2, 0, dtype=I64), "scores": torch.zeros(2, 0, dtype=F64)}),
    ErrorCase("nan-scores-at-pad", "NaN in scores at a pad position, never read", {"pad_token_id": 0}, nan_at_pad,
              also_f32=True),
]

STAGE = Stage("reward_end_scores_seqcls", reward_end_scores_seqcls, CASES, catalog_prefixes=(WHAT,))
