"""Cosine schedule maths (pure) and the PyTorch scheduler / weight averaging helpers."""

from __future__ import annotations

import math

import pytest

from proxy_task_utils.smoothing import TorchWeightAverager, cosine_decay_lr, torch_cosine_scheduler


def lr(step: int, **kw: float) -> float:
    kw.setdefault("base_lr", 1.0)
    kw.setdefault("decay_steps", 100)
    return cosine_decay_lr(step, **kw)  # type: ignore[arg-type]


def test_cosine_endpoints_without_warmup() -> None:
    assert lr(0) == 1.0
    assert lr(50) == pytest.approx(0.5)
    assert lr(100) == pytest.approx(0.0)
    assert lr(100, min_lr=0.1) == pytest.approx(0.1)
    assert lr(500, min_lr=0.1) == 0.1  # stays at min_lr after the decay


def test_cosine_warmup_reaches_base_then_decays_to_min() -> None:
    kw = {"warmup_steps": 10, "warmup_start_factor": 0.1, "min_lr": 0.01}
    assert lr(0, **kw) == pytest.approx(0.1)
    assert lr(5, **kw) == pytest.approx(0.55)
    assert lr(10, **kw) == pytest.approx(1.0)
    assert lr(55, **kw) == pytest.approx(0.505)  # the cosine midpoint
    assert lr(100, **kw) == pytest.approx(0.01)
    after = [lr(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(after, after[1:]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"step": -1}, "step"),
        ({"decay_steps": 0}, "decay_steps"),
        ({"warmup_steps": 101}, "warmup_steps"),
        ({"warmup_start_factor": 2.0}, "warmup_start_factor"),
        ({"base_lr": math.nan}, "base_lr"),
        ({"min_lr": -1.0}, "min_lr"),
    ],
)
def test_cosine_bad_input_names_the_field(kwargs: dict[str, float], field: str) -> None:
    args = {"step": 0, "base_lr": 1.0, "decay_steps": 100, **kwargs}
    step = args.pop("step")
    with pytest.raises(ValueError, match=field):
        cosine_decay_lr(step, **args)  # type: ignore[arg-type]


torch = pytest.importorskip("torch")


def _sgd(lr_value: float = 0.5) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr_value)


def test_torch_scheduler_follows_the_pure_schedule_and_resumes() -> None:
    opt = _sgd()
    sched = torch_cosine_scheduler(opt, decay_steps=20, warmup_steps=4, min_lr=0.05)
    seen = []
    for _ in range(25):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [cosine_decay_lr(s, base_lr=0.5, decay_steps=20, warmup_steps=4, min_lr=0.05) for s in range(25)]
    assert seen == pytest.approx(expected)
    # a fresh optimizer resumed after 12 steps continues at step 12
    opt2 = _sgd()
    torch_cosine_scheduler(opt2, decay_steps=20, warmup_steps=4, min_lr=0.05, last_step=11)
    assert opt2.param_groups[0]["lr"] == pytest.approx(expected[12])


def _linear(value: float) -> torch.nn.Module:
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(value)
    return layer


def test_ema_averages_weights_exponentially() -> None:
    model = _linear(1.0)
    avg = TorchWeightAverager(model, "ema", ema_decay=0.5)
    assert not avg.has_average and avg.eval_model() is model
    avg.update(0)  # first update copies
    with torch.no_grad():
        model.weight.fill_(3.0)
    avg.update(1)  # 0.5 * 1 + 0.5 * 3
    assert avg.has_average
    assert avg.eval_model().weight.item() == pytest.approx(2.0)
    assert model.weight.item() == 3.0


def test_ema_averages_batchnorm_buffers() -> None:
    model = torch.nn.BatchNorm1d(1)
    avg = TorchWeightAverager(model, "ema", ema_decay=0.5)
    avg.update(0)
    model.running_mean.fill_(4.0)
    avg.update(1)
    assert avg.eval_model().running_mean.item() == pytest.approx(2.0)


def test_swa_averages_equally_from_the_start_step_and_round_trips() -> None:
    model = _linear(0.0)
    avg = TorchWeightAverager(model, "swa", swa_start_step=2)
    for step, value in enumerate([100.0, 100.0, 1.0, 2.0, 6.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        avg.update(step)
    assert avg.eval_model().weight.item() == pytest.approx(3.0)
    other = TorchWeightAverager(_linear(0.0), "swa")
    other.load_state_dict(avg.state_dict())
    assert other.eval_model().weight.item() == pytest.approx(3.0)


def test_swa_recomputes_batchnorm_statistics_from_batches() -> None:
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(1))
    avg = TorchWeightAverager(model, "swa")
    avg.update(0)
    evaluated = avg.eval_model([torch.full((8, 1), 5.0), torch.full((8, 1), 5.0)])
    assert evaluated[0].running_mean.item() == pytest.approx(5.0)


def test_none_mode_evaluates_the_model_and_bad_mode_is_named() -> None:
    model = _linear(1.0)
    avg = TorchWeightAverager(model, "none")
    avg.update(0)
    assert avg.eval_model() is model and avg.state_dict() == {}
    with pytest.raises(ValueError, match="smoothing mode"):
        TorchWeightAverager(model, "polyak")
    with pytest.raises(ValueError, match="ema_decay"):
        TorchWeightAverager(model, "ema", ema_decay=1.0)
