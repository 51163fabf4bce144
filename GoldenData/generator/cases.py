"""The case registry: what a stage declares (Stage, FloatCase, ErrorCase), how a
case becomes fixture files (seeded from its own name), and the seeded random
helpers several stages build their inputs with.

Every float case is written twice: `<case>-f64` (inputs drawn in float64) and
`<case>-f32` (the same inputs cast to float32, outputs computed by torch in
float32, no upcasting). Each case seeds torch from its own name, so adding or
removing a case, or reordering the stages, never changes another case's numbers.
"""

import zlib
from dataclasses import dataclass

import torch

from .fixture_format import DEFAULT_TOL, DTYPE_NAMES, F32, F64, FORMAT, I64, SOURCE_PREFIX, encode_tensor
from .reference import GoldenError

BASE_SEED = 20261121
SUFFIX = {F64: "f64", F32: "f32"}


# ---- what a stage declares ----


@dataclass
class FloatCase:
    """One case, written as `<name>-f64` and `<name>-f32` (or only the dtypes given).

    build() draws the inputs in float64 (after torch is seeded from the case name).
    params None: build() draws the params too and returns them under "_params".
    check(outputs_f64): optional self-check against numbers known independently.
    tolerance: optional {dtype: {"abs", "rel"}} (a v1.1 stage's V11_TOL); else DEFAULT_TOL.
    """
    name: str
    what: str
    params: dict
    build: object
    check: object = None
    dtypes: tuple = (F64, F32)
    tolerance: dict = None

    def fixture_names(self):
        return [f"{self.name}-{SUFFIX[dtype]}" for dtype in self.dtypes]

    def summary(self):
        return self.what


def random_params_case(name, what, build):
    """A float case whose params are drawn with its inputs: build() returns them under "_params"."""
    return FloatCase(name, what, None, build)


@dataclass
class ErrorCase:
    """An `expect_error` fixture, `error-<name>` (float64 inputs), optionally also
    `error-<name>-f32`. Generating it fails if the implementation does not raise."""
    name: str
    why: str
    params: dict
    build: object
    also_f32: bool = False

    def dtypes(self):
        return (F64, F32) if self.also_f32 else (F64,)

    def fixture_names(self):
        return [f"error-{self.name}" + ("-f32" if dtype == F32 else "") for dtype in self.dtypes()]

    def summary(self):
        return f"error: {self.why}"


@dataclass
class Stage:
    """One fixture stage, declared once at the end of its stages/<name>.py."""
    name: str                # the folder under GoldenData/ and every fixture's "stage"
    implementation: object   # (inputs, params) -> dict of output tensors, or raises GoldenError
    cases: list              # FloatCase and ErrorCase, in the order they are written and listed
    catalog_prefixes: tuple  # the common start of the cases' `what`, which --list leaves out
    tolerance: dict = None   # {dtype: {"abs", "rel"}} of its float fixtures; None: DEFAULT_TOL


# ---- from a case to fixtures ----


def case_seed(stage, case):
    return BASE_SEED + zlib.crc32(f"{stage}/{case}".encode()) % 100000


def source_line(seed, dtype, what):
    return f"{SOURCE_PREFIX} (torch {torch.__version__}, seed {seed}, {DTYPE_NAMES[dtype]}): {what}"


def cast_inputs(inputs, dtype):
    return {k: (v.to(dtype) if v.is_floating_point() else v.clone()) for k, v in inputs.items()}


