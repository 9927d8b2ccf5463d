"""The PyTorch example's values of the digits search space (see :mod:`examples.digits.search_space`).

Controllers sample it with ``examples.pytorch.search_space:sample`` (called
with a ``random.Random``); trainers check what they receive with
:func:`validate`. The ranges are wide enough that accuracy and latency of
sampled models really differ on the digits task.
"""

from __future__ import annotations

from examples.digits.search_space import SearchSpace

__all__ = ["SPACE", "choices", "sample", "validate", "baseline"]

SPACE = SearchSpace(
    width_multipliers=(0.25, 0.5, 0.75, 1.0),
    depths=(1, 2, 3),
    kernels=(3, 5),
    expansions=(1, 2, 4),
    baseline_expansion=2,
)
choices = SPACE.choices
sample = SPACE.sample
baseline = SPACE.baseline
validate = SPACE.validate
