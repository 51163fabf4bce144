"""Stage kto_loss: TRL's KTO loss and its APO-zero variant for unpaired data,
on sequence log-probs with precomputed reference log-probs, and the gradient.

Re-implements, from shared/spec/v1.1-zoo.md (`kto_loss`), TRL
trl/trainer/kto_trainer.py :: KTOTrainer._compute_loss (snapshot f2cd57710ae3)
and the batch-of-one refusal of KTOTrainer.__init__: h = policy - ref per
example; for kto the reference point z = max(0, mean(kl_logps - ref_kl_logps)),
detached (0 for apo_zero_unpaired); desirable losses 1 - sigmoid(beta (h - z))
(apo: 1 - sigmoid(beta h)), undesirable 1 - sigmoid(beta (z - h)) (apo:
sigmoid(beta h)); the weighted desirable losses come first, then the undesirable
ones; loss = their mean. The gradient is autograd's, with respect to policy_logps.
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, close_to, mutated, randint
from ..fixture_format import F64, I64, V11_TOL
from ..reference import leaf, need, need_float, need_mask, need_no_nan_result, need_shape, same_float_dtype, with_defaults

DEFAULTS = {"loss_type": "kto", "beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}
LOSS_TYPES = ("kto", "apo_zero_unpaired")
KL_INPUTS = ["kl_logps", "ref_kl_logps"]


def kto_loss(inp, prm):
    prm = with_defaults(prm, DEFAULTS)
    policy_in, ref = inp["policy_logps"], inp["ref_logps"]
    need(policy_in.dim() == 1, "policy_logps must be [B]")
    present = [n for n in ["ref_logps", "labels"] + KL_INPUTS if n in inp]
    for name in present:
        need_shape(name, inp[name], policy_in.shape)
    need(policy_in.shape[0] > 0, "empty batch")
    floats = ["policy_logps", "ref_logps"] + [n for n in KL_INPUTS if n in inp]
    for name in floats:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in floats})
    need_mask("labels", inp["labels"])
    loss_type, beta = prm["loss_type"], prm["beta"]
    w_d, w_u = prm["desirable_weight"], prm["undesirable_weight"]
    need(loss_type in LOSS_TYPES, f"unknown loss_type {loss_type!r}")
    calculate_kl = loss_type == "kto"
    if calculate_kl:
        need(policy_in.shape[0] >= 2, "kto with a batch of one (TRL refuses per_device_train_batch_size 1)")
        need(all(n in inp for n in KL_INPUTS), "kto needs kl_logps and ref_kl_logps")

    policy = leaf(policy_in)
    dtype = policy.dtype
    labels = inp["labels"].bool()
    chosen_idx = torch.nonzero(labels, as_tuple=False).view(-1)
    rejected_idx = torch.nonzero(~labels, as_tuple=False).view(-1)
    chosen_logratios = policy.index_select(0, chosen_idx) - ref.index_select(0, chosen_idx)
    rejected_logratios = policy.index_select(0, rejected_idx) - ref.index_select(0, rejected_idx)
    if calculate_kl:
        kl = (inp["kl_logps"] - inp["ref_kl_logps"]).mean().detach().clamp(min=0)
    else:
        kl = torch.zeros((), dtype=dtype)
    if loss_type == "kto":
        chosen_losses = 1 - F.sigmoid(beta * (chosen_logratios - kl))
        rejected_losses = 1 - F.sigmoid(beta * (kl - rejected_logratios))
    else:
        chosen_losses = 1 - F.sigmoid(beta * chosen_logratios)
        rejected_losses = F.sigmoid(beta * rejected_logratios)
    losses = torch.cat((w_d * chosen_losses, w_u * rejected_losses), 0)
    loss = losses.nanmean()
    outputs = {
        "losses": losses.detach(),
        "kl": kl,
        "chosen_rewards": beta * chosen_logratios.detach(),
        "rejected_rewards": beta * rejected_logratios.detach(),
        "loss": loss.detach(),
    }
    for name, t in outputs.items():
        need_no_nan_result(name, t)
        need(bool(torch.isfinite(t).all()), f"{name} is not finite")
    loss.backward()
    outputs["grad_policy_logps"] = policy.grad
    return outputs


# ---- cases ----

WHAT = "TRL KTOTrainer._compute_loss semantics"


def batch_of(labels, kl_shift=0.0, spread=1.0, with_kl=True):
    """Sequence log-probs of B examples (sums over a completion: -5 to -40), the
    reference near the policy, and KL completions whose mean log-ratio is about
    `kl_shift`."""
    b = len(labels)
    policy = -5.0 - torch.rand(b, dtype=F64) * 35.0
    batch = {"policy_logps": policy, "ref_logps": policy + torch.randn(b, dtype=F64) * 3.0 * spread,
             "labels": torch.tensor(labels, dtype=I64)}
    if with_kl:
        kl = -5.0 - torch.rand(b, dtype=F64) * 35.0
        batch["kl_logps"] = kl
        batch["ref_kl_logps"] = kl - kl_shift + torch.randn(b, dtype=F64) * 0.5
    return batch


MIXED = [1, 0, 0, 1, 1, 0]


def margins_900():
    # h = +900 and -900 for both labels; the KL completions give z = 2 exactly.
    policy = torch.tensor([-100.0, -1000.0, -100.0, -1000.0], dtype=F64)
    return {"policy_logps": policy, "ref_logps": torch.tensor([-1000.0, -100.0, -1000.0, -100.0], dtype=F64),
            "labels": torch.tensor([1, 1, 0, 0], dtype=I64),
            "kl_logps": torch.tensor([-10.0, -20.0, -30.0, -40.0], dtype=F64),
            "ref_kl_logps": torch.tensor([-12.0, -22.0, -32.0, -42.0], dtype=F64)}


def margins_900_check(out):
    # beta 1: desirable 1 - sigmoid(898) = 0 and 1 - sigmoid(-902) = 1; undesirable
    # 1 - sigmoid(2 - 900) = 1 and 1 - sigmoid(2 + 900) = 0.
    close_to(out["losses"], [0.0, 1.0, 1.0, 0.0], 1e-15)
    close_to(out["kl"].reshape(1), [2.0], 1e-15)


def negative_kl():
    return batch_of(MIXED, kl_shift=-3.0)


def negative_kl_check(out):
    close_to(out["kl"].reshape(1), [0.0], 0.0)  # the mean log-ratio is below 0: clamped


def by_hand():
    # Two examples, beta 1, z = max(0, mean([1, 3])) = 2.
    return {"policy_logps": torch.tensor([-3.0, -7.0], dtype=F64), "ref_logps": torch.tensor([-5.0, -6.0], dtype=F64),
            "labels": torch.tensor([0, 1], dtype=I64), "kl_logps": torch.tensor([-4.0, -5.0], dtype=F64),
            "ref_kl_logps": torch.tensor([-5.0, -8.0], dtype=F64)}


def by_hand_check(out):
    # h = [2, -1]; desirable (example 1): 1 - sigmoid(-1 - 2) = sigmoid(3);
    # undesirable (example 0): 1 - sigmoid(2 - 2) = 1/2. Desirable first.
    s3 = 1 / (1 + math.exp(-3))
    close_to(out["losses"], [s3, 0.5], 1e-15)
    close_to(out["chosen_rewards"], [-1.0], 0.0)
    close_to(out["rejected_rewards"], [2.0], 0.0)


def bool_labels():
    batch = batch_of([1, 0, 1, 0, 0])
    batch["labels"] = batch["labels"].bool()
    return batch


def random_case():
    b = randint(2, 7)
    labels = [randint(0, 1) for _ in range(b)]
    batch = batch_of(labels, kl_shift=[-1.0, 0.5, 2.0][randint(0, 2)])
    batch["_params"] = {"loss_type": LOSS_TYPES[randint(0, 1)], "beta": [0.1, 0.5, 1.0][randint(0, 2)],
                        "desirable_weight": [1.0, 1.33][randint(0, 1)], "undesirable_weight": [1.0, 0.5][randint(0, 1)]}
    return batch


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


def error_batch():
    return batch_of([1, 0, 1])


def set_(name, index, value):
    return lambda b: b[name].__setitem__(index, value)


CASES = [
    case("kto-defaults", "every param left out: kto, beta 0.1, weights 1", {}, lambda: batch_of(MIXED, kl_shift=1.5)),
    case("kto-weights", "kto with desirable_weight 1.33, undesirable_weight 0.75, beta 0.5",
         {"beta": 0.5, "desirable_weight": 1.33, "undesirable_weight": 0.75}, lambda: batch_of(MIXED, kl_shift=0.8)),
    case("kto-kl-clamped", "kto whose KL completions have a negative mean log-ratio: z clamped to 0",
         {"loss_type": "kto"}, negative_kl, check=negative_kl_check),
    case("kto-no-undesirable", "kto with every label 1: rejected_rewards is empty [0]", {"loss_type": "kto", "beta": 0.3},
         lambda: batch_of([1, 1, 1, 1], kl_shift=1.0)),
    case("kto-no-desirable", "kto with every label 0: chosen_rewards is empty [0]", {"loss_type": "kto"},
         lambda: batch_of([0, 0, 0], kl_shift=1.0)),
    case("kto-two-examples", "kto at the smallest batch it takes (B = 2), by hand", {"loss_type": "kto", "beta": 1.0},
         by_hand, check=by_hand_check),
    case("kto-margins-900", "kto with log-ratios of +900 and -900, beta 1 (sigmoid saturates to 0 and 1)",
         {"loss_type": "kto", "beta": 1.0}, margins_900, check=margins_900_check),
    case("kto-bool-labels", "labels given as bool", {"loss_type": "kto"}, bool_labels),
    case("apo-defaults", "apo_zero_unpaired without the KL inputs (it does not read them)",
         {"loss_type": "apo_zero_unpaired"}, lambda: batch_of(MIXED, with_kl=False)),
    case("apo-kl-ignored", "apo_zero_unpaired with KL inputs given, which it ignores; weights 2 and 0.5, beta 0.2",
         {"loss_type": "apo_zero_unpaired", "beta": 0.2, "desirable_weight": 2.0, "undesirable_weight": 0.5},
         lambda: batch_of(MIXED, kl_shift=5.0)),
    case("apo-one-example", "apo_zero_unpaired with B = 1 (only kto refuses a batch of one)",
         {"loss_type": "apo_zero_unpaired"}, lambda: batch_of([0], with_kl=False)),
    case("apo-no-undesirable", "apo_zero_unpaired with every label 1", {"loss_type": "apo_zero_unpaired", "beta": 0.5},
         lambda: batch_of([1, 1, 1], with_kl=False)),
    case("apo-margins-900", "apo_zero_unpaired with log-ratios of +900 and -900, beta 1",
         {"loss_type": "apo_zero_unpaired", "beta": 1.0}, margins_900),
    *[FloatCase(f"random-{k}", f"{WHAT}, random batches, labels, loss types and params", None, random_case,
                tolerance=V11_TOL) for k in (1, 2, 3)],

    ErrorCase("shape-mismatch", "labels [B-1] does not match policy_logps [B]", {},
              mutated(error_batch, lambda b: b.update(labels=b["labels"][:-1].clone()))),
    ErrorCase("kl-shape-mismatch", "ref_kl_logps [B+1] does not match [B]", {},
              mutated(error_batch, lambda b: b.update(ref_kl_logps=torch.cat([b["ref_kl_logps"], b["ref_kl_logps"][:1]])))),
    ErrorCase("empty-batch", "B = 0 (apo_zero_unpaired, so only the empty batch is wrong)",
              {"loss_type": "apo_zero_unpaired"}, lambda: batch_of([], with_kl=False)),
    ErrorCase("nan-input", "NaN in ref_logps", {}, mutated(error_batch, set_("ref_logps", (1,), math.nan)),
              also_f32=True),
    ErrorCase("nan-kl-input", "NaN in kl_logps", {}, mutated(error_batch, set_("kl_logps", (2,), math.nan))),
    ErrorCase("unknown-loss-type", "loss_type \"bco\" (not a KTO loss type)", {"loss_type": "bco"}, error_batch),
    ErrorCase("label-value-2", "labels hold a 2", {}, mutated(error_batch, set_("labels", (0,), 2))),
    ErrorCase("kto-batch-of-one", "kto with B = 1 (TRL refuses a per-device batch of 1 when it estimates the KL term)",
              {"loss_type": "kto"}, lambda: batch_of([1])),
    ErrorCase("kto-without-kl", "kto without kl_logps and ref_kl_logps", {"loss_type": "kto"},
              lambda: batch_of([1, 0], with_kl=False)),
]

STAGE = Stage("kto_loss", kto_loss, CASES, catalog_prefixes=(WHAT,))
