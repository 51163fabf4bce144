"""Stage reward_pairwise_loss: the reward model's pairwise ranking loss and end scores.

Re-implements DeepSpeed-Chat dschat/utils/model/reward_model.py :: RewardModel.forward:
per chosen/rejected pair, -logsigmoid(chosen - rejected) averaged over the window
from the first differing position to the later end, and each row's score read
just before its end; autograd's gradient with respect to the rewards.
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, close_to, pad_to, randint, random_params_case, rows_tensor, tokens
from ..fixture_format import F64
from ..reference import leaf, need, need_float, need_ids, need_shape


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


# ---- cases ----

WHAT = "DeepSpeed-Chat RewardModel.forward pairwise loss and end scores"
OPT = {"pad_id": 2, "num_padding_at_beginning": 1}
ZERO_PAD = {"pad_id": 0, "num_padding_at_beginning": 0}


def with_rewards(chosen, rejected, scale=1.0):
    ids = rows_tensor(chosen + rejected)
    return {"input_ids": ids, "rewards": torch.randn(ids.shape, dtype=F64) * scale}


def seed000():
    # Seed 000's worked-example rows, read as one chosen/rejected pair.
    return {
        "input_ids": rows_tensor([[101, 2009, 2003, 103, 0, 0], [101, 1996, 3075, 102, 0, 0]]),
        "rewards": torch.tensor([[0.1, 0.3, 0.5, 0.7, -0.2, -0.2], [0.2, 0.4, 0.6, 0.8, -0.1, -0.1]], dtype=F64),
    }


def seed000_check(out):
    close_to(out["loss"], [-F.logsigmoid(torch.tensor(-0.1, dtype=F64)).item()])
    close_to(out["chosen_mean_scores"], [0.7])
    close_to(out["rejected_mean_scores"], [0.8])


def opt_style():
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


def right_padded():
    L = 8
    chosen = [pad_to([5, 6, 7, 30, 31, 32, 33], L, 0), pad_to([8, 9, 40], L, 0)]
    rejected = [pad_to([5, 6, 7, 50], L, 0), pad_to([8, 9, 60, 61, 62], L, 0)]
    return with_rewards(chosen, rejected)


def identical():
    L = 8
    same = pad_to([2, 10, 11, 12, 13, 14], L, 2)
    chosen = [same, same, pad_to([2, 10, 20, 21], L, 2)]
    rejected = [same, same, pad_to([2, 10, 30, 31, 32], L, 2)]
    batch = with_rewards(chosen, rejected)
    batch["rewards"][3] = batch["rewards"][0]   # pair 0: identical ids and rewards -> ln 2
    return batch                                # pair 1: identical ids, different rewards


def identical_pad_first():
    # num_padding_at_beginning = 0 with an OPT-style BOS == PAD at position 0:
    # the end index is 0, so both scores are read at index -1 (the last element).
    L = 6
    a = pad_to([2, 10, 11, 12], L, 2)
    b = [2, 20, 21, 22, 23, 24]
    return with_rewards([a, b], [a, b])


def no_padding():
    chosen = [[5, 6, 7, 30, 31, 32, 33], [8, 9, 40, 41, 42, 43, 44]]
    rejected = [[5, 6, 7, 50, 51, 52, 53], [8, 9, 60, 61, 62, 63, 64]]
    return with_rewards(chosen, rejected)


def gap_800():
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


def shared_answer_prefix():
    L = 9
    chosen = [pad_to([2, 5, 6, 70, 71, 72, 73], L, 2), pad_to([2, 5, 80, 81, 82], L, 2)]
    rejected = [pad_to([2, 5, 6, 70, 71, 90], L, 2), pad_to([2, 5, 80, 81, 83, 84, 85, 86], L, 2)]
    return with_rewards(chosen, rejected)


def random_batch():
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


def nan_rewards():
    batch = with_rewards([[5, 6, 7, 0, 0, 0]], [[5, 8, 0, 0, 0, 0]])
    batch["rewards"][0, 5] = math.nan   # in the padding, outside the loss window [1, 3)
    return batch


CASES = [
    FloatCase("seed000-inputs", f"{WHAT}, on the input_ids/values of seed 000's worked example "
              "(shared/seeds/000_699b68a8a39f82f2.txt) read as one chosen/rejected pair", ZERO_PAD, seed000,
              check=seed000_check),
    FloatCase("opt-style", f"{WHAT}, OPT style BOS == PAD == 2 at position 0, pairs of different lengths, "
              "a chosen row with no trailing padding (end = L)", OPT, opt_style),
    FloatCase("right-padded", f"{WHAT}, pad 0, no leading pad, answers of different lengths", ZERO_PAD,
              right_padded),
    FloatCase("identical-pair", f"{WHAT}, identical ids with identical rewards (loss ln 2), identical ids "
              "with different rewards (window = last position only), and a normal pair", OPT, identical),
    FloatCase("identical-pair-end-zero", f"{WHAT}, identical pairs whose end index is 0 "
              "(BOS == PAD at position 0, num_padding_at_beginning 0): scores read at index -1, the last element",
              {"pad_id": 2, "num_padding_at_beginning": 0}, identical_pad_first),
    FloatCase("no-padding", f"{WHAT}, no padding anywhere (end = L)", ZERO_PAD, no_padding),
    FloatCase("reward-gap-800", f"{WHAT}, chosen - rejected rewards of +-800 (terms 0 and 800, finite)",
              ZERO_PAD, gap_800),
    FloatCase("shared-answer-prefix", f"{WHAT}, answers sharing their first tokens (divergence after the "
              "prompt)", OPT, shared_answer_prefix),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, random pad_id and num_padding_at_beginning",
                         random_batch) for k in (1, 2, 3)],

    ErrorCase("odd-rows", "input_ids has an odd number of rows", ZERO_PAD,
              lambda: {"input_ids": rows_tensor([[5, 6, 7, 0], [5, 8, 0, 0], [5, 9, 9, 0]]),
                       "rewards": torch.randn(3, 4, dtype=F64)}),
    ErrorCase("diverge-at-0", "a chosen/rejected pair differs at position 0", ZERO_PAD,
              lambda: with_rewards([[5, 6, 7, 0]], [[9, 6, 8, 0]])),
    ErrorCase("empty-loss-window", "both rows reach padding before they diverge, so the loss window "
              "[div, end) is empty (PyTorch gives NaN)", ZERO_PAD,
              lambda: with_rewards([[5, 6, 0, 7, 0, 0]], [[5, 6, 0, 8, 0, 0]])),
    ErrorCase("rewards-shape", "rewards [2B,L-1] do not match input_ids [2B,L]", ZERO_PAD,
              lambda: {"input_ids": rows_tensor([[5, 6, 7, 0], [5, 8, 0, 0]]),
                       "rewards": torch.randn(2, 3, dtype=F64)}),
    ErrorCase("nan-rewards", "NaN in rewards (in the padding, outside the loss window)", ZERO_PAD, nan_rewards,
              also_f32=True),
]

STAGE = Stage("reward_pairwise_loss", reward_pairwise_loss, CASES, catalog_prefixes=(WHAT,))