def float_fixtures(stage, case):
    """The (file name, fixture) pairs of a FloatCase: its outputs computed by the
    stage's implementation in each dtype, with the stage's tolerance (by default
    DEFAULT_TOL)."""
    seed = case_seed(stage.name, case.name)
    torch.manual_seed(seed)
    base = case.build()
    params = case.params if case.params is not None else dict(base.pop("_params"))
    fixtures = []
    for dtype, name in zip(case.dtypes, case.fixture_names()):
        inputs = cast_inputs(base, dtype)
        outputs = stage.implementation({k: v.clone() for k, v in inputs.items()}, params)
        for out_name, out in outputs.items():
            # Float outputs in the fixture's dtype; indices and counts int64, masks bool (v1.1).
            assert out.dtype in (dtype, I64, torch.bool), (stage.name, case.name, out_name, out.dtype)
        if case.check is not None and dtype == F64:
            case.check(outputs)
        fixtures.append((name, {
            "format": FORMAT,
            "stage": stage.name,
            "name": name,
            "source": source_line(seed, dtype, case.what),
            "params": params,
            "inputs": {k: encode_tensor(v) for k, v in inputs.items()},
            "expected": {k: encode_tensor(v) for k, v in outputs.items()},
            "tolerance": dict((case.tolerance or stage.tolerance or DEFAULT_TOL)[dtype]),
        }))
    return fixtures


def error_fixtures(stage, case):
    """The (file name, fixture) pairs of an ErrorCase, after checking that the
    stage's implementation rejects each input."""
    seed = case_seed(stage.name, f"error-{case.name}")
    torch.manual_seed(seed)
    base = case.build()
    fixtures = []
    for dtype, name in zip(case.dtypes(), case.fixture_names()):
        inputs = cast_inputs(base, dtype)
        try:
            stage.implementation({k: v.clone() for k, v in inputs.items()}, case.params)
        except GoldenError:
            pass
        else:
            raise AssertionError(f"{stage.name}/error-{case.name}: the reference implementation accepted the input")
        fixtures.append((name, {
            "format": FORMAT,
            "stage": stage.name,
            "name": name,
            "source": source_line(seed, dtype, f"input the project rejects ({case.why})"),
            "params": case.params,
            "inputs": {k: encode_tensor(v) for k, v in inputs.items()},
            "expect_error": case.why,
        }))
    return fixtures


def stage_fixtures(stage):
    """Every (file name, fixture) pair of a stage, in the order of its cases."""
    fixtures = []
    for case in stage.cases:
        if isinstance(case, ErrorCase):
            fixtures += error_fixtures(stage, case)
        else:
            fixtures += float_fixtures(stage, case)
    return fixtures


def close_to(got, want, tol=1e-6):
    """A check() helper: `got` (a tensor) equals the numbers `want` within tol."""
    got = got.reshape(-1).tolist()
    want = list(want)
    assert len(got) == len(want) and all(abs(a - b) <= tol for a, b in zip(got, want)), (got, want)


# ---- small random helpers (all draw from torch's seeded global generator) ----


def randint(lo, hi):
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,)).item())


def tokens(n, lo=3, hi=99):
    """n random token ids in [lo, hi] (never 0, 1 or 2, which serve as pads/BOS)."""
    return torch.randint(lo, hi + 1, (n,)).tolist()


def rows_tensor(rows):
    return torch.tensor(rows, dtype=I64)


def pad_to(row, length, pad_id):
    assert len(row) <= length
    return row + [pad_id] * (length - len(row))


def attention_rows(length, prompt_length, answer_lengths, left_pads=None):
    """Attention mask [B,L]: prompt (minus its left padding) and each answer are 1."""
    mask = torch.zeros(len(answer_lengths), length, dtype=I64)
    for j, n in enumerate(answer_lengths):
        assert prompt_length + n <= length
        left = left_pads[j] if left_pads else 0
        mask[j, left:prompt_length] = 1
        mask[j, prompt_length:prompt_length + n] = 1
    return mask


def log_prob_like(*shape):
    """Plausible per-token log-probs: negative, mostly between -4 and 0."""
    return -torch.rand(*shape, dtype=F64) * 4.0 - 0.01


def length_mask(b, m, lengths=None):
    """Mask [B,M] of ones; row i is zeroed from lengths[i] on (when lengths is given)."""
    mask = torch.ones(b, m, dtype=I64)
    if lengths:
        for i, n in enumerate(lengths):
            mask[i, n:] = 0
    return mask


def mutated(build, change):
    """An input made invalid on purpose: build(), then change(batch) in place."""
    def built():
        batch = build()
        change(batch)
        return batch
    return built
