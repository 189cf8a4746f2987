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
