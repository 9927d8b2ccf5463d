"""The variance measurement's config (YAML -> pydantic)."""

from __future__ import annotations

from pydantic import Field, model_validator

from controllers.config import ControllerConfig, SearchSpaceConfig

__all__ = ["VarianceConfig"]


class VarianceConfig(ControllerConfig):
    """Variance measurement (reference §2)."""

    search_space: SearchSpaceConfig
    num_copies: int = Field(default=5, ge=2)
    min_successful_copies: int = Field(default=3, ge=2)
    max_failure_ratio: float = Field(default=0.2, ge=0, le=1)  # more failed copies than this aborts, as elsewhere
    max_workable_attempts: int = Field(default=10, ge=1)
    workable_training_pct: float = Field(default=1.0, gt=0, le=100)
    copies_training_pct: float = Field(default=100.0, gt=0)
    max_variance_to_be_good: float = Field(default=0.4, ge=0)
    max_smoothness_to_be_good: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _copies(self) -> VarianceConfig:
        if self.min_successful_copies > self.num_copies:
            raise ValueError(
                f"min_successful_copies ({self.min_successful_copies}) must be <= num_copies ({self.num_copies})"
            )
        return self
