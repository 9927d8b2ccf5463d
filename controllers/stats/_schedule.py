"""Training-budget schedule of the model-selection tool (reference §3.2).

Each round trains ``K`` models for a further ``1/K`` of the full training (cumulative
percentage); the round with ``final_num_models`` or fewer trains to completion, signalled by
:data:`FINAL_ROUND_PCT` (101.0, above any reachable percentage, so no trial is stopped).
"""

from __future__ import annotations

#: Desired training percentage of the last round: "train to completion".
FINAL_ROUND_PCT = 101.0


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, but got {value!r}")
    return int(value)


def next_desired_pct(previous_pct: float, current_num_trials: int, final_num_models: int) -> float:
    """Desired cumulative training percentage for a round with ``current_num_trials`` trials.

    Args:
        previous_pct: Previous round's desired percentage (0.0 before the first round).
        current_num_trials: Number of trials launched this round.
        final_num_models: Size of the final round (reference: 10).

    Returns:
        101.0 when ``current_num_trials <= final_num_models``, else
        ``previous_pct + (1.0 / current_num_trials) * 100.0`` (the reference's exact expression,
        so the floats match its state files, e.g. 3.3333333333333335).

    Raises:
        ValueError: A count is not a positive integer.
    """
    current = _check_count(current_num_trials, "current_num_trials", 1)
    final = _check_count(final_num_models, "final_num_models", 1)
    if current <= final:
        return FINAL_ROUND_PCT
    return float(previous_pct) + (1.0 / current) * 100.0


def num_models_to_remove(current_num_trials: int, final_num_models: int, num_models_to_remove_per_iter: int) -> int:
    """How many trials a round should drop: ``max(0, min(per_iter, current - final))``."""
    current = _check_count(current_num_trials, "current_num_trials", 0)
    final = _check_count(final_num_models, "final_num_models", 1)
    per_iter = _check_count(num_models_to_remove_per_iter, "num_models_to_remove_per_iter", 1)
    return max(0, min(per_iter, current - final))


def desired_training_pcts(
    start_num_models: int = 30, final_num_models: int = 10, num_models_to_remove_per_iter: int = 5
) -> list[float]:
    """Planned desired percentages of every round when no trial is invalid.

    With the defaults: ``[3.333..., 7.333..., 12.333..., 19.0, 101.0]`` for rounds of
    30, 25, 20, 15 and 10 models. Invalid trials shrink later rounds, so the live controller
    must call :func:`next_desired_pct` with the actual trial count of each round.

    Raises:
        ValueError: A count is not a positive integer.
    """
    current = _check_count(start_num_models, "start_num_models", 1)
    final = _check_count(final_num_models, "final_num_models", 1)
    per_iter = _check_count(num_models_to_remove_per_iter, "num_models_to_remove_per_iter", 1)
    pcts: list[float] = []
    pct = 0.0
    while current > final:
        pct = next_desired_pct(pct, current, final)
        pcts.append(pct)
        current -= num_models_to_remove(current, final, per_iter)
    pcts.append(next_desired_pct(pct, current, final))
    return pcts
