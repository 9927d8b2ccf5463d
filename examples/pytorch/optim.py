"""SGD with Nesterov momentum, without ``torch.optim``.

Why: the first ``torch.optim.Optimizer`` of a process imports ``torch._dynamo``
(about 1.7 s of CPU), which is a fifth of a full training run here and more
than half of a short proxy run; the proxy-task tools start hundreds of
trials. The update is exactly ``torch.optim.SGD(momentum=m, nesterov=True,
weight_decay=wd)``; the learning rate is passed to every :meth:`step`, from
:func:`proxy_task_utils.smoothing.cosine_decay_lr` at the global step, so a
resumed run needs no scheduler state. With ``torch.optim`` use
:func:`proxy_task_utils.smoothing.torch_cosine_scheduler` instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["NesterovSGD"]


class NesterovSGD:
    """Nesterov-momentum SGD with L2 weight decay (multi-tensor ``_foreach`` ops, like torch's)."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], *, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), but got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, but got {weight_decay}")
        self.params = [p for p in params if p.requires_grad]
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.buffers: list[torch.Tensor] | None = None  # created at the first step, as torch does

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        params = [p for p in self.params if p.grad is not None]
        if len(params) != len(self.params):
            raise RuntimeError("every parameter needs a gradient before step(); call backward() first")
        grads = [p.grad for p in params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.buffers is None:
            self.buffers = [g.clone() for g in grads]
        else:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, grads)
        updates = torch._foreach_add(grads, self.buffers, alpha=self.momentum)
        torch._foreach_add_(params, updates, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "weight_decay": self.weight_decay, "buffers": self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buffers = state["buffers"]
        if buffers is not None:
            if len(buffers) != len(self.params) or any(b.shape != p.shape for b, p in zip(buffers, self.params)):
                raise RuntimeError("optimizer state does not match the model's parameters")
            buffers = [b.clone() for b in buffers]
        self.buffers = buffers
