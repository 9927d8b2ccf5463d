"""From an architecture dict to the block settings both networks build: channels, kernels, expansions, strides.

The PyTorch and Keras networks differ in base widths and strides (passed in
here), not in how an architecture maps to blocks; that mapping lives once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Block", "round_channels", "stage_channels", "blocks"]


@dataclass(frozen=True)
class Block:
    """One MBConv block: stage ``stage``, position ``index`` within it, and its settings."""

    stage: int
    index: int
    c_out: int
    kernel: int
    expansion: int
    stride: int


def round_channels(c: float) -> int:
    """Nearest multiple of 4, at least 4 (small widths stay usable)."""
    return max(4, int(round(c / 4.0)) * 4)


def stage_channels(
    arch: dict[str, Any], model_scale: float, *, base_stem: int, base_channels: Sequence[int]
) -> tuple[int, list[int]]:
    """(stem channels, per-stage output channels): base widths times the width multiplier and ``model_scale``.

    Raises:
        ValueError: ``model_scale`` outside (0, 4].
    """
    if not 0 < model_scale <= 4:
        raise ValueError(f"model_scale must be in (0, 4], but got {model_scale}")
    w = float(arch["width_multiplier"]) * model_scale
    return round_channels(base_stem * w), [round_channels(c * w) for c in base_channels]


def blocks(arch: dict[str, Any], channels: Sequence[int], strides: Sequence[int]) -> Iterator[Block]:
    """The blocks in order: ``stage{i}_depth`` per stage, the stage's stride on its first block only."""
    for i, (c_out, stride) in enumerate(zip(channels, strides, strict=True)):
        for d in range(int(arch[f"stage{i}_depth"])):
            yield Block(
                stage=i,
                index=d,
                c_out=c_out,
                kernel=int(arch[f"stage{i}_kernel"]),
                expansion=int(arch[f"stage{i}_expansion"]),
                stride=stride if d == 0 else 1,
            )
