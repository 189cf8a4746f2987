"""Every +experiment composes and runs its smoke budget end to end."""

from __future__ import annotations

import json

from cli import run_cli


def test_cartpole_smoke_runs_each_kind_of_learner(tmp_path):
    # one diffusion SAC, one value-based and one on-policy learner: the other two methods
    # (d2sac_published, sac) run the same loops with other configs (tests/test_agents.py)
    run_dir = tmp_path / "cartpole"
    result = run_cli("+experiment=cartpole", "budget=smoke", "logger=none", "only=[d2sac,dqn,ppo]",
                     run_dir=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [m["name"] for m in summary["methods"]] == ["d2sac", "dqn", "ppo"]
    for method in summary["methods"]:
        assert method["seeds"] == 2 and method["env_steps"] > 0 and method["mean"] > 0
    assert {(c["method"], c["baseline"]) for c in summary["comparisons"]} == {("d2sac", "dqn")}
    table = (run_dir / "results.md").read_text()
    assert "+9.57 %" in table
    assert (run_dir / "learning_curves.png").stat().st_size > 10_000
    assert (run_dir / "dqn" / "metrics.jsonl").exists()


def test_cartpole_smoke_logs_to_wandb_offline(tmp_path):
    run_dir = tmp_path / "cartpole_wandb"
    result = run_cli("+experiment=cartpole", "budget=smoke", "logger=wandb", "only=[dqn]", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    offline_runs = list((run_dir / "dqn" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2  # one W&B run per seed
    assert json.loads((run_dir / "summary.json").read_text())["methods"][0]["name"] == "dqn"

