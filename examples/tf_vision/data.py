"""The digits task in numpy (NHWC), with the TensorFlow example's numpy distortions.

Loading, shuffling, the split and the subsample are shared with the PyTorch
example (:mod:`examples.digits.data`). The distortions (small rotations,
shifts, pixel noise) are drawn from a numpy ``Generator``: the test distortion
once from the data seed, so every trial is evaluated on the same images;
training distortions per batch from the trial's seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from examples.digits import data as digits
from examples.digits.data import DATA_SEED, MAX_ROTATION_DEG, MAX_SHIFT_PX, N_TEST, NOISE_STD, DigitsTask

__all__ = ["DigitsTask", "load_digits_arrays", "make_task", "distort", "batches", "DATA_SEED"]
__all__ += ["N_TEST", "MAX_ROTATION_DEG", "MAX_SHIFT_PX", "NOISE_STD"]


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images ``float32 (N, 8, 8, 1)`` in [0, 1], labels ``int32 (N,)``) of the 1797 digits."""
    images, labels = digits.load_digits()
    return images.reshape(-1, 8, 8, 1), labels.astype(np.int32)


def distort(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rotation (+-15 deg) about the centre, shift (+-1 px), bilinear resampling, Gaussian noise."""
    n, h, w, _ = x.shape
    angle = rng.uniform(-1, 1, n) * math.radians(MAX_ROTATION_DEG)
    shift = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, (n, 2))
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    # inverse map: where in the source each output pixel comes from
    src_y = cos * yy - sin * xx + cy - shift[:, 0, None, None]
    src_x = sin * yy + cos * xx + cx - shift[:, 1, None, None]
    y0, x0 = np.floor(src_y).astype(int), np.floor(src_x).astype(int)
    fy, fx = src_y - y0, src_x - x0
    img = x[..., 0]
    batch = np.arange(n)[:, None, None]

    def pixel(yi: np.ndarray, xi: np.ndarray) -> np.ndarray:
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        return np.where(inside, img[batch, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0.0)

    out = (
        pixel(y0, x0) * (1 - fy) * (1 - fx)
        + pixel(y0, x0 + 1) * (1 - fy) * fx
        + pixel(y0 + 1, x0) * fy * (1 - fx)
        + pixel(y0 + 1, x0 + 1) * fy * fx
    )
    out = out + NOISE_STD * rng.standard_normal(out.shape)
    return out[..., None].astype(np.float32)


def make_task(training_data_pct: float = 100.0, *, data_seed: int = DATA_SEED) -> DigitsTask[np.ndarray]:
    """Shuffle, split, subsample ``training_data_pct`` % of the training pool, distort the test set."""
    task = digits.split_digits(*load_digits_arrays(), training_data_pct, data_seed=data_seed)
    task.test_x = distort(task.test_x, np.random.default_rng(data_seed + 1))
    return task


def batches(
    task: DigitsTask, batch_size: int, *, seed: int, first_step: int, nan_from_step: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless distorted training batches, a pure function of ``(seed, first_step)``.

    ``nan_from_step`` (tests) turns the inputs of that global step and later
    into NaN, so the loss really becomes NaN inside Keras.
    """
    rng = np.random.default_rng([seed, first_step])
    n = len(task.train_y)
    step = first_step
    while True:
        index = rng.integers(0, n, batch_size)
        x = distort(task.train_x[index], rng)
        if nan_from_step is not None and step >= nan_from_step:
            x = np.full_like(x, np.nan)
        yield x, task.train_y[index]
        step += 1
