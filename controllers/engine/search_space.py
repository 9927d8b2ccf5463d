"""Seeded, reproducible sampling of architectures from a user search space.

A search space is either a callable ``function(rng) -> dict`` named as
``"package.module:function"`` or ``"path/to/file.py:function"`` (``rng`` is a
``random.Random``), or a table ``{name: [choices...]}`` (inline or in a YAML
file). :func:`sample_architectures` draws ``n`` architectures from one
``random.Random(seed)``: the same seed gives the same list, and duplicates are
skipped while the space still has unseen architectures (it gives up on
uniqueness after many draws, e.g. when the space is smaller than ``n``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controllers.config import SearchSpaceConfig
from controllers.errors import ConfigError

__all__ = ["SearchSpace", "load_search_space", "sample_architectures", "space_size"]

SearchSpace = Callable[[random.Random], dict[str, Any]]

_MAX_DRAWS_PER_MODEL = 50


def _load_function(spec: str) -> SearchSpace:
    module_name, _, func_name = spec.rpartition(":")
    if not module_name or not func_name:
        raise ConfigError(f"search_space.function must look like 'module:function', but got {spec!r}")
    if module_name.endswith(".py"):
        path = os.path.abspath(module_name)
        if not os.path.isfile(path):
            raise ConfigError(f"search_space.function: file {path} does not exist")
        name = f"_proxy_task_search_space_{abs(hash(path))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"search_space.function: cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"search_space.function: importing {path} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"search_space.function: cannot import module {module_name!r} ({exc}); "
                "check the spelling, or make it importable (run from its folder or set PYTHONPATH)"
            ) from None
        except Exception as exc:
            raise ConfigError(
                f"search_space.function: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"search_space.function: {module_name!r} has no function {func_name!r}; check the spelling")
    return func


def _table_space(table: Mapping[str, Sequence[Any]]) -> SearchSpace:
    names = sorted(table)  # the key order of a YAML/dict does not change the draws
    options = {n: list(table[n]) for n in names}

    def sample(rng: random.Random) -> dict[str, Any]:
        return {n: options[n][rng.randrange(len(options[n]))] for n in names}

    sample.size = math.prod(len(v) for v in options.values())  # type: ignore[attr-defined]
    return sample


def load_search_space(config: SearchSpaceConfig) -> SearchSpace:
    """Build the sampler described by a :class:`SearchSpaceConfig`.

    Raises:
        ConfigError: the module/function/file cannot be found or imported, or the YAML table is malformed.
    """
    if config.function is not None:
        return _load_function(config.function)
    if config.choices is not None:
        return _table_space(config.choices)
    import yaml

    assert config.file is not None
    try:
        with open(config.file, encoding="utf-8") as f:
            table = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"search_space.file: cannot read {config.file} ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, list) and v for v in table.values()):
        raise ConfigError(f"search_space.file {config.file} must hold a mapping of names to non-empty lists of choices")
    return _table_space(table)


def space_size(space: SearchSpace) -> int | None:
    """Number of distinct architectures of a table space; None for a function space."""
    return getattr(space, "size", None)


def _key(arch: Mapping[str, Any]) -> str:
    return json.dumps(arch, sort_keys=True)


def sample_architectures(space: SearchSpace, n: int, *, seed: int) -> list[dict[str, Any]]:
    """Draw ``n`` architectures reproducibly; unique where the space allows.

    Raises:
        ValueError: ``n < 0``, or the function returned something that is not a JSON-able dict.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, but got {n}")
    rng = random.Random(seed)
    size = space_size(space)
    want_unique = size is None or size >= n
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    draws = 0
    while len(out) < n:
        arch = space(rng)
        draws += 1
        if not isinstance(arch, dict):
            raise ConfigError(f"search_space: the sampler returned {type(arch).__name__}, but must return a dict")
        try:
            key = _key(arch)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"search_space: the sampler returned a dict that is not JSON-able: {exc}") from None
        if want_unique and key in seen and draws < _MAX_DRAWS_PER_MODEL * n:
            continue
        seen.add(key)
        out.append(arch)
    return out
