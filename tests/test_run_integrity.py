"""Run integrity (issue 13): a run directory never holds results that its config did not produce.

One tiny training run (AMCoEdge's DQN, smoke budget) is shared by the module; the refusals
stop before anything compiles.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import re
import subprocess
import sys
import time
from pathlib import Path

import cli
import pytest

from ddrl import provenance

PROGRESS_LINE = re.compile(r"^\[(\d+/\d+|–)\] .* · ")  # ddrl.progress: "[1/3] clean · amcoedge · elapsed 0s · ETA –"
TINY = ("+experiment=amsa", "budget=smoke", "logger=none", "views=[clean]", "only=[amcoedge]", "milp=null",
        "+decision_time=false")  # fmt: skip


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line on stderr, besides orbax's absl log, the experiment's progress lines and
    the warning of a resume from a dirty tree (a developer's checkout: the tree may have changed)."""
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and "[absl]" not in line and not PROGRESS_LINE.match(line)
             and not line.startswith("ddrl.run: warning: resuming")]  # fmt: skip
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ddrl.run: error: "), lines[0]
    return lines[0]


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    result = cli.run_cli(*TINY, run_dir=run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def test_a_finished_run_has_a_complete_manifest(finished):
    manifest = _manifest(finished)
    assert manifest["status"] == "complete" and manifest["ended_at"] is not None
    assert manifest["config_hash"] == provenance.config_hash(manifest["config"])
    assert manifest["config"]["methods"]["amcoedge"]["gamma"] == 0.9
    assert set(manifest["packages"]) >= {"jax", "flax", "orbax-checkpoint"}
    cpu = manifest["cpu"]  # XLA compiles for this CPU: the last bits of a result can depend on it
    assert cpu["model"] and cpu["cores"] >= 1 and isinstance(cpu["vector_flags"], list)
    assert manifest["git"] is None or set(manifest["git"]) == {"commit", "dirty"}
    summary = (finished / "summary.json").read_text()
    assert "NaN" not in summary and "Infinity" not in summary
    json.loads(summary, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert any((finished / "checkpoints" / "clean-amcoedge").iterdir())


def test_resume_with_a_changed_hyper_parameter_is_refused(finished):
    before = {p: p.read_bytes() for p in (finished / "config.yaml", finished / ".hydra" / "overrides.yaml")}
    result = cli.run_cli(*TINY, "resume=true", "methods.amcoedge.gamma=0.5", "methods.amcoedge.learning_rate=0.5",
                         run_dir=finished)  # fmt: skip
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "methods.amcoedge.gamma: 0.9 -> 0.5" in line and "methods.amcoedge.learning_rate" in line
    assert {p: p.read_bytes() for p in before} == before  # the record of the run is untouched
    assert _manifest(finished)["status"] == "complete"


def test_a_rerun_without_resume_into_a_used_directory_is_refused(finished):
    result = cli.run_cli(*TINY, "seed=3", run_dir=finished)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "already holds another run" in line and "summary.json" in line and "checkpoints/" in line
    assert _manifest(finished)["config"]["seed"] == 0


def test_a_second_run_into_a_locked_directory_stops_at_once(tmp_path):
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    provenance.acquire_lock(run_dir, owner="pid 4242 on elsewhere since then: python -m ddrl.run ...")
    try:
        started = time.monotonic()
        result = cli.run_cli(*TINY, run_dir=run_dir)
        assert time.monotonic() - started < 60
    finally:
        provenance.release_lock(run_dir)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "in use by another run (pid 4242 on elsewhere" in line
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]


def test_an_interrupted_run_is_marked_failed_and_leaves_no_summary(tmp_path):
    run_dir = tmp_path / "cut"
    process = subprocess.Popen([sys.executable, "-m", "ddrl.run", *TINY, f"hydra.run.dir={run_dir}"], cwd=cli.ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run_dir / "manifest.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("ddrl.run: error: interrupted") and lines[-1].endswith("resume with resume=true")
    manifest = _manifest(run_dir)
    assert manifest["status"] == "failed" and manifest["failure"].startswith("interrupted")
    assert not (run_dir / "summary.json").exists() and not (run_dir / "results.md").exists()


def test_a_killed_run_reads_as_failed(tmp_path):
    run_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "ddrl.run", *TINY, f"hydra.run.dir={run_dir}"], cwd=cli.ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run_dir / "manifest.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert _manifest(run_dir)["status"] == "running"  # as it was left ...
    assert provenance.read_manifest(run_dir)["status"] == "failed"  # ... but nobody holds the lock
    assert not (run_dir / "summary.json").exists()


def test_a_resume_on_another_cpu_warns_and_records_both_parts(finished, tmp_path):
    run_dir = tmp_path / "moved"
    shutil.copytree(finished, run_dir, ignore=shutil.ignore_patterns(".lock"))
    manifest = _manifest(run_dir)
    manifest["cpu"] = {**manifest["cpu"], "model": "Another CPU"}  # as if begun on another machine
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = cli.run_cli(*TINY, "resume=true", run_dir=run_dir)
    assert result.returncode == 0, result.stderr
    resumed = _manifest(run_dir)
    warning = next(line for line in result.stderr.splitlines() if line.startswith("ddrl.run: warning: resuming"))
    assert f"cpu Another CPU -> {resumed['cpu']['model']}" in warning
    assert resumed["status"] == "complete" and resumed["earlier"][0]["cpu"]["model"] == "Another CPU"
    assert (run_dir / "summary.json").exists()


def test_a_corrupt_checkpoint_gives_one_line(finished, tmp_path):
    run_dir = tmp_path / "corrupt"
    shutil.copytree(finished, run_dir, ignore=shutil.ignore_patterns(".lock"))
    for path in (run_dir / "checkpoints").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x8c\xff not a checkpoint")
    result = cli.run_cli(*TINY, "resume=true", run_dir=run_dir)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f"checkpoint at {run_dir / 'checkpoints' / 'clean-amcoedge'}" in line and "is unreadable" in line
    assert "rerun without resume" in line
    assert _manifest(run_dir)["status"] == "failed"
    assert not (run_dir / "summary.json").exists() and not (run_dir / "results.md").exists()


def test_a_ctrl_c_whose_exception_was_swallowed_still_stops_the_run():
    from ddrl import interrupts

    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN when started in the background
    with interrupts.installed():
        try:  # as Python does when the signal lands in a gc callback: "Exception ignored"
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        assert interrupts.requested()
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_if_requested()
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back
    assert not interrupts.requested()  # nothing pending for the next run in this process
