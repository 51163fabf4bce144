"""Stage dpo_variants: the DPO family's fifteen loss types, TRL's reward metrics and
the gradients with respect to the policy's two sequence log-probs.

Written from shared/spec/v1.1-zoo.md (`dpo_variants`), which follows TRL
trl/trainer/dpo_trainer.py :: DPOTrainer._compute_loss (snapshot f2cd57710ae3):
h = policy - reference per answer; the f-divergence turns h into a score u;
delta = u_w - u_l; each loss_type's per-pair formula; loss = mean. Two cases follow
OpenRLHF openrlhf/models/loss.py :: DPOLoss.forward (snapshot 3c3be6234e0c):
`sigmoid` with label_smoothing > 0 (cDPO) and `ipo_sum`; on plain log-ratios they
form delta as (chosen - rejected) - (ref_chosen - ref_rejected), OpenRLHF's order.

Every operation runs in the fixture's dtype, in the peers' order, so a float32
fixture is the peers' arithmetic. Float64 drops the peers' incidental float32 casts
(TRL's EXO epsilon tensor, its float32 accuracy fraction) and keeps TRL's float32
alpha-divergence clamp of 80. Gradients are autograd's on leaf copies of
chosen_logps and rejected_logps; a fixture whose sort has ties carries none (the
element a tied rank sends its derivative to is unspecified).
"""

import math

import torch
import torch.nn.functional as F

from ..cases import ErrorCase, FloatCase, Stage, mutated, randint
from ..fixture_format import F32, F64, I64, V11_TOL
from ..reference import leaf, need, need_float, need_ids, need_shape, same_float_dtype, with_defaults

DEFAULTS = {"loss_type": "sigmoid", "beta": 0.1, "label_smoothing": 0.0, "discopop_tau": 0.05,
            "f_divergence": "reverse_kl", "f_alpha_divergence_coef": 0.5}
LOSS_TYPES = ["sigmoid", "hinge", "ipo", "ipo_sum", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
              "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm"]
F_DIVERGENCES = ["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"]
FLOATS = ["chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"]
LENGTHS = ["chosen_lengths", "rejected_lengths"]
ALPHA_CLAMP = 80.0   # TRL's float32 (and bfloat16) entry; the spec keeps it for float64


def check_inputs(inp, p):
    first = inp["chosen_logps"]
    need(first.dim() == 1, "chosen_logps must be [B]")
    for name in FLOATS[1:] + LENGTHS:
        need_shape(name, inp[name], first.shape)
    need(first.shape[0] > 0, "empty batch")
    for name in FLOATS:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in FLOATS})
    for name in LENGTHS:
        need_ids(name, inp[name])
        need(bool((inp[name] >= 0).all()), f"{name} holds a negative length")
    need(p["loss_type"] in LOSS_TYPES, f"unknown loss_type {p['loss_type']!r}")
    need(p["f_divergence"] in F_DIVERGENCES, f"unknown f_divergence {p['f_divergence']!r}")
    for name in ("beta", "label_smoothing", "f_alpha_divergence_coef", "discopop_tau"):
        need(math.isfinite(p[name]), f"{name} must be finite")
    need(p["discopop_tau"] > 0, "discopop_tau must be > 0")
    need(not (p["beta"] == 0 and p["loss_type"] in ("ipo", "ipo_sum", "sppo_hard")), "beta = 0 divides by zero")
    eps = p["label_smoothing"]
    need(p["loss_type"] != "robust" or 0.0 <= eps < 0.5, "robust needs label_smoothing in [0, 0.5)")
    need(p["loss_type"] != "exo_pair" or 0.0 < eps < 1.0, "exo_pair needs label_smoothing in (0, 1)")


def scores(h, p):
    """TRL's f-divergence scores u = f(h), in h's dtype."""
    kind = p["f_divergence"]
    if kind == "reverse_kl":
        return h
    if kind == "forward_kl":
        need(bool(torch.isfinite(torch.exp(-h)).all()), "forward_kl: exp(-h) overflows the dtype")
        return -torch.exp(-h)
    if kind == "js_divergence":
        return F.logsigmoid(h)
    a = p["f_alpha_divergence_coef"]
    if abs(a - 1.0) < 1e-6:
        return h
    coef = 1.0 / (a - 1.0)
    t = (a - 1.0) * h
    return torch.exp(torch.clamp(t, max=ALPHA_CLAMP)) * coef


