"""proxy_task_utils.keras with tiny real Keras models: cycles, stop signals, NaN, EMA, cosine schedule."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

import proxy_task_utils as ptu  # noqa: E402
from proxy_task_utils import protocol as p  # noqa: E402
from proxy_task_utils.errors import ConfigurationError  # noqa: E402
from proxy_task_utils.keras import (  # noqa: E402
    CosineDecayWithWarmup,
    ProxyTaskCallback,
    ema_optimizer,
    ema_weights,
)
from proxy_task_utils.reporter import reset_reporters  # noqa: E402
from proxy_task_utils.smoothing import cosine_decay_lr  # noqa: E402

pytestmark = pytest.mark.tf


@pytest.fixture(autouse=True)
def _fresh_reporters():
    reset_reporters()
    yield
    reset_reporters()


@pytest.fixture
def trial(tmp_path: Path) -> Path:
    d = tmp_path / "nas" / "search" / "1"
    d.mkdir(parents=True)
    return d


def _data(n: int = 64, *, nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    if nan:
        x[:] = np.nan
    return x, y


def _model(optimizer: keras.optimizers.Optimizer | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(
        optimizer or keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _metrics(trial: Path) -> p.TrialTrainingMetrics:
    return p.TrialTrainingMetrics.from_json((trial / p.TRIAL_TRAINING_METRICS_FILE).read_bytes())


def _status(trial: Path) -> str:
    return json.loads((trial / p.JOB_STATUS_FILE).read_text())["job_status"]


class FakeClock:
    """Advances only when told: makes the training-time bookkeeping exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- cycles and step bookkeeping ---------------------------------------------------------------


def test_epoch_cycles_report_zero_based_steps_and_success(trial: Path) -> None:
    x, y = _data()
    model = _model()
    callback = ProxyTaskCallback(str(trial), 6)
    model.fit(x, y, batch_size=16, steps_per_epoch=2, epochs=3, validation_data=(x, y), callbacks=[callback], verbose=0)
    record = _metrics(trial)
    assert [e.training_step for e in record.training_accuracy_over_steps] == [1, 3, 5]
    assert [round(e.training_step_pct, 4) for e in record.training_accuracy_over_steps] == [33.3333, 66.6667, 100.0]
    assert record.training_time.total_training_steps == 6
    assert callback.cycles[0][:2] == (0, 1) and callback.cycles[-1][:2] == (4, 5)
    reported = [e.accuracy for e in record.training_accuracy_over_steps]
    assert reported == [c[2] for c in callback.cycles]
    assert callback.best_accuracy == max(reported)
    assert _status(trial) == p.JOB_STATUS_SUCCESS


def test_training_stops_at_total_steps_mid_epoch_and_reports_that_cycle(trial: Path) -> None:
    x, y = _data()
    model = _model()
    callback = ProxyTaskCallback(str(trial), 5)
    model.fit(
        x, y, batch_size=16, steps_per_epoch=2, epochs=10, validation_data=(x, y), callbacks=[callback], verbose=0
    )
    assert int(model.optimizer.iterations) == 5
    assert [e.training_step for e in _metrics(trial).training_accuracy_over_steps] == [1, 3, 4]
    assert _metrics(trial).training_accuracy_over_steps[-1].training_step_pct == 100.0


def test_step_cycles_align_to_absolute_multiples_and_call_the_hook_first(trial: Path) -> None:
    x, y = _data()
    model = _model()
    seen: list[tuple[int, int]] = []

    def hook(step: int, metrics: dict[str, float]) -> None:  # the report must not exist yet
        entries = (
            _metrics(trial).training_accuracy_over_steps if (trial / p.TRIAL_TRAINING_METRICS_FILE).exists() else []
        )
        seen.append((step, len(entries)))

    callback = ProxyTaskCallback(
        str(trial),
        7,
        eval_every_steps=3,
        eval_fn=lambda m: {"accuracy": 0.5, "loss": 1.0},
        accuracy_key="accuracy",
        on_cycle_end=hook,
    )
    model.fit(x, y, batch_size=8, epochs=5, callbacks=[callback], verbose=0)
    assert [c[:2] for c in callback.cycles] == [(0, 2), (3, 5), (6, 6)]
    assert seen == [(3, 0), (6, 1), (7, 2)]
    # a resumed run (optimizer at step 4) ends its first cycle at the next multiple of 3
    reset_reporters()
    resumed = _model()
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.optimizer.iterations.assign(4)
    callback = ProxyTaskCallback(str(trial) + "-b", 9, eval_every_steps=3, eval_fn=lambda m: 0.25)
    resumed.fit(x, y, batch_size=8, epochs=5, callbacks=[callback], verbose=0)
    assert [c[:2] for c in callback.cycles] == [(4, 5), (6, 8)]


