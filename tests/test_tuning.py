"""`+experiment=tune_amsa` (ddrl/experiments/tuning.py): the draw, the config checks, the smoke run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from cli import precheck_lines, run_cli

from ddrl.experiments.tuning import Dimension, draw_settings, tuned_overrides

DIMENSIONS = [
    Dimension("actor_lr", "float", 1e-5, 1e-1, log=True),
    Dimension("target_entropy_ratio", "float", 0.05, 0.6),
    Dimension("gamma", "choice", choices=(0.5, 0.9, 0.95)),
    Dimension("exploration_steps", "int", 10, 20),
]
PUBLISHED = {"actor_lr": 1e-4, "target_entropy_ratio": 0.3, "gamma": 0.9, "exploration_steps": 15}


def test_draw_is_deterministic_within_bounds_and_starts_with_the_published_setting():
    settings = draw_settings(DIMENSIONS, PUBLISHED, 400, seed=7, stream="ddrl_amsa")
    assert settings == draw_settings(DIMENSIONS, PUBLISHED, 400, seed=7, stream="ddrl_amsa")
    assert settings != draw_settings(DIMENSIONS, PUBLISHED, 400, seed=8, stream="ddrl_amsa")
    assert settings[1:] != draw_settings(DIMENSIONS, PUBLISHED, 400, seed=7, stream="amcoedge")[1:]
    assert len(settings) == 400 and settings[0] == PUBLISHED
    drawn = settings[1:]
    lrs = np.array([s["actor_lr"] for s in drawn])
    assert lrs.min() >= 1e-5 and lrs.max() <= 1e-1
    # log-uniform over four decades: about a quarter per decade (uniform would put ~90 % in the last)
    per_decade = np.histogram(np.log10(lrs), bins=[-5, -4, -3, -2, -1])[0] / len(lrs)
    assert per_decade.min() > 0.15, per_decade
    ratios = np.array([s["target_entropy_ratio"] for s in drawn])
    assert ratios.min() >= 0.05 and ratios.max() <= 0.6 and abs(ratios.mean() - 0.325) < 0.03
    assert {s["gamma"] for s in drawn} == {0.5, 0.9, 0.95}
    steps = {s["exploration_steps"] for s in drawn}
    assert steps == set(range(10, 21)) and all(isinstance(v, int) for v in steps)


def test_a_log_dimension_near_its_bounds_stays_inside_them():
    tight = Dimension("tau", "float", 1e-3, 1.0001e-3, log=True)
    values = [s["tau"] for s in draw_settings([tight], {"tau": 0.005}, 200, seed=0)[1:]]
    assert all(1e-3 <= v <= 1.0001e-3 for v in values) and all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("override, field, words", [
    ("tune.methods=[ddrl_amsa,nosuch]", "tune.methods", "unknown method 'nosuch'"),
    ("tune.spaces.amcoedge=null", "tune.spaces.amcoedge", "empty search space"),
    ("~tune.spaces.amcoedge", "tune.spaces.amcoedge", "no search space"),
    ("+tune.spaces.ddrl_amsa.diffusion_steps=5", "tune.spaces.ddrl_amsa.diffusion_steps", "cannot vmap"),
    ("+tune.spaces.amcoedge.hidden=5", "tune.spaces.amcoedge.hidden", "cannot vmap"),
    ("tune.eval_mode.amcoedge=argmax", "tune.eval_mode.amcoedge", "argmax"),
    ("tune.eval_mode.amcoedge=sample", "tune.eval_mode.amcoedge", "no sampled policy"),
    ("views=[clean,fidelity]", "views", "on one view"),
    ("tune.reference=amcoedge", "tune.reference", "is a learner"),
    ("tune.reference=nosuch", "tune.reference", "unknown method 'nosuch'"),
])  # fmt: skip
def test_bad_tuning_config_stops_with_one_line_naming_the_field(tmp_path, monkeypatch, override, field, words):
    monkeypatch.chdir(tmp_path)
    code, lines = precheck_lines(["+experiment=tune_amsa", override])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"ddrl.run: error: {field}: ") and words in lines[0], lines[0]


def test_tune_amsa_smoke_gives_every_method_the_same_trials_and_writes_the_tuned_configs(tmp_path):
    run_dir = tmp_path / "tune"
    result = run_cli("+experiment=tune_amsa", "budget=smoke", "logger=none", "tune.methods=[ddrl_amsa,amcoedge]",
                     "tune.settings=2", "tune.validation_seeds=2", "env.num_slots=10", run_dir=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    searches = {row["name"]: row for row in summary["searches"]}
    assert list(searches) == ["ddrl_amsa", "amcoedge"]
    trials = {name: (t["settings"], t["validation_seeds"], t["env_steps_per_run"])
              for name, t in ((n, row["trials"]) for n, row in searches.items())}  # fmt: skip
    assert set(trials.values()) == {(2, 2, 600)}, trials  # budget=smoke: 600 env steps per run
    assert {row["trials"]["total_env_steps"] for row in searches.values()} == {2 * 2 * 600}
    for name, row in searches.items():
        evaluated = row["evaluated_settings"]
        assert len(evaluated) == 2 and evaluated[0]["hyper_parameters"] == row["published"]["hyper_parameters"]
        assert all(0 < s["validation_make_span"] < 1.0 for s in evaluated)
        chosen = evaluated[row["chosen_index"]]
        assert chosen["validation_make_span"] <= evaluated[0]["validation_make_span"]  # never worse on validation
        assert row["tuned"]["hyper_parameters"] == chosen["hyper_parameters"]
        assert len(row["published"]["per_seed_make_span"]) == 2  # budget.seeds test seeds
        tuned = yaml.safe_load((run_dir / "tuned" / f"{name}.yaml").read_text())
        in_json = {k: None if isinstance(v, float) and math.isinf(v) else v for k, v in tuned.items()}
        assert in_json == pytest.approx(chosen["hyper_parameters"])  # JSON holds clip_x0 = ∞ (no clip) as null
    assert searches["ddrl_amsa"]["published"]["hyper_parameters"]["actor_lr"] == pytest.approx(1e-4)  # conf/algo
    assert summary["test_seed_base"] == 1000 and summary["validation_seed_base"] == 0
    rows = {(m["name"], m["setting"]) for m in summary["methods"]}
    assert rows == {(n, s) for n in searches for s in ("published", "tuned")}
    table = (run_dir / "results.md").read_text()
    assert "2 settings (setting 0 the published one) × 2 validation seeds" in table
    assert "observation `authors`" in table and "view `clean`" in table
    assert table.count("| published |") == 2 and table.count("| tuned (") == 2
    changes = {(c["setting"], c["baseline"], c["baseline_setting"]) for c in summary["comparisons"]}
    settings = {name: ("published", "tuned") if row["chosen_index"] else ("published",) for name, row in searches.items()}
    assert changes == {(ours, "amcoedge", theirs) for ours in settings["ddrl_amsa"] for theirs in settings["amcoedge"]}
    assert all(c["ci95_low"] <= c["relative_pct"] <= c["ci95_high"] for c in summary["comparisons"])
    assert "| ddrl_amsa (published) | amcoedge (published) |" in table
    reference = summary["reference"]  # optimal_myopic on the same test seeds and episodes
    assert reference["name"] == "optimal_myopic" and len(reference["per_seed_make_span"]) == 2
    for row in searches.values():
        for setting in ("published", "tuned"):
            point, low, high = row[setting]["gap_to_reference_pct"]
            ours, theirs = np.mean(row[setting]["per_seed_make_span"]), np.mean(reference["per_seed_make_span"])
            assert point == pytest.approx(100 * (ours - theirs) / theirs) and low <= point <= high
    assert "gap to optimal_myopic (95 % CI)" in table and "| optimal_myopic (reference) | rule |" in table


@pytest.mark.parametrize(("tuning", "tunes"), [("tune_amsa", "amsa"), ("tune_ats", "ats")])
def test_the_tuned_files_command_line_sets_every_searched_field(tuning, tunes):
    """`tuned/<method>.yaml` gives the command that runs the tuned experiment with the chosen
    setting. It must set every searched field, also those a method's config leaves to the
    agent's defaults (LAD-TS's learning rates: a plain `methods.lad_ts.actor_lr=...` is refused)."""
    from hydra import compose, initialize_config_dir

    from ddrl.run import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        spaces = compose(config_name="config", overrides=[f"+experiment={tuning}"]).tune.spaces
        for method, space in spaces.items():
            values = {field: 0.123 for field in space}
            overrides = tuned_overrides(method, values)
            methods = compose(config_name="config", overrides=[f"+experiment={tunes}", *overrides]).methods
            assert {field: methods[method][field] for field in space} == values, (method, overrides)
