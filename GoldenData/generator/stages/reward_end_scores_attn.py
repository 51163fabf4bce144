"""Stage reward_end_scores_attn: align-anything's end score, at the last attended position.

Re-implements align-anything align_anything/models/llama.py :: AccustomedLlamaRewardModel.forward
(the same end-index rule in qwen2.py, opt.py and the other score models): per row,
the last position whose attention_mask is not 0, whatever the padding side and
with holes allowed; without a mask the batch must be one row, scored at L - 1.
The scores are gathered there (exactly: the fixture keeps its own dtype, where the
peer casts to float32 first).
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, randint, rows_tensor
from ..fixture_format import EXACT_TOL, F64, I64
from ..reference import need, need_float, need_mask, need_shape


def reward_end_scores_attn(inp, prm):
    scores, mask = inp["scores"], inp.get("attention_mask")
    need(scores.dim() == 2, "scores must be [B,L]")
    batch, length = scores.shape
    need(batch >= 1 and length >= 1, f"scores {list(scores.shape)} has no row or no position")
    if mask is None:
        need(batch == 1, "attention_mask is required when the batch has more than one row")
        ends = [length - 1]
    else:
        need_shape("attention_mask", mask, scores.shape)
        need_mask("attention_mask", mask)
        ends = []
        for b in range(batch):
            attended = [t for t in range(length) if bool(mask[b, t] != 0)]
            need(len(attended) > 0, f"row {b} of attention_mask attends to no position")
            ends.append(attended[-1])
    need_float("scores", scores)
    end_index = torch.tensor(ends, dtype=I64)
    return {"end_index": end_index, "end_scores": scores[torch.arange(batch), end_index]}


# ---- cases ----

WHAT = "align-anything AccustomedLlamaRewardModel.forward end_index / end_scores semantics"


def masked(rows, dtype=I64):
    mask = torch.tensor(rows, dtype=dtype)
    return {"scores": torch.randn(mask.shape, dtype=F64), "attention_mask": mask}


def pad_equals_eos_in_ppo():
    # eos = pad = 2; align-anything's PPO builds the mask as ids != pad, so the
    # trailing EOS is not attended, and an EOS inside the prompt becomes a hole.
    ids = rows_tensor([[5, 6, 7, 8, 9, 2, 2], [5, 2, 7, 8, 2, 2, 2], [5, 6, 7, 8, 9, 10, 2]])
    return {"scores": torch.randn(ids.shape, dtype=F64), "attention_mask": (ids != 2).to(I64)}


def random_batch():
    b, length = randint(1, 4), randint(2, 12)
    rows = []
    for _ in range(b):
        left = randint(0, length - 1)
        right = randint(0, length - 1 - left)
        row = [0] * left + [1] * (length - left - right) + [0] * right
        if randint(0, 2) == 0:   # a hole inside the attended span, when there is room
            inside = [t for t in range(left + 1, length - right - 1)]
            if inside:
                row[inside[randint(0, len(inside) - 1)]] = 0
        rows.append(row)
    return masked(rows)


def nan_where_masked():
    batch = masked([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    batch["scores"][0, 4] = math.nan
    return batch


def case(name, what, build):
    return FloatCase(name, f"{WHAT}, {what}", {}, build, tolerance=EXACT_TOL)


CASES = [
    case("right-padded", "right-padded rows, the tokenizer's mask covers the EOS (the EOS position is scored)",
         lambda: masked([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0]])),
    case("left-padded", "left-padded rows: every row ends at L-1",
         lambda: masked([[0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]])),
    case("left-prompt-right-answer", "left-padded prompts and right-padded answers (a PPO batch)",
         lambda: masked([[0, 0, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 0, 0, 0]])),
    case("holes", "holes inside the attended span: only the last 1 counts",
         lambda: masked([[1, 1, 0, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 0, 1, 0]])),
    case("full-length", "rows attended to the last position (the answer fills L) beside a padded row",
         lambda: masked([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])),
    case("one-attended-position", "rows with a single attended position (at 0, inside, at L-1)",
         lambda: masked([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1]])),
    case("no-mask-one-row", "no attention_mask and one row: end_index = L-1",
         lambda: {"scores": torch.randn(1, 6, dtype=F64)}),
    case("pad-equals-eos-ppo", "pad == eos = 2 and the PPO mask ids != pad: the trailing EOS is not attended, "
         "the token before it is scored; an EOS inside the prompt becomes a hole", pad_equals_eos_in_ppo),
    case("bool-mask", "the attention_mask given as bool",
         lambda: masked([[True, True, True, False], [False, True, True, True]], dtype=torch.bool)),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, padding on either side, holes", {}, random_batch,
                tolerance=EXACT_TOL) for k in (1, 2, 3)],

    ErrorCase("row-not-attended", "a row whose attention_mask is all 0 (peer: IndexError from nonzero()[-1])", {},
              lambda: masked([[1, 1, 0, 0], [0, 0, 0, 0]])),
    ErrorCase("no-mask-two-rows", "no attention_mask with more than one row (peer: ValueError)", {},
              lambda: {"scores": torch.randn(2, 4, dtype=F64)}),
    ErrorCase("attention-mask-shape", "attention_mask [B,L+1] does not match scores [B,L]", {},
              lambda: {"scores": torch.randn(2, 4, dtype=F64), "attention_mask": torch.ones(2, 5, dtype=I64)}),
    ErrorCase("mask-value-2", "attention_mask holds a 2", {}, lambda: masked([[1, 2, 0, 0], [1, 1, 1, 0]])),
    ErrorCase("empty-batch", "scores [0,L]: no row (peer: torch.cat of no end index raises)", {},
              lambda: {"scores": torch.zeros(0, 4, dtype=F64), "attention_mask": torch.ones(0, 4, dtype=I64)}),
    ErrorCase("nan-scores-masked", "NaN in scores at a position the mask leaves out", {}, nan_where_masked,
              also_f32=True),
]

STAGE = Stage("reward_end_scores_attn", reward_end_scores_attn, CASES, catalog_prefixes=(WHAT,))
