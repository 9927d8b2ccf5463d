"""The MnasNet-like network of the search space in Keras, sized for 8x8 digit images.

A stem convolution, three stages of inverted-residual (MBConv) blocks with the
searched depth, kernel and expansion, global average pooling and a linear
classifier: the same network as the PyTorch example. ``model_scale`` shrinks
every width on top of the searched width multiplier ("scaled-down model"
proxy knob).
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from examples.digits import arch as digits_arch
from examples.digits.latency import LatencyFigure, time_until_converged
from examples.tf_vision.search_space import validate

__all__ = ["build_model", "stage_channels", "measure_latency_ms", "NUM_CLASSES"]

_BASE_STEM = 16
_BASE_CHANNELS = (16, 32, 48)
_STRIDES = (1, 2, 2)  # 8x8 -> 8x8 -> 4x4 -> 2x2
_BN_MOMENTUM = 0.9  # short proxy runs: BatchNorm statistics must catch up within tens of steps
NUM_CLASSES = 10


def stage_channels(arch: dict[str, Any], model_scale: float = 1.0) -> tuple[int, list[int]]:
    """(stem channels, per-stage output channels) for an architecture at a model scale."""
    return digits_arch.stage_channels(arch, model_scale, base_stem=_BASE_STEM, base_channels=_BASE_CHANNELS)


def _conv_bn(x: Any, filters: int, kernel: int, *, stride: int = 1, relu: bool = True, name: str) -> Any:
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _mbconv(x: Any, c_out: int, *, kernel: int, expansion: int, stride: int, name: str) -> Any:
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 project; identity skip when shapes match."""
    c_in = int(x.shape[-1])
    h = x
    if expansion != 1:
        h = _conv_bn(h, c_in * expansion, 1, name=f"{name}_expand")
    h = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(h)
    h = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_dw_bn")(h)
    h = keras.layers.ReLU(name=f"{name}_dw_relu")(h)
    h = _conv_bn(h, c_out, 1, relu=False, name=f"{name}_project")
    if stride == 1 and c_in == c_out:
        h = keras.layers.Add(name=f"{name}_add")([x, h])
    return h


def build_model(arch: dict[str, Any], model_scale: float = 1.0) -> keras.Model:
    """The network for ``arch`` (validated) at ``model_scale``; outputs logits."""
    validate(arch)
    stem, channels = stage_channels(arch, model_scale)
    inputs = keras.Input((8, 8, 1), name="image")
    x = _conv_bn(inputs, stem, 3, name="stem")
    for block in digits_arch.blocks(arch, channels, _STRIDES):
        x = _mbconv(
            x,
            block.c_out,
            kernel=block.kernel,
            expansion=block.expansion,
            stride=block.stride,
            name=f"stage{block.stage}_block{block.index}",
        )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, logits, name="digits_mnasnet")


def measure_latency_ms(
    model: keras.Model, *, repeats: int = 200, warmup: int = 10, min_repeats: int | None = None, rel_tol: float = 0.02
) -> LatencyFigure:
    """Batch-1 CPU inference time in milliseconds (a compiled ``tf.function``): the mean of the fastest quarter.

    The fastest quarter drops the repeats slowed by other trials
    (:mod:`examples.digits.latency`); ``.numpy()`` waits for the result so
    each repeat times the whole forward pass. Timing stops early once the figure has settled
    (after ``min_repeats``, default ``repeats``: no early stop).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, but got {repeats}")
    x = tf.zeros((1, 8, 8, 1), tf.float32)
    with tf.device("/CPU:0"):
        forward = tf.function(lambda t: model(t, training=False))
        for _ in range(warmup):
            np.asarray(forward(x))

        def once() -> float:
            start = time.perf_counter()
            np.asarray(forward(x))
            return (time.perf_counter() - start) * 1000.0

        return time_until_converged(
            once, max_repeats=repeats, min_repeats=repeats if min_repeats is None else min_repeats, rel_tol=rel_tol
        )
