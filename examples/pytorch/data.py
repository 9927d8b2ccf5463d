"""The digits task as torch tensors (NCHW), with torch's own distortions.

Loading, shuffling, the split and the subsample are shared with the
TensorFlow example (:mod:`examples.digits.data`). The distortions (small
rotations, shifts, pixel noise) are drawn from a ``torch.Generator``: the test
distortion once from the data seed, so every trial is evaluated on exactly the
same images; training distortions per batch from the trial's own seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from examples.digits import data as digits
from examples.digits.data import DATA_SEED, MAX_ROTATION_DEG, MAX_SHIFT_PX, N_TEST, N_TRAIN_POOL, NOISE_STD, DigitsTask

__all__ = ["DigitsTask", "load_digits_arrays", "make_task", "distort", "DATA_SEED"]
__all__ += ["N_TEST", "N_TRAIN_POOL", "MAX_ROTATION_DEG", "MAX_SHIFT_PX", "NOISE_STD"]


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images ``float32 (N, 1, 8, 8)`` in [0, 1], labels ``int64 (N,)``) of the 1797 digits."""
    images, labels = digits.load_digits()
    return images.reshape(-1, 1, 8, 8), labels


def distort(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rotation (+-15 deg), shift (+-1 px) and Gaussian pixel noise, per image."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(MAX_ROTATION_DEG)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (2.0 * MAX_SHIFT_PX / x.shape[-1])
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    return out + NOISE_STD * torch.randn(out.shape, generator=generator)


def make_task(training_data_pct: float = 100.0, *, data_seed: int = DATA_SEED) -> DigitsTask[torch.Tensor]:
    """Shuffle, split, subsample ``training_data_pct`` % of the training pool, distort the test set."""
    split = digits.split_digits(*load_digits_arrays(), training_data_pct, data_seed=data_seed)
    generator = torch.Generator().manual_seed(data_seed + 1)
    return DigitsTask(
        train_x=torch.from_numpy(split.train_x),
        train_y=torch.from_numpy(split.train_y),
        test_x=distort(torch.from_numpy(split.test_x), generator),
        test_y=torch.from_numpy(split.test_y),
    )
