"""The generated reference pages cover every CLI verb and every config field; init writes a loadable config."""

from __future__ import annotations

import re

import pytest
import yaml

from controllers import cli, docgen
from controllers.config import load_config, parse_config
from controllers.errors import ConfigError
from controllers.init_config import TRAINERS, template, write_template
from controllers.pipeline import PipelineConfig, stage_configs


def _sections(markdown: str) -> dict[str, str]:
    """``{model name: its section's text}`` from the config reference."""
    parts = re.split(r"^### (\w+)$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_cli_reference_has_every_verb_and_every_argument():
    text = docgen.cli_markdown()
    subparsers = docgen._subparsers(cli.build_parser())
    assert {"run", "search", "status", "report", "init", "latency-worker"} <= set(subparsers)
    for name, sub in subparsers.items():
        assert f"## `proxy-task {name}`" in text
        section = text.split(f"## `proxy-task {name}`", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            if action.help == "show this help message and exit":
                continue
            label = action.option_strings[0] if action.option_strings else action.dest
            assert f"`{label}`" in section, (name, label)


def test_config_reference_has_every_field_of_every_model():
    sections = _sections(docgen.config_markdown())
    pairs = list(docgen.iter_model_fields())
    models = {m.__name__ for m, _ in pairs}
    # the shared parts, each tool's own model, the pipeline, and the nested sections
    assert {"PipelineConfig", "VarianceConfig", "ModelSelectionConfig", "SearchConfig", "TimeoutsConfig",
            "ReferenceConfig", "NoiseConfig", "GridDimension", "RayOptions", "VertexOptions"} <= models  # fmt: skip
    for model, field in pairs:
        assert model.__name__ in sections, model.__name__
        assert f"| `{field}` |" in sections[model.__name__], (model.__name__, field)


def test_config_reference_shows_defaults_constraints_and_line_comments():
    sections = _sections(docgen.config_markdown())
    search = sections["SearchConfig"]
    assert re.search(r"\| `desired_accuracy_correlation` \| number \\\| null \| `0\.65` \| >= -1, <= 1 \|", search)
    assert '| `correlation` | `spearman` \\| `kendall` | `"spearman"` |' in search
    assert "**required**" in sections["TrainerConfig"]
    assert "redraw at most this often" in search  # the comment at the end of the field's line


@pytest.mark.parametrize("trainer", TRAINERS)
def test_init_template_loads_with_the_real_config_model(trainer, tmp_path):
    path = write_template(str(tmp_path / "pipeline.yaml"), trainer)
    config = load_config(path, PipelineConfig)
    stages = stage_configs(config)
    assert set(stages) == {"variance", "model_selection", "search"}
    assert stages["search"].correlation == "spearman"
    assert template(trainer).count("#") > 30  # commented


def test_init_verb_writes_once_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert cli.main(["init", "--trainer", "keras", "--output", str(out)]) == 0
    first = out.read_text()
    assert "ProxyTaskCallback" in first
    out.write_text(first + "# my edit\n")
    assert cli.main(["init", "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text().endswith("# my edit\n")
    assert cli.main(["init", "--trainer", "custom", "--output", str(out), "--force"]) == 0
    assert "train.sh" in out.read_text()
    parse_config(yaml.safe_load(out.read_text()), PipelineConfig)


def test_init_refuses_an_unknown_trainer():
    with pytest.raises(ConfigError, match="--trainer must be one of pytorch, keras, custom"):
        template("jax")
