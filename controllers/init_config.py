"""``proxy-task init``: a commented pipeline config to start from, for a PyTorch, Keras or other trainer.

The text is a template (comments are the point: a YAML dump would lose them); a test loads each
variant with :class:`controllers.pipeline.PipelineConfig`, so a template that the model would
refuse cannot ship.
"""

from __future__ import annotations

import os

from controllers.errors import ConfigError

__all__ = ["TRAINERS", "template", "write_template"]

TRAINERS = ("pytorch", "keras", "custom")

_TRAINER = {
    "pytorch": """\
trainer:
  # The argv prefix of one trial ("python" is the controller's own interpreter). The controller
  # appends --job-dir=<trial folder>, --nas_params_str=<architecture JSON>, the args below as
  # --key=value, and the re-training flags (see the docs: Wiring a trainer). A trainer built on
  # proxy_task_utils.torch_loop.ProxyTaskLoop takes them as they are.
  command: [python, -m, my_project.train]
  args:
    train_steps: 10000          # full training, in steps (100 % of a trial)
    eval_every_steps: 500       # one train+eval cycle; the controller decides after each
  env: {}                       # extra environment variables for every trial
""",
    "keras": """\
trainer:
  # The argv prefix of one trial ("python" is the controller's own interpreter). The controller
  # appends --job-dir=<trial folder>, --nas_params_str=<architecture JSON>, the args below as
  # --key=value, and the re-training flags (see the docs: Wiring a trainer). The Keras callback
  # proxy_task_utils.keras.ProxyTaskCallback reports every validation cycle.
  command: [python, -m, my_project.train]
  args:
    train_steps: 10000          # full training, in steps: epochs x steps_per_epoch
    eval_every_steps: 500       # one train+eval cycle (an epoch, or eval_every_steps of the callback)
  env:
    TF_CPP_MIN_LOG_LEVEL: "2"   # quieter TensorFlow logs in the trial logs
""",
    "custom": """\
trainer:
  # The argv prefix of one trial: any program. The controller appends --job-dir=<trial folder>,
  # --nas_params_str=<architecture JSON>, the args below as --key=value, and the re-training
  # flags. The program writes TRIAL_TRAINING_METRICS.json in the trial folder once per cycle
  # and reads DESIRED_TRAINING_PCT.json before the next (proxy_task_utils does both).
  command: [./train.sh]
  args:
    train_steps: 10000          # full training, in steps (100 % of a trial)
  env: {}
""",
}

_BODY = """\
# Proxy-task design pipeline: variance measurement -> model selection -> proxy-task search.
# Run it with:  proxy-task run {name}     (add --resume to continue after a crash)
# Every key is listed in the docs' configuration reference; an unknown key is an error.

output_dir: runs/my_design      # one folder per stage goes under it; a path or gs://bucket/path
job_name: my_design             # letters, digits, _ . - (used in job folder names)
seed: 0                         # search-space sampling and model selection are reproducible from it

{trainer}
search_space:
  # Exactly one of: function (module:function(rng: random.Random) -> dict), choices, file.
  function: my_project.space:sample
  # choices: {{depth: [2, 3, 4], width: [16, 32, 64]}}

runner:
  kind: local                   # local subprocesses; ray or vertex to scale out (docs: Scale out)
  max_parallel_trials: 4        # trials at once (default: this machine's cores)

timeouts:
  poll_interval_secs: 30        # how often the controller reads the trial folders
  no_metrics_timeout_secs: 3600 # a trial that writes no metrics this long is failed (include queueing)
  heartbeat_interval_secs: 60   # null turns the heartbeat off (trainers built on the reference's library)

latency:
  mode: trainer                 # trainer: the trainer records its latency; worker; none

variance:                       # how noisy is one model's score? (VarianceConfig)
  num_copies: 5                 # copies of one workable model, trained from scratch
  min_successful_copies: 3      # fewer finished copies is an error

model_selection:                # the reference models (ModelSelectionConfig)
  start_num_models: 30          # sampled from the search space
  final_num_models: 10          # kept, spread out in (accuracy, latency), trained fully
  num_models_to_remove_per_iter: 5
  max_failure_ratio: 0.2        # more failed trials than this stops the stage with a diagnosis
  require_latency: false        # true: a model without a latency is invalid

search:                         # the proxy-task search (SearchConfig)
  proxy_tasks:
    # Exactly one of: generator (module:function(base_args) -> [ProxyTaskConfig]), grid, configs.
    grid:
      - name: data
        arg: training_data_pct  # a trainer flag; one proxy per combination of the grid's values
        values: [25, 50, 100]
      - name: steps
        arg: train_steps
        values: [2000, 5000]
  correlation: spearman         # decides; kendall is recorded too (Kendall 0.65 ~ Spearman 0.84)
  stop_rule: point              # lower_bound: the bootstrap interval's lower bound must reach the target
  desired_accuracy_correlation: 0.65
  desired_latency_correlation: null   # e.g. 0.65 to require that latencies rank alike
  training_time_hrs_limit: 3.0  # a proxy whose median trial trains longer fails
  early_stop_proxy_task_if_not_best: true
"""


def template(trainer: str = "pytorch", *, name: str = "pipeline.yaml") -> str:
    """The commented pipeline config for ``trainer`` (one of :data:`TRAINERS`).

    Raises:
        ConfigError: an unknown trainer kind.
    """
    if trainer not in _TRAINER:
        raise ConfigError(f"--trainer must be one of {', '.join(TRAINERS)}, but got {trainer!r}")
    return _BODY.format(name=name, trainer=_TRAINER[trainer])


def write_template(path: str, trainer: str = "pytorch", *, force: bool = False) -> str:
    """Write :func:`template` to ``path``; an existing file is kept unless ``force``.

    Raises:
        ConfigError: the file exists (and not ``force``), or an unknown trainer kind.
    """
    text = template(trainer, name=os.path.basename(path))
    if os.path.exists(path) and not force:
        raise ConfigError(f"{path} already exists; choose another path or pass --force to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
