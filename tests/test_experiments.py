"""Every +experiment composes and runs its smoke budget end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*overrides: str, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ddrl.run", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )


def test_cartpole_smoke_runs_every_method(tmp_path):
    run_dir = tmp_path / "cartpole"
    result = run_cli("+experiment=cartpole", "budget=smoke", "logger=none", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [m["name"] for m in summary["methods"]] == ["d2sac", "d2sac_published", "dqn", "sac", "ppo"]
    for method in summary["methods"]:
        assert method["seeds"] == 2 and method["env_steps"] > 0 and method["mean"] > 0
    assert {(c["method"], c["baseline"]) for c in summary["comparisons"]} == {
        ("d2sac", "dqn"), ("d2sac", "sac"), ("d2sac_published", "dqn"), ("d2sac_published", "sac")
    }
    table = (run_dir / "results.md").read_text()
    assert "+9.57 %" in table and "+18.36 %" in table
    assert (run_dir / "learning_curves.png").stat().st_size > 10_000
    assert (run_dir / "dqn" / "metrics.jsonl").exists()


def test_cartpole_smoke_logs_to_wandb_offline(tmp_path):
    run_dir = tmp_path / "cartpole_wandb"
    result = run_cli("+experiment=cartpole", "budget=smoke", "logger=wandb", "only=[dqn]", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    offline_runs = list((run_dir / "dqn" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2  # one W&B run per seed
    assert json.loads((run_dir / "summary.json").read_text())["methods"][0]["name"] == "dqn"


def test_amsa_smoke_trains_per_bs_agents_and_writes_the_table(tmp_path):
    run_dir = tmp_path / "amsa"
    result = run_cli("+experiment=amsa", "budget=smoke", "logger=none", "views=[clean,published]",
                     "only=[smcoedge,ddrl_amsa,optimal_myopic]", run_dir=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = {(m["view"], m["name"]): m for m in summary["methods"]}
    assert set(rows) == {("clean", "smcoedge"), ("clean", "ddrl_amsa"), ("clean", "optimal_myopic"),
                         ("published", "smcoedge")}  # fmt: skip
    assert rows["published", "smcoedge"]["env_copy"] == "smcoedge"
    assert rows["clean", "ddrl_amsa"]["action_space"] == "subset"
    assert rows["clean", "smcoedge"]["action_space"] == "topk"
    for row in rows.values():
        assert row["seeds"] == 2 and 0 < row["mean"] < 1.0 and row["decision_us"] > 0
    assert [(c["view"], c["baseline"]) for c in summary["comparisons"]] == [("clean", "smcoedge")]
    table = (run_dir / "results.md").read_text()
    assert "-13.54 %" in table and "0.2479" in table  # the seed's claim and the authors' figure
    assert (run_dir / "learning_curves.png").stat().st_size > 10_000


def test_ats_smoke_runs_lad_ts_with_its_latent_table(tmp_path):
    run_dir = tmp_path / "ats"
    result = run_cli("+experiment=ats", "budget=smoke", "logger=none", "only=[lad_ts,opt_ts]", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {m["name"] for m in summary["methods"]} == {"lad_ts", "opt_ts"}
    assert "7.4000" in (run_dir / "results.md").read_text()  # Opt-TS's figure from REFERENCES.md


def test_experiment_config_errors_stop_before_training(tmp_path):
    result = run_cli("+experiment=amsa", "views=[clean,dirty]", run_dir=tmp_path / "bad")
    assert result.returncode == 2 and "views" in result.stderr and "dirty" in result.stderr
    result = run_cli("+experiment=ats", "only=[lad]", run_dir=tmp_path / "bad2")
    assert result.returncode == 2 and "only" in result.stderr
