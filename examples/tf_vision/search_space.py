"""A small MnasNet-like search space: per-stage depth, kernel and expansion, plus a width multiplier.

The same decisions and values as the PyTorch example, so one ``--nas_params_str``
drives either trainer. Controllers sample it with
``examples.tf_vision.search_space:sample`` (called with a ``random.Random``);
the trainer checks what it receives with :func:`validate`. Pure Python: no
TensorFlow import.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["NUM_STAGES", "WIDTH_MULTIPLIERS", "DEPTHS", "KERNELS", "EXPANSIONS", "choices", "sample", "validate", "baseline"]

NUM_STAGES = 3
WIDTH_MULTIPLIERS = (0.25, 0.5, 0.75, 1.0, 1.5)
DEPTHS = (1, 2, 3)
KERNELS = (3, 5)
EXPANSIONS = (1, 3, 6)

_CHOICES: dict[str, tuple[Any, ...]] = {"width_multiplier": WIDTH_MULTIPLIERS}
for _i in range(NUM_STAGES):
    _CHOICES[f"stage{_i}_depth"] = DEPTHS
    _CHOICES[f"stage{_i}_kernel"] = KERNELS
    _CHOICES[f"stage{_i}_expansion"] = EXPANSIONS


def choices() -> dict[str, tuple[Any, ...]]:
    """Every decision and its allowed values (a copy)."""
    return dict(_CHOICES)


def sample(rng: random.Random) -> dict[str, Any]:
    """One architecture, uniformly at random; deterministic for a seeded ``rng``."""
    return {name: rng.choice(values) for name, values in _CHOICES.items()}


def baseline() -> dict[str, Any]:
    """A mid-sized reference architecture (for latency targets and variance runs)."""
    arch: dict[str, Any] = {"width_multiplier": 1.0}
    for i in range(NUM_STAGES):
        arch.update({f"stage{i}_depth": 2, f"stage{i}_kernel": 3, f"stage{i}_expansion": 3})
    return arch


def validate(arch: dict[str, Any]) -> dict[str, Any]:
    """Check an architecture dict; returns it unchanged.

    Raises:
        ValueError: not a dict, a missing or unknown key, or a value outside its
            choices (the message names the key and the allowed values).
    """
    if not isinstance(arch, dict):
        raise ValueError(f"an architecture must be a JSON object, but got {type(arch).__name__}")
    unknown = sorted(set(arch) - set(_CHOICES))
    if unknown:
        raise ValueError(f"unknown architecture keys {unknown}; allowed keys: {sorted(_CHOICES)}")
    missing = sorted(set(_CHOICES) - set(arch))
    if missing:
        raise ValueError(f"architecture is missing keys {missing} (sample one with search_space.sample)")
    for name, values in _CHOICES.items():
        value = arch[name]
        if isinstance(value, bool) or value not in values:
            raise ValueError(f"architecture key {name!r} must be one of {list(values)}, but got {value!r}")
    return arch
