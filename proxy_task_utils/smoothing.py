"""Learning-rate schedules and weight averaging that make short proxy curves readable.

The cosine maths at the top is framework-neutral (``math`` only) and is shared
by the PyTorch helpers below and the Keras helpers in
:mod:`proxy_task_utils.keras`. A proxy run should decay to *its own* step
count: the reference decays to the full schedule, so an early-stopped proxy
sees a still-high learning rate and noisy scores (reference §8).

The PyTorch helpers import torch lazily, inside the functions that need it.
"""

from __future__ import annotations

import math

__all__ = ["cosine_decay_lr"]


def cosine_decay_lr(
    step: int,
    *,
    base_lr: float,
    decay_steps: int,
    warmup_steps: int = 0,
    warmup_start_factor: float = 0.0,
    min_lr: float = 0.0,
) -> float:
    """The learning rate at 0-based ``step`` of a linear warm-up + cosine decay.

    Warm-up rises linearly from ``base_lr * warmup_start_factor`` at step 0 to
    ``base_lr`` at ``warmup_steps``; then a half cosine falls from ``base_lr``
    to ``min_lr`` at ``decay_steps`` (counted from step 0, warm-up included)
    and stays at ``min_lr`` afterwards. Pure: no I/O, no state.

    Raises:
        ValueError: a negative step, ``decay_steps <= 0``, ``warmup_steps``
            outside ``[0, decay_steps]``, a negative or non-finite rate, or
            ``warmup_start_factor`` outside ``[0, 1]``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, but got {step}")
    if decay_steps <= 0:
        raise ValueError(f"decay_steps must be > 0, but got {decay_steps}")
    if not 0 <= warmup_steps <= decay_steps:
        raise ValueError(f"warmup_steps must be in [0, decay_steps={decay_steps}], but got {warmup_steps}")
    if not 0.0 <= warmup_start_factor <= 1.0:
        raise ValueError(f"warmup_start_factor must be in [0, 1], but got {warmup_start_factor}")
    for name, value in (("base_lr", base_lr), ("min_lr", min_lr)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, but got {value}")
    if step < warmup_steps:
        start = base_lr * warmup_start_factor
        return start + (base_lr - start) * step / warmup_steps
    if step >= decay_steps:
        return float(min_lr)
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
