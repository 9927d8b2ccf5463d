"""Noise-aware verdicts: where the seed noise comes from, and what the ceiling says of a target."""

from __future__ import annotations

import json

import pytest

from controllers.search.verdicts import (
    UNREACHABLE_PROBABILITY,
    VARIANCE_RESULT_FILE,
    SeedNoise,
    ceiling_verdict,
    closeness_to_ceiling,
    read_seed_noise,
    seed_noise_from_result,
)
from controllers.stats import noise_ceiling
from proxy_task_utils.errors import ConfigurationError, CorruptFileError
from proxy_task_utils.storage import LocalStorage

SPREAD = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_seed_noise_to_dict():
    assert SeedNoise(0.5, "here").to_dict() == {"seed_std": 0.5, "source": "here"}


def test_seed_std_zero_is_a_value():
    noise = seed_noise_from_result({"seed_std": 0, "variance_value": 0.3, "mean": 1.0}, path="v.json")
    assert noise == SeedNoise(0.0, "seed_std of v.json")
    assert isinstance(noise.seed_std, float)


@pytest.mark.parametrize("bad", [-0.1, True, "0.1", None])
def test_unusable_seed_std_falls_back_to_the_cv(bad):
    noise = seed_noise_from_result({"seed_std": bad, "variance_value": 0.1, "mean": 0.5}, path="v.json")
    assert noise.seed_std == pytest.approx(0.05)
    assert noise.source == "variance_value x mean of v.json"


@pytest.mark.parametrize("key", ["mean_accuracy", "mean_final_accuracy", "final_accuracy_mean", "mean"])
def test_every_mean_key_is_read(key):
    noise = seed_noise_from_result({"variance_value": 0.2, key: -0.5}, path="v.json")
    assert noise.seed_std == pytest.approx(0.1)  # |mean|
    assert noise.source == f"variance_value x {key} of v.json"


def test_the_first_mean_key_wins_and_bad_means_are_skipped():
    result = {"variance_value": 0.1, "mean_accuracy": True, "mean_final_accuracy": 0.4, "mean": 0.9}
    noise = seed_noise_from_result(result, path="v")
    assert noise.seed_std == pytest.approx(0.04) and "mean_final_accuracy" in noise.source


def test_cv_zero_is_a_value():
    assert seed_noise_from_result({"variance_value": 0, "mean": 0.5}, path="v").seed_std == 0.0


@pytest.mark.parametrize("cv", [-0.1, True, "0.1", None])
def test_unusable_cv_is_a_configuration_error(cv):
    with pytest.raises(ConfigurationError) as info:
        seed_noise_from_result({"variance_value": cv, "mean": 0.5}, path="v.json")
    assert str(info.value) == (
        "v.json holds neither 'seed_std' nor a 'variance_value' >= 0; rerun the variance measurement"
    )


def test_cv_without_any_mean_uses_the_reference_mean_or_asks_for_seed_std():
    with pytest.raises(ConfigurationError) as info:
        seed_noise_from_result({"variance_value": 0.1}, path="v.json")
    assert str(info.value) == "v.json has a variance_value but no mean; give noise.seed_std in the config"
    noise = seed_noise_from_result({"variance_value": 0.1}, path="v.json", reference_mean=-0.5)
    assert noise.seed_std == pytest.approx(0.05)
    assert noise.source == "variance_value of v.json x mean reference accuracy -0.5"


def test_read_seed_noise_from_a_variance_folder(tmp_path):
    LocalStorage(tmp_path).write(VARIANCE_RESULT_FILE, json.dumps({"variance_value": 0.1}).encode())
    noise = read_seed_noise(str(tmp_path), reference_mean=0.4)
    assert noise.seed_std == pytest.approx(0.04)
    assert str(tmp_path / VARIANCE_RESULT_FILE) in noise.source
    LocalStorage(tmp_path).write(VARIANCE_RESULT_FILE, json.dumps({"seed_std": 0.01}).encode())
    assert read_seed_noise(str(tmp_path)) == SeedNoise(0.01, f"seed_std of {tmp_path / VARIANCE_RESULT_FILE}")


