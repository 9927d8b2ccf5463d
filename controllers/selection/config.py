"""Model selection's config (YAML -> pydantic)."""

from __future__ import annotations

from pydantic import Field, model_validator

from controllers.config import ControllerConfig, SearchSpaceConfig

__all__ = ["ModelSelectionConfig"]


class ModelSelectionConfig(ControllerConfig):
    """Model selection (reference §3)."""

    search_space: SearchSpaceConfig
    start_num_models: int = Field(default=30, ge=2)
    final_num_models: int = Field(default=10, ge=2)
    num_models_to_remove_per_iter: int = Field(default=5, ge=1)
    min_num_filtered_trials: int = Field(default=2, ge=1)
    max_failure_ratio: float = Field(default=0.2, ge=0, le=1)
    require_latency: bool = False
    accuracy_metric_id: str = "accuracy"
    latency_metric_id: str | None = None

    @model_validator(mode="after")
    def _sizes(self) -> ModelSelectionConfig:
        if self.final_num_models > self.start_num_models:
            raise ValueError(
                f"final_num_models ({self.final_num_models}) must be <= start_num_models ({self.start_num_models})"
            )
        if self.require_latency and self.latency.mode == "none":
            raise ValueError(
                "require_latency is true but latency.mode is 'none': set latency.mode to trainer or worker"
            )
        return self
