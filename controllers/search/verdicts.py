"""Noise-aware verdicts: how high a correlation can any proxy reach with these references?

Seed noise (run-to-run spread of a final score, from the variance measurement) limits the
correlation even a perfect proxy can show against references that were themselves measured
once. ``stats.noise_ceiling`` simulates that; here we find the inputs (the variance folder,
the reference scores), phrase the warning before launch, and rate each proxy against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controllers.search.state import read_folder_json
from controllers.stats import Ceiling, noise_ceiling, prob_target_reachable
from proxy_task_utils.errors import ConfigurationError
from proxy_task_utils.storage import open_storage

__all__ = [
    "VARIANCE_RESULT_FILE",
    "SeedNoise",
    "Verdict",
    "read_seed_noise",
    "seed_noise_from_result",
    "ceiling_verdict",
    "closeness_to_ceiling",
]

VARIANCE_RESULT_FILE = "variance_and_smoothness.json"
_MEAN_KEYS = ("mean_accuracy", "mean_final_accuracy", "final_accuracy_mean", "mean")
#: Below this probability that a perfect proxy reaches the target, we warn before launching.
UNREACHABLE_PROBABILITY = 0.5


@dataclass(frozen=True)
class SeedNoise:
    """Run-to-run standard deviation of a final score and where it came from."""

    seed_std: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"seed_std": self.seed_std, "source": self.source}


def seed_noise_from_result(result: dict[str, Any], *, path: str, reference_mean: float | None = None) -> SeedNoise:
    """``seed_std`` from a variance result; else CV (``variance_value``) times the runs' mean.

    When the result holds no mean, the mean of the reference scores stands in (said so in
    ``source``).

    Raises:
        ConfigurationError: Neither ``seed_std`` nor ``variance_value`` is a usable number.
    """
    std = result.get("seed_std")
    if isinstance(std, (int, float)) and not isinstance(std, bool) and std >= 0:
        return SeedNoise(float(std), f"seed_std of {path}")
    cv = result.get("variance_value")
    if not isinstance(cv, (int, float)) or isinstance(cv, bool) or cv < 0:
        raise ConfigurationError(
            f"{path} holds neither 'seed_std' nor a 'variance_value' >= 0; rerun the variance measurement"
        )
    for key in _MEAN_KEYS:
        mean = result.get(key)
        if isinstance(mean, (int, float)) and not isinstance(mean, bool):
            return SeedNoise(float(cv) * abs(float(mean)), f"variance_value x {key} of {path}")
    if reference_mean is None:
        raise ConfigurationError(f"{path} has a variance_value but no mean; give noise.seed_std in the config")
    return SeedNoise(
        float(cv) * abs(reference_mean), f"variance_value of {path} x mean reference accuracy {reference_mean:.4g}"
    )


def read_seed_noise(variance_dir: str, *, reference_mean: float | None = None) -> SeedNoise:
    """Reads ``variance_and_smoothness.json`` of a variance-measurement folder."""
    obj, path = read_folder_json(
        open_storage(variance_dir),
        VARIANCE_RESULT_FILE,
        missing="finish the variance measurement or give noise.seed_std (noise.variance_dir)",
    )
    return seed_noise_from_result(obj, path=path, reference_mean=reference_mean)


@dataclass(frozen=True)
class Verdict:
    """The ceiling for a target: is it reachable by any proxy, and a message saying so."""

    ceiling: Ceiling
    target: float | None
    prob_reachable: float | None
    reachable: bool
    message: str
    seed_noise: SeedNoise

    def to_dict(self) -> dict[str, Any]:
        return {
            "ceiling": self.ceiling.to_dict(),
            "target": self.target,
            "prob_reachable": self.prob_reachable,
            "reachable": self.reachable,
            "message": self.message,
            "seed_noise": self.seed_noise.to_dict(),
        }


def ceiling_verdict(
    reference_scores: Sequence[float | None],
    noise: SeedNoise,
    *,
    method: str,
    target: float | None,
    n_sim: int = 2000,
    seed: int = 0,
) -> Verdict:
    """Estimates the ceiling from the valid reference scores and judges ``target`` against it.

    Reachable means that a perfect proxy would reach the target in at least
    :data:`UNREACHABLE_PROBABILITY` of the simulations.
    """
    valid = [float(v) for v in reference_scores if v is not None]
    ceiling = noise_ceiling(valid, noise.seed_std, method=method, n_sim=n_sim, seed=seed)
    head = (
        f"noise ceiling ({method}, {len(valid)} reference models, seed std {noise.seed_std:.4g}): "
        f"median {ceiling.median:.3f}, 10-90 % [{ceiling.p10:.3f}, {ceiling.p90:.3f}]"
    )
    if target is None:
        return Verdict(ceiling, None, None, True, head, noise)
    prob = prob_target_reachable(ceiling, target)
    reachable = prob >= UNREACHABLE_PROBABILITY
    if reachable:
        message = f"{head}; a perfect proxy reaches the target {target:.3f} in {prob:.0%} of simulations"
    else:
        message = (
            f"target {method} {target:.3f} is likely out of reach: even a perfect proxy reaches it in only "
            f"{prob:.0%} of simulations ({head}). Spread the reference models further apart, reduce seed noise "
            "(smoothing, more eval data), or lower the target."
        )
    return Verdict(ceiling, target, prob, reachable, message, noise)


def closeness_to_ceiling(best_correlation: float | None, ceiling: Ceiling) -> float | None:
    """Fraction of the ceiling's median a proxy reached (1.0 = as good as seed noise allows)."""
    if best_correlation is None or ceiling.median <= 0:
        return None
    return best_correlation / ceiling.median