def test_training_time_excludes_validation(trial: Path) -> None:
    x, y = _data()
    model = _model()
    clock = FakeClock()

    class Ticks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001
            clock.now += 1.0  # each training step "takes" 1 s

        def on_test_begin(self, logs=None):  # noqa: ANN001
            clock.now += 100.0  # validation "takes" 100 s

    callback = ProxyTaskCallback(str(trial), 4, clock=clock)
    model.fit(
        x,
        y,
        batch_size=16,
        steps_per_epoch=2,
        epochs=2,
        validation_data=(x, y),
        callbacks=[Ticks(), callback],
        verbose=0,
    )
    assert _metrics(trial).training_time.total_training_time_in_secs == pytest.approx(4.0)


# -- stop signals ---------------------------------------------------------------------------------


def test_desired_pct_stops_after_the_cycle_that_reaches_it(trial: Path) -> None:
    ptu.set_stop_training(str(trial), desired_training_step_pct=50.0)
    x, y = _data()
    model = _model()
    callback = ProxyTaskCallback(str(trial), 8)
    model.fit(x, y, batch_size=16, steps_per_epoch=2, epochs=4, validation_data=(x, y), callbacks=[callback], verbose=0)
    assert int(model.optimizer.iterations) == 4
    assert model.stop_training is True
    assert callback.stopped_early and "desired" in callback.stop_reason
    assert [e.training_step for e in _metrics(trial).training_accuracy_over_steps] == [1, 3]
    assert _status(trial) == p.JOB_STATUS_SUCCESS


def test_stop_now_is_seen_before_training(trial: Path) -> None:
    ptu.set_stop_training(str(trial), desired_training_step_pct=0.0)
    callback = ProxyTaskCallback(str(trial), 8)
    assert callback.stop_requested(0) is True
    assert callback.stop_reason
    # inside fit, Keras still runs one batch after on_train_begin; that cycle is not reported
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=16, steps_per_epoch=2, epochs=4, validation_data=(x, y), callbacks=[callback], verbose=0)
    assert int(model.optimizer.iterations) == 1
    assert not (trial / p.TRIAL_TRAINING_METRICS_FILE).exists()
    assert callback.cycles == []


def test_no_signal_no_stop(trial: Path) -> None:
    callback = ProxyTaskCallback(str(trial), 8)
    assert callback.stop_requested(3) is False
    assert not callback.stopped_early and callback.stop_reason == ""


# -- NaN ---------------------------------------------------------------------------------------


def test_nan_loss_writes_failed_with_nan_and_stops(trial: Path) -> None:
    x, y = _data(nan=True)
    model = _model()
    callback = ProxyTaskCallback(str(trial), 8)
    model.fit(x, y, batch_size=16, steps_per_epoch=2, epochs=4, validation_data=(x, y), callbacks=[callback], verbose=0)
    assert callback.failed_with_nan
    assert int(model.optimizer.iterations) == 1
    assert _status(trial) == p.JOB_STATUS_FAILED_WITH_NAN  # not overwritten by success at on_train_end
    assert not (trial / p.TRIAL_TRAINING_METRICS_FILE).exists()


def test_nan_metric_writes_failed_with_nan(trial: Path) -> None:
    x, y = _data()
    model = _model()
    callback = ProxyTaskCallback(str(trial), 6, eval_every_steps=2, eval_fn=lambda m: float("nan"))
    model.fit(x, y, batch_size=8, epochs=3, callbacks=[callback], verbose=0)
    assert callback.failed_with_nan
    assert int(model.optimizer.iterations) == 2
    assert _status(trial) == p.JOB_STATUS_FAILED_WITH_NAN


# -- bad input ------------------------------------------------------------------------------------


def test_missing_accuracy_key_names_the_metrics(trial: Path) -> None:
    x, y = _data()
    model = _model()
    callback = ProxyTaskCallback(str(trial), 4)  # no validation data: no val_accuracy
    with pytest.raises(ConfigurationError, match="val_accuracy.*validation_data"):
        model.fit(x, y, batch_size=16, steps_per_epoch=2, epochs=2, callbacks=[callback], verbose=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eval_every_steps": 5}, "needs eval_fn"),
        ({"eval_fn": lambda m: 1.0}, "only with eval_every_steps"),
        ({"eval_every_steps": 0, "eval_fn": lambda m: 1.0}, "eval_every_steps must be an integer >= 1"),
        ({"accuracy_key": ""}, "accuracy_key"),
    ],
)
def test_bad_arguments(trial: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        ProxyTaskCallback(str(trial), 10, **kwargs)
    with pytest.raises(ConfigurationError, match="total_training_steps"):
        ProxyTaskCallback(str(trial), 0)


# -- cosine schedule ---------------------------------------------------------------------------


def test_cosine_schedule_matches_cosine_decay_lr_and_ends_at_min_lr() -> None:
    kwargs = {"warmup_steps": 5, "warmup_start_factor": 0.1, "min_lr": 0.001}
    schedule = CosineDecayWithWarmup(0.2, 40, **kwargs)
    rates = [float(schedule(s)) for s in range(46)]
    expected = [cosine_decay_lr(s, base_lr=0.2, decay_steps=40, **kwargs) for s in range(46)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-9)
    assert rates[0] == pytest.approx(0.02)
    assert rates[5] == pytest.approx(0.2)
    assert rates[40] == pytest.approx(0.001) and rates[45] == pytest.approx(0.001)
    # inside a graph, with the optimizer's int64 step
    graph_rate = tf.function(lambda step: schedule(step))
    assert float(graph_rate(tf.constant(40, tf.int64))) == pytest.approx(0.001)
    assert float(graph_rate(tf.constant(10**9, tf.int64))) == pytest.approx(0.001)


def test_cosine_schedule_first_used_inside_a_graph_serves_later_graphs_and_eager() -> None:
    schedule = CosineDecayWithWarmup(0.1, 300, warmup_steps=10)  # no call yet: the table is built while tracing
    first = tf.function(lambda step: schedule(step))
    second = tf.function(lambda step: schedule(step) + 0.0)
    expected = cosine_decay_lr(150, base_lr=0.1, decay_steps=300, warmup_steps=10)
    assert float(first(tf.constant(150))) == pytest.approx(expected)
    assert float(second(tf.constant(150))) == pytest.approx(expected)
    assert float(schedule(150)) == pytest.approx(expected)


def test_cosine_schedule_round_trips_and_validates() -> None:
    schedule = CosineDecayWithWarmup(0.1, 100, warmup_steps=10)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(clone, CosineDecayWithWarmup) and clone.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="decay_steps"):
        CosineDecayWithWarmup(0.1, 0)
    with pytest.raises(ValueError, match="warmup_steps"):
        CosineDecayWithWarmup(0.1, 10, warmup_steps=11)


