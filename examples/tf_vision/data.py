"""The digits task in numpy (NHWC), made hard enough that architectures separate.

The same task as the PyTorch example: scikit-learn's bundled 8x8 digits (read
from the csv file that ships inside scikit-learn, without importing it),
shuffled with a fixed data seed before the split, a small training pool, and
distortions (small rotations, shifts, pixel noise). The test distortion is
drawn once from the data seed, so every trial is evaluated on the same
images; training distortions are drawn per batch from the trial's seed.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from proxy_task_utils.data import subsample_indices

__all__ = ["DigitsTask", "load_digits_arrays", "make_task", "distort", "batches", "DATA_SEED"]

DATA_SEED = 0  # fixes the shuffle, the split, the subsample and the test distortions for all trials
N_TEST = 800
MAX_ROTATION_DEG = 15.0
MAX_SHIFT_PX = 1.0
NOISE_STD = 0.25


def _digits_csv_path() -> str:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits example needs scikit-learn's bundled data: pip install scikit-learn")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"scikit-learn is installed but {path} is missing; reinstall scikit-learn")
    return path


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images ``float32 (N, 8, 8, 1)`` in [0, 1], labels ``int32 (N,)``) of the 1797 digits."""
    data = np.loadtxt(_digits_csv_path(), delimiter=",", dtype=np.float32)
    images = (data[:, :-1] / 16.0).reshape(-1, 8, 8, 1)
    return images, data[:, -1].astype(np.int32)


@dataclass
class DigitsTask:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


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


def make_task(training_data_pct: float = 100.0, *, data_seed: int = DATA_SEED) -> DigitsTask:
    """Shuffle, split, subsample ``training_data_pct`` % of the training pool, distort the test set."""
    images, labels = load_digits_arrays()
    order = np.random.default_rng(data_seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    test_x, test_y = images[:N_TEST], labels[:N_TEST]
    pool_x, pool_y = images[N_TEST:], labels[N_TEST:]
    keep = subsample_indices(pool_y.tolist(), training_data_pct, seed=data_seed)
    return DigitsTask(
        train_x=pool_x[keep],
        train_y=pool_y[keep],
        test_x=distort(test_x, np.random.default_rng(data_seed + 1)),
        test_y=test_y,
    )


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
