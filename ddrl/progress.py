"""The overall progress of an experiment: which of its planned runs, time so far, time left.

An experiment plans its runs (view, method, and the environment steps each will take), then
announces each one as it starts, above that run's own progress bar, and reports its result
when it ends:

    [3/14] clean · amcoedge · elapsed 2m10s · ETA ~6m
    clean-amcoedge: 100%|██████████| 225k/225k [01:02<00:00, ...]
    [3/14] clean · amcoedge: make-span 0.2116 ± 0.0040 s, failure rate 0.0012 (1m05s)

The ETA scales the seconds per planned environment step of the runs finished so far to the
steps still to come. Compile time and the cost of a step differ between methods (a learner's
step includes its updates), so it is a rough figure, marked `~`, and `–` until one run ended.
Progress lines go to stderr (with the progress bars), result lines to stdout (with the tables).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, TextIO


def duration(seconds: float) -> str:
    """`42s`, `2m10s`, `1h05m`."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rough_duration(seconds: float) -> str:
    """`~40s`, `~6m`, `~1h20m`: an estimate, to the unit that matters."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"~{int(round(seconds))}s"
    if seconds < 3600:
        return f"~{int(round(seconds / 60))}m"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"~{hours}h{minutes:02d}m"


class ExperimentProgress:
    """The planned runs of an experiment, as (view or None, method, planned env steps)."""

    def __init__(self, planned: Iterable[tuple[str | None, str, float]], out: TextIO | None = None,
                 err: TextIO | None = None, clock: Callable[[], float] = time.perf_counter):
        self.planned = [(view, method, float(steps)) for view, method, steps in planned]
        self.out, self.err, self.clock = out, err, clock
        self.started_at = clock()
        self.finished: set[tuple[str | None, str]] = set()
        self.done_steps = 0.0  # planned steps of the finished runs, and the seconds they took
        self.done_seconds = 0.0
        self.current: tuple[str | None, str] | None = None
        self.current_started = 0.0

    def _index(self, view: str | None, method: str) -> int:
        for index, (v, m, _) in enumerate(self.planned):
            if (v, m) == (view, method):
                return index
        self.planned.append((view, method, 0.0))  # not planned: counted from now on
        return len(self.planned) - 1

    def _name(self, view: str | None, method: str) -> str:
        index = self._index(view, method)
        where = method if view is None else f"{view} · {method}"
        return f"[{index + 1}/{len(self.planned)}] {where}"

    def eta(self) -> float | None:
        """Seconds left for the runs not finished (the current one included), None before one ended."""
        if self.done_steps <= 0:
            return None
        left = sum(steps for view, method, steps in self.planned if (view, method) not in self.finished)
        running = self.clock() - self.current_started if self.current is not None else 0.0
        return max(0.0, self.done_seconds / self.done_steps * left - running)

    def start(self, view: str | None, method: str) -> None:
        """Announce the run of `method` in `view`: its place in the plan, elapsed time, ETA."""
        self.current, self.current_started = (view, method), self.clock()
        eta = self.eta()
        print(f"{self._name(view, method)} · elapsed {duration(self.clock() - self.started_at)} · "
              f"ETA {'–' if eta is None else rough_duration(eta)}", file=self.err or sys.stderr, flush=True)  # fmt: skip

    def finish(self, result: str) -> None:
        """The current run ended with `result` (one short line)."""
        view, method = self.current
        seconds = self.clock() - self.current_started
        self.finished.add((view, method))
        self.done_steps += self.planned[self._index(view, method)][2]
        self.done_seconds += seconds
        self.current = None
        print(f"{self._name(view, method)}: {result} ({duration(seconds)})", file=self.out or sys.stdout, flush=True)

    def skip(self, view: str | None, method: str, reason: str) -> None:
        """`method` does not run in `view` after all: out of the plan, with the reason."""
        where = method if view is None else f"{view} · {method}"
        self.planned = [item for item in self.planned if item[:2] != (view, method)]
        if self.current == (view, method):
            self.current = None
        print(f"[–] {where}: not run ({reason})", file=self.out or sys.stdout, flush=True)
