"""The MnasNet-like search space of the digits examples: a width multiplier plus per-stage depth, kernel, expansion.

Each example instantiates :class:`SearchSpace` with its own values (the
PyTorch and Keras networks are sized differently) and re-exports the bound
methods as module functions, so configs keep naming
``examples.pytorch.search_space:sample``. The keys are the same for both, so
one ``--nas_params_str`` shape drives either trainer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SearchSpace"]


@dataclass(frozen=True)
class SearchSpace:
    """The allowed values of every decision; ``baseline_expansion`` sizes :meth:`baseline`."""

    width_multipliers: tuple[float, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]
    baseline_expansion: int
    num_stages: int = 3
    _choices: dict[str, tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table: dict[str, tuple[Any, ...]] = {"width_multiplier": self.width_multipliers}
        for i in range(self.num_stages):
            table[f"stage{i}_depth"] = self.depths
            table[f"stage{i}_kernel"] = self.kernels
            table[f"stage{i}_expansion"] = self.expansions
        object.__setattr__(self, "_choices", table)

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Every decision and its allowed values (a copy)."""
        return dict(self._choices)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One architecture, uniformly at random; deterministic for a seeded ``rng``."""
        return {name: rng.choice(values) for name, values in self._choices.items()}

    def baseline(self) -> dict[str, Any]:
        """A mid-sized reference architecture (used for latency targets and variance runs)."""
        arch: dict[str, Any] = {"width_multiplier": 1.0}
        for i in range(self.num_stages):
            arch.update({f"stage{i}_depth": 2, f"stage{i}_kernel": 3, f"stage{i}_expansion": self.baseline_expansion})
        return arch

    def validate(self, arch: dict[str, Any]) -> dict[str, Any]:
        """Check an architecture dict; returns it unchanged.

        Raises:
            ValueError: not a dict, a missing or unknown key, or a value outside its choices
                (the message names the key and the allowed values).
        """
        if not isinstance(arch, dict):
            raise ValueError(f"an architecture must be a JSON object, but got {type(arch).__name__}")
        unknown = sorted(set(arch) - set(self._choices))
        if unknown:
            raise ValueError(f"unknown architecture keys {unknown}; allowed keys: {sorted(self._choices)}")
        missing = sorted(set(self._choices) - set(arch))
        if missing:
            raise ValueError(f"architecture is missing keys {missing} (sample one with search_space.sample)")
        for name, values in self._choices.items():
            value = arch[name]
            if isinstance(value, bool) or value not in values:
                raise ValueError(f"architecture key {name!r} must be one of {list(values)}, but got {value!r}")
        return arch
