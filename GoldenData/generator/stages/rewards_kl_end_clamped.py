"""Stage rewards_kl_end_clamped: align-anything's per-token PPO rewards.

Re-implements align-anything align_anything/trainers/text_to_text/ppo.py ::
PPOTrainer.add_kl_divergence_regularization (snapshot 3f9decc221be): the penalty
-kl_coeff * (log_probs - ref_log_probs) at every position; each row's score added
at e_b, the last position whose sequence_mask is not 0, looked for over the whole
row (prompt included); then every position's total clamped to
[-clip_range_score, clip_range_score], so the clamp bites on KL terms and on
score + KL at e_b. Nothing is masked. A row with no 1 in its mask is an error
(the peer's index into an empty nonzero() raises).
"""

import math

import torch

from ..cases import (ErrorCase, FloatCase, Stage, attention_rows, close_to, log_prob_like, mutated, randint,
                     random_params_case, rows_tensor)
from ..fixture_format import F64, V11_TOL
from ..reference import (need, need_float, need_mask, need_no_nan_result, need_shape, same_float_dtype,
                         with_defaults)

DEFAULTS = {"kl_coeff": 0.02, "clip_range_score": 50.0}   # align-anything configs/train/text_to_text/ppo.yaml


def score_positions(sequence_mask):
    """e_b per row: the highest index where the mask is not 0, prompt part included."""
    need(sequence_mask.shape[0] > 0, "sequence_mask has no row (the peer concatenates no end index and raises)")
    positions = []
    for b, row in enumerate(sequence_mask):
        attended = (row != 0).nonzero().flatten().tolist()
        need(len(attended) > 0, f"row {b} of sequence_mask is all zero: nowhere to put the score")
        positions.append(attended[-1])
    return positions


def end_clamped_rewards(reward, log_probs, ref_log_probs, sequence_mask, kl_coeff, clip_range_score):
    """The KL penalty everywhere, plus the score at e_b, each total clamped to +-clip_range_score."""
    penalty = (log_probs - ref_log_probs) * (-kl_coeff)   # -kl_coeff: a Python float, as in the peer
    rows = torch.arange(log_probs.shape[0])
    ends = torch.tensor(score_positions(sequence_mask), dtype=torch.int64)
    totals = penalty.clone()
    totals[rows, ends] = penalty[rows, ends] + reward
    return torch.clamp(totals, -clip_range_score, clip_range_score)


def check_reward_inputs(inp):
    """Shapes, dtypes and mask of the stage's four inputs; returns (B, N)."""
    lp = inp["log_probs"]
    need(lp.dim() == 2, "log_probs must be [B,N]")
    need_shape("ref_log_probs", inp["ref_log_probs"], lp.shape)
    need_shape("sequence_mask", inp["sequence_mask"], lp.shape)
    need_shape("reward", inp["reward"], lp.shape[:1])
    for name in ("reward", "log_probs", "ref_log_probs"):
        need_float(name, inp[name])
    same_float_dtype(reward=inp["reward"], log_probs=lp, ref_log_probs=inp["ref_log_probs"])
    need_mask("sequence_mask", inp["sequence_mask"])
    return lp.shape


def check_coefficients(prm):
    need(math.isfinite(prm["kl_coeff"]), "kl_coeff must be finite")
    need(math.isfinite(prm["clip_range_score"]) and prm["clip_range_score"] >= 0,
         "clip_range_score must be finite and >= 0")