def sorted_has_ties(x):
    s, _ = torch.sort(x.detach(), dim=0)
    return bool((s[1:] == s[:-1]).any())


def dpo_variants(inp, prm):
    p = with_defaults(prm, DEFAULTS)
    check_inputs(inp, p)
    dtype = inp["chosen_logps"].dtype
    beta, eps, kind = p["beta"], p["label_smoothing"], p["loss_type"]
    chosen_logps, rejected_logps = leaf(inp["chosen_logps"]), leaf(inp["rejected_logps"])
    ref_chosen_logps, ref_rejected_logps = inp["ref_chosen_logps"], inp["ref_rejected_logps"]
    chosen_lengths, rejected_lengths = inp["chosen_lengths"], inp["rejected_lengths"]

    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    chosen_scores, rejected_scores = scores(chosen_logratios, p), scores(rejected_logratios, p)
    delta_score = chosen_scores - rejected_scores
    plain = p["f_divergence"] == "reverse_kl" or (
        p["f_divergence"] == "alpha_divergence" and abs(p["f_alpha_divergence_coef"] - 1.0) < 1e-6)
    if plain and (kind == "ipo_sum" or (kind == "sigmoid" and eps != 0)):
        # OpenRLHF DPOLoss.forward's grouping of the same four numbers.
        delta_score = (chosen_logps - rejected_logps) - (ref_chosen_logps - ref_rejected_logps)

    ties = False
    if kind == "sigmoid":
        # cDPO as OpenRLHF writes it; at eps = 0 it is TRL's -logsigmoid(beta * delta) bit for bit.
        x = beta * delta_score
        losses = -F.logsigmoid(x) * (1 - eps) - F.logsigmoid(-x) * eps
    elif kind == "hinge":
        losses = torch.relu(1 - beta * delta_score)
    elif kind in ("ipo", "sigmoid_norm"):
        chosen_avg = chosen_scores / chosen_lengths.clamp(min=1.0)
        rejected_avg = rejected_scores / rejected_lengths.clamp(min=1.0)
        delta = chosen_avg - rejected_avg
        losses = (delta - 1 / (2 * beta)) ** 2 if kind == "ipo" else -F.logsigmoid(beta * delta)
    elif kind == "ipo_sum":
        losses = (delta_score - 1 / (2 * beta)) ** 2
    elif kind == "exo_pair":
        epsilon = torch.tensor(eps, dtype=dtype)   # TRL: a float32 tensor; float64 keeps eps in float64
        qw = torch.sigmoid(beta * delta_score)
        log_qw = F.logsigmoid(beta * delta_score)
        log_pw = torch.log1p(-epsilon)
        ql = torch.sigmoid(-beta * delta_score)
        log_ql = F.logsigmoid(-beta * delta_score)
        log_pl = torch.log(epsilon)
        losses = qw * (log_qw - log_pw) + ql * (log_ql - log_pl)
    elif kind == "nca_pair":
        cr, rr = beta * chosen_scores, beta * rejected_scores
        losses = -F.logsigmoid(cr) - 0.5 * F.logsigmoid(-cr) - 0.5 * F.logsigmoid(-rr)
    elif kind == "robust":
        clean = -(1 - eps) * F.logsigmoid(beta * delta_score)
        flipped = -eps * F.logsigmoid(-beta * delta_score)
        losses = (clean - flipped) / (1 - 2 * eps)
    elif kind == "bco_pair":
        losses = -F.logsigmoid(beta * chosen_scores) - F.logsigmoid(-(beta * rejected_scores))
    elif kind == "sppo_hard":
        losses = (chosen_scores - 0.5 / beta) ** 2 + (rejected_scores + 0.5 / beta) ** 2
    elif kind in ("aot", "aot_unpaired"):
        if kind == "aot":
            first, second = chosen_logps - rejected_logps, ref_chosen_logps - ref_rejected_logps
        else:
            first, second = chosen_logratios, rejected_logratios
        ties = sorted_has_ties(first) or sorted_has_ties(second)
        first_sorted, _ = torch.sort(first, dim=0)
        second_sorted, _ = torch.sort(second, dim=0)
        delta = first_sorted - second_sorted
        losses = -F.logsigmoid(beta * delta) * (1 - eps) - F.logsigmoid(-beta * delta) * eps
    elif kind == "apo_zero":
        losses = (1 - torch.sigmoid(beta * chosen_logratios)) + torch.sigmoid(beta * rejected_logratios)
    elif kind == "apo_down":
        losses = torch.sigmoid(beta * chosen_logratios) + (1 - torch.sigmoid(beta * delta_score))
    else:  # discopop
        logits = delta_score * beta
        need(bool(torch.isfinite(torch.exp(-logits)).all()), "discopop: exp(-x) overflows the dtype (inf * 0 = NaN)")
        modulation = torch.sigmoid(logits / p["discopop_tau"])
        losses = -F.logsigmoid(logits) * (1 - modulation) + torch.exp(-logits) * modulation

    loss = losses.mean()
    need(bool(torch.isfinite(losses).all()) and bool(torch.isfinite(loss)), "a loss is not finite")
    loss.backward()
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    out = {
        "losses": losses.detach(),
        "loss": loss.detach(),
        "chosen_rewards": chosen_rewards,
        "rejected_rewards": rejected_rewards,
        # TRL: .float().mean(); k/B in the fixture's dtype.
        "reward_accuracy": (chosen_rewards > rejected_rewards).to(dtype).mean(),
        "reward_margin": chosen_rewards - rejected_rewards,
    }
    for name, t in out.items():
        need(bool(torch.isfinite(t).all()), f"{name} is not finite")
    if not ties:
        out["grad_chosen_logps"] = chosen_logps.grad
        out["grad_rejected_logps"] = rejected_logps.grad
    return out


