"""scripts/compare_runs.py: two finished runs side by side, from their summaries alone."""
from __future__ import annotations

import importlib.util
import json

import pytest

from cli import ROOT

spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def _run(path, learner_seeds, steps=1000):
    path.mkdir()
    learner = {"view": "clean", "name": "ddrl_amsa", "seeds": len(learner_seeds), "env_steps": steps,
               "make_span": [float(sum(learner_seeds) / len(learner_seeds)), 0.001], "eval_mode": "sample",
               "modes": {"sample": {"make_span": [sum(learner_seeds) / len(learner_seeds), 0.001],
                                    "per_seed_make_span": learner_seeds}}}  # fmt: skip
    rule = {"view": "clean", "name": "optimal_myopic", "seeds": len(learner_seeds), "make_span": [0.2, 0.001],
            "eval_mode": "rule", "modes": {}}  # fmt: skip
    (path / "summary.json").write_text(json.dumps({"yardstick": "optimal_myopic", "methods": [learner, rule]}))
    return path


def test_change_gap_and_paired_count_from_the_summaries(tmp_path):
    old = _run(tmp_path / "old", [0.22, 0.23, 0.24])
    new = _run(tmp_path / "new", [0.21, 0.22, 0.25])
    rows = {(r["method"], r["mode"]): r for r in compare_runs.compare(old, new)}
    learner = rows["ddrl_amsa", "sample"]
    assert learner["gap_baseline_pct"] == pytest.approx(15.0) and learner["gap_changed_pct"] == pytest.approx(13.33)
    point, low, high = learner["change_pct"]
    assert point == pytest.approx(100 * (0.68 / 0.69 - 1), abs=0.01) and low < point < high
    assert learner["seeds_better"] == "2/3"
    assert "change_pct" not in rows["optimal_myopic", "rule"]  # a rule has no per-seed figures
    assert "| clean | ddrl_amsa (sample) | 0.2300 ± 0.0010 | +15.0 % |" in compare_runs.markdown(list(rows.values()))


def test_runs_of_different_budgets_are_refused(tmp_path):
    old = _run(tmp_path / "old", [0.22, 0.23])
    new = _run(tmp_path / "new", [0.21, 0.22], steps=2000)
    with pytest.raises(SystemExit, match="seeds or training steps"):
        compare_runs.compare(old, new)
