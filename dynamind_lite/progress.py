"""Progress that a person can see: one bar in JupyterLab or a terminal, and plain
log lines when notebooks run in batch (papermill), where a bar is invisible.

Introduced in ``notebooks/04_resim_sft.ipynb`` (the SFT cell shows one bar with
the loss); used by every long loop of the package (RESIM collection, the agent
loop, SFT).

Batch mode: when the environment variable ``DYNAMIND_LITE_PROGRESS_EVERY`` holds
a number of seconds (the pipeline sets it for the notebooks it runs), each loop
also prints a line such as ``[SFT] 120/1582 steps (8%) loss=0.412 | 31 s, ~6.5 min
left`` at most that often, plus one when it ends, so a batch run is never silent
for long.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tqdm.auto import tqdm

PROGRESS_EVERY_ENV = "DYNAMIND_LITE_PROGRESS_EVERY"
"""Environment variable: seconds between plain progress lines (unset: no lines)."""


def _log_interval() -> float | None:
    raw = os.environ.get(PROGRESS_EVERY_ENV)
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


class Progress:
    """A progress bar (``tqdm.auto``) plus, in batch mode, plain log lines.

    Args:
        total: units of work (steps, episodes), > 0.
        desc: what is counted, e.g. ``"SFT"``.
        unit: the unit's name, e.g. ``"step"``.
        bar: show the bar (False: only the batch-mode lines).
    """

    def __init__(self, total: int, desc: str, unit: str = "it", bar: bool = True):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done = 0
        self.postfix: dict[str, Any] = {}
        self.started = self._last_line = time.perf_counter()
        self._every = _log_interval()
        self._bar = tqdm(total=self.total, desc=desc, unit=unit, disable=not bar, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Count ``n`` more units; ``postfix`` (e.g. ``loss=0.41``) is shown beside the bar."""
        self.done += n
        if postfix:
            self.postfix.update(postfix)
            self._bar.set_postfix({k: _fmt(v) for k, v in self.postfix.items()}, refresh=False)
        self._bar.update(n)
        now = time.perf_counter()
        if self._every is not None and now - self._last_line >= self._every:
            self._line(now)

    def close(self) -> None:
        """Close the bar; in batch mode print the final line."""
        self._bar.close()
        if self._every is not None:
            self._line(time.perf_counter(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self, now: float, final: bool = False) -> None:
        self._last_line = now
        elapsed = now - self.started
        share = self.done / self.total if self.total else 1.0
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in self.postfix.items())
        left = "done" if final else (f"~{_minutes(elapsed * (1 - share) / share)} left" if share > 0 else "")
        print(f"[{self.desc}] {self.done}/{self.total} {self.unit}s ({share:.0%}) {extra} | "
              f"{_minutes(elapsed)}, {left}".replace("  ", " "), file=sys.stderr, flush=True)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
