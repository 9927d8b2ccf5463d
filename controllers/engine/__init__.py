"""The machinery the three tools share: the job loop and its records, the monitor, state files
and the lease, the controller session, progress, fault points and search-space loading.

Nothing here knows which tool runs it; the tools (``variance``, ``selection``, ``search``) import
from here, never the other way round.
"""

from __future__ import annotations

__all__: list[str] = []
