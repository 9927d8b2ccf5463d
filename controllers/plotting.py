"""Matplotlib for the tools' plots: the Agg backend, imported lazily, and figures as PNG bytes.

Each tool writes the bytes through its storage (local folder or ``gs://``), so no plot needs a
gcsfuse mount, and ``import controllers`` never pulls in matplotlib.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["pyplot", "figure_to_png"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_to_png(fig: Any, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (tight layout); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()
