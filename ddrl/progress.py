"""The overall progress of an experiment: which of its planned runs, time so far, time left.

An experiment plans its runs (view, method, and the environment steps each will take), then
announces each one as it starts, above that run's own progress bar, and reports its result
when it ends:

    [3/14] clean · amcoedge · elapsed 2m10s · ETA ~6m
    clean-amcoedge: 100%|██████████| 225k/225k [01:02<00:00, ...]
    [3/14] clean · amcoedge: make-span 0.2116 ± 0.0040 s, failure rate 0.0012 (1m05s)

The ETA prices each run still to come at the seconds per planned environment step of its own
method's finished runs (a learner's step includes its updates, so methods differ by 10× and
more), else at the pace of a run of that method under way in a worker (from the chunks the
worker reports), else at the fastest pace known (the costly learners are queued first); the
line then says how many methods are not timed yet, and gives no figure (`–`) where more than
half of it would price them. Runs handed to `jobs` worker processes (`in_workers`) are scheduled
on that many workers in the order they were queued, the ones running counted from when they
started (or from their latest chunk). It is a rough figure, marked `~`, and `–` until a pace
is known. A run in a worker has no progress bar; instead a line, with the share of its training
done, each time its chunk reports pass 25, 50 or 75 % (at most three a run):

    [2/14] fidelity · ddrl_amsa: 50 % trained (worker) · elapsed 9m40s · ETA ~21m

Progress lines go to stderr (with the progress bars), result lines to stdout (with the tables).
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
from typing import Callable, Iterable, TextIO

from tqdm.auto import tqdm


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
        self.timed: dict[str, list[float]] = {}  # method -> [seconds, planned steps] of its finished runs
        self.current: tuple[str | None, str] | None = None
        self.current_started = 0.0
        self.jobs = 1
        self.queued: list[tuple[str | None, str]] = []  # runs in worker processes, in the order they start
        self.worker_started: dict[tuple[str | None, str], float] = {}
        self.worker_done: set[tuple[str | None, str]] = set()
        self.reports: dict[tuple[str | None, str], list[tuple[float, float]]] = {}  # run -> [(time, fraction)]
        self._lock = threading.Lock()  # workers report from the executor's thread

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

    def in_workers(self, runs: Iterable[tuple[str | None, str]], jobs: int) -> None:
        """`runs` were queued, in this order, for `jobs` worker processes (the first `jobs` start now)."""
        with self._lock:
            self.jobs, self.queued = max(1, int(jobs)), list(runs)
            for run in self.queued[: self.jobs]:
                self.worker_started[run] = self.clock()

    def worker_finished(self, view: str | None, method: str) -> None:
        """A worker ended the run (`view`, `method`): it is timed, and the next queued run starts."""
        with self._lock:
            run, now = (view, method), self.clock()
            if run in self.worker_done or run not in self.queued:
                return
            self.worker_done.add(run)
            self._time(method, now - self.worker_started.get(run, self.started_at), self._steps(run))
            waiting = [r for r in self.queued if r not in self.worker_started]
            if waiting:
                self.worker_started[waiting[0]] = now

    def worker_progress(self, view: str | None, method: str, fraction: float) -> None:
        """A worker's run (`view`, `method`) has done `fraction` of its training (after a chunk)."""
        fraction = float(fraction)
        with self._lock:
            reports = self.reports.setdefault((view, method), [])
            before = reports[-1][1] if reports else 0.0
            reports.append((self.clock(), fraction))
        if int(before * 4) < int(fraction * 4) < 4:  # passed 25, 50 or 75 %: one line (the end has its result line)
            line = (f"{self._name(view, method)}: {100 * fraction:.0f} % trained (worker) · "
                    f"elapsed {duration(self.clock() - self.started_at)} · ETA {self._eta_text()}")  # fmt: skip
            tqdm.write(line, file=self.err or sys.stderr)  # above an in-process bar, if one is drawn

    def _running_rate(self, run: tuple[str | None, str]) -> float | None:
        """Seconds per planned step of a worker's run from its chunk reports: the pace between
        its first and latest report (compile, in the first chunk, left out); None before two."""
        reports = self.reports.get(run, [])
        if len(reports) < 2 or reports[-1][1] <= reports[0][1]:
            return None
        (first_time, first), (last_time, last) = reports[0], reports[-1]
        return (last_time - first_time) / ((last - first) * self._steps(run))

    def _steps(self, run: tuple[str | None, str]) -> float:
        return self.planned[self._index(*run)][2]

    def _time(self, method: str, seconds: float, steps: float) -> None:
        seconds_steps = self.timed.setdefault(method, [0.0, 0.0])
        seconds_steps[0] += seconds
        seconds_steps[1] += steps

    def _estimate(self) -> tuple[float, int, float] | None:
        """(seconds left, methods still to run whose pace is not known yet, the share of the
        seconds left that prices them); None before any pace is known."""
        with self._lock:
            now, untimed, guessed = self.clock(), set(), [0.0, 0.0]  # [untimed seconds, all seconds]
            to_do = [(v, m) for v, m, _ in self.planned if (v, m) not in self.finished]
            pending = [run for run in self.queued if run not in self.worker_done and run in to_do]
            pace = {run: rate for run in pending if (rate := self._running_rate(run)) is not None}
            known = [seconds / steps for seconds, steps in self.timed.values() if steps > 0] + list(pace.values())
            if not known:
                return None
            fastest = min(known)  # for an untimed method: the costly learners are queued first

            def left(run):
                method = run[1]
                seconds, steps = self.timed.get(method, (0.0, 0.0))
                paced = [rate for other, rate in pace.items() if other[1] == method]
                if steps > 0:
                    estimate = seconds / steps * self._steps(run)
                elif paced:  # a run of the method is under way in a worker: its pace so far
                    estimate = paced[0] * self._steps(run)
                else:
                    untimed.add(method)
                    estimate = fastest * self._steps(run)
                    guessed[0] += estimate
                guessed[1] += estimate
                return estimate

            def still_running(run):
                if run in pace:  # from its latest report, at its own pace
                    last_time, last = self.reports[run][-1]
                    return pace[run] * self._steps(run) * (1.0 - last) - (now - last_time)
                return left(run) - (now - self.worker_started[run])

            running = [max(0.0, still_running(run)) for run in pending if run in self.worker_started]
            workers = running + [0.0] * max(0, self.jobs - len(running))  # seconds until each worker is free
            heapq.heapify(workers)
            for run in pending:
                if run not in self.worker_started:  # the next free worker takes it
                    heapq.heappush(workers, heapq.heappop(workers) + left(run))
            here = 0.0  # the runs of this process, one after another
            for run in to_do:
                if run not in self.queued:
                    spent = now - self.current_started if run == self.current else 0.0
                    here += max(0.0, left(run) - spent)
            return max(max(workers), here), len(untimed), guessed[0] / guessed[1] if guessed[1] > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left for the runs not finished (the current one included), None before one ended."""
        estimate = self._estimate()
        return None if estimate is None else estimate[0]

    def start(self, view: str | None, method: str) -> None:
        """Announce the run of `method` in `view`: its place in the plan, elapsed time, ETA."""
        self.current, self.current_started = (view, method), self.clock()
        print(f"{self._name(view, method)} · elapsed {duration(self.clock() - self.started_at)} · "
              f"ETA {self._eta_text()}", file=self.err or sys.stderr, flush=True)  # fmt: skip

    def _eta_text(self) -> str:
        """`~6m`, `~1h20m (2 methods not timed yet)`, or `–` where no pace is known or most of
        the figure would price methods not timed yet."""
        estimate = self._estimate()
        if estimate is None:
            return "–"
        seconds, untimed, share = estimate
        eta = "–" if share > 0.5 else rough_duration(seconds)
        return eta + (f" ({untimed} method{'s' * (untimed > 1)} not timed yet)" if untimed else "")

    def finish(self, result: str) -> None:
        """The current run ended with `result` (one short line)."""
        view, method = self.current
        seconds = self.clock() - self.current_started
        with self._lock:
            self.finished.add((view, method))
            if (view, method) not in self.queued:  # a worker's run was timed when the worker ended it
                self._time(method, seconds, self._steps((view, method)))
            self.current = None
        print(f"{self._name(view, method)}: {result} ({duration(seconds)})", file=self.out or sys.stdout, flush=True)

    def skip(self, view: str | None, method: str, reason: str) -> None:
        """`method` does not run in `view` after all: out of the plan, with the reason."""
        where = method if view is None else f"{view} · {method}"
        self.planned = [item for item in self.planned if item[:2] != (view, method)]
        if self.current == (view, method):
            self.current = None
        print(f"[–] {where}: not run ({reason})", file=self.out or sys.stdout, flush=True)
