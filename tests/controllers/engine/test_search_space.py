"""Search spaces: callables and tables, seeded and reproducible, unique where possible."""

from __future__ import annotations

import pytest

from controllers.config import SearchSpaceConfig
from controllers.engine.search_space import load_search_space, sample_architectures, space_size


def test_table_sampling_is_reproducible_and_unique():
    space = load_search_space(SearchSpaceConfig(choices={"a": [1, 2, 3], "b": ["x", "y"]}))
    assert space_size(space) == 6
    first = sample_architectures(space, 6, seed=1)
    assert first == sample_architectures(space, 6, seed=1)
    assert first != sample_architectures(space, 6, seed=2)
    assert len({tuple(sorted(a.items())) for a in first}) == 6  # every architecture once
    assert len(sample_architectures(space, 9, seed=1)) == 9  # larger than the space: duplicates allowed


def test_key_order_does_not_change_draws():
    a = load_search_space(SearchSpaceConfig(choices={"a": [1, 2], "b": [3, 4]}))
    b = load_search_space(SearchSpaceConfig(choices={"b": [3, 4], "a": [1, 2]}))
    assert sample_architectures(a, 4, seed=0) == sample_architectures(b, 4, seed=0)


def test_function_from_file_and_module(tmp_path):
    path = tmp_path / "space.py"
    path.write_text("def space(rng):\n    return {'width': rng.choice([8, 16, 32]), 'depth': rng.randint(1, 9)}\n")
    space = load_search_space(SearchSpaceConfig(function=f"{path}:space"))
    archs = sample_architectures(space, 5, seed=0)
    assert archs == sample_architectures(load_search_space(SearchSpaceConfig(function=f"{path}:space")), 5, seed=0)
    assert all(set(a) == {"width", "depth"} for a in archs)
    assert load_search_space(SearchSpaceConfig(function="random:Random"))  # a module attribute


def test_yaml_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("quality: [0.1, 0.2]\nlatency_ms: [1]\n")
    assert space_size(load_search_space(SearchSpaceConfig(file=str(path)))) == 2
    path.write_text("quality: []\n")
    with pytest.raises(ValueError, match="non-empty lists"):
        load_search_space(SearchSpaceConfig(file=str(path)))


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nosuchmodule_xyz:f", "cannot import module"),
        ("random:nope", "has no function"),
        ("/no/file.py:f", "does not exist"),
    ],
)
def test_bad_function_names_are_clear(spec, match):
    with pytest.raises(ValueError, match=match):
        load_search_space(SearchSpaceConfig(function=spec))


def test_function_must_return_a_json_dict(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def space(rng):\n    return [1]\ndef obj(rng):\n    return {'x': object()}\n")
    with pytest.raises(ValueError, match="must return a dict"):
        sample_architectures(load_search_space(SearchSpaceConfig(function=f"{path}:space")), 1, seed=0)
    with pytest.raises(ValueError, match="not JSON-able"):
        sample_architectures(load_search_space(SearchSpaceConfig(function=f"{path}:obj")), 1, seed=0)
