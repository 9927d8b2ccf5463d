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
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["cosine_decay_lr", "torch_cosine_scheduler", "TorchWeightAverager", "SMOOTHING_MODES"]


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


# --- PyTorch: learning-rate scheduler and weight averaging (torch imported lazily) ---------------

SMOOTHING_MODES = ("none", "ema", "swa")


def torch_cosine_scheduler(
    optimizer: Any,
    *,
    decay_steps: int,
    warmup_steps: int = 0,
    warmup_start_factor: float = 0.0,
    min_lr: float = 0.0,
    last_step: int = -1,
) -> Any:
    """A ``LambdaLR`` stepping :func:`cosine_decay_lr` once per optimizer step.

    The schedule uses each param group's ``initial_lr`` (set by torch) as
    ``base_lr``; ``min_lr`` is absolute. ``last_step`` is the number of steps
    already done minus one, to resume a schedule (torch's ``last_epoch``).
    """
    from torch.optim.lr_scheduler import LambdaLR

    def factors(base_lr: float) -> Callable[[int], float]:
        def factor(step: int) -> float:
            if base_lr == 0:
                return 0.0
            lr = cosine_decay_lr(
                step,
                base_lr=base_lr,
                decay_steps=decay_steps,
                warmup_steps=warmup_steps,
                warmup_start_factor=warmup_start_factor,
                min_lr=min(min_lr, base_lr),
            )
            return lr / base_lr

        return factor

    if last_step >= 0:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    bases = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    return LambdaLR(optimizer, [factors(b) for b in bases], last_epoch=last_step)


class TorchWeightAverager:
    """EMA or SWA of a model's weights through ``torch.optim.swa_utils.AveragedModel``.

    Averaged weights give smoother, less seed-dependent validation curves,
    which is what a proxy task needs to rank models with few steps.

    * ``"ema"``: exponential moving average of weights *and* BatchNorm
      buffers after every step (``use_buffers=True``), so no BN pass is needed.
    * ``"swa"``: equal-weight average of the weights from ``swa_start_step``
      on; BatchNorm statistics are recomputed with ``update_bn`` on the given
      batches before each evaluation.
    * ``"none"``: evaluates the model itself.

    Not thread-safe; one per model. Its state (``state_dict``) belongs in the
    trainer's checkpoint so that a resumed run continues the same average.
    """

    def __init__(self, model: Any, mode: str = "ema", *, ema_decay: float = 0.98, swa_start_step: int = 0) -> None:
        if mode not in SMOOTHING_MODES:
            raise ValueError(f"smoothing mode must be one of {SMOOTHING_MODES}, but got {mode!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), but got {ema_decay}")
        if swa_start_step < 0:
            raise ValueError(f"swa_start_step must be >= 0, but got {swa_start_step}")
        self.model = model
        self.mode = mode
        self.swa_start_step = swa_start_step
        self.averaged: Any = None
        if mode == "ema":
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        elif mode == "swa":
            from torch.optim.swa_utils import AveragedModel

            self.averaged = AveragedModel(model)

    @property
    def has_average(self) -> bool:
        """Whether the average holds at least one update (else evaluation uses the model)."""
        return self.averaged is not None and int(self.averaged.n_averaged.item()) > 0

    def update(self, step: int) -> None:
        """Fold the current weights in, after the optimizer step of 0-based ``step``."""
        if self.averaged is None or (self.mode == "swa" and step < self.swa_start_step):
            return
        self.averaged.update_parameters(self.model)

    def eval_model(self, bn_batches: Iterable[Any] | None = None) -> Any:
        """The module to evaluate: the average when there is one, else the model.

        For SWA, ``bn_batches`` (input tensors) recompute the BatchNorm
        statistics of the average; without them its BN buffers are those of
        the model when the average was created.
        """
        if not self.has_average:
            return self.model
        if self.mode == "swa" and bn_batches is not None:
            from torch.optim.swa_utils import update_bn

            update_bn(bn_batches, self.averaged)
        return self.averaged.module

    def state_dict(self) -> dict[str, Any]:
        return {} if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.averaged is not None and state:
            self.averaged.load_state_dict(state)
