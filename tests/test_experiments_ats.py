"""The ats experiment (LAD-TS's table) composes and runs its smoke budget end to end.

Its own module so that, with one pytest worker per core, it runs beside the amsa smoke test.
"""

from __future__ import annotations

import json
import subprocess
import sys

from cli import ROOT, run_cli


def test_ats_smoke_composes_and_writes_the_table(tmp_path):
    # LAD-TS itself trains in tests/test_mec_agents.py and in the trace smoke run
    run_dir = tmp_path / "ats"
    result = run_cli("+experiment=ats", "budget=smoke", "logger=none", "only=[opt_ts,dqn_ts]",
                     "env.num_slots=5", "milp=null", "+decision_time=false", run_dir=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {m["name"] for m in summary["methods"]} == {"opt_ts", "dqn_ts"}
    assert "7.4000" in (run_dir / "results.md").read_text()  # Opt-TS's figure from REFERENCES.md
    # scripts/same_server_pairs.py restores DQN-TS's checkpoints and counts same-slot pairs of one BS
    pairs = subprocess.run([sys.executable, "scripts/same_server_pairs.py", str(run_dir), "--method", "dqn_ts",
                            "--decisions", "300"], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert pairs.returncode == 0, pairs.stderr[-3000:]
    figures = json.loads(pairs.stdout.splitlines()[-1])
    dqn_row = next(m for m in summary["methods"] if m["name"] == "dqn_ts")
    assert figures["seeds"] == dqn_row["seeds"] and figures["pairs"] > 0
    assert 0.0 <= figures["share_same_es"] <= 1.0 and figures["uniform_share"] == 0.05
