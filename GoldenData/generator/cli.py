"""The generator's command line: main() writes every generated fixture (or, with
--stage, only the named stages' folders), or with --list prints the per-stage
fixture tables of GoldenData/README.md.

Before writing, it deletes the JSON files whose `source` starts with
"GoldenData/generate.py" and nothing else: hand-written fixtures survive. After
writing, it re-checks those other fixtures against the stages' implementations
and fails if one disagrees.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from .cases import stage_fixtures
from .fixture_format import decode_tensor, is_generated, render, within
from .reference import GoldenError, check_autograd_rules
from .stages import STAGES

GOLDEN_DIR = Path(__file__).resolve().parent.parent


def check_other_fixtures():
    """Re-check hand-written (or third-party) fixtures against our implementations.
    Returns how many were checked and the list of problems."""
    implementations = {stage.name: stage.implementation for stage in STAGES}
    problems, checked = [], 0
    for path in sorted(GOLDEN_DIR.glob("*/*.json")):
        if is_generated(path):
            continue
        rel = path.relative_to(GOLDEN_DIR.parent)
        try:
            fx = json.loads(path.read_text(encoding="utf-8"))
            impl = implementations[fx["stage"]]
            inputs = {k: decode_tensor(v) for k, v in fx["inputs"].items()}
        except (KeyError, ValueError, TypeError) as err:
            problems.append(f"{rel}: cannot read ({err!r})")
            continue
        checked += 1
        try:
            outputs = impl(inputs, fx["params"])
        except GoldenError as err:
            if "expect_error" not in fx:
                problems.append(f"{rel}: our implementation rejects it ({err})")
            continue
        if "expect_error" in fx:
            problems.append(f"{rel}: expects an error, our implementation accepts it")
            continue
        for name, want in fx["expected"].items():
            if name not in outputs or not within(outputs[name], decode_tensor(want), fx["tolerance"]):
                problems.append(f"{rel}: output {name} disagrees with our implementation")
    return checked, problems


def print_catalog():
    """One Markdown table per stage: each case's files and what it covers (its
    `what` without the stage's common prefix)."""
    for stage in STAGES:
        print(f"\n### `{stage.name}`\n\n| fixture | covers |\n|---|---|")
        for case in stage.cases:
            names, what = case.fixture_names(), case.summary()
            for prefix in stage.catalog_prefixes:
                if what.startswith(prefix + ", "):
                    what = what[len(prefix) + 2:]
            if names[0].endswith("-f64") and len(names) > 1:
                shown = f"`{names[0][:-4]}-{{f64,f32}}`"
            else:
                shown = f"`{names[0]}`" + (" (+ `-f32`)" if len(names) > 1 else "")
            print(f"| {shown} | {what.replace('|', '/')} |")


def write_fixtures(only=None):
    """Compute the fixtures of every stage (or of the stages named in `only`), then
    delete those stages' generated files, write them again and re-check the
    hand-written fixtures. Returns the exit status: 1 if a hand-written fixture
    disagrees."""
    stages = [stage for stage in STAGES if only is None or stage.name in only]
    # Everything is computed before anything is deleted: a failing case leaves the folder as it was.
    fixtures = [(stage.name, name, obj) for stage in stages for name, obj in stage_fixtures(stage)]
    written_stages = {stage.name for stage in stages}
    removed = 0
    for path in sorted(GOLDEN_DIR.glob("*/*.json")):
        if path.parent.name in written_stages and is_generated(path):
            path.unlink()
            removed += 1
    seen = set()
    counts = {}
    total_bytes = 0
    for stage_name, name, obj in fixtures:
        assert (stage_name, name) not in seen, (stage_name, name)
        seen.add((stage_name, name))
        folder = GOLDEN_DIR / stage_name
        folder.mkdir(exist_ok=True)
        text = render(obj)
        (folder / f"{name}.json").write_text(text, encoding="utf-8")
        counts[stage_name] = counts.get(stage_name, 0) + 1
        total_bytes += len(text.encode("utf-8"))
    print(f"removed {removed} generated files, wrote {len(fixtures)} ({total_bytes / 1024:.0f} KiB):")
    for stage_name, n in counts.items():
        print(f"  {stage_name:22s} {n:3d}")
    checked, problems = check_other_fixtures()
    print(f"re-checked {checked} hand-written fixture(s) against the reference implementations")
    for p in problems:
        print(f"  MISMATCH {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="GoldenData/generate.py",
        description="Write the generated golden fixtures under GoldenData/<stage>/ "
                    "(all stages unless --stage is given).")
    parser.add_argument("--stage", action="append", metavar="NAME",
                        help="regenerate only this stage's folder (repeatable); other folders are left alone")
    parser.add_argument("--list", action="store_true",
                        help="print the per-stage fixture tables of GoldenData/README.md and write nothing")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    known = [stage.name for stage in STAGES]
    unknown = sorted(set(args.stage or []) - set(known))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(known)}")
    torch.set_num_threads(1)  # one thread: reductions always add in the same order
    torch.use_deterministic_algorithms(True)
    check_autograd_rules()
    if args.list:
        print_catalog()
        return 0
    return write_fixtures(set(args.stage) if args.stage else None)
