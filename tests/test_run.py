"""The command line: config errors stop early with one line; a scheduler run writes its outputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cli
import pytest


def run_cli(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return cli.run_cli(*overrides, run_dir=cwd / "run", timeout=300)


@pytest.mark.parametrize(
    "override, field",
    [
        ("env.capcity=3", "env.capcity"),
        ("method=nonexistent", "method/nonexistent"),
        ("env.arrival_prob=1.5", "env.arrival_prob"),
        ("env.capacity=[10,-20,30,40,50]", "env.capacity"),
        ("env.rate=[400,425]", "env.rate"),
        ("method=random env.action_space=topk env.topk=7", "env.action_space"),
        ("method=randcoedge env.preset=clean env.env_copy=drlcoedge", "env.env_copy"),
        ("env.preset=dirty", "env.preset"),
        ("budget.seeds=0", "budget.seeds"),
    ],
)
def test_config_errors_are_one_line_naming_the_field(tmp_path, override, field):
    result = run_cli(*override.split(), "logger=none", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ddrl.run: error:") and field in lines[0]
    assert not (tmp_path / "run").exists()  # nothing ran, nothing half-written


def test_subset_beyond_its_limit_is_refused(tmp_path):
    servers = ",".join(["10"] * 17)
    result = run_cli(f"env.capacity=[{servers}]", f"env.rate=[{servers}]", "logger=none", cwd=tmp_path)
    assert result.returncode == 2 and "env.action_space" in result.stderr


def test_scheduler_run_writes_summary_and_config(tmp_path):
    result = run_cli("method=randcoedge", "budget=smoke", "env.num_slots=3", "logger=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    method = summary["methods"][0]
    assert method["name"] == "randcoedge" and method["metric"] == "make_span_s"
    assert method["seeds"] == 2 and method["episodes"] == 2
    assert method["scenario"] == "amcoedge" and method["preset"] == "clean"
    assert 0 < method["mean"] < 1.0 and method["ci95"] >= 0
    assert (tmp_path / "run" / "config.yaml").exists()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["method"]["name"] == "randcoedge"
    assert "| randcoedge | amcoedge | clean | make_span_s |" in result.stdout
