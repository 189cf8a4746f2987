"""The MEC experiments (amsa, ats) compose and run their smoke budgets end to end."""

from __future__ import annotations

import json

from cli import run_cli


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
