"""The fixture format `rlhf-golden-v1` (spec: GoldenData/README.md), as the
generator writes and reads it: dtype names, tensors to and from JSON, the file
layout, the default tolerances and the tolerance test."""

import json
import math

import torch

FORMAT = "rlhf-golden-v1"
# A fixture whose `source` starts with this is the generator's: it is deleted and
# rewritten on every run. Any other fixture is hand-written and left alone.
SOURCE_PREFIX = "GoldenData/generate.py"

F64, F32, I64 = torch.float64, torch.float32, torch.int64
DTYPE_NAMES = {F64: "float64", F32: "float32", I64: "int64", torch.bool: "bool"}
DTYPES_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}
DEFAULT_TOL = {F64: {"abs": 1e-10, "rel": 1e-9}, F32: {"abs": 1e-5, "rel": 1e-5}}
# The v1.1 stages' tolerances (shared/spec/v1.1-*.md): float32 is 2e-5, float64 as v1.
V11_TOL = {F64: {"abs": 1e-10, "rel": 1e-9}, F32: {"abs": 2e-5, "rel": 2e-5}}
# Pure gathers (the v1.1 end scores) are exact in both precisions.
EXACT_TOL = {F64: {"abs": 0.0, "rel": 0.0}, F32: {"abs": 0.0, "rel": 0.0}}


def encode_number(x):
    """A number as JSON holds it: NaN and the infinities become strings."""
    if isinstance(x, bool):
        return x
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def encode_tensor(t):
    """{"dtype", "shape", "data"}, data flattened in row-major order."""
    data = [encode_number(x) for x in t.reshape(-1).tolist()]
    return {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data": data}


def decode_tensor(obj):
    """The tensor encode_tensor wrote."""
    dtype = DTYPES_BY_NAME[obj["dtype"]]
    data = [float(x) if isinstance(x, str) else x for x in obj["data"]]
    return torch.tensor(data, dtype=dtype).reshape(obj["shape"])


def render(obj):
    """Pretty but compact: one line per top-level field and per tensor."""
    def one_line(v):
        return json.dumps(v, ensure_ascii=False, allow_nan=False)

    lines = ["{"]
    keys = list(obj)
    for i, key in enumerate(keys):
        comma = "," if i + 1 < len(keys) else ""
        value = obj[key]
        if key in ("inputs", "expected"):
            lines.append(f" {one_line(key)}: {{")
            names = list(value)
            for j, name in enumerate(names):
                inner = "," if j + 1 < len(names) else ""
                lines.append(f"  {one_line(name)}: {one_line(value[name])}{inner}")
            lines.append(" }" + comma)
        else:
            lines.append(f" {one_line(key)}: {one_line(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def is_generated(path):
    """Whether the fixture file at `path` was written by the generator."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and str(obj.get("source", "")).startswith(SOURCE_PREFIX)


def within(got, want, tol):
    """Whether `got` matches `want` under a fixture tolerance: |got - want| <= abs + rel * |want|
    element by element, NaN only against NaN, an infinity only against itself."""
    if got.shape != want.shape:
        return False
    for a, b in zip(got.reshape(-1).tolist(), want.reshape(-1).tolist()):
        if math.isnan(b) or math.isnan(a):
            if not (math.isnan(a) and math.isnan(b)):
                return False
        elif math.isinf(b) or math.isinf(a):
            if a != b:
                return False
        elif abs(a - b) > tol["abs"] + tol["rel"] * abs(b):
            return False
    return True
