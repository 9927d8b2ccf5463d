"""What a search starts from: the reference scores and the candidate proxy configs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from controllers.engine.records import JobRecord, JobSpec, TrialPlan
from controllers.search.config import SearchConfig
from controllers.search.proxy_configs import ProxyTaskConfig, generate_from_function, grid_configs, validate_configs
from controllers.search.reference import (
    ReferenceModels,
    reference_from_job_dir,
    reference_from_model_selection,
    reference_from_table,
)
from proxy_task_utils.errors import ConfigurationError

__all__ = ["RETRAIN_FLAGS", "load_reference", "load_proxy_configs", "proxy_job_spec"]

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


def proxy_job_spec(
    config: SearchConfig,
    reference: ReferenceModels,
    record: JobRecord,
    flags: Sequence[tuple[str, str]],
    *,
    controller_uri: str,
) -> JobSpec:
    """A job that re-trains reference model ``k`` as trial ``k`` with the proxy's ``flags``.

    A README trainer reads ``--nas_params_str``, a reference trainer the re-training flags: every
    trial gets both (the first when the architecture is recorded).
    """
    trainer = config.trainer
    retrain = (
        ("retrain_search_job_dir", reference.job_dir),
        ("retrain_search_job_trials", ",".join(reference.trial_ids[: len(record.trials)])),
    )

    def plan(trial_id: str) -> TrialPlan:
        arch = reference.architecture(int(trial_id) - 1)
        own = (("nas_params_str", json.dumps(arch)),) if arch is not None else ()
        return TrialPlan(trial_id, flags=own + tuple(flags) + retrain)

    log_dir = config.runner.log_dir_for(controller_uri)
    return JobSpec(
        name=record.name,
        job_dir_uri=record.job_dir_uri,
        log_dir=f"{log_dir}/{record.name}",
        trainer_command=tuple(trainer.command),
        trials=tuple(plan(t.trial_id) for t in record.trials),
        desired_training_pct=None,
        max_training_time_in_hrs=config.training_time_hrs_limit,
        env=tuple(trainer.env.items()),
    )
