"""Stage adaptive_kl_controller: the KL coefficient over a run of updates of
OpenRLHF's adaptive (Ziegler et al. 2019) or fixed KL controller.

Written from shared/spec/v1.1-zoo.md, section `adaptive_kl_controller`, which
follows OpenRLHF openrlhf/trainer/ppo_utils/kl_controller.py ::
AdaptiveKLController.update and FixedKLController (snapshot 3c3be6234e0c), the
choice made as BasePPOTrainer.__init__ makes it (the target tested for truth):

- target null or 0: the fixed controller, every output init_kl_coef, horizon unread;
- otherwise c = init_kl_coef and, for each step in order,
  e = clip(current_kl / target - 1, -0.2, 0.2), c *= 1 + e * n_steps / horizon
  (left to right: (e * n_steps) / horizon), and kl_coef[s] = c.

The peer does this on Python floats (numpy float64 after np.clip), so the
fixtures are float64 only, computed here with the same operations in the same
order; the Swift side repeats them bit for bit, hence the exact tolerance.
"""

import math

import numpy as np
import torch

from ..cases import ErrorCase, FloatCase, Stage, randint
from ..fixture_format import EXACT_TOL, F64, I64
from ..reference import need, need_float, need_ids, need_shape, with_defaults

DEFAULTS = {"init_kl_coef": 0.01, "target": None, "horizon": 10000}


def adaptive_kl_controller(inp, prm):
    p = with_defaults(prm, DEFAULTS)
    current_kl, n_steps = inp["current_kl"], inp["n_steps"]
    need(current_kl.dim() == 1, "current_kl must be [S]")
    need_shape("n_steps", n_steps, current_kl.shape)
    need_float("current_kl", current_kl)
    need(current_kl.dtype == F64, "current_kl must be float64 (the peer's Python floats)")
    need_ids("n_steps", n_steps)
    need(bool((n_steps >= 0).all()), "n_steps < 0")
    target = p["target"]
    need(target is None or target >= 0, f"target {target} < 0")
    if not target:  # OpenRLHF: `if self.args.kl_target:` -- None and 0 both pick the fixed controller
        return {"kl_coef": torch.full(current_kl.shape, float(p["init_kl_coef"]), dtype=F64)}
    need(p["horizon"] > 0, f"horizon {p['horizon']} <= 0 (the adaptive controller divides by it)")

    value = p["init_kl_coef"]
    out = []
    for current, n in zip(current_kl.tolist(), n_steps.tolist()):
        proportional_error = np.clip(current / target - 1, -0.2, 0.2)
        mult = 1 + proportional_error * n / p["horizon"]
        value *= mult
        out.append(float(value))
    need(all(math.isfinite(v) for v in out), "the coefficient overflows")
    return {"kl_coef": torch.tensor(out, dtype=F64).reshape(current_kl.shape)}


# ---- cases ----

WHAT = "OpenRLHF AdaptiveKLController / FixedKLController semantics"


def run(kl, steps):
    return {"current_kl": torch.tensor(kl, dtype=F64), "n_steps": torch.tensor(steps, dtype=I64)}


def around_target(s, target, spread, n):
    kl = (target * (1 + torch.randn(s, dtype=F64) * spread)).abs()
    return run(kl.tolist(), [n] * s)


def sign_flip():
    # KL far below the target: e = -0.2 every step. n_steps/horizon = 6 gives a
    # multiplier 1 - 1.2 = -0.2 (the sign flips), then = 5 gives exactly 0.
    return run([0.01, 0.02, 0.0, 0.05, 0.01], [600, 600, 600, 500, 600])


def random_run():
    s = randint(1, 12)
    target = [0.05, 0.1, 6.0][randint(0, 2)]
    kl = (target * torch.rand(s, dtype=F64) * 2.5).tolist()
    steps = [randint(0, 2048) for _ in range(s)]
    batch = run(kl, steps)
    batch["_params"] = {"init_kl_coef": [0.01, 0.05, 0.2][randint(0, 2)], "target": target,
                        "horizon": [10000, 2048, 500][randint(0, 2)]}
    return batch


def case(name, what, params, build):
    return FloatCase(name, f"{WHAT}, {what}", params, build, dtypes=(F64,), tolerance=EXACT_TOL)


class SpecNamedCase(FloatCase):
    """A float64 case whose one file carries the spec's name as is, without the -f64
    suffix: the spec refers to it by that name."""

    def fixture_names(self):
        return [self.name]


def error_run():
    return run([0.1, 0.2, 0.05], [256, 256, 256])


