"""The digits task without a framework: scikit-learn's bundled 8x8 digits, shuffled and split with numpy.

The images come from the csv file that ships inside scikit-learn, read with
numpy (importing scikit-learn itself would cost a second per trial). The
samples are shuffled with a fixed data seed before the split and the training
pool is kept small; both examples then distort the test set once from the
data seed (so every trial sees the same images) and the training batches from
the trial's seed, each with its own framework's random numbers.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from proxy_task_utils.data import subsample_indices

__all__ = [
    "DigitsTask",
    "digits_csv_path",
    "load_digits",
    "split_digits",
    "DATA_SEED",
    "N_TEST",
    "N_TRAIN_POOL",
    "MAX_ROTATION_DEG",
    "MAX_SHIFT_PX",
    "NOISE_STD",
]

DATA_SEED = 0  # fixes the shuffle, the split, the subsample and the test distortions for all trials
N_TEST = 800
N_TRAIN_POOL = 997  # 1797 - N_TEST
MAX_ROTATION_DEG = 15.0
MAX_SHIFT_PX = 1.0
NOISE_STD = 0.25

ArrayT = TypeVar("ArrayT")


@dataclass
class DigitsTask(Generic[ArrayT]):
    """Training subsample and test set, as numpy arrays or a framework's tensors."""

    train_x: ArrayT
    train_y: ArrayT
    test_x: ArrayT
    test_y: ArrayT


def digits_csv_path() -> str:
    """Path of scikit-learn's ``digits.csv.gz``, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits example needs scikit-learn's bundled data: pip install scikit-learn")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"scikit-learn is installed but {path} is missing; reinstall scikit-learn")
    return path


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images ``float32 (N, 8, 8)`` in [0, 1], labels ``int64 (N,)``) of the 1797 digits, in file order."""
    data = np.loadtxt(digits_csv_path(), delimiter=",", dtype=np.float32)
    return (data[:, :-1] / 16.0).reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def split_digits(
    images: np.ndarray, labels: np.ndarray, training_data_pct: float = 100.0, *, data_seed: int = DATA_SEED
) -> DigitsTask[np.ndarray]:
    """Shuffle with ``data_seed``, hold out the first ``N_TEST`` for testing, subsample the rest.

    The subsample is class-stratified (``training_data_pct`` % of the pool);
    the test images come back undistorted: each framework distorts them.
    """
    order = np.random.default_rng(data_seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    pool_x, pool_y = images[N_TEST:], labels[N_TEST:]
    keep = subsample_indices(pool_y.tolist(), training_data_pct, seed=data_seed)
    return DigitsTask(train_x=pool_x[keep], train_y=pool_y[keep], test_x=images[:N_TEST], test_y=labels[:N_TEST])
