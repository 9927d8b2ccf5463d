"""What a trainer learns from its environment and flags (reference ``cloud_nas_utils``).

Same names and arguments as the reference so a Vertex trainer works unchanged;
the reference's traps are fixed: a missing trial id is a clear error where it
matters instead of the integer 0, and flag values may contain ``=``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, NotFoundError
from proxy_task_utils.storage import join_uri, open_storage, split_uri

__all__ = [
    "TRIAL_ID_ENV",
    "MODEL_DIR_ENV",
    "str_2_bool",
    "get_trial_id_from_environment",
    "get_job_dir_from_environment_if_exist",
    "get_map_finetune_trial_id_to_search_trial_id",
    "get_search_trial_id_to_finetune",
    "get_retrain_search_job_model_dir",
    "get_finetune_nas_params_str",
    "parse_and_save_nas_params_str",
    "write_job_status",
]

logger = logging.getLogger("proxy_task_utils")

TRIAL_ID_ENV = "CLOUD_ML_TRIAL_ID"
MODEL_DIR_ENV = "AIP_MODEL_DIR"
_TRIAL_DIR_PATTERNS = (re.compile(r".*nas/search/\d+"), re.compile(r".*nas/train/\d+"))


def str_2_bool(v: str) -> bool:
    """``"true"`` (any case) -> True, any other string -> False; non-strings are an error."""
    if not isinstance(v, str):
        raise ValueError(f"str_2_bool expects a string, but got {v!r} ({type(v).__name__})")
    return v.strip().lower() == "true"


def get_trial_id_from_environment(default: str | None = "0") -> str:
    """The trial id from ``CLOUD_ML_TRIAL_ID`` (a string); ``default`` (with a warning) if unset.

    Pass ``default=None`` to make a missing id an error (retrain mode needs it).
    """
    trial_id = os.environ.get(TRIAL_ID_ENV)
    if trial_id:
        return trial_id
    if default is None:
        raise ConfigurationError(
            f"environment variable {TRIAL_ID_ENV} is not set; the controller sets it for every trial "
            f"(set it by hand, e.g. {TRIAL_ID_ENV}=1, to run a trainer alone)"
        )
    logger.warning("%s is not set; using trial id %r", TRIAL_ID_ENV, default)
    return default


def get_job_dir_from_environment_if_exist(current_job_dir: str) -> str:
    """The trial folder: from ``AIP_MODEL_DIR`` by the reference's rule, else ``current_job_dir``.

    The longest prefix of ``AIP_MODEL_DIR`` matching ``.*nas/search/<n>`` (else
    ``.*nas/train/<n>``) is the trial folder; a value matching neither is used
    as it is (the reference raises; any folder is a valid trial folder here).
    """
    env_dir = os.environ.get(MODEL_DIR_ENV)
    if not env_dir:
        return current_job_dir
    for pattern in _TRIAL_DIR_PATTERNS:
        match = pattern.match(env_dir)
        if match:
            return match.group(0)
    return env_dir.rstrip("/")


def get_map_finetune_trial_id_to_search_trial_id(retrain_search_job_trials: str) -> dict[str, str]:
    """``"123, 453, 1025"`` -> ``{"1": "123", "2": "453", "3": "1025"}``."""
    if not isinstance(retrain_search_job_trials, str) or not retrain_search_job_trials.strip():
        raise ConfigurationError(
            f"retrain_search_job_trials must be a comma-separated list of trial ids, "
            f"but got {retrain_search_job_trials!r}"
        )
    ids = [t.strip() for t in retrain_search_job_trials.split(",")]
    if any(not t for t in ids):
        raise ConfigurationError(f"retrain_search_job_trials has an empty entry: {retrain_search_job_trials!r}")
    return {str(i + 1): t for i, t in enumerate(ids)}


def get_search_trial_id_to_finetune(retrain_search_job_trials: str) -> str:
    """The search trial this retrain trial re-trains (by position of ``CLOUD_ML_TRIAL_ID``)."""
    mapping = get_map_finetune_trial_id_to_search_trial_id(retrain_search_job_trials)
    trial_id = get_trial_id_from_environment(default=None)
    if trial_id not in mapping:
        raise ConfigurationError(
            f"{TRIAL_ID_ENV}={trial_id!r} has no entry in retrain_search_job_trials "
            f"{retrain_search_job_trials!r} (positions 1..{len(mapping)})"
        )
    return mapping[trial_id]


def get_retrain_search_job_model_dir(retrain_search_job_trials: str, retrain_search_job_dir: str) -> str:
    """``<retrain_search_job_dir>/<search trial id>``: where the checkpoint to start from lives."""
    if not retrain_search_job_dir:
        raise ConfigurationError("retrain_search_job_dir is empty; pass the search job folder")
    return join_uri(retrain_search_job_dir, get_search_trial_id_to_finetune(retrain_search_job_trials))


def get_finetune_nas_params_str(retrain_search_job_trials: str, retrain_search_job_dir: str) -> str:
    """Path of the ``nas_params_str.json`` of the search trial to re-train."""
    return join_uri(
        get_retrain_search_job_model_dir(retrain_search_job_trials, retrain_search_job_dir), p.NAS_PARAMS_STR_FILE
    )


def parse_and_save_nas_params_str(
    search_space: Callable[[dict[str, Any]], Any] | None, nas_params_str: str, model_dir: str
) -> dict[str, Any]:
    """Parse the architecture (JSON text, or a path/URI ending in ``.json``) and save it.

    Saves ``<model_dir>/nas_params_str.json`` for retrain trials and returns
    the dict. ``search_space``, if given, is called with the dict to validate
    (or materialise) it; its exceptions propagate.
    """
    text = nas_params_str.strip()
    source = "--nas_params_str"
    if text.endswith(".json"):
        parent, name = split_uri(text)
        try:
            data, _ = open_storage(parent).read(name)
        except NotFoundError:
            raise ConfigurationError(f"nas_params_str file {text} does not exist") from None
        text, source = data.decode("utf-8"), text
    params = p.load_json_object(text, path=source)
    if search_space is not None:
        search_space(params)
    open_storage(model_dir).write(p.NAS_PARAMS_STR_FILE, json.dumps(params, indent=2).encode("utf-8"))
    return params


def write_job_status(model_dir: str, job_status: str) -> None:
    """``job_status.json``: ``success``, ``failed`` or ``failed_with_nan_error``."""
    open_storage(model_dir).write(p.JOB_STATUS_FILE, p.encode_job_status(job_status))