def rewards_kl_end_clamped(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    check_reward_inputs(inp)
    check_coefficients(prm)
    rewards = end_clamped_rewards(inp["reward"], inp["log_probs"], inp["ref_log_probs"], inp["sequence_mask"],
                                  prm["kl_coeff"], prm["clip_range_score"])
    need_no_nan_result("rewards", rewards)
    return {"rewards": rewards}


# ---- cases ----

WHAT = "align-anything PPOTrainer.add_kl_divergence_regularization semantics"


def sequence_mask_of(length, prompt_length, answer_lengths, left_pads=None):
    """attention_mask[:, 1:] of prompts (left-padded by left_pads) and right-padded answers."""
    return attention_rows(length, prompt_length, answer_lengths, left_pads)[:, 1:].clone()


def batch_on(sequence_mask, scores=None, spread=0.3):
    b, n = sequence_mask.shape
    lp = log_prob_like(b, n)
    return {"reward": torch.tensor(scores, dtype=F64) if scores else torch.randn(b, dtype=F64) * 2.0,
            "log_probs": lp, "ref_log_probs": lp + torch.randn(b, n, dtype=F64) * spread,
            "sequence_mask": sequence_mask}


def from_ids(ids, pad_id):
    """align-anything's PPO mask: attention_mask = ids != pad, then [:, 1:]."""
    return batch_on((rows_tensor(ids) != pad_id).to(torch.int64)[:, 1:].clone())


def with_hole():
    # Row 0: a 0 inside the answer, the score still on the last 1; row 1: holes in the prompt part.
    mask = sequence_mask_of(9, 3, [5, 4])
    mask[0, 4] = 0
    mask[1, 0] = 0
    return batch_on(mask)


def clamp_bites():
    # kl_coeff 0.5, C = 1: KL terms beyond +-1 are clamped; at e_b a score inside +-C plus
    # its KL term goes past C and is clamped as a total.
    mask = sequence_mask_of(7, 2, [4, 3])
    lp = torch.tensor([[-1.0, -0.5, -2.0, -0.25, -1.5, -3.0], [-0.75, -1.25, -0.5, -2.5, -1.0, -0.5]], dtype=F64)
    d = torch.tensor([[-3.0, 2.5, -0.5, 1.0, -0.75, 4.0], [0.5, -2.0, 3.0, -0.5, 1.5, -3.5]], dtype=F64)
    return {"reward": torch.tensor([0.875, -0.625], dtype=F64), "log_probs": lp, "ref_log_probs": lp - d,
            "sequence_mask": mask}


def defaults_clamp():
    # Default C = 50: scores of +-60 are clamped with their KL term.
    return batch_on(sequence_mask_of(8, 3, [3, 5]), scores=[60.0, -70.0])


def bool_mask():
    batch = batch_on(sequence_mask_of(8, 3, [2, 5, 4]))
    batch["sequence_mask"] = batch["sequence_mask"].bool()
    return batch


def toy():
    # peer-conventions section 11: L = 7, P = 2, three answer tokens; d = log_probs - ref_log_probs.
    d = torch.tensor([[0.0, 0.1, -0.2, 0.3, 0.5, -0.4]], dtype=F64)
    return {"reward": torch.tensor([1.0], dtype=F64), "log_probs": d - 2.0,
            "ref_log_probs": torch.full((1, 6), -2.0, dtype=F64), "sequence_mask": rows_tensor([[1, 1, 1, 1, 0, 0]])}


def toy_check(out):
    # e = 3: -0.1 * 0.3 + 1.0; the pads keep their KL terms (nothing masked here).
    close_to(out["rewards"], [0.0, -0.01, 0.02, 0.97, -0.05, 0.04])


def random_batch():
    b, length = randint(1, 4), randint(3, 12)
    prompt_length = randint(1, length - 1)
    answers = [randint(0, length - prompt_length) for _ in range(b)]
    lefts = [randint(0, prompt_length - 1) for _ in range(b)]
    if prompt_length == 1:
        answers = [max(n, 1) for n in answers]   # a one-token prompt has no action of its own
    batch = batch_on(sequence_mask_of(length, prompt_length, answers, lefts))
    batch["reward"] = torch.randn(b, dtype=F64) * 6.0
    batch["_params"] = {"kl_coeff": [0.02, 0.1, 0.5][randint(0, 2)], "clip_range_score": [50.0, 5.0, 1.0][randint(0, 2)]}
    return batch


def error_batch():
    return batch_on(sequence_mask_of(7, 3, [2, 4]))


def inf_minus_inf(batch):
    batch["log_probs"][0, 1] = math.inf
    batch["ref_log_probs"][0, 1] = math.inf


PARAMS = {"kl_coeff": 0.05, "clip_range_score": 50.0}

CASES = [
    FloatCase("right-padded-answers", f"{WHAT}, right-padded answers of different lengths: the score on the "
              "last attended action", PARAMS, lambda: batch_on(sequence_mask_of(10, 4, [2, 4, 5]))),
    FloatCase("pad-equals-eos", f"{WHAT}, mask ids != pad with pad == eos = 2: the EOS is not attended, the score "
              "sits on the action that produced the token before it", PARAMS,
              lambda: from_ids([[7, 8, 9, 11, 12, 2, 2, 2], [7, 8, 9, 13, 2, 2, 2, 2]], pad_id=2)),
    FloatCase("pad-differs-from-eos", f"{WHAT}, mask ids != pad with pad 0, eos 2: the EOS is attended and the "
              "score sits on the action that produced it", PARAMS,
              lambda: from_ids([[7, 8, 9, 11, 12, 2, 0, 0], [7, 8, 9, 13, 2, 0, 0, 0]], pad_id=0)),
    FloatCase("full-length-answer", f"{WHAT}, an answer that fills the row: the score on the last position N-1",
              PARAMS, lambda: batch_on(sequence_mask_of(8, 3, [5, 2]))),
    FloatCase("empty-answer-row", f"{WHAT}, a row with an empty answer: the score on the last prompt action, "
              "before start", PARAMS, lambda: batch_on(sequence_mask_of(8, 3, [0, 4]))),
    FloatCase("left-padded-prompts", f"{WHAT}, left-padded prompts (zeros at the start of the mask)", PARAMS,
              lambda: batch_on(sequence_mask_of(11, 5, [3, 6, 2], left_pads=[2, 0, 4]))),
    FloatCase("mask-with-hole", f"{WHAT}, a 0 inside an answer and a 0 in a prompt: the score still on the last "
              "1 of the row", PARAMS, with_hole),
    FloatCase("clamp-hits-kl-and-total", f"{WHAT}, kl_coeff 0.5, clip_range_score 1: KL terms beyond +-1 "
              "clamped, and at e_b score + KL clamped together (scores 0.875, -0.625 inside the clip)",
              {"kl_coeff": 0.5, "clip_range_score": 1.0}, clamp_bites),
    FloatCase("default-params", f"{WHAT}, params left out (kl_coeff 0.02, clip_range_score 50), scores 60 and "
              "-70 clamped with their KL term", {}, defaults_clamp),
    FloatCase("bool-mask", f"{WHAT}, the mask given as bool", PARAMS, bool_mask),
    FloatCase("peer-toy", f"{WHAT}, on the toy inputs of shared/reference/peer-conventions.md section 11 with "
              "kl_coeff 0.1 (AA rewards -0.01, 0.02, 0.97 at t = 1..3, KL terms kept on the pads)",
              {"kl_coeff": 0.1, "clip_range_score": 50.0}, toy, check=toy_check),
    *[random_params_case(f"random-{k}", f"{WHAT}, random shapes, left padding, answer lengths (empty ones too), "
                         "kl_coeff, clip_range_score", random_batch) for k in (1, 2, 3)],

    ErrorCase("all-zero-row", "a row of sequence_mask is all zero (the peer's nonzero()[-1] raises an IndexError)",
              PARAMS, mutated(error_batch, lambda b: b["sequence_mask"][1].zero_())),
    ErrorCase("ref-log-probs-shape", "ref_log_probs [B,N+1] do not match log_probs [B,N]", PARAMS,
              mutated(error_batch, lambda b: b.update(ref_log_probs=torch.cat(
                  [b["ref_log_probs"], b["ref_log_probs"][:, :1]], dim=1)))),
    ErrorCase("reward-length", "reward has B+1 entries", PARAMS,
              mutated(error_batch, lambda b: b.update(reward=torch.cat([b["reward"], b["reward"][:1]])))),
    ErrorCase("sequence-mask-shape", "sequence_mask [B,N+1] (the whole attention_mask) does not match log_probs "
              "[B,N]", PARAMS, mutated(error_batch, lambda b: b.update(
                  sequence_mask=torch.cat([torch.ones(2, 1, dtype=torch.int64), b["sequence_mask"]], dim=1)))),
    ErrorCase("mask-value-2", "sequence_mask holds a 2", PARAMS,
              mutated(error_batch, lambda b: b["sequence_mask"].__setitem__((0, 3), 2))),
    ErrorCase("nan-ref-log-probs-masked", "NaN in ref_log_probs at a position whose sequence_mask is 0", PARAMS,
              mutated(error_batch, lambda b: b["ref_log_probs"].__setitem__((0, 5), math.nan)), also_f32=True),
    ErrorCase("inf-minus-inf", "log_probs and ref_log_probs both +inf at one position: the KL term inf - inf is "
              "NaN in the peer", PARAMS, mutated(error_batch, inf_minus_inf)),
]

STAGE = Stage("rewards_kl_end_clamped", rewards_kl_end_clamped, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