def test_read_seed_noise_says_what_to_do_when_the_file_is_missing_or_bad(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        read_seed_noise(str(tmp_path))
    assert str(info.value) == (
        f"{tmp_path / VARIANCE_RESULT_FILE} does not exist; finish the variance measurement "
        "or give noise.seed_std (noise.variance_dir)"
    )
    LocalStorage(tmp_path).write(VARIANCE_RESULT_FILE, b"[1]")
    with pytest.raises(CorruptFileError):
        read_seed_noise(str(tmp_path))


def test_verdict_without_target_is_reachable_and_states_the_ceiling():
    noise = SeedNoise(0.0, "s")
    v = ceiling_verdict([*SPREAD, None], noise, method="kendall", target=None, n_sim=10, seed=1)
    assert v.target is None and v.prob_reachable is None and v.reachable
    assert v.ceiling == noise_ceiling(SPREAD, 0.0, method="kendall", n_sim=10, seed=1)
    assert v.message == (
        "noise ceiling (kendall, 8 reference models, seed std 0): median 1.000, 10-90 % [1.000, 1.000]"
    )
    assert v.seed_noise is noise


def test_verdict_uses_method_n_sim_and_seed():
    noise = SeedNoise(0.1, "s")
    v = ceiling_verdict(SPREAD, noise, method="kendall", target=0.5, n_sim=30, seed=4)
    assert v.ceiling == noise_ceiling(SPREAD, 0.1, method="kendall", n_sim=30, seed=4)
    assert v.ceiling.n_sim == 30


def test_verdict_reachable_message():
    v = ceiling_verdict(SPREAD, SeedNoise(0.0, "s"), method="spearman", target=0.9, n_sim=20)
    assert v.reachable and v.prob_reachable == 1.0 and v.target == 0.9
    assert v.message.endswith("; a perfect proxy reaches the target 0.900 in 100% of simulations")
    assert v.message.startswith("noise ceiling (spearman, 8 reference models")


def test_verdict_unreachable_message_names_the_fixes():
    v = ceiling_verdict(SPREAD, SeedNoise(0.0, "s"), method="spearman", target=1.01, n_sim=20)
    assert not v.reachable and v.prob_reachable == 0.0
    assert v.message.startswith(
        "target spearman 1.010 is likely out of reach: even a perfect proxy reaches it in only 0% of simulations "
        "(noise ceiling (spearman, 8 reference models"
    )
    assert v.message.endswith(
        "). Spread the reference models further apart, reduce seed noise (smoothing, more eval data), "
        "or lower the target."
    )


def test_reachable_exactly_at_the_threshold_probability():
    assert UNREACHABLE_PROBABILITY == 0.5
    noise = SeedNoise(0.1, "s")
    low, high = noise_ceiling(SPREAD, 0.1, n_sim=2, seed=0).samples
    assert low < high
    v = ceiling_verdict(SPREAD, noise, method="spearman", target=high, n_sim=2)
    assert v.prob_reachable == 0.5 and v.reachable  # one of two simulations reaches it: reachable
    v = ceiling_verdict(SPREAD, noise, method="spearman", target=high + 1e-9, n_sim=2)
    assert v.prob_reachable == 0.0 and not v.reachable


def test_verdict_to_dict():
    noise = SeedNoise(0.0, "s")
    v = ceiling_verdict(SPREAD, noise, method="spearman", target=0.9, n_sim=5)
    assert v.to_dict() == {
        "ceiling": v.ceiling.to_dict(),
        "target": 0.9,
        "prob_reachable": 1.0,
        "reachable": True,
        "message": v.message,
        "seed_noise": {"seed_std": 0.0, "source": "s"},
    }


def test_closeness_to_ceiling():
    c = noise_ceiling(SPREAD, 0.0, n_sim=5)
    assert c.median == 1.0
    assert closeness_to_ceiling(0.75, c) == 0.75
    assert closeness_to_ceiling(0.0, c) == 0.0  # 0.0 is a value
    assert closeness_to_ceiling(None, c) is None
    zero = c.__class__(**{**c.__dict__, "median": 0.0})
    assert closeness_to_ceiling(0.5, zero) is None
    negative = c.__class__(**{**c.__dict__, "median": -0.2})
    assert closeness_to_ceiling(0.5, negative) is None


def test_verdict_default_simulations():
    v = ceiling_verdict(SPREAD, SeedNoise(0.05, "s"), method="spearman", target=None)
    assert v.ceiling.n_sim == 2000
    assert v.ceiling == noise_ceiling(SPREAD, 0.05, n_sim=2000, seed=0)


def test_closeness_is_a_fraction_of_the_median():
    c = noise_ceiling(SPREAD, 0.0, n_sim=5)
    eighty = c.__class__(**{**c.__dict__, "median": 0.8})
    assert closeness_to_ceiling(0.4, eighty) == pytest.approx(0.5)
