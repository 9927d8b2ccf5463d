"""What a search starts from: the reference scores and the candidate proxy configs."""

from __future__ import annotations

from controllers.search.config import SearchConfig
from controllers.search.proxy_configs import ProxyTaskConfig, generate_from_function, grid_configs, validate_configs
from controllers.search.reference import (
    ReferenceModels,
    reference_from_job_dir,
    reference_from_model_selection,
    reference_from_table,
)
from proxy_task_utils.errors import ConfigurationError

__all__ = ["RETRAIN_FLAGS", "load_reference", "load_proxy_configs"]

#: Flags the controller sets itself; a proxy config may not set them.
RETRAIN_FLAGS = ("retrain_search_job_dir", "retrain_search_job_trials", "retrain_use_search_job_checkpoint")


def load_reference(config: SearchConfig) -> ReferenceModels:
    """Reads the reference scores from the configured source and checks there are enough."""
    r = config.reference
    if r.model_selection_dir:
        ref = reference_from_model_selection(r.model_selection_dir, require_complete=r.require_complete)
    elif r.job_dir:
        ref = reference_from_job_dir(r.job_dir, require_complete=r.require_complete)
    else:
        assert r.table is not None
        ref = reference_from_table(r.table, config.controller_dir)
    ref.check_valid(min_valid=r.min_valid, min_valid_ratio=r.min_valid_ratio)
    return ref


def load_proxy_configs(config: SearchConfig) -> list[ProxyTaskConfig]:
    """The candidate proxies, in order, with the retrain flags refused (the controller sets them)."""
    base = dict(config.trainer.args)
    pt = config.proxy_tasks
    if pt.generator:
        configs = generate_from_function(pt.generator, base)
    elif pt.grid is not None:
        configs = grid_configs([d.model_dump() for d in pt.grid], base, prefix=pt.name_prefix)
    else:
        assert pt.configs is not None
        configs = validate_configs([ProxyTaskConfig(c.name, {**base, **c.args}) for c in pt.configs])
    for cfg in configs:
        bad = [k for k in cfg.args if k in RETRAIN_FLAGS or k in ("job-dir", "job_dir", "nas_params_str")]
        if bad:
            raise ConfigurationError(
                f"proxy task {cfg.name!r} sets {bad}; the search controller sets these itself "
                "(proxy trials re-train the reference models from scratch)"
            )
    return configs
