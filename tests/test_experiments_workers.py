"""Learners trained in worker processes (`jobs=2`) give the rows of one process.

Its own module so that pytest-xdist (`--dist loadscope`) can run it beside the other amsa smoke
runs of `test_experiments_mec.py` instead of after them on the same worker."""

from __future__ import annotations

import json
import re

from cli import run_cli


def test_learners_trained_in_worker_processes_give_the_rows_of_one_process(tmp_path):
    """`jobs=2` trains the learners in two spawned workers; every number of every row is the same."""
    common = ("+experiment=amsa", "budget=smoke", "logger=none", "views=[clean]", "milp=null", "env.num_slots=4",
              "only=[amcoedge,drlcoedge,randcoedge]", "+decision_time=false",
              "budget.train_steps=2400", "budget.num_chunks=3")  # three chunks: the workers report progress  # fmt: skip
    summaries = {}
    for jobs in (1, 2):
        result = run_cli(*common, f"jobs={jobs}", run_dir=tmp_path / f"jobs{jobs}")
        assert result.returncode == 0, result.stderr[-3000:]
        summaries[jobs] = json.loads((tmp_path / f"jobs{jobs}" / "summary.json").read_text())["methods"]
    timing = ("train_wall_s", "eval_wall_s", "env_steps_per_s", "decision_us", "decision_us_p99")

    def without_timing(row):
        modes = {mode: {k: v for k, v in m.items() if k != "eval_wall_s"} for mode, m in row.get("modes", {}).items()}
        return {**{k: v for k, v in row.items() if k not in timing}, "modes": modes}

    assert [m["name"] for m in summaries[2]] == ["amcoedge", "drlcoedge", "randcoedge"]
    assert [without_timing(m) for m in summaries[2]] == [without_timing(m) for m in summaries[1]]
    assert (tmp_path / "jobs2" / "clean-drlcoedge_history.npz").exists()
    # the ETA knows the workers' runs (timed when a worker ends one, before this process reads
    # it): a pace is known, so it names the one method left that is not timed, the scheduler
    assert re.search(r"^\[3/3\] clean · randcoedge · elapsed \S+ · ETA – \(1 method not timed yet\)$",
                     result.stderr, re.M), result.stderr[-3000:]  # fmt: skip
    # a run in a worker has no bar: a line when its chunk reports pass 25, 50 or 75 % (3 chunks)
    for method in ("amcoedge", "drlcoedge"):
        assert re.search(rf"^\[[12]/3\] clean · {method}: 67 % trained \(worker\) · elapsed \S+ · ETA ",
                         result.stderr, re.M), result.stderr[-3000:]  # fmt: skip


def test_a_worker_killed_by_the_operating_system_ends_the_run_with_one_line(tmp_path):
    """A worker that dies without an answer (SIGKILL, as the out-of-memory killer sends): the run
    stops with one line saying so and how to continue, exit 1, and its manifest says failed."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from cli import ROOT

    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "ddrl.run", "+experiment=amsa", "budget=smoke", "logger=none", "views=[clean]",
               "milp=null", "only=[amcoedge,drlcoedge]", "jobs=2", f"hydra.run.dir={run_dir}"]  # fmt: skip
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def workers() -> list[int]:  # the run's spawned training workers (not its resource tracker)
        found = []
        for proc in Path("/proc").iterdir():
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if proc.name.isdigit() and stat.rsplit(")", 1)[1].split()[1] == str(run.pid) and b"spawn_main" in cmdline:
                found.append(int(proc.name))
        return found

    try:
        deadline = time.monotonic() + 240
        while not (pids := workers()) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pids, "no worker process appeared"
        os.kill(pids[0], signal.SIGKILL)
        _, stderr = run.communicate(timeout=240)
    finally:
        run.kill()
    assert run.returncode == 1, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "ddrl.run: error: a training worker process died without an answer (killed by the operating system? an "
        "out-of-memory kill shows in `dmesg`); trainings that finished kept their checkpoints: resume=true "
        "continues from them")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and not (run_dir / "summary.json").exists()
