"""Reference pages generated from the code: the CLI from :func:`controllers.cli.build_parser`, the
configuration keys from the pydantic models' JSON schema.

The docs site (``mkdocs.yml``'s hook ``docs/hooks.py``) puts this Markdown in place of the markers
``<!-- generated: cli -->`` and ``<!-- generated: config -->`` at every build, so the pages cannot
drift from the parser and the models; a test checks that every verb and every field appears.

A field's description is its ``Field(description=...)`` or, where there is none, the comment at the
end of its line in the model's source.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import textwrap
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

__all__ = ["CLI_MARKER", "CONFIG_MARKER", "config_models", "iter_model_fields", "cli_markdown", "config_markdown"]

CLI_MARKER = "<!-- generated: cli -->"
CONFIG_MARKER = "<!-- generated: config -->"


def config_models() -> list[tuple[str, type[BaseModel]]]:
    """The configs a user writes, each with the command that reads it."""
    from controllers.pipeline import PipelineConfig
    from controllers.search.config import SearchConfig
    from controllers.selection.config import ModelSelectionConfig
    from controllers.variance.config import VarianceConfig

    return [
        ("proxy-task run / demo", PipelineConfig),
        ("proxy-task measure-variance", VarianceConfig),
        ("proxy-task select-models", ModelSelectionConfig),
        ("proxy-task search", SearchConfig),
    ]


def _nested_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """Models used by ``model``'s fields (in field order, depth first, each once)."""
    seen: set[type[BaseModel]] = set()

    def walk(annotation: Any) -> Iterator[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.add(annotation)
                yield annotation
                for f in annotation.model_fields.values():
                    yield from walk(f.annotation)
            return
        for arg in getattr(annotation, "__args__", ()) or ():
            yield from walk(arg)

    for f in model.model_fields.values():
        yield from walk(f.annotation)


def iter_model_fields() -> Iterator[tuple[type[BaseModel], str]]:
    """Every (model, field name) that the config reference documents."""
    done: set[type[BaseModel]] = set()
    for _, top in config_models():
        for model in (top, *_nested_models(top)):
            if model in done:
                continue
            done.add(model)
            for name in model.model_fields:
                yield model, name


def _line_comments(model: type[BaseModel]) -> dict[str, str]:
    """``{field: trailing comment}`` from the model's class body."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[(node.end_lineno or node.lineno) - 1]
            if "#" in line:
                comment = line.split("#", 1)[1].strip()
                if comment and not comment.startswith(("type:", "noqa")):
                    out[node.target.id] = comment
    return out


def _type_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        parts = [_type_text(s) for s in schema["anyOf"]]
        return " | ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}))}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"mapping to {_type_text(extra)}" if isinstance(extra, dict) and extra else "mapping"
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "null": "null"}.get(
        str(kind), "any"
    )


_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def _constraints(schema: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for part in [schema, *schema.get("anyOf", [])]:
        out += [f"{op} {part[key]}" for key, op in _BOUNDS if key in part]
        if "minLength" in part:
            out.append("non-empty" if part["minLength"] == 1 else f"length >= {part['minLength']}")
        if "minItems" in part:
            out.append(f"at least {part['minItems']} item(s)")
        if "pattern" in part:
            out.append(f"matches `{part['pattern']}`")
    return out


def _default_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return f"the defaults of [{type(value).__name__}](#{type(value).__name__.lower()})"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _model_section(model: type[BaseModel], used_by: str | None) -> list[str]:
    schema = model.model_json_schema()
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    comments = _line_comments(model)
    out = [f"### {model.__name__}", ""]
    if used_by:
        out += [f"Read by `{used_by}`.", ""]
    doc = inspect.getdoc(model)
    if doc:
        out += [doc, ""]
    out += ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        prop = props.get(name, {})
        if name in required:
            default = "**required**"
        else:
            default = _default_text(field.get_default(call_default_factory=True))
        description = field.description or comments.get(name, "")
        out.append(
            f"| `{name}` | {_cell(_type_text(prop))} | {_cell(default)} | {_cell(', '.join(_constraints(prop)))} "
            f"| {_cell(description)} |"
        )
    return [*out, ""]


def config_markdown() -> str:
    """Every config model: one table per model (key, type, default, constraints, description)."""
    out: list[str] = []
    done: set[type[BaseModel]] = set()
    for used_by, top in config_models():
        out += [f"## `{used_by}`: {top.__name__}", ""]
        for model in (top, *_nested_models(top)):
            if model in done:
                out += [f"- [{model.__name__}](#{model.__name__.lower()}): see above", ""]
                continue
            done.add(model)
            out += _model_section(model, used_by if model is top else None)
    return "\n".join(out)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.nargs == 0:
        value = "flag"
    elif action.choices:
        value = " | ".join(f"`{c}`" for c in action.choices)
    else:
        value = getattr(action.type, "__name__", "string") if action.type else "string"
    if action.required or not action.option_strings:
        default = "**required**"
    elif action.default is None or action.default is False or action.default == argparse.SUPPRESS:
        default = ""
    else:
        default = f"`{action.default}`"
    repeat = " (repeatable)" if isinstance(action, argparse._AppendAction) else ""
    try:
        text = (action.help or "") % {**vars(action), "default": action.default}
    except (KeyError, TypeError, ValueError):
        text = action.help or ""
    return f"| {names} | {_cell(value)}{repeat} | {default} | {_cell(text)} |"


def cli_markdown() -> str:
    """Every verb of ``proxy-task``: its usage line, what it does and each argument."""
    from controllers.cli import build_parser

    parser = build_parser()
    out = ["```text", parser.format_usage().strip(), "```", ""]
    for name, sub in _subparsers(parser).items():
        usage = ["```text", sub.format_usage().strip(), "```", ""]
        out += [f"## `proxy-task {name}`", "", sub.description or "", "", *usage]
        rows = [_option_row(a) for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        if rows:
            out += ["| argument | value | default | meaning |", "|---|---|---|---|", *rows, ""]
    return "\n".join(out)
