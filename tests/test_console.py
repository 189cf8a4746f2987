"""What a user's terminal shows: progress and results, not W&B banners (issue 16).

One smoke experiment (AMSA, clean view, one learner and one scheduler, W&B offline as by
default) is run once as a newcomer would and its captured console checked; the verbose
option, the progress line and the closing lines are checked in-process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import ROOT

TIME = r"[\dhms]+"  # a duration as the progress lines write it: 4s, 2m10s, 1h05m


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, str]:
    """The run directory and console (stdout + stderr) of a smoke AMSA run with W&B offline."""
    run_dir = tmp_path_factory.mktemp("console") / "amsa"
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SILENT"}
    env["WANDB_MODE"] = "offline"  # no network in tests
    result = subprocess.run(
        [sys.executable, "-m", "ddrl.run", "+experiment=amsa", "budget=smoke", "views=[clean]",
         "only=[amcoedge,random]", "milp=null", "+decision_time=false", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    return run_dir, result.stdout


def test_no_wandb_banners_by_default(smoke):
    _, console = smoke
    assert not [line for line in console.splitlines() if line.startswith("wandb:")], console
    assert "wandb leet" not in console and "Tracking run with wandb" not in console


def test_offline_wandb_runs_are_still_written(smoke):
    run_dir, console = smoke
    runs = sorted((run_dir / "clean-amcoedge" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # one per seed
    assert all(list(run.glob("run-*.wandb")) for run in runs)
    pattern = f"{run_dir}/*/wandb/offline-run-*"
    assert f"W&B: 2 offline runs in {pattern}; upload them with: wandb sync {pattern}" in console


def test_progress_lines_with_the_eta(smoke):
    _, console = smoke
    assert re.search(rf"^\[1/2\] clean · amcoedge · elapsed {TIME} · ETA –$", console, re.M), console
    # random is all that is left and not timed yet: no figure, only why
    assert re.search(rf"^\[2/2\] clean · random · elapsed {TIME} · ETA – \(1 method not timed yet\)$",
                     console, re.M), console  # fmt: skip
    assert re.search(rf"^\[2/2\] clean · random: make-span [\d.]+ ± [\d.]+ s, failure rate [\d.]+ \({TIME}\)$",
                     console, re.M), console  # fmt: skip


def test_each_table_once_and_where_the_results_are(smoke):
    run_dir, console = smoke
    assert console.count("# amsa: scenario amcoedge") == 1
    assert console.count("## clean: every method") == 1
    assert console.count("| AMCoEdge (DQN, subsets) |") == 1
    assert "| method | scenario | preset |" not in console  # the generic table: single runs only
    last = console.rstrip().splitlines()[-2:]
    assert last[0] == f"results in {run_dir}: results.md, summary.json, learning_curves.png"
    assert last[1].startswith("W&B: 2 offline runs")


def test_verbose_brings_the_wandb_banners_back(tmp_path, capfd, monkeypatch):
    pytest.importorskip("wandb")
    from ddrl.log import make_logger

    monkeypatch.delenv("WANDB_SILENT", raising=False)
    config = {"env": {"scenario": "amcoedge"}, "budget": {"name": "smoke"}}
    for verbose in (False, True):
        logger = make_logger({"kind": "wandb", "mode": "offline", "verbose": verbose}, tmp_path / str(verbose),
                             config, "g", "n", 1)  # fmt: skip
        logger.log(1, {"make_span": [0.2]})
        logger.close()
        captured = capfd.readouterr()
        banners = [line for line in (captured.out + captured.err).splitlines() if line.startswith("wandb:")]
        assert bool(banners) == verbose, banners
        assert len(list((tmp_path / str(verbose) / "wandb").glob("offline-run-*"))) == 1


def test_progress_eta_scales_the_planned_steps(capsys):
    from ddrl.progress import ExperimentProgress

    now = [0.0]
    progress = ExperimentProgress([("clean", "a", 100), ("clean", "b", 300), ("fidelity", "a", 100)],
                                  clock=lambda: now[0])  # fmt: skip
    progress.start("clean", "a")
    now[0] = 10.0
    progress.finish("done")
    progress.skip("clean", "b", "no such action space")
    progress.start("fidelity", "a")
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["[1/3] clean · a · elapsed 0s · ETA –",
                                         "[2/2] fidelity · a · elapsed 10s · ETA ~10s"]  # fmt: skip
    assert captured.out.splitlines() == ["[1/3] clean · a: done (10s)", "[–] clean · b: not run (no such action space)"]
    now[0] = 14.0
    assert progress.eta() == pytest.approx(6.0)  # 0.1 s a step, 100 steps, 4 s of them spent


def test_progress_eta_prices_each_method_at_its_own_rate_and_schedules_the_workers(capsys):
    from ddrl.progress import ExperimentProgress

    now = [0.0]
    planned = [("clean", "slow", 100), ("fidelity", "slow", 100), ("clean", "fast", 100),
               ("fidelity", "fast", 100), ("clean", "rule", 10)]  # fmt: skip
    progress = ExperimentProgress(planned, clock=lambda: now[0])
    progress.in_workers([("clean", "slow"), ("fidelity", "slow"), ("clean", "fast"), ("fidelity", "fast")], jobs=2)
    progress.start("clean", "slow")  # this process waits for the first worker run
    assert progress.eta() is None
    now[0] = 100.0
    progress.worker_finished("clean", "slow")  # 1 s a step; the queued clean·fast starts on its worker
    progress.finish("done")
    now[0] = 110.0
    # fidelity·slow runs since 0 (0 s left of its 100), clean·fast since 100 (90 s left at the
    # untimed methods' rate, all timed runs: 1 s a step); fidelity·fast then takes the worker
    # that frees first (100 s more); the scheduler rule runs here, 10 s, meanwhile.
    assert progress.eta() == pytest.approx(100.0)
    progress.start("fidelity", "slow")
    assert "· ETA – (2 methods not timed yet)" in capsys.readouterr().err  # 200 of the 300 s priced are guesses
    progress.worker_finished("fidelity", "slow")
    progress.finish("done")
    now[0] = 120.0
    progress.worker_finished("clean", "fast")  # 20 s for 100 steps: 0.2 s a step
    progress.worker_finished("clean", "fast")  # reported twice: counted once
    assert progress.timed["fast"] == [20.0, 100.0]
    # fidelity·fast started at 110, when fidelity·slow (110 s) freed its worker: 20 s, 10 spent;
    # the rule, untimed: 10 steps at the fastest pace known (fast's 0.2 s a step)
    assert progress.eta() == pytest.approx(10.0)
    now[0] = 135.0
    assert progress.eta() == pytest.approx(2.0)
    progress.start("clean", "fast")
    progress.finish("done")  # consumed from the worker: not timed again
    assert progress.timed["fast"] == [20.0, 100.0]


def test_progress_eta_reads_the_pace_of_a_worker_run_from_its_chunk_reports():
    from ddrl.progress import ExperimentProgress

    now = [0.0]
    progress = ExperimentProgress([("clean", "slow", 100), ("clean", "fast", 100), ("fidelity", "fast", 100)],
                                  clock=lambda: now[0])  # fmt: skip
    progress.in_workers([("clean", "slow"), ("clean", "fast"), ("fidelity", "fast")], jobs=2)
    now[0] = 30.0
    progress.worker_progress("clean", "slow", 0.1)  # the first chunk, compile included: no pace yet
    assert progress.eta() is None
    now[0] = 40.0
    progress.worker_progress("clean", "slow", 0.2)  # 10 s for 10 steps: 1 s a step
    now[0] = 45.0
    # clean·slow: 80 steps left at 1 s, 5 s of them spent; clean·fast (untimed) and then
    # fidelity·fast on the other worker, each at the fastest (only) pace known, 1 s a step
    assert progress.eta() == pytest.approx(200.0 - 45.0)
    progress.worker_progress("clean", "fast", 0.5)
    now[0] = 46.0
    progress.worker_progress("clean", "fast", 1.0)  # 2 s for 50 steps
    progress.worker_finished("clean", "fast")  # 46 s from the start for its 100 steps
    assert progress.timed == {"fast": [46.0, 100.0]}
    # fidelity·fast started at 46 on the freed worker: 46 s; clean·slow from its latest report
    assert progress.eta() == pytest.approx(max(80.0 - 6.0, 46.0))


def test_progress_prints_a_line_as_a_worker_run_passes_each_quarter(capsys):
    from ddrl.progress import ExperimentProgress

    now = [0.0]
    progress = ExperimentProgress([("clean", "slow", 100), ("clean", "fast", 100)], clock=lambda: now[0])
    progress.in_workers([("clean", "slow"), ("clean", "fast")], jobs=2)
    reports = [(30, "slow", 0.1), (35, "fast", 0.1), (40, "slow", 0.2), (45, "fast", 0.3), (50, "slow", 0.3),
               (70, "slow", 0.5), (100, "slow", 0.9), (110, "slow", 1.0)]  # fmt: skip
    for time, method, fraction in reports:
        now[0] = float(time)
        progress.worker_progress("clean", method, fraction)
    # each run's pace from its first to its latest report (slow 1 s a step, then 70 s for 80
    # steps; fast 0.5 s), its time left counted from its latest report, the ETA the later of the
    # two; 0.5 → 0.9 passes only the 75 % mark, and the end (1.0) is left to the result line;
    # each line gives the share done
    assert capsys.readouterr().err.splitlines() == [
        "[2/2] clean · fast: 30 % trained (worker) · elapsed 45s · ETA ~1m",  # slow: 80 - 5 s left
        "[1/2] clean · slow: 30 % trained (worker) · elapsed 50s · ETA ~1m",  # slow: 70 s
        "[1/2] clean · slow: 50 % trained (worker) · elapsed 1m10s · ETA ~50s",
        "[1/2] clean · slow: 90 % trained (worker) · elapsed 1m40s · ETA ~9s",  # 10 steps at 0.875 s
    ]


def test_durations():
    from ddrl.progress import duration, rough_duration

    assert [duration(s) for s in (4.4, 130, 3900)] == ["4s", "2m10s", "1h05m"]
    assert [rough_duration(s) for s in (40, 370, 4800)] == ["~40s", "~6m", "~1h20m"]


def test_closing_lines_of_a_multirun(tmp_path, capsys):
    from ddrl.run import print_sweep_where

    for job in ("0", "1"):
        (tmp_path / job / "clean-ddrl_amsa" / "wandb" / "offline-run-x").mkdir(parents=True)
        (tmp_path / job / "summary.json").write_text("{}")
    print_sweep_where([tmp_path])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"multirun: 2 jobs in {tmp_path}/<job>/; one table of them all: python -m ddrl.report {tmp_path}",
                     f"W&B: upload the offline runs of every job with: wandb sync {tmp_path}/*/*/wandb/offline-run-*"]


def test_wandb_note_of_a_scheduler_run(tmp_path):
    from ddrl.log import wandb_note

    assert wandb_note({"kind": "wandb", "mode": "offline"}, tmp_path) is None  # no W&B run there
    (tmp_path / "wandb" / "offline-run-1").mkdir(parents=True)
    pattern = f"{tmp_path}/wandb/offline-run-*"
    assert wandb_note({"kind": "wandb"}, tmp_path) == f"W&B: 1 offline run in {pattern}; upload it with: wandb sync {pattern}"
    assert wandb_note({"kind": "none"}, tmp_path) is None
