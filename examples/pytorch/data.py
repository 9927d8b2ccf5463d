"""The digits task: scikit-learn's bundled 8x8 digits, made hard enough that architectures separate.

The images come from the csv file that ships inside scikit-learn, read with
numpy (importing scikit-learn itself would cost a second per trial). The
samples are shuffled with a fixed data seed before the split, the training
pool is kept small, and both sets are distorted: small rotations, shifts and
pixel noise. The test distortion is drawn once from the data seed, so every
trial is evaluated on exactly the same images; training distortions are
drawn per batch from the trial's own seed.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from proxy_task_utils.data import subsample_indices

__all__ = ["DigitsTask", "load_digits_arrays", "make_task", "distort", "DATA_SEED"]

DATA_SEED = 0  # fixes the shuffle, the split, the subsample and the test distortions for all trials
N_TEST = 800
N_TRAIN_POOL = 997  # 1797 - N_TEST
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
    """(images ``float32 (N, 1, 8, 8)`` in [0, 1], labels ``int64 (N,)``) of the 1797 digits."""
    data = np.loadtxt(_digits_csv_path(), delimiter=",", dtype=np.float32)
    images = (data[:, :-1] / 16.0).reshape(-1, 1, 8, 8)
    return images, data[:, -1].astype(np.int64)


@dataclass
class DigitsTask:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


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


def make_task(training_data_pct: float = 100.0, *, data_seed: int = DATA_SEED) -> DigitsTask:
    """Shuffle, split, subsample ``training_data_pct`` % of the training pool, distort the test set."""
    images, labels = load_digits_arrays()
    order = np.random.default_rng(data_seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    test_x, test_y = images[:N_TEST], labels[:N_TEST]
    pool_x, pool_y = images[N_TEST:], labels[N_TEST:]
    keep = subsample_indices(pool_y.tolist(), training_data_pct, seed=data_seed)
    generator = torch.Generator().manual_seed(data_seed + 1)
    return DigitsTask(
        train_x=torch.from_numpy(pool_x[keep]),
        train_y=torch.from_numpy(pool_y[keep]),
        test_x=distort(torch.from_numpy(test_x), generator),
        test_y=torch.from_numpy(test_y),
    )
