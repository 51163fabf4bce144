"""Stage masked_whiten: TRL's whitening of a tensor by the mean and the unbiased
variance of its selected positions.

Re-implements TRL trl/experimental/ppo/ppo_trainer.py :: masked_whiten (and the
masked_mean / masked_var it calls), TRL snapshot f2cd57710ae3: the statistics run
over every selected position of the whole tensor; the variance is the masked mean
of the squared deviations times n/(n-1), that factor being torch's true division
of two int64 counts and therefore a float32 number (the default dtype) even for
float64 values; every position, selected or not, becomes
(x - mean) * rsqrt(var + 1e-8), and the mean is added back when shift_mean is off.
"""

import math

import torch

from ..cases import ErrorCase, FloatCase, Stage, length_mask, mutated, randint
from ..fixture_format import F32, F64, I64, V11_TOL
from ..reference import need, need_float, need_mask, need_shape

assert torch.get_default_dtype() == F32, "the float32 Bessel factor relies on torch's default dtype"


def whiten(values, keep, shift_mean):
    """TRL's masked whitening of `values` (float) over the bool tensor `keep`."""
    n = keep.sum()  # an int64 0-dim tensor, as TRL's mask.sum()
    need(int(n) >= 2, f"the mask selects {int(n)} position(s); the unbiased variance needs at least 2")

    def selected_average(x):
        return (x * keep).sum() / n

    mean = selected_average(values)
    bessel = n / (n - 1)  # int64 / int64: float32
    assert bessel.dtype == F32
    variance = selected_average((values - mean) ** 2) * bessel
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    return whitened if shift_mean else whitened + mean


def masked_whiten(inp, prm):
    values, mask = inp["values"], inp["mask"]
    need(values.dim() == 2, "values must be [B,T]")
    need_shape("mask", mask, values.shape)
    need_float("values", values)
    need_mask("mask", mask)
    return {"whitened": whiten(values, mask.bool(), prm.get("shift_mean", True))}


# ---- cases ----

WHAT = "TRL masked_whiten semantics"


def batch_of(b, t, lengths=None, scale=1.0, offset=0.0):
    return {"values": torch.randn(b, t, dtype=F64) * scale + offset, "mask": length_mask(b, t, lengths)}


def one_position_mask(b, t, count):
    """A mask selecting the first `count` positions of the flattened tensor."""
    mask = torch.zeros(b * t, dtype=I64)
    mask[:count] = 1
    return mask.reshape(b, t)


def seven_selected():
    # Fixed numbers, so bessel_check can rebuild them.
    values = torch.tensor([[0.5, -1.25, 2.0, 0.75, 4.5, -3.0], [3.5, -0.5, 1.0, 0.0, 7.25, -6.5]], dtype=F64)
    return {"values": values, "mask": one_position_mask(2, 6, 7)}


def bessel_check(out_f64):
    """The fixture pins the float32 factor: with c = 7/6 in float64 instead, the
    result would move by more than the float64 tolerance."""
    batch = seven_selected()
    values, keep = batch["values"], batch["mask"].bool()
    mean = (values * keep).sum() / 7
    variance = ((values - mean) ** 2 * keep).sum() / 7 * (7 / 6)
    with_float64_factor = (values - mean) / math.sqrt(variance + 1e-8)
    got, tol = out_f64["whitened"], V11_TOL[F64]
    assert ((got - with_float64_factor).abs() > tol["abs"] + tol["rel"] * got.abs()).any()


def huge_masked():
    batch = batch_of(2, 5, lengths=[3, 4])
    batch["values"][0, 4] = 250.0  # masked: transformed, not zeroed
    batch["values"][1, 4] = -90.0
    return batch


def bool_mask():
    batch = batch_of(3, 4, lengths=[4, 1, 2])
    batch["mask"] = batch["mask"].bool()
    return batch


def zero_variance():
    # The selected values are all 0.5 (mean exactly 0.5, variance exactly 0): the
    # 1e-8 alone keeps rsqrt finite, and the masked values move by (v - 0.5) * 1e4.
    values = torch.tensor([[0.5, 0.5, 0.5, 1.5], [0.5, 0.5, -2.0, 0.25]], dtype=F64)
    return {"values": values, "mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=I64)}


def random_batch():
    b, t = randint(1, 4), randint(2, 9)
    lengths = [randint(0, t) for _ in range(b)]
    lengths[0] = max(lengths[0], 2)
    batch = batch_of(b, t, lengths, scale=[0.5, 1.0, 4.0][randint(0, 2)], offset=[0.0, -1.5, 3.0][randint(0, 2)])
    batch["_params"] = {"shift_mean": bool(randint(0, 1))}
    return batch


def error_batch():
    return batch_of(2, 4, lengths=[4, 2])


def case(name, what, params, build, check=None):
    return FloatCase(name, f"{WHAT}, {what}", params, build, check=check, tolerance=V11_TOL)


CASES = [
    case("partial-mask", "rows selected up to different lengths, shift_mean true", {"shift_mean": True},
         lambda: batch_of(3, 6, lengths=[6, 2, 4])),
    case("shift-mean-false", "shift_mean false: the mean is added back after scaling", {"shift_mean": False},
         lambda: batch_of(3, 6, lengths=[5, 3, 6], offset=2.0)),
    case("default-shift-mean", "shift_mean left out (default true)", {}, lambda: batch_of(2, 5, lengths=[5, 3])),
    case("all-selected", "every position selected", {"shift_mean": True}, lambda: batch_of(2, 4)),
    case("two-selected", "exactly two positions selected (Bessel factor 2)", {"shift_mean": True},
         lambda: {**batch_of(2, 3), "mask": one_position_mask(2, 3, 2)}),
    case("bessel-float32-n7", "n = 7: the Bessel factor 7/6 rounded to float32 (1.16666663) also for float64 values",
         {"shift_mean": True}, seven_selected, check=bessel_check),
    case("masked-positions-transformed", "values 250 and -90 at masked positions are whitened too, not zeroed",
         {"shift_mean": False}, huge_masked),
    case("bool-mask", "the mask given as bool", {"shift_mean": True}, bool_mask),
    case("zero-variance", "the selected values all equal (variance 0, rsqrt(1e-8) = 1e4)", {"shift_mean": True},
         zero_variance),
    *[FloatCase(f"random-{k}", f"{WHAT}, random shapes, masks, scales and shift_mean", None, random_batch,
                tolerance=V11_TOL) for k in (1, 2, 3)],

    ErrorCase("one-selected", "the mask selects one position (n / (n - 1) = 1/0, NaN)", {"shift_mean": True},
              lambda: {**batch_of(2, 3), "mask": one_position_mask(2, 3, 1)}),
    ErrorCase("none-selected", "the mask selects nothing (TRL raises)", {"shift_mean": True},
              lambda: {**batch_of(2, 3), "mask": one_position_mask(2, 3, 0)}),
    ErrorCase("mask-shape", "mask [B,T-1] does not match values [B,T]", {"shift_mean": True},
              mutated(error_batch, lambda b: b.update(mask=b["mask"][:, :-1].clone()))),
    ErrorCase("mask-value-2", "the mask holds a 2", {"shift_mean": True},
              mutated(error_batch, lambda b: b["mask"].__setitem__((0, 1), 2))),
    ErrorCase("nan-values-masked", "NaN in values at a masked position", {"shift_mean": True},
              mutated(error_batch, lambda b: b["values"].__setitem__((1, 3), math.nan)), also_f32=True),
]

STAGE = Stage("masked_whiten", masked_whiten, CASES, catalog_prefixes=(WHAT,))
