"""Where trial latencies come from: the ``latency.mode`` of a tool (``mode``) and the worker
that measures exported models on its own device (``worker``)."""

from __future__ import annotations

__all__: list[str] = []
