"""Candidate proxy-task configs: a user generator or a YAML grid over named dimensions.

A proxy config is a name plus the trainer arguments that make training cheaper (fewer steps,
less data, a smaller model...). The reference's generator has the shape
``function(base_docker_args_map) -> [ProxyTaskConfig(name, docker_args_map)]``; we accept that
shape (``.name`` with ``.args`` or ``.docker_args_map``, or ``(name, args)`` pairs) so a
generator written for Vertex works unchanged.
"""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.config import NAME_MAX_LENGTH
from proxy_task_utils.errors import ConfigurationError

__all__ = ["ProxyTaskConfig", "load_generator", "generate_from_function", "grid_configs", "validate_configs"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class ProxyTaskConfig:
    """One candidate proxy task: ``name`` (unique, file-name safe) and its trainer ``args``."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def docker_args_map(self) -> dict[str, Any]:
        """The reference's name for :attr:`args`."""
        return self.args


def load_generator(spec: str) -> Any:
    """Imports ``module:function`` (or the reference's dotted ``module.function``).

    Raises:
        ConfigurationError: The module or function does not exist, or is not callable.
    """
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(f"proxy_tasks.generator must look like 'package.module:function', but got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"proxy_tasks.generator: cannot import module {module_name!r} ({exc}); "
            "make it importable (PYTHONPATH) or fix the name"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigurationError(f"proxy_tasks.generator: {module_name!r} has no callable {attr!r}")
    return fn


def _coerce(item: Any, index: int) -> ProxyTaskConfig:
    if isinstance(item, ProxyTaskConfig):
        return ProxyTaskConfig(item.name, dict(item.args))
    if isinstance(item, Mapping) and "name" in item:
        args = item.get("args", item.get("docker_args_map", {}))
        return ProxyTaskConfig(item["name"], dict(args))
    name = getattr(item, "name", None)
    args = getattr(item, "args", None)
    if args is None:
        args = getattr(item, "docker_args_map", None)
    if name is not None and isinstance(args, Mapping):
        return ProxyTaskConfig(name, dict(args))
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], Mapping):
        return ProxyTaskConfig(item[0], dict(item[1]))
    raise ConfigurationError(
        f"proxy-task generator item {index} must be ProxyTaskConfig(name, args) or (name, args), but got {item!r}"
    )


def validate_configs(configs: Sequence[ProxyTaskConfig]) -> list[ProxyTaskConfig]:
    """Checks names (non-empty, file-name safe, unique) and argument names.

    Raises:
        ConfigurationError: naming the offending config.
    """
    seen: set[str] = set()
    out: list[ProxyTaskConfig] = []
    for i, cfg in enumerate(configs):
        if not isinstance(cfg.name, str) or not _NAME_RE.match(cfg.name):
            raise ConfigurationError(
                f"proxy task {i} has name {cfg.name!r}; use letters, digits, '_', '-' or '.' (it names files)"
            )
        if len(cfg.name) > NAME_MAX_LENGTH:
            raise ConfigurationError(
                f"proxy task {i} has a name of {len(cfg.name)} characters ({cfg.name[:40]}...); "
                f"use at most {NAME_MAX_LENGTH} (it names files)"
            )
        if cfg.name in seen:
            raise ConfigurationError(f"proxy task name {cfg.name!r} appears twice; names must be unique")
        seen.add(cfg.name)
        for key in cfg.args:
            if not isinstance(key, str) or not key or key.startswith("-") or "=" in key:
                raise ConfigurationError(
                    f"proxy task {cfg.name!r}: argument name {key!r} is invalid (write it without '--' or '=')"
                )
        out.append(cfg)
    if not out:
        raise ConfigurationError("no proxy tasks: the generator or grid produced an empty list")
    return out


def generate_from_function(spec: str, base_args: Mapping[str, Any]) -> list[ProxyTaskConfig]:
    """Calls the user's generator with a copy of the base trainer args and validates the result."""
    fn = load_generator(spec)
    result = fn(dict(base_args))
    if result is None or isinstance(result, (str, bytes, Mapping)):
        raise ConfigurationError(f"proxy_tasks.generator {spec!r} must return a list of configs, but got {result!r}")
    return validate_configs([_coerce(item, i) for i, item in enumerate(result)])


def _label(value: Any) -> str:
    text = str(value)
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", text)


def grid_configs(
    dimensions: Sequence[Mapping[str, Any]],
    base_args: Mapping[str, Any],
    *,
    prefix: str = "proxy",
) -> list[ProxyTaskConfig]:
    """The Cartesian product of named dimensions, first dimension outermost.

    Each dimension is ``{"name": str, "arg": str, "values": [...]}`` (one trainer argument) or
    ``{"name": str, "values": [{"label": str, "args": {...}}, ...]}`` (several arguments per
    value, e.g. a model scale that changes width and depth). The config name is
    ``<prefix>_<dim><label>_<dim><label>...``; the args are ``base_args`` overridden by the
    dimension values.

    Raises:
        ConfigurationError: A dimension is malformed (the message names it).
    """
    if not dimensions:
        raise ConfigurationError("proxy_tasks.grid must list at least one dimension")
    axes: list[list[tuple[str, dict[str, Any]]]] = []
    for d, dim in enumerate(dimensions):
        where = f"proxy_tasks.grid[{d}]"
        name = dim.get("name")
        values = dim.get("values")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{where}.name must be a non-empty string")
        if not isinstance(values, list) or not values:
            raise ConfigurationError(f"{where}.values must be a non-empty list")
        arg = dim.get("arg")
        axis: list[tuple[str, dict[str, Any]]] = []
        for v, value in enumerate(values):
            if isinstance(value, Mapping):
                if "args" not in value or not isinstance(value["args"], Mapping):
                    raise ConfigurationError(f"{where}.values[{v}] must have an 'args' mapping")
                label = value.get("label", v)
                axis.append((f"{name}{_label(label)}", dict(value["args"])))
            else:
                if not isinstance(arg, str) or not arg:
                    raise ConfigurationError(
                        f"{where}: plain values need 'arg' (the trainer argument they set); "
                        "or give each value as {label, args}"
                    )
                axis.append((f"{name}{_label(value)}", {arg: value}))
        axes.append(axis)
    configs = []
    for combo in itertools.product(*axes):
        args = dict(base_args)
        for _, override in combo:
            args.update(override)
        configs.append(ProxyTaskConfig("_".join([prefix, *(label for label, _ in combo)]), args))
    return validate_configs(configs)
