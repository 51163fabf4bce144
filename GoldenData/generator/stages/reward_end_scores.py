"""Stage reward_end_scores: the reward model's score of each sequence.

Re-implements DeepSpeed-Chat dschat/utils/model/reward_model.py :: RewardModel.forward_value
(its chosen_end_scores): the value just before the first pad after the prompt,
or the last value when the answer has no pad.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, close_to, pad_to, randint, random_params_case, rows_tensor, tokens
from ..fixture_format import F64
from ..reference import need, need_float, need_ids, need_shape


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


# ---- cases ----

WHAT = "DeepSpeed-Chat RewardModel.forward_value chosen_end_scores semantics"


def batch_of(rows):
    ids = rows_tensor(rows)
    return {"input_ids": ids, "values": torch.randn(ids.shape, dtype=F64)}


def seed000():
    return {
        "input_ids": rows_tensor([[101, 2009, 2003, 103, 0, 0], [101, 1996, 3075, 102, 0, 0]]),
        "values": torch.tensor([[0.1, 0.3, 0.5, 0.7, -0.2, -0.2], [0.2, 0.4, 0.6, 0.8, -0.1, -0.1]], dtype=F64),
    }


def seed000_check(out):
    close_to(out["end_scores"], [0.7, 0.8])


def random_batch():
    b, L = randint(1, 4), randint(4, 12)
    pad_id = [0, 2][randint(0, 1)]
    prompt_length = randint(2, L - 1)
    rows = []
    for _ in range(b):
        left = randint(0, prompt_length - 1)
        prompt = [pad_id] * left + tokens(prompt_length - left)
        rows.append(pad_to(prompt + tokens(randint(0, L - prompt_length)), L, pad_id))
    batch = batch_of(rows)
    batch["_params"] = {"pad_id": pad_id, "prompt_length": prompt_length}
    return batch


def error_batch():
    return batch_of([[5, 6, 7, 8, 0, 0], [5, 6, 9, 0, 0, 0]])


def nan_values():
    batch = error_batch()
    batch["values"][1, 5] = math.nan   # in the padding, never read
    return batch


CASES = [
    FloatCase("seed000-inputs", f"{WHAT}, on seed 000's worked example inputs "
              "(shared/seeds/000_699b68a8a39f82f2.txt); expected [0.7, 0.8]", {"pad_id": 0, "prompt_length": 2},
              seed000, check=seed000_check),
    FloatCase("left-padded-prompt", f"{WHAT}, prompts left-padded with pad_id (ignored: the search starts "
              "at prompt_length)", {"pad_id": 0, "prompt_length": 4},
              lambda: batch_of([[0, 0, 5, 6, 7, 8, 0, 0, 0], [0, 5, 6, 7, 8, 9, 10, 0, 0],
                                [5, 6, 7, 8, 9, 0, 0, 0, 0]])),
    FloatCase("no-padding", f"{WHAT}, a row without padding runs to L (score at L-1)",
              {"pad_id": 0, "prompt_length": 3},
              lambda: batch_of([[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9, 0, 0]])),
    FloatCase("pad-right-after-prompt", f"{WHAT}, empty answer: the pad right after the prompt puts the "
              "score on the last prompt token", {"pad_id": 0, "prompt_length": 3},
              lambda: batch_of([[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 0, 0]])),
    FloatCase("opt-style", f"{WHAT}, OPT style BOS == PAD == 2 at position 0 (inside the prompt, ignored)",
              {"pad_id": 2, "prompt_length": 3},
              lambda: batch_of([[2, 5, 6, 7, 8, 2, 2, 2], [2, 5, 6, 9, 10, 11, 12, 13], [2, 2, 5, 14, 2, 2, 2, 2]])),
    FloatCase("first-pad-wins", f"{WHAT}, tokens after a pad in the answer: the first pad ends it",
              {"pad_id": 0, "prompt_length": 2},
              lambda: batch_of([[5, 6, 7, 0, 8, 9, 0], [5, 6, 7, 8, 0, 9, 0]])),
    FloatCase("answer-one-position", f"{WHAT}, prompt_length = L-1 (one answer position)",
              {"pad_id": 0, "prompt_length": 4},
              lambda: batch_of([[5, 6, 7, 8, 9], [0, 6, 7, 8, 0]])),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, left-padded prompts, random answer lengths",
                         random_batch) for k in (1, 2, 3)],

    ErrorCase("prompt-length-1", "prompt_length 1 (< 2)", {"pad_id": 0, "prompt_length": 1}, error_batch),
    ErrorCase("prompt-length-at-L", "prompt_length = L leaves no answer position",
              {"pad_id": 0, "prompt_length": 6}, error_batch),
    ErrorCase("prompt-length-beyond-L", "prompt_length > L", {"pad_id": 0, "prompt_length": 8}, error_batch),
    ErrorCase("values-shape", "values [B,L+1] do not match input_ids [B,L]", {"pad_id": 0, "prompt_length": 2},
              lambda: {"input_ids": rows_tensor([[5, 6, 7, 0], [5, 6, 0, 0]]),
                       "values": torch.randn(2, 5, dtype=F64)}),
    ErrorCase("nan-values", "NaN in values (in the padding, never read)", {"pad_id": 0, "prompt_length": 2},
              nan_values, also_f32=True),
]

STAGE = Stage("reward_end_scores", reward_end_scores, CASES, catalog_prefixes=(WHAT,))
