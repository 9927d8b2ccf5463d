"""The MnasNet-like network of the search space, sized for 8x8 digit images.

A stem convolution, three stages of inverted-residual (MBConv) blocks with
the searched depth, kernel and expansion, global average pooling and a linear
classifier. ``model_scale`` shrinks every width on top of the searched width
multiplier: that is the "scaled-down model" knob of a proxy task.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from examples.digits import arch as digits_arch
from examples.digits.latency import LatencyFigure, time_until_converged
from examples.pytorch.search_space import validate

__all__ = ["build_model", "stage_channels", "measure_latency_ms"]

_BASE_STEM = 16
_BASE_CHANNELS = (16, 24, 32)
_STRIDES = (2, 1, 2)  # 8x8 stem -> 4x4 -> 4x4 -> 2x2
NUM_CLASSES = 10


def stage_channels(arch: dict[str, Any], model_scale: float = 1.0) -> tuple[int, list[int]]:
    """(stem channels, per-stage output channels) for an architecture at a model scale."""
    return digits_arch.stage_channels(arch, model_scale, base_stem=_BASE_STEM, base_channels=_BASE_CHANNELS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 project; identity skip when shapes match."""

    def __init__(self, c_in: int, c_out: int, *, kernel: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class DigitsMnasNet(nn.Module):
    def __init__(self, arch: dict[str, Any], model_scale: float = 1.0) -> None:
        super().__init__()
        validate(arch)
        stem, channels = stage_channels(arch, model_scale)
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        blocks: list[nn.Module] = []
        c_in = stem
        for block in digits_arch.blocks(arch, channels, _STRIDES):
            blocks.append(
                MBConv(c_in, block.c_out, kernel=block.kernel, expansion=block.expansion, stride=block.stride)
            )
            c_in = block.c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x.contiguous(memory_format=torch.channels_last)))
        return self.head(x.mean(dim=(2, 3)))


def build_model(arch: dict[str, Any], model_scale: float = 1.0) -> nn.Module:
    """The network for ``arch`` (validated) at ``model_scale``.

    Channels-last memory format: PyTorch's CPU depthwise convolutions run
    2-3x faster in it, which keeps a full training run within seconds.
    """
    return DigitsMnasNet(arch, model_scale).to(memory_format=torch.channels_last)


def measure_latency_ms(
    model: nn.Module, *, repeats: int = 200, warmup: int = 10, min_repeats: int | None = None, rel_tol: float = 0.02
) -> LatencyFigure:
    """Batch-1 CPU inference time in milliseconds, on one thread: the mean of the fastest quarter.

    One thread makes the figure independent of how many trials share the
    machine; the fastest quarter drops the repeats slowed by other trials
    (:mod:`examples.digits.latency`). Timing stops early once the figure has settled
    (after ``min_repeats``, default ``repeats``: no early stop).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, but got {repeats}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 1, 8, 8)

    def once() -> float:
        start = time.perf_counter()
        model(x)
        return (time.perf_counter() - start) * 1000.0

    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            return time_until_converged(
                once, max_repeats=repeats, min_repeats=repeats if min_repeats is None else min_repeats, rel_tol=rel_tol
            )
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