CASES = [
    case("defaults-fixed", "every param left out: target null, the fixed controller at 0.01",
         {}, lambda: run([0.3, 0.01, 7.5], [1024, 1024, 1024])),
    case("target-null-fixed", "target null given: fixed at init_kl_coef 0.05",
         {"init_kl_coef": 0.05, "target": None, "horizon": 10000}, lambda: run([0.2, 0.0, 4.0, 1.0], [512] * 4)),
    case("target-zero-fixed", "target 0 (falsy in Python): fixed, and horizon -5 is never read",
         {"init_kl_coef": 0.1, "target": 0.0, "horizon": -5}, lambda: run([0.2, 0.5, 0.01], [64, 64, 64])),
    case("above-target", "KL well above the target: e clipped at +0.2, the coefficient grows",
         {"init_kl_coef": 0.01, "target": 0.1, "horizon": 10000}, lambda: run([0.5, 0.3, 1.2, 0.25], [1024] * 4)),
    case("below-target", "KL well below the target: e clipped at -0.2, the coefficient shrinks",
         {"init_kl_coef": 0.2, "target": 6.0, "horizon": 10000}, lambda: run([1.0, 0.5, 2.0, 0.0, 3.0], [2048] * 5)),
    case("inside-clip", "KL within 20% of the target: e unclipped, in both directions",
         {"init_kl_coef": 0.05, "target": 0.1, "horizon": 1000}, lambda: run([0.11, 0.09, 0.1, 0.115, 0.085],
                                                                             [100, 250, 300, 50, 400])),
    case("around-target", "KL drawn around the target, OpenRLHF's defaults for init and horizon",
         {"init_kl_coef": 0.01, "target": 0.05, "horizon": 10000}, lambda: around_target(10, 0.05, 0.3, 512)),
    case("n-steps-zero", "n_steps 0 at some steps: the coefficient stays where it was",
         {"init_kl_coef": 0.03, "target": 0.2, "horizon": 10000}, lambda: run([0.5, 0.5, 0.01, 0.3], [0, 4096, 0, 4096])),
    SpecNamedCase("ho-short-horizon-sign-flip", f"{WHAT}, horizon 100, n_steps 600 and 500 with KL far below "
                  "the target: the multiplier is -0.2 (the sign flips) and then 0",
                  {"init_kl_coef": 0.01, "target": 6.0, "horizon": 100}, sign_flip, dtypes=(F64,),
                  tolerance=EXACT_TOL),
    case("empty-sequence", "no update at all: an empty output",
         {"init_kl_coef": 0.01, "target": 0.1, "horizon": 10000}, lambda: run([], [])),
    case("one-step", "a single update", {"init_kl_coef": 0.2, "target": 6.0, "horizon": 10000},
         lambda: run([7.0], [256])),
    *[FloatCase(f"random-{k}", f"{WHAT}, random runs, targets, horizons and step counts", None, random_run,
                dtypes=(F64,), tolerance=EXACT_TOL) for k in (1, 2, 3)],

    ErrorCase("length-mismatch", "current_kl [3] and n_steps [2] differ in length", {"target": 0.1},
              lambda: {"current_kl": torch.tensor([0.1, 0.2, 0.3], dtype=F64),
                       "n_steps": torch.tensor([8, 8], dtype=I64)}),
    ErrorCase("negative-n-steps", "n_steps holds -1", {"target": 0.1},
              lambda: run([0.1, 0.2, 0.3], [8, -1, 8])),
    ErrorCase("negative-target", "target -0.1 < 0", {"target": -0.1}, error_run),
    ErrorCase("zero-horizon", "horizon 0 with the adaptive controller (OpenRLHF divides by it)",
              {"target": 0.1, "horizon": 0}, error_run),
    ErrorCase("negative-horizon", "horizon -100 with the adaptive controller", {"target": 0.1, "horizon": -100},
              error_run),
    ErrorCase("nan-current-kl", "NaN in current_kl", {"target": 0.1},
              lambda: run([0.1, math.nan, 0.3], [8, 8, 8])),
    ErrorCase("current-kl-rank", "current_kl [S,1] is not [S]", {"target": 0.1},
              lambda: {"current_kl": torch.tensor([[0.1], [0.2]], dtype=F64),
                       "n_steps": torch.tensor([[8], [8]], dtype=I64)}),
]

STAGE = Stage("adaptive_kl_controller", adaptive_kl_controller, CASES, catalog_prefixes=(WHAT,),
              tolerance=EXACT_TOL)
