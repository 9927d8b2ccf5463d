"""Candidate proxy tasks for the digits trainer: a grid of data percentage x model scale.

Use it as ``proxy_tasks.generator: examples.pytorch.proxy_configs:generate``.
Every candidate trains a fraction of the base steps with its own cosine
schedule (``decay_steps`` = its own ``train_steps``), so a proxy ends at a low
learning rate instead of being cut off at a high one.

A scaled-down model is faster, so a latency target meant for the full-size
model would reward every scaled-down model alike. When the base arguments set
``target_latency_ms``, each scale gets a stricter target: the base target
times the measured latency of the baseline architecture at that scale over its
latency at full scale.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from controllers.search import ProxyTaskConfig

__all__ = ["generate", "scaled_latency_target", "baseline_latency_ms", "DATA_PCTS", "MODEL_SCALES"]

DATA_PCTS = (25.0, 50.0, 100.0)
MODEL_SCALES = (0.5, 1.0)
DEFAULT_BASE_STEPS = 300
CYCLES_PER_RUN = 6


def scaled_latency_target(base_target_ms: float, full_scale_ms: float, scaled_ms: float) -> float:
    """``base_target * scaled / full``: the same relative constraint for a scaled-down model.

    Raises:
        ValueError: a non-positive latency or target.
    """
    for name, value in (("base_target_ms", base_target_ms), ("full_scale_ms", full_scale_ms), ("scaled_ms", scaled_ms)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, but got {value}")
    return base_target_ms * scaled_ms / full_scale_ms


def baseline_latency_ms(model_scale: float, *, repeats: int = 50) -> float:
    """Median batch-1 CPU latency (ms) of the baseline architecture built at ``model_scale``."""
    from examples.pytorch.model import build_model, measure_latency_ms
    from examples.pytorch.search_space import baseline

    return measure_latency_ms(build_model(baseline(), model_scale), repeats=repeats).ms


def generate(
    base_args: dict[str, Any],
    *,
    data_pcts: Sequence[float] = DATA_PCTS,
    model_scales: Sequence[float] = MODEL_SCALES,
    train_step_fraction: float = 0.5,
    measure_latency: Callable[[float], float] = baseline_latency_ms,
) -> list[ProxyTaskConfig]:
    """One proxy per (data percentage, model scale), named ``data<pct>_scale<s>``.

    Args:
        base_args: the trainer arguments of full training (``train_steps`` and
            ``target_latency_ms`` are read when present; all are kept).
        data_pcts: values of ``--training_data_pct``.
        model_scales: values of ``--model_scale``.
        train_step_fraction: each proxy trains this fraction of the base steps.
        measure_latency: latency (ms) of the baseline model at a scale; injected by tests.

    Raises:
        ValueError: empty grids, or a fraction outside ``(0, 1]``.
    """
    if not data_pcts or not model_scales:
        raise ValueError("data_pcts and model_scales must each have at least one value")
    if not 0 < train_step_fraction <= 1:
        raise ValueError(f"train_step_fraction must be in (0, 1], but got {train_step_fraction}")
    base_steps = int(base_args.get("train_steps", DEFAULT_BASE_STEPS))
    steps = max(CYCLES_PER_RUN, int(round(base_steps * train_step_fraction)))
    target = float(base_args.get("target_latency_ms", 0) or 0)
    targets: dict[float, float] = {}
    if target > 0:
        full = measure_latency(1.0)
        targets = {s: scaled_latency_target(target, full, measure_latency(s)) for s in model_scales}
    configs = []
    for pct, scale in itertools.product(data_pcts, model_scales):
        args = dict(base_args)
        args.update(
            training_data_pct=pct,
            model_scale=scale,
            train_steps=steps,
            decay_steps=steps,
            eval_every_steps=max(1, steps // CYCLES_PER_RUN),
        )
        if scale in targets:
            args["target_latency_ms"] = round(targets[scale], 4)
        configs.append(ProxyTaskConfig(f"data{pct:g}_scale{scale:g}", args))
    return configs
