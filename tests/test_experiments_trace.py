"""The trace experiment (real AIGC traffic) runs its smoke budget end to end; slot schedules."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from cli import run_cli
from ddrl.experiments.scheduling import _method_config


def test_trace_smoke_trains_lad_ts_and_reports_delay_percentiles(tmp_path):
    run_dir = tmp_path / "trace"
    result = run_cli("+experiment=trace", "budget=smoke", "budget.seeds=2", "logger=none", "views=[trace_60]",
                     "only=[lad_ts,optimal_myopic,randcoedge]", "env.num_slots=10", "+decision_time=false",
                     run_dir=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = {m["name"]: m for m in summary["methods"]}
    assert set(rows) == {"lad_ts", "optimal_myopic", "randcoedge"}
    for row in rows.values():
        assert row["view"] == "trace_60"
        p50, p95, p99 = (row[f"delay_p{p}"][0] for p in (50, 95, 99))
        assert 0 < p50 <= p95 <= p99
    table = (run_dir / "results.md").read_text()
    assert "trace on AMCoEdge's cluster, 60 % mean load" in table and "delay p99 (s)" in table
    assert (run_dir / "delay_cdf.png").stat().st_size > 0


def test_slot_schedules_are_converted_to_the_environment_rate():
    cfg = OmegaConf.create({"budget": {"learning_starts": None}, "paper_episodes": 500})
    method = OmegaConf.create({"name": "dqn", "decisions_per_slot": 75, "learning_starts": 15000,
                               "train_every": 750, "exploration_start": 15000,
                               "exploration_steps": 742500, "gamma": 0.9})  # fmt: skip
    same = _method_config(cfg, method, episodes=500, decisions_per_slot=75.0)
    assert (same.learning_starts, same.train_every, same.exploration_steps) == (15000, 750, 742500)
    assert "decisions_per_slot" not in same
    # 5.2 decisions per slot: "after 200 slots, every 10 slots" stays 200 and 10 slots
    trace = _method_config(cfg, method, episodes=50, decisions_per_slot=5.2)
    assert (trace.learning_starts, trace.train_every, trace.exploration_start) == (1040, 52, 1040)
    assert trace.exploration_steps == round(742500 * 5.2 / 75 * 50 / 500)  # then compressed to 50 episodes
    assert trace.gamma == 0.9
