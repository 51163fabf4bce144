"""Stage rewards_kl_first_pad: TRL PPO's rollout, from the generated responses to
the per-token rewards.

Re-implements TRL trl/experimental/ppo/ppo_trainer.py :: PPOTrainer.train, the
rollout steps "Response Processing 1-3", "4. compute rewards" and "5. whiten
rewards" (with truncate_response and trl/experimental/utils.py ::
first_true_indices), TRL snapshot f2cd57710ae3, in response coordinates:

- when a stop token is set, everything after a row's first stop token becomes pad;
- a row's sequence length is the index of its first pad minus one (T - 1 without
  a pad, -1 when it starts with one);
- with a missing-EOS penalty, rows without eos_token_id (after truncation) lose it;
- past the sequence length both log-prob tensors hold 1.0 (TRL's INVALID_LOGPROB),
  past the next position the values hold 0;
- kl is k1 (-logr) or k3 (e^logr - 1 - logr) of logr = ref - logprob, the
  non-score reward -kl_coef * kl, and the score goes one past the last response
  position (its last position for a row without padding);
- optionally the rewards are whitened over the positions up to one past the
  response (mean kept) and zeroed beyond.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, log_prob_like, mutated, randint
from ..fixture_format import F64, I64, V11_TOL
from ..reference import GoldenError, need, need_float, need_ids, need_shape, same_float_dtype
from .masked_whiten import whiten

INVALID_LOGPROB = 1.0
ROLLOUT_FLOATS = ["logprobs", "ref_logprobs", "values"]


def first_index_where(bools):
    """Per row, the first column where `bools` holds, or the row length."""
    length = bools.shape[-1]
    columns = torch.arange(length).expand_as(bools)
    return torch.where(bools, columns, torch.full_like(columns, length)).min(dim=-1).values


def check_rollout_inputs(inp):
    responses = inp["responses"]
    need_ids("responses", responses)
    need(responses.dim() == 2, "responses must be [B,T]")
    need(responses.shape[1] >= 1, "responses need at least one position")
    for name in ROLLOUT_FLOATS:
        need_shape(name, inp[name], responses.shape)
    need_shape("scores", inp["scores"], (responses.shape[0],))
    for name in ROLLOUT_FLOATS + ["scores"]:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in ROLLOUT_FLOATS + ["scores"]})


def rollout(inp, prm):
    """Every tensor of the rollout, by name (the joint stage reads several)."""
    check_rollout_inputs(inp)
    estimator = prm.get("kl_estimator", "k1")
    need(estimator in ("k1", "k3"), f"kl_estimator {estimator!r} is neither k1 nor k3")
    responses, scores = inp["responses"], inp["scores"].clone()
    pad, eos, stop = prm["pad_token_id"], prm["eos_token_id"], prm.get("stop_token_id")
    length = responses.shape[1]
    columns = torch.arange(length).unsqueeze(0)

    truncated = responses
    if stop is not None:
        after_stop = columns > first_index_where(responses == stop).unsqueeze(1)
        truncated = responses.masked_fill(after_stop, pad)
    sequence_lengths = first_index_where(truncated == pad) - 1

    penalty = prm.get("missing_eos_penalty")
    if penalty is not None:
        holds_eos = (truncated == eos).any(dim=-1)
        scores = torch.where(holds_eos, scores, scores - penalty)

    padding_mask = columns > sequence_lengths.unsqueeze(1)
    padding_mask_p1 = columns > (sequence_lengths + 1).unsqueeze(1)
    logprobs = inp["logprobs"].masked_fill(padding_mask, INVALID_LOGPROB)
    ref_logprobs = inp["ref_logprobs"].masked_fill(padding_mask, INVALID_LOGPROB)
    masked_values = inp["values"].masked_fill(padding_mask_p1, 0.0)

    logr = ref_logprobs - logprobs
    kl = -logr if estimator == "k1" else (logr.exp() - 1) - logr
    non_score_reward = -prm.get("kl_coef", 0.05) * kl
    rewards = non_score_reward.clone()
    one_past = sequence_lengths + 1
    score_at = torch.where(one_past < length, one_past, sequence_lengths)
    rows = torch.arange(responses.shape[0])
    rewards[rows, score_at] = rewards[rows, score_at] + scores
    if prm.get("whiten_rewards", False):
        rewards = whiten(rewards, ~padding_mask_p1, shift_mean=False).masked_fill(padding_mask_p1, 0.0)
    return {
        "sequence_lengths": sequence_lengths,
        "padding_mask": padding_mask,
        "padding_mask_p1": padding_mask_p1,
        "penalized_scores": scores,
        "kl": kl,
        "non_score_reward": non_score_reward,
        "rewards": rewards,
        "masked_values": masked_values,
        "logprobs": logprobs,
    }


OUTPUTS = ["sequence_lengths", "padding_mask", "padding_mask_p1", "penalized_scores", "kl", "non_score_reward",
           "rewards", "masked_values"]


def rewards_kl_first_pad(inp, prm):
    out = rollout(inp, prm)
    return {name: out[name] for name in OUTPUTS}


# ---- building responses ----

PAD_NE_EOS = {"pad_token_id": 0, "eos_token_id": 1}
PAD_EQ_EOS = {"pad_token_id": 1, "eos_token_id": 1}


def content_tokens(n, vocabulary, avoid):
    """n random ids in [2, vocabulary) that are not in `avoid`."""
    allowed = [v for v in range(2, vocabulary) if v not in avoid]
    return [allowed[i] for i in torch.randint(0, len(allowed), (n,)).tolist()]


def response_row(length, content, ids, vocabulary=9, eos=True, avoid=()):
    """`content` random tokens, then the EOS when `eos`, then pads up to `length`."""
    pad, eos_id = ids["pad_token_id"], ids["eos_token_id"]
    row = content_tokens(content, vocabulary, {pad, eos_id, *avoid}) + ([eos_id] if eos else [])
    assert len(row) <= length
    return row + [pad] * (length - len(row))


def rollout_tensors(rows):
    """The float inputs that go with the response rows (any values at padding)."""
    b, t = len(rows), len(rows[0])
    logprobs = log_prob_like(b, t)
    return {
        "responses": torch.tensor(rows, dtype=I64),
        "logprobs": logprobs,
        "ref_logprobs": logprobs + torch.randn(b, t, dtype=F64) * 0.3,
        "values": torch.randn(b, t, dtype=F64),
        "scores": torch.randn(b, dtype=F64) * 2.0,
    }


def from_rows(make_rows):
    return lambda: rollout_tensors(make_rows())


def pad_ne_eos_rows():
    ids = PAD_NE_EOS
    return [response_row(6, 2, ids), response_row(6, 1, ids), response_row(6, 4, ids), response_row(6, 5, ids)]


def pad_eq_eos_rows():
    ids = PAD_EQ_EOS
    return [response_row(6, 2, ids), response_row(6, 4, ids), response_row(6, 6, ids, eos=False),
            response_row(6, 0, ids)]


def missing_eos_pad_ne_eos_rows():
    ids = PAD_NE_EOS
    return [response_row(6, 3, ids, eos=False), response_row(6, 6, ids, eos=False), response_row(6, 1, ids)]


def stop_before_eos_rows():
    # stop token 5: row 0 stops before its EOS (truncation removes the EOS), row 1 has
    # its EOS before the stop token, row 2 starts with the stop token.
    ids = PAD_NE_EOS
    return [[3, 5, 7, 1, 0, 0], [4, 6, 1, 5, 3, 0], [5, 4, 4, 1, 0, 0]]


def stop_is_eos_rows():
    # TRL's stop_token="eos": tokens generated after the EOS are padded by truncation.
    return [[3, 1, 7, 8, 4, 3], [4, 6, 8, 1, 1, 5], [3, 4, 5, 6, 7, 8]]


def empty_and_one_token_rows():
    ids = PAD_NE_EOS
    return [response_row(4, 0, ids, eos=False), response_row(4, 0, ids), response_row(4, 1, ids, eos=False),
            response_row(4, 3, ids)]


def random_rollout():
    b, t = randint(1, 4), randint(1, 7)
    ids = dict(PAD_NE_EOS if randint(0, 1) else PAD_EQ_EOS)
    rows = []
    for _ in range(b):
        content = randint(0, t)
        rows.append(response_row(t, content, ids, eos=content < t and bool(randint(0, 3))))
    batch = rollout_tensors(rows)
    params = dict(ids)
    params["kl_coef"] = [0.05, 0.1, 0.02][randint(0, 2)]
    params["kl_estimator"] = ["k1", "k3"][randint(0, 1)]
    params["missing_eos_penalty"] = [None, 1.0, 0.5][randint(0, 2)]
    params["stop_token_id"] = [None, 1, 4][randint(0, 2)]
    params["whiten_rewards"] = bool(randint(0, 1))
    if params["whiten_rewards"]:
        try:
            rollout(batch, params)
        except GoldenError:  # fewer than two positions to whiten over
            params["whiten_rewards"] = False
    batch["_params"] = params
    return batch


def params(ids, **more):
    return {**ids, "stop_token_id": None, "missing_eos_penalty": None, "kl_coef": 0.05, "kl_estimator": "k1",
            "whiten_rewards": False, **more}


WHAT = "TRL PPOTrainer.train rollout semantics (truncation, first-pad lengths, EOS penalty, fills, KL, rewards)"


def case(name, what, prm, build):
    return FloatCase(name, f"{WHAT}, {what}", prm, build, tolerance=V11_TOL)


def error_batch():
    return rollout_tensors(pad_ne_eos_rows())


CASES = [
    case("pad-ne-eos", "pad 0, eos 1: the EOS is the last response position, the score lands on the pad after it; "
         "a full row ending in EOS takes the score on its last position", params(PAD_NE_EOS), from_rows(pad_ne_eos_rows)),
    case("pad-eq-eos", "pad == eos == 1: lengths stop before the EOS, the score lands on it; an empty row (-1) "
         "takes it at 0; a full row without EOS", params(PAD_EQ_EOS), from_rows(pad_eq_eos_rows)),
    case("missing-eos-penalty-pad-ne-eos", "missing_eos_penalty 1.0 with pad != eos: a padded row and a full row "
         "without EOS are penalized", params(PAD_NE_EOS, missing_eos_penalty=1.0),
         from_rows(missing_eos_pad_ne_eos_rows)),
    case("missing-eos-penalty-pad-eq-eos", "missing_eos_penalty 1.5 with pad == eos: every padded row counts as "
         "holding an EOS, only the full row without one is penalized", params(PAD_EQ_EOS, missing_eos_penalty=1.5),
         from_rows(pad_eq_eos_rows)),
    case("stop-token-before-eos", "stop_token_id 5 != eos: truncation after the first 5 drops a later EOS (then "
         "penalized), keeps an earlier one; a row starting with the stop token",
         params(PAD_NE_EOS, stop_token_id=5, missing_eos_penalty=1.0), from_rows(stop_before_eos_rows)),
    case("stop-token-is-eos", "stop_token_id = eos (TRL's stop_token='eos'): tokens generated after the EOS become "
         "pad", params(PAD_NE_EOS, stop_token_id=1, missing_eos_penalty=0.5), from_rows(stop_is_eos_rows)),
    case("empty-and-one-token", "an empty row (score at 0), a one-token EOS row, a one-token row without EOS, a full "
         "row", params(PAD_NE_EOS), from_rows(empty_and_one_token_rows)),
    case("single-position", "T = 1: a full row (score at 0 = T - 1) and an empty row (score at 0)",
         params(PAD_NE_EOS, kl_estimator="k3"), from_rows(lambda: [[4], [0], [1]])),
    case("k3", "the k3 estimator (e^logr - 1 - logr)", params(PAD_NE_EOS, kl_estimator="k3", kl_coef=0.1),
         from_rows(pad_ne_eos_rows)),
    case("whiten-rewards-k1", "whiten_rewards over j <= sequence_lengths + 1 (mean kept), then zeroed beyond",
         params(PAD_NE_EOS, whiten_rewards=True), from_rows(pad_ne_eos_rows)),
    case("whiten-rewards-k3-pad-eq-eos", "whiten_rewards with k3 and pad == eos",
         params(PAD_EQ_EOS, whiten_rewards=True, kl_estimator="k3"), from_rows(pad_eq_eos_rows)),
    case("defaults", "only pad_token_id and eos_token_id given (stop None, penalty None, kl_coef 0.05, k1, "
         "no whitening)", dict(PAD_NE_EOS), from_rows(pad_ne_eos_rows)),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, lengths, pad == eos or not, stop token, penalty, "
                "estimator, whitening", None, random_rollout, tolerance=V11_TOL) for k in (1, 2, 3)],

    ErrorCase("kl-estimator-k2", "kl_estimator 'k2' (TRL silently uses k3 for any name but 'k1')",
              params(PAD_NE_EOS, kl_estimator="k2"), error_batch),
    ErrorCase("whiten-one-position", "whiten_rewards with one position in ~padding_mask_p1 (an empty row, B = 1): "
              "the unbiased variance is NaN", params(PAD_NE_EOS, whiten_rewards=True),
              from_rows(lambda: [[0, 0, 0]])),
    ErrorCase("logprobs-shape", "logprobs [B,T+1] do not match responses [B,T]", params(PAD_NE_EOS),
              mutated(error_batch, lambda b: b.update(logprobs=torch.cat([b["logprobs"], b["logprobs"][:, :1]], 1)))),
    ErrorCase("scores-length", "scores has B-1 entries", params(PAD_NE_EOS),
              mutated(error_batch, lambda b: b.update(scores=b["scores"][:-1].clone()))),
    ErrorCase("empty-response-axis", "responses [B,0]: no position (TRL's first_true_indices reduces over nothing)",
              params(PAD_NE_EOS), lambda: rollout_tensors([[], []])),
    ErrorCase("nan-ref-logprobs-padded", "NaN in ref_logprobs at a padded position (the fill would hide it)",
              params(PAD_NE_EOS), mutated(error_batch, lambda b: b["ref_logprobs"].__setitem__((1, 5), math.nan)),
              also_f32=True),
]

STAGE = Stage("rewards_kl_first_pad", rewards_kl_first_pad, CASES, catalog_prefixes=(WHAT,))
