"""The TensorFlow example's values of the digits search space (see :mod:`examples.digits.search_space`).

The same decisions (keys) as the PyTorch example, so one ``--nas_params_str``
shape drives either trainer; the widths and expansions differ (1.5x width,
expansions 1/3/6) because the Keras network is sized differently. Controllers
sample it with ``examples.tf_vision.search_space:sample`` (called with a
``random.Random``); the trainer checks what it receives with :func:`validate`.
Pure Python: no TensorFlow import.
"""

from __future__ import annotations

from examples.digits.search_space import SearchSpace

__all__ = ["SPACE", "choices", "sample", "validate", "baseline"]

SPACE = SearchSpace(
    width_multipliers=(0.25, 0.5, 0.75, 1.0, 1.5),
    depths=(1, 2, 3),
    kernels=(3, 5),
    expansions=(1, 3, 6),
    baseline_expansion=3,
)
choices = SPACE.choices
sample = SPACE.sample
baseline = SPACE.baseline
validate = SPACE.validate