def test_optimizer_follows_the_schedule_during_fit(trial: Path) -> None:
    x, y = _data()
    schedule = CosineDecayWithWarmup(0.1, 4)
    model = _model(keras.optimizers.SGD(schedule))
    model.fit(x, y, batch_size=16, steps_per_epoch=4, epochs=1, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0)  # decayed to min_lr at step 4


# -- EMA ---------------------------------------------------------------------------------------------


def test_ema_optimizer_copies_the_config_and_refuses_built_ones() -> None:
    schedule = CosineDecayWithWarmup(0.1, 10)
    ema = ema_optimizer(keras.optimizers.SGD(schedule, momentum=0.9), 0.9)
    assert ema.use_ema and ema.ema_momentum == pytest.approx(0.9) and ema.momentum == pytest.approx(0.9)
    with pytest.raises(ConfigurationError, match="momentum"):
        ema_optimizer(keras.optimizers.SGD(0.1), 1.0)
    built = keras.optimizers.SGD(0.1)
    built.build([keras.Variable(np.zeros(2, "float32"))])
    with pytest.raises(ConfigurationError, match="not built"):
        ema_optimizer(built)


def test_ema_weights_swaps_in_the_average_and_restores(trial: Path) -> None:
    x, y = _data()
    model = _model(ema_optimizer(keras.optimizers.SGD(0.5), 0.5))
    snapshots: list[list[np.ndarray]] = []

    class Snap(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001
            snapshots.append([v.numpy() for v in model.trainable_variables])

    model.fit(x[:16], y[:16], batch_size=8, epochs=1, callbacks=[Snap()], verbose=0)  # 2 steps
    w1, w2 = snapshots
    raw = [v.numpy() for v in model.trainable_variables]  # fit finalized: these are the averages
    for r, a, b in zip(raw, w1, w2):
        np.testing.assert_allclose(r, 0.5 * a + 0.5 * b, rtol=1e-5)  # first step copies, then EMA
    # train 1 more step, then swap: inside the context the average, after it the raw weights
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, callbacks=[Snap()], verbose=0)
    # fit finalized again; re-set known raw weights to check the swap itself
    current = [v.numpy() + 1.0 for v in model.trainable_variables]
    for v, c in zip(model.trainable_variables, current):
        v.assign(c)
    with ema_weights(model):
        inside = [v.numpy() for v in model.trainable_variables]
    after = [v.numpy() for v in model.trainable_variables]
    for i, a, c in zip(inside, after, current):
        np.testing.assert_allclose(a, c)
        assert not np.allclose(i, c)


def test_ema_weights_needs_an_ema_optimizer(trial: Path) -> None:
    with pytest.raises(ConfigurationError, match="EMA optimizer"):
        with ema_weights(_model()):
            pass


def test_swap_ema_weights_callback_evaluates_with_the_average(trial: Path) -> None:
    x, y = _data()
    model = _model(ema_optimizer(keras.optimizers.SGD(0.5), 0.9))
    callback = ProxyTaskCallback(str(trial), 4)
    model.fit(
        x,
        y,
        batch_size=16,
        steps_per_epoch=2,
        epochs=2,
        validation_data=(x, y),
        callbacks=[keras.callbacks.SwapEMAWeights(), callback],
        verbose=0,
    )
    assert len(callback.cycles) == 2
    assert all(math.isfinite(c[2]) for c in callback.cycles)


# -- light imports -----------------------------------------------------------------------------------


def test_importing_the_package_does_not_import_tensorflow() -> None:
    code = "import sys, proxy_task_utils; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
