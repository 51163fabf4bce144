"""What the stages' reference implementations share.

Each implementation takes (inputs, params) dicts and returns the expected outputs
as a dict of tensors, or raises GoldenError for an input the project rejects. The
need* helpers below are those input checks.
"""

import torch

from .fixture_format import F64, I64


class GoldenError(Exception):
    """The input is one the project rejects with a thrown, typed error."""


def need(ok, why):
    if not ok:
        raise GoldenError(why)


def need_shape(name, t, shape):
    need(tuple(t.shape) == tuple(shape), f"{name} has shape {list(t.shape)}, expected {list(shape)}")


def need_float(name, t):
    need(t.is_floating_point(), f"{name} must be a float tensor")
    need(not bool(torch.isnan(t).any()), f"{name} contains NaN")


def need_mask(name, m):
    need(m.dtype in (I64, torch.bool), f"{name} must be int64 or bool")
    if m.dtype == I64:
        need(bool(((m == 0) | (m == 1)).all()), f"{name} holds a value other than 0 and 1")


def need_ids(name, t):
    need(t.dtype == I64, f"{name} must be int64")


def same_float_dtype(**tensors):
    dtypes = {t.dtype for t in tensors.values()}
    need(len(dtypes) == 1, f"float inputs {sorted(tensors)} mix dtypes {sorted(map(str, dtypes))}")


def check_loss_inputs(inp, float_names):
    """The masked-loss stages (actor_loss, critic_loss): float inputs [B,M] of one
    dtype, a 0/1 mask of the same shape that selects at least one element."""
    first = inp[float_names[0]]
    need(first.dim() == 2, f"{float_names[0]} must be [B,M]")
    for name in float_names[1:]:
        need_shape(name, inp[name], first.shape)
    need_shape("mask", inp["mask"], first.shape)
    for name in float_names:
        need_float(name, inp[name])
    same_float_dtype(**{n: inp[n] for n in float_names})
    need_mask("mask", inp["mask"])
    need(int(inp["mask"].sum()) > 0, "mask selects no element (the loss would divide by zero)")


def leaf(t):
    """A copy of an input that autograd differentiates against, in the input's own dtype.

    Gradients are PyTorch autograd's, whatever it does at a kink (see
    check_autograd_rules and the README's "Gradients" section)."""
    return t.detach().clone().requires_grad_(True)


def check_autograd_rules():
    """The gradient fixtures are autograd's. At the losses' kinks autograd makes two
    choices our backward passes copy; fail loudly if a torch build ever changes them."""
    a = torch.tensor([1.5], dtype=F64, requires_grad=True)
    b = torch.tensor([1.5], dtype=F64, requires_grad=True)
    torch.max(a, b).sum().backward()
    assert a.grad.item() == 0.5 and b.grad.item() == 0.5, "torch.max(a, b) no longer splits a tie half/half"
    x = torch.tensor([0.8, 1.2], dtype=F64, requires_grad=True)
    torch.clamp(x, 0.8, 1.2).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0], "torch.clamp no longer passes the gradient at its bounds"


def with_defaults(params, defaults):
    """A fixture's params, with the peer's default for each one it leaves out (spec v1.1:
    a param listed with a default may be left out of a fixture)."""
    return {**defaults, **params}


def need_no_nan_result(name, t):
    """Where the peer would return NaN (inf - inf, inf * 0 under a mask), the project throws."""
    need(not bool(torch.isnan(t).any()), f"{name} holds NaN (infinite inputs), which the project rejects")