# ---- cases ----

WHAT = "TRL DPOTrainer._compute_loss semantics"


def pairs(b, spread=2.0, lengths=(1, 40)):
    """B random pairs: summed log-probs of plausible size, references nearby."""
    chosen = -torch.rand(b, dtype=F64) * 50.0 - 5.0
    rejected = -torch.rand(b, dtype=F64) * 50.0 - 5.0
    return {
        "chosen_logps": chosen,
        "rejected_logps": rejected,
        "ref_chosen_logps": chosen - torch.randn(b, dtype=F64) * spread,
        "ref_rejected_logps": rejected - torch.randn(b, dtype=F64) * spread,
        "chosen_lengths": torch.randint(lengths[0], lengths[1] + 1, (b,), dtype=I64),
        "rejected_lengths": torch.randint(lengths[0], lengths[1] + 1, (b,), dtype=I64),
    }


def given(h_w, h_l, lengths_w=None, lengths_l=None, chosen=None, rejected=None):
    """Pairs with the log-ratios h_w, h_l given exactly (dyadic numbers: exact in float32)."""
    b = len(h_w)
    chosen = torch.tensor(chosen or [-12.5 - 3 * i for i in range(b)], dtype=F64)
    rejected = torch.tensor(rejected or [-20.25 - 2 * i for i in range(b)], dtype=F64)
    return {
        "chosen_logps": chosen,
        "rejected_logps": rejected,
        "ref_chosen_logps": chosen - torch.tensor(h_w, dtype=F64),
        "ref_rejected_logps": rejected - torch.tensor(h_l, dtype=F64),
        "chosen_lengths": torch.tensor(lengths_w or [10] * b, dtype=I64),
        "rejected_lengths": torch.tensor(lengths_l or [12] * b, dtype=I64),
    }


def margins_900():
    # delta = h_w - h_l of +900, -900, +450, -0.5: logsigmoid(-90) and logsigmoid(-900) need the stable form.
    return given([450.0, -450.0, 225.0, 0.25], [-450.0, 450.0, -225.0, 0.75])


def ties_for_accuracy():
    # Pairs 0 and 2 tie (h_w = h_l, so the rewards are equal and count as wrong); pair 1 is right.
    return given([1.5, 2.0, -0.75], [1.5, -1.0, -0.75])


def zero_lengths():
    return given([3.0, -2.0, 0.5], [1.0, 4.0, -1.5], lengths_w=[0, 7, 1], lengths_l=[5, 0, 0])


def long_and_short():
    # The same log-ratios on a 2-token and a 200-token answer pair.
    return given([4.0, 4.0], [-2.0, -2.0], lengths_w=[2, 200], lengths_l=[2, 200])


def hinge_kink():
    # beta = 0.5: x = 0.5 * (h_w - h_l) = 1 exactly for pair 0 (relu at 0 passes nothing), 0.5 and 3 for the others.
    return given([1.25, 0.5, 4.0], [-0.75, -0.5, -2.0])


def sort_ties():
    # aot: chosen - rejected ties between pairs 0 and 2; aot_unpaired: h_w ties too. No gradients in these fixtures.
    batch = given([1.0, -0.5, 1.0, 2.0], [0.25, 0.25, -1.0, 0.5], chosen=[-10.0, -14.0, -11.0, -9.0],
                  rejected=[-13.0, -12.0, -14.0, -16.0])
    return batch


