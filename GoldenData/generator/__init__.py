"""The golden-fixture generator behind GoldenData/generate.py.

    fixture_format.py  the rlhf-golden-v1 writer and reader: dtypes, tensors, render, tolerances
    reference.py       what the reference implementations share: GoldenError, the input checks,
                       leaf(), the autograd self-check
    cases.py           the case registry: Stage, FloatCase, ErrorCase, per-case seeding, and
                       the seeded random helpers several stages build their inputs with
    stages/<stage>.py  one file per fixture stage: its PyTorch reference implementation, its
                       cases and its STAGE record; stages/__init__.py lists them in order
    cli.py             main(): delete the generated fixtures, write them all, re-check the
                       hand-written ones; --list prints the README's fixture tables

The implementations are our own PyTorch (CPU) re-implementations of the semantics
described in GoldenData/README.md (DeepSpeed-Chat for the reward-model and PPO
stages, align-anything for DPO), not copies of either project's code. Where the
reference code asserts, or would quietly return NaN, ours raises GoldenError; the
`expect_error` fixtures are exactly the inputs for which it raises.
"""
