"""mkdocs hook: the CLI and configuration references are generated from the code at every build."""

from __future__ import annotations

from typing import Any


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    from controllers import docgen

    if docgen.CLI_MARKER in markdown:
        markdown = markdown.replace(docgen.CLI_MARKER, docgen.cli_markdown())
    if docgen.CONFIG_MARKER in markdown:
        markdown = markdown.replace(docgen.CONFIG_MARKER, docgen.config_markdown())
    return markdown
