"""The framework-free modules both digits examples share (examples/digits): real files, no torch or TensorFlow."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import proxy_task_utils as ptu
from proxy_task_utils import protocol as p

pytest.importorskip("sklearn")  # the bundled digits file

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # examples/ is not an installed package
    sys.path.insert(0, str(REPO))

from examples.digits import arch, data, flags, trial  # noqa: E402
from examples.digits.search_space import SearchSpace  # noqa: E402

SHARED = [
    "examples.digits.search_space",
    "examples.digits.data",
    "examples.digits.flags",
    "examples.digits.arch",
    "examples.digits.trial",
    "examples.pytorch.search_space",
    "examples.tf_vision.search_space",
]


def test_shared_modules_and_search_spaces_import_no_framework() -> None:
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in SHARED)
    code += "print([m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_both_examples_sample_the_same_keys_with_their_own_values() -> None:
    from examples.pytorch import search_space as pt
    from examples.tf_vision import search_space as tf

    assert pt.choices().keys() == tf.choices().keys()
    assert pt.SPACE.expansions == (1, 2, 4) and tf.SPACE.expansions == (1, 3, 6)
    assert pt.baseline()["stage0_expansion"] == 2 and tf.baseline()["stage0_expansion"] == 3
    for module in (pt, tf):
        draws = [module.sample(random.Random(7)) for _ in range(3)]
        assert draws[0] == draws[1] == draws[2]
        assert module.validate(module.baseline()) == module.baseline()
    with pytest.raises(ValueError, match="'stage1_expansion' must be one of \\[1, 2, 4\\]"):
        pt.validate({**pt.baseline(), "stage1_expansion": 6})
    tf.validate({**tf.baseline(), "stage1_expansion": 6})


def test_search_space_names_the_bad_key() -> None:
    space = SearchSpace(width_multipliers=(1.0,), depths=(1,), kernels=(3,), expansions=(1,), baseline_expansion=1)
    with pytest.raises(ValueError, match="missing keys"):
        space.validate({"width_multiplier": 1.0})
    with pytest.raises(ValueError, match="unknown architecture keys \\['depth'\\]"):
        space.validate({**space.baseline(), "depth": 3})
    with pytest.raises(ValueError, match="'stage0_depth' must be one of \\[1\\], but got True"):
        space.validate({**space.baseline(), "stage0_depth": True})


def test_split_is_a_pure_function_of_pct_and_data_seed() -> None:
    images, labels = data.load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32 and labels.dtype == np.int64
    full = data.split_digits(images, labels, 100.0)
    again = data.split_digits(images, labels, 100.0)
    assert len(full.test_y) == data.N_TEST and len(full.train_y) == data.N_TRAIN_POOL
    assert np.array_equal(full.test_x, again.test_x) and np.array_equal(full.train_y, again.train_y)
    quarter = data.split_digits(images, labels, 25.0)
    assert np.array_equal(quarter.test_x, full.test_x)  # the subsample never touches the test set
    assert 240 <= len(quarter.train_y) <= 260 and set(quarter.train_y.tolist()) == set(range(10))
    other = data.split_digits(images, labels, 100.0, data_seed=1)
    assert not np.array_equal(other.test_y, full.test_y)


def test_blocks_put_the_stride_on_each_stages_first_block() -> None:
    stages = {f"stage{i}_{k}": v for i in range(3) for k, v in (("depth", i + 1), ("kernel", 5), ("expansion", 2))}
    a = {"width_multiplier": 0.5, **stages}
    stem, channels = arch.stage_channels(a, 1.0, base_stem=16, base_channels=(16, 24, 32))
    assert (stem, channels) == (8, [8, 12, 16])
    built = list(arch.blocks(a, channels, (2, 1, 2)))
    assert [(b.stage, b.index, b.stride) for b in built] == [
        (0, 0, 2),
        (1, 0, 1),
        (1, 1, 1),
        (2, 0, 2),
        (2, 1, 1),
        (2, 2, 1),
    ]
    assert {(b.kernel, b.expansion) for b in built} == {(5, 2)}
    with pytest.raises(ValueError, match="model_scale must be in \\(0, 4\\]"):
        arch.stage_channels(a, 5.0, base_stem=16, base_channels=(16,))


def _parse(argv: list[str], *, warmup: int | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    flags.add_run_flags(parser, warmup_steps=warmup, warmup_help=None, seed=0, seed_help=None)
    flags.add_latency_flags(parser, num_threads_help="threads")
    args = parser.parse_args(argv)
    flags.check_flags(parser, args, [(args.batch_size != 3, "--batch_size must not be 3")])
    return args


def test_flags_fill_derived_defaults() -> None:
    args = _parse(["--train_steps=100"])
    assert (args.decay_steps, args.warmup_steps) == (100, 10)
    assert _parse(["--train_steps=1000"]).warmup_steps == 20
    assert _parse(["--train_steps=100", "--decay_steps=50"], warmup=20).warmup_steps == 20


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--training_data_pct=0", "--training_data_pct must be in (0, 100]"),
        ("--warmup_steps=500", "--warmup_steps must be in [0, --decay_steps]"),
        ("--batch_size=3", "--batch_size must not be 3"),
        ("--target_latency_ms=-1", "--target_latency_ms must be >= 0"),
    ],
)
def test_a_bad_flag_exits_2_naming_it(flag: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse([flag])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def _args(**overrides: object) -> argparse.Namespace:
    base = {
        "nas_params_str": "",
        "retrain_search_job_trials": "",
        "retrain_search_job_dir": "",
        "retrain_use_search_job_checkpoint": False,
    }
    return argparse.Namespace(**{**base, **overrides})


def test_load_architecture_saves_it_or_names_what_is_wrong(tmp_path: Path) -> None:
    from examples.pytorch.search_space import baseline, validate

    model_dir = str(tmp_path / "nas" / "search" / "1")
    got = trial.load_architecture(_args(nas_params_str=json.dumps(baseline())), model_dir, validate)
    assert got == baseline()
    assert json.loads((tmp_path / "nas" / "search" / "1" / p.NAS_PARAMS_STR_FILE).read_text()) == baseline()
    with pytest.raises(ptu.ConfigurationError, match="'stage2_kernel' must be one of"):
        trial.load_architecture(
            _args(nas_params_str=json.dumps({**baseline(), "stage2_kernel": 7})), model_dir, validate
        )
    with pytest.raises(ptu.ConfigurationError, match="pass --nas_params_str"):
        trial.load_architecture(_args(), model_dir, validate)


def test_checkpoint_to_resume_prefers_the_trials_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "1")  # retrain trial 1 re-trains the first listed search trial
    own, source = tmp_path / "nas" / "search" / "2", tmp_path / "nas" / "search" / "1"
    saved = {str(source): "source state"}
    args = _args(
        retrain_use_search_job_checkpoint=True,
        retrain_search_job_trials="1",
        retrain_search_job_dir=str(tmp_path / "nas" / "search"),
    )
    state, origin = trial.checkpoint_to_resume(args, str(own), saved.get, "ckpt")
    assert (state, origin) == ("source state", str(source))
    saved[str(own)] = "own state"
    assert trial.checkpoint_to_resume(args, str(own), saved.get, "ckpt") == ("own state", str(own))
    assert trial.checkpoint_to_resume(_args(), str(tmp_path / "x"), saved.get, "ckpt") == (None, str(tmp_path / "x"))
    with pytest.raises(ptu.ConfigurationError, match="no ckpt in the source trial"):
        trial.checkpoint_to_resume(args, str(tmp_path / "x"), {}.get, "ckpt")
    with pytest.raises(ptu.ConfigurationError, match="needs --retrain_search_job_trials"):
        trial.checkpoint_to_resume(_args(retrain_use_search_job_checkpoint=True), str(own), {}.get, "ckpt")


def test_fastest_quartile_mean_drops_the_slowed_repeats():
    from examples.digits.latency import fastest_quartile_mean

    # 8 clean repeats near 1 ms and 4 slowed by another process: the figure stays near 1 ms
    times = [1.0, 1.02, 0.98, 1.01, 3.5, 1.0, 4.2, 0.99, 1.03, 2.8, 1.0, 5.0]
    assert fastest_quartile_mean(times) == pytest.approx((0.98 + 0.99 + 1.0) / 3)
    assert fastest_quartile_mean([2.0]) == 2.0
    with pytest.raises(ValueError, match="no timings"):
        fastest_quartile_mean([])


def test_latency_timing_stops_once_the_figure_settles():
    from examples.digits.latency import time_until_converged

    steady = iter([1.0, 1.2, 1.1, 1.05] * 100)
    figure = time_until_converged(lambda: next(steady), max_repeats=200, min_repeats=40, block=10, rel_tol=0.02)
    assert figure.converged and figure.repeats == 40 and figure.ms == pytest.approx(1.0)
    assert figure.spread_ms <= 0.02 * figure.ms


def test_latency_timing_runs_to_the_cap_while_the_figure_keeps_moving():
    from examples.digits.latency import time_until_converged

    falling = iter([10.0 / (k + 1) for k in range(1000)])  # every new timing is the fastest yet
    figure = time_until_converged(lambda: next(falling), max_repeats=60, min_repeats=20, block=10, rel_tol=0.01)
    assert not figure.converged and figure.repeats == 60
    assert figure.spread_ms > 0.01 * figure.ms  # the recorded spread says it had not settled


def test_latency_timing_early_stop_off_and_bad_arguments():
    from examples.digits.latency import time_until_converged

    figure = time_until_converged(lambda: 1.0, max_repeats=30, min_repeats=30)
    assert figure.repeats == 30 and not figure.converged and figure.spread_ms == 0.0
    for bad in ({"max_repeats": 0, "min_repeats": 1}, {"max_repeats": 5, "min_repeats": 1, "rel_tol": -0.1}):
        with pytest.raises(ValueError):
            time_until_converged(lambda: 1.0, **bad)
