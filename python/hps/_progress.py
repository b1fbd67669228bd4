"""Progress bars for long loads (private)."""

from __future__ import annotations

import os
import sys
from typing import Optional


class LoadProgress:
    """Receives the core's load progress and shows it with tqdm.

    `enabled=None` shows bars only when stderr is a terminal (and HPS_PROGRESS is not "0").
    """

    def __init__(self, enabled: Optional[bool] = None):
        if enabled is None:
            enabled = sys.stderr.isatty() and os.environ.get("HPS_PROGRESS", "1") != "0"
        self.enabled = enabled
        self._bar = None

    def begin(self, what: str, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=what, unit="rows", unit_scale=True, leave=False, dynamic_ncols=True)

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.end()