def alpha_clamped():
    # a = 0.5: (a - 1) h = -h / 2 passes 80 for h < -160 (pair 1) and sits at it for h = -160 (pair 2).
    return given([3.0, -200.0, -160.0, 0.5], [-1.0, 2.0, -3.5, -170.0])


def one_pair():
    return pairs(1)


def random_any():
    kind = LOSS_TYPES[randint(0, len(LOSS_TYPES) - 1)]
    batch = pairs(randint(2, 5))
    params = {"loss_type": kind, "beta": [0.05, 0.1, 0.5][randint(0, 2)]}
    if kind in ("exo_pair", "robust", "sigmoid", "aot", "aot_unpaired"):
        params["label_smoothing"] = [0.1, 0.2, 0.3][randint(0, 2)]
    params["f_divergence"] = ["reverse_kl", "js_divergence"][randint(0, 1)]
    batch["_params"] = params
    return batch


def case(name, what, params, build, dtypes=(F64, F32)):
    return FloatCase(name, f"{WHAT}, {what}", params, build, dtypes=dtypes, tolerance=V11_TOL)


def per_loss_type(kind):
    """Three cases of one loss type: random pairs at TRL's defaults, another beta / label
    smoothing / f-divergence, and margins of +-900."""
    eps = {"exo_pair": 1e-3, "robust": 0.1, "sigmoid": 0.0, "aot": 0.0, "aot_unpaired": 0.0}.get(kind)
    base = {"loss_type": kind} if eps is None or eps == 0.0 else {"loss_type": kind, "label_smoothing": eps}
    second = {"loss_type": kind, "beta": 0.5}
    if kind in ("exo_pair", "robust", "sigmoid", "aot", "aot_unpaired"):
        second["label_smoothing"] = 0.3
    if kind not in ("aot", "aot_unpaired", "apo_zero"):
        second["f_divergence"] = "js_divergence"
    wide = dict(base, beta=1.0 if kind not in ("discopop",) else 0.1)
    cases = [
        case(f"{kind}-random", f"loss_type {kind}, random pairs, beta 0.1", base, lambda: pairs(4)),
        case(f"{kind}-beta-0.5", f"loss_type {kind}, beta 0.5" + (", label_smoothing 0.3" if "label_smoothing"
             in second else "") + (", js_divergence scores" if "f_divergence" in second else ""), second,
             lambda: pairs(3, spread=1.0)),
    ]
    if kind == "discopop":
        # x = -90 for pair 1: exp(90) overflows float32 (the f32 twin is an error case below), not float64.
        cases.append(case(f"{kind}-margins-900", f"loss_type {kind}, margins +-900 at beta 0.1 (x = +-90), "
                          "float64 only: exp(90) overflows float32", wide, margins_900, dtypes=(F64,)))
    elif kind not in ("ipo", "sigmoid_norm", "sppo_hard", "ipo_sum"):
        cases.append(case(f"{kind}-margins-900", f"loss_type {kind}, margins +-900 at beta {wide['beta']}",
                          wide, margins_900))
    else:
        cases.append(case(f"{kind}-margins-900", f"loss_type {kind}, margins +-900 at beta 0.5 (squares of ~450)",
                          dict(base, beta=0.5), margins_900))
    return cases


class Float32ErrorCase(ErrorCase):
    """An expect_error fixture in float32 only (`error-<name>-f32`): the same input is fine in float64."""

    def dtypes(self):
        return (F32,)

    def fixture_names(self):
        return [f"error-{self.name}-f32"]


def error_batch():
    return pairs(3)


