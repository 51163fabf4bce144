"""Check your own PyTorch code against the golden fixtures (the workshop's answers route).

Stdlib and torch only. Loop over a stage's fixtures, call your function on the
inputs as tensors, and save its outputs as answers; then `golden-verify --answers`
checks every answer against the fixture's expected outputs and, where one fails,
names the well-known mistake that reproduces your numbers:

    import sys
    sys.path.insert(0, "GoldenData")              # from the repository's root
    import workshop

    def my_gae(values, rewards, start, gamma, lam):
        ...                                       # your implementation
        return advantages, returns

    for case in workshop.cases("gae"):            # every gae fixture with expected outputs
        p = case.params
        advantages, returns = my_gae(case.inputs["values"], case.inputs["rewards"],
                                     p["start"], p["gamma"], p["lambda"])
        case.save("answers", advantages=advantages, returns=returns)

    # then, in a shell:
    #   swift run golden-verify --answers answers

`case.inputs` holds the fixture's inputs as torch tensors in the fixture's dtype
(float64 or float32, int64, bool); `case.params` its params (the stage's defaults
are not filled in: see GoldenData/README.md for them). `case.save(dir, **outputs)`
writes `dir/<stage>/<fixture file name>` in the answer format
`rlhf-golden-answers-v1`; give the outputs by their fixture names (a scalar may be
a 0-dim tensor or a Python float). Leave out the outputs you do not compute (the
gradients, say): only the ones you save are compared.

Fixtures that expect an error are skipped: checking inputs is not part of an
answer. Chapters/workshop-example/ holds a worked example, with its saved answers.
"""

import json
import math
import os
from pathlib import Path

import torch

ANSWERS_FORMAT = "rlhf-golden-answers-v1"
_DTYPES = {"float64": torch.float64, "float32": torch.float32, "int64": torch.int64, "bool": torch.bool}
_NAMES = {v: k for k, v in _DTYPES.items()}
GOLDEN_DATA = Path(__file__).resolve().parent


def _decode(obj):
    data = [float(x) if isinstance(x, str) else x for x in obj["data"]]
    return torch.tensor(data, dtype=_DTYPES[obj["dtype"]]).reshape(obj["shape"])


def _number(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _encode(value, like):
    """A tensor (or Python number) in the fixture encoding; a number takes the dtype of
    the expected output it answers."""
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(value, dtype=_DTYPES[like["dtype"]])
    value = value.detach().cpu()
    return {"dtype": _NAMES[value.dtype], "shape": list(value.shape),
            "data": [_number(x) for x in value.reshape(-1).tolist()]}


class Case:
    """One golden fixture: its name, params, inputs as tensors, and where to save the answer."""

    def __init__(self, path, fixture):
        self.path = Path(path)
        self.stage = fixture["stage"]
        self.name = fixture["name"]
        self.params = dict(fixture.get("params") or {})
        self.inputs = {k: _decode(v) for k, v in fixture["inputs"].items()}
        self._expected = fixture["expected"]

    def save(self, directory, **outputs):
        """Writes `directory/<stage>/<fixture file name>` with the given outputs."""
        unknown = sorted(set(outputs) - set(self._expected))
        if unknown:
            raise ValueError(f"{self.stage}/{self.name}: no expected output {unknown}; "
                             f"it expects {sorted(self._expected)}")
        answer = {"format": ANSWERS_FORMAT, "stage": self.stage, "fixture": self.name,
                  "outputs": {k: _encode(v, self._expected[k]) for k, v in outputs.items()}}
        target = Path(directory) / self.stage / self.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(answer, allow_nan=False) + "\n", encoding="utf-8")
        return target

    def __repr__(self):
        return f"Case({self.stage}/{self.name})"


def cases(stage, golden_data=GOLDEN_DATA):
    """Every fixture of `stage` that expects outputs, in file order, as a Case."""
    folder = Path(golden_data) / stage
    if not folder.is_dir():
        raise FileNotFoundError(f"no fixtures for stage {stage!r} under {golden_data}")
    for path in sorted(folder.glob("*.json")):
        fixture = json.loads(path.read_text(encoding="utf-8"))
        if "expected" in fixture:
            yield Case(path, fixture)


if __name__ == "__main__":
    import sys
    stage = sys.argv[1] if len(sys.argv) > 1 else "gae"
    for case in cases(stage):
        print(case.name, {k: tuple(v.shape) for k, v in case.inputs.items()}, case.params)