CASES = [
    *[c for kind in LOSS_TYPES for c in per_loss_type(kind)],
    case("defaults", "every param left out (sigmoid, beta 0.1, reverse_kl)", {}, lambda: pairs(5)),
    case("one-pair", "a batch of one pair", {"loss_type": "sigmoid"}, one_pair),
    case("margin-zero-log2", "policy = reference: every h is 0, each loss is log 2, accuracy 0 (ties are wrong)",
         {"loss_type": "sigmoid"}, lambda: given([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])),
    case("accuracy-ties", "two of three pairs with equal rewards: reward_accuracy counts them wrong (1/3)",
         {"loss_type": "sigmoid"}, ties_for_accuracy),
    case("sigmoid-cdpo", "sigmoid with label_smoothing 0.2 (OpenRLHF's cDPO; TRL would ignore it)",
         {"loss_type": "sigmoid", "label_smoothing": 0.2}, lambda: pairs(4)),
    case("robust-eps-0", "robust at label_smoothing 0 equals sigmoid", {"loss_type": "robust"}, lambda: pairs(3)),
    case("hinge-kink", "hinge at beta 0.5 with x = 1 exactly for pair 0 (relu passes nothing at 0)",
         {"loss_type": "hinge", "beta": 0.5}, hinge_kink),
    case("ipo-zero-lengths", "ipo with completion lengths of 0 (each counts as 1)",
         {"loss_type": "ipo", "beta": 0.5}, zero_lengths),
    case("sigmoid-norm-zero-lengths", "sigmoid_norm with completion lengths of 0 (each counts as 1)",
         {"loss_type": "sigmoid_norm"}, zero_lengths),
    case("ipo-long-vs-short", "ipo on the same log-ratios over 2 and 200 tokens (TRL divides by the length)",
         {"loss_type": "ipo", "beta": 0.5}, long_and_short),
    case("ipo-sum-long-vs-short", "ipo_sum on the same pairs: the lengths are not read",
         {"loss_type": "ipo_sum", "beta": 0.5}, long_and_short),
    case("aot-sort-ties", "aot with tied policy log-ratios: losses only (no gradients at a sort tie)",
         {"loss_type": "aot"}, sort_ties),
    case("aot-unpaired-sort-ties", "aot_unpaired with tied h_w: losses only (no gradients at a sort tie)",
         {"loss_type": "aot_unpaired"}, sort_ties),
    case("aot-one-pair", "aot on one pair: the sorts change nothing", {"loss_type": "aot"}, one_pair),
    case("forward-kl-sigmoid", "sigmoid on forward_kl scores u = -exp(-h)",
         {"loss_type": "sigmoid", "f_divergence": "forward_kl"}, lambda: pairs(4, spread=0.5)),
    case("forward-kl-apo-down", "apo_down on forward_kl scores: h_w plain, x f-aware",
         {"loss_type": "apo_down", "f_divergence": "forward_kl"}, lambda: pairs(3, spread=0.5)),
    case("forward-kl-apo-zero", "apo_zero ignores forward_kl", {"loss_type": "apo_zero", "f_divergence": "forward_kl"},
         lambda: pairs(3, spread=0.5)),
    case("js-ipo", "ipo on js_divergence scores", {"loss_type": "ipo", "f_divergence": "js_divergence"},
         lambda: pairs(3)),
    case("alpha-sigmoid", "sigmoid on alpha_divergence scores (a = 0.5), float32 only (TRL has no float64 clamp)",
         {"loss_type": "sigmoid", "f_divergence": "alpha_divergence"}, lambda: pairs(4, spread=1.0), dtypes=(F32,)),
    case("alpha-clamp-80", "alpha_divergence a = 0.5 with (a-1)h past 80 (score constant, no gradient) and at 80 "
         "(the clamp passes it), float32 only", {"loss_type": "bco_pair", "beta": 0.001,
                                                 "f_divergence": "alpha_divergence"}, alpha_clamped, dtypes=(F32,)),
    case("alpha-coef-2-hinge", "alpha_divergence a = 2 (u = exp(h)), hinge, float32 only",
         {"loss_type": "hinge", "f_divergence": "alpha_divergence", "f_alpha_divergence_coef": 2.0},
         lambda: pairs(3, spread=0.5), dtypes=(F32,)),
    case("alpha-coef-1-is-reverse-kl", "alpha_divergence with a = 1 falls back to reverse_kl, float32 only",
         {"loss_type": "sppo_hard", "f_divergence": "alpha_divergence", "f_alpha_divergence_coef": 1.0},
         lambda: pairs(3), dtypes=(F32,)),
    case("discopop-tau-0.5", "discopop with tau 0.5 and beta 1", {"loss_type": "discopop", "beta": 1.0,
                                                                  "discopop_tau": 0.5}, lambda: pairs(3, spread=1.0)),
    *[FloatCase(f"random-{k}", f"{WHAT}, a random loss_type, beta, label_smoothing and f_divergence", None,
                random_any, tolerance=V11_TOL) for k in (1, 2, 3)],

    ErrorCase("rejected-shape", "rejected_logps [B-1] does not match chosen_logps [B]", {},
              mutated(error_batch, lambda b: b.update(rejected_logps=b["rejected_logps"][:-1].clone()))),
    ErrorCase("lengths-shape", "chosen_lengths [B+1] does not match chosen_logps [B]", {},
              mutated(error_batch, lambda b: b.update(chosen_lengths=torch.ones(4, dtype=I64)))),
    ErrorCase("rank-2", "chosen_logps given per token [B,T] instead of summed [B]", {},
              mutated(error_batch, lambda b: b.update(chosen_logps=b["chosen_logps"].reshape(3, 1).clone()))),
    ErrorCase("empty-batch", "B = 0", {},
              lambda: {k: v[:0].clone() for k, v in error_batch().items()}),
    ErrorCase("nan-chosen", "NaN in chosen_logps", {},
              mutated(error_batch, lambda b: b["chosen_logps"].__setitem__(1, math.nan)), also_f32=True),
    ErrorCase("nan-ref-rejected", "NaN in ref_rejected_logps", {"loss_type": "ipo"},
              mutated(error_batch, lambda b: b["ref_rejected_logps"].__setitem__(2, math.nan))),
    ErrorCase("unknown-loss-type", "loss_type \"sft\" (needs logits) is not a dpo_variants loss type",
              {"loss_type": "sft"}, error_batch),
    ErrorCase("unknown-f-divergence", "f_divergence \"kl\" is unknown", {"f_divergence": "kl"}, error_batch),
    ErrorCase("lengths-float", "chosen_lengths given as float: lengths are int64 counts", {},
              mutated(error_batch, lambda b: b.update(chosen_lengths=b["chosen_lengths"].to(F64)))),
    ErrorCase("negative-length", "a rejected length of -1", {"loss_type": "ipo"},
              mutated(error_batch, lambda b: b["rejected_lengths"].__setitem__(0, -1))),
    ErrorCase("robust-eps-0.5", "robust with label_smoothing 0.5 (1 - 2 eps = 0; TRL only warns)",
              {"loss_type": "robust", "label_smoothing": 0.5}, error_batch),
    ErrorCase("robust-eps-negative", "robust with label_smoothing -0.1", {"loss_type": "robust",
                                                                         "label_smoothing": -0.1}, error_batch),
    ErrorCase("exo-eps-0", "exo_pair with label_smoothing 0 (log 0; TRL raises)", {"loss_type": "exo_pair"},
              error_batch),
    ErrorCase("exo-eps-1", "exo_pair with label_smoothing 1 (log(1 - 1); TRL returns inf)",
              {"loss_type": "exo_pair", "label_smoothing": 1.0}, error_batch),
    *[ErrorCase(f"beta-0-{kind.replace('_', '-')}", f"beta = 0 with {kind}, which divides by beta",
                {"loss_type": kind, "beta": 0.0}, error_batch) for kind in ("ipo", "ipo_sum", "sppo_hard")],
    ErrorCase("discopop-tau-0", "discopop_tau = 0", {"loss_type": "discopop", "discopop_tau": 0.0}, error_batch),
    ErrorCase("discopop-tau-negative", "discopop_tau < 0", {"loss_type": "discopop", "discopop_tau": -0.05},
              error_batch),
    ErrorCase("discopop-overflow", "discopop at x = -900 (beta 1): exp(900) overflows both dtypes, the peer's "
              "inf * 0 is NaN", {"loss_type": "discopop", "beta": 1.0}, margins_900, also_f32=True),
    Float32ErrorCase("discopop-overflow-x-90", "discopop at x = -90 (beta 0.1): exp(90) overflows float32 only "
                     "(the float64 twin is discopop-margins-900-f64)", {"loss_type": "discopop", "beta": 0.1},
                     margins_900),
    ErrorCase("forward-kl-overflow", "forward_kl with h_w = -900: exp(900) overflows both dtypes",
              {"loss_type": "sigmoid", "f_divergence": "forward_kl"},
              lambda: given([-900.0, 1.0, 2.0], [0.5, -1.0, 0.0]), also_f32=True),
    Float32ErrorCase("forward-kl-overflow-h-100", "forward_kl with h_l = -100: exp(100) overflows float32 only",
                     {"loss_type": "bco_pair", "f_divergence": "forward_kl"},
                     lambda: given([0.5, 1.0, 2.0], [0.5, -100.0, 0.0])),
]

STAGE = Stage("dpo_variants", dpo_variants, CASES, catalog_prefixes=(WHAT,), tolerance=V11_TOL)
