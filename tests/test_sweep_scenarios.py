"""Scenario sweeps (issue 5): the env knobs num_servers / capacity_max, the enumeration-free
myopic optimum, and the sweep experiment (methods that cannot exist at a point are left out)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ddrl.envs.scenarios import ConfigError, build_mec
from ddrl.experiments.scheduling import unbuildable, view_env_config
from ddrl.run import CONFIG_DIR, validate
from ddrl.schedulers import make_scheduler
from tests.cli import run_cli

AMCOEDGE_CAPACITY = [10.0, 20, 30, 40, 50]
AMCOEDGE_RATE = [400.0, 425, 450, 475, 500]


def _arrays(env_cfg: dict, action_space: str = "mask"):
    env, params = build_mec({"scenario": "amcoedge", **env_cfg}, action_space=action_space)
    return env, np.asarray(params.capacity).tolist(), np.asarray(params.rate).tolist()


def test_num_servers_tiles_the_scenarios_servers():
    env, capacity, rate = _arrays({"num_servers": 12})
    assert env.num_servers == 12
    assert capacity == AMCOEDGE_CAPACITY * 2 + AMCOEDGE_CAPACITY[:2]
    assert rate == AMCOEDGE_RATE * 2 + AMCOEDGE_RATE[:2]
    assert _arrays({"num_servers": 3})[1:] == (AMCOEDGE_CAPACITY[:3], AMCOEDGE_RATE[:3])
    assert _arrays({"num_servers": 5}, "subset")[1:] == (AMCOEDGE_CAPACITY, AMCOEDGE_RATE)  # B0: unchanged
    _, capacity, rate = _arrays({"num_servers": 4, "capacity": [1.0, 2.0], "rate": [300.0, 301.0]})
    assert capacity == [1.0, 2.0, 1.0, 2.0] and rate == [300.0, 301.0, 300.0, 301.0]  # tiles the given lists


def test_capacity_max_spreads_capacities_linearly():
    assert _arrays({"capacity_max": 80})[1] == pytest.approx([10.0, 27.5, 45.0, 62.5, 80.0])
    assert _arrays({"capacity_max": 50})[1:] == (AMCOEDGE_CAPACITY, AMCOEDGE_RATE)  # the scenario's own
    assert _arrays({"capacity_max": 10})[1] == [10.0] * 5
    env, capacity, rate = _arrays({"capacity_max": 20, "num_servers": 9})
    assert capacity == pytest.approx(np.linspace(10, 20, 9).tolist()) and rate[5:] == AMCOEDGE_RATE[:4]


@pytest.mark.parametrize("field, value, words", [
    ("num_servers", 0, "positive integer"), ("num_servers", -3, "positive integer"),
    ("num_servers", 2.5, "positive integer"), ("num_servers", "many", "positive integer"),
    ("num_servers", True, "positive integer"),
    ("capacity_max", 5, ">= the smallest capacity (10 GHz)"), ("capacity_max", 0, ">= the smallest"),
    ("capacity_max", math.inf, "finite"), ("capacity_max", "fast", "must be a number"),
])  # fmt: skip
def test_bad_knob_values_name_the_field(field, value, words):
    with pytest.raises(ConfigError, match=f"env.{field}") as error:
        build_mec({"scenario": "amcoedge", field: value}, action_space="mask")
    assert words in str(error.value) and error.value.field_name == f"env.{field}"


def test_subset_space_beyond_16_servers_is_a_config_error():
    with pytest.raises(ConfigError, match="env.action_space: subset needs 2\\^B - 1 actions; B = 20"):
        build_mec({"scenario": "amcoedge", "num_servers": 20}, action_space="subset")


@pytest.mark.parametrize("num_servers", [5, 8])
def test_fast_myopic_equals_enumeration(num_servers):
    """On a loaded rollout (p = 0.8, queues build up), the cwa prefix rule picks the very set
    the enumeration of all 2^B - 1 subsets picks, with the same make-span."""
    env, params = build_mec({"scenario": "amcoedge", "num_servers": num_servers, "arrival_prob": 0.8,
                             "num_slots": 4, "num_tasks": 20}, action_space="subset")  # fmt: skip
    fast, enumerate_all = make_scheduler("optimal_myopic_cwa", env), make_scheduler("optimal_myopic", env)

    def step(carry, key):
        obs, state = carry
        act_key, env_key = jax.random.split(key)
        chosen, best = fast(act_key, obs, state, params), enumerate_all(act_key, obs, state, params)
        delays = (env.decide(state, chosen, params).raw_delay, env.decide(state, best, params).raw_delay)
        obs, state, *_ = env.step(env_key, state, best, params)
        return (obs, state), (chosen, best, *delays, (state.queue + state.slot_load).sum())

    start = env.reset(jax.random.PRNGKey(0), params)
    _, (chosen, best, fast_delay, best_delay, backlog) = jax.jit(
        lambda keys: jax.lax.scan(step, start, keys))(jax.random.split(jax.random.PRNGKey(1), 300))  # fmt: skip
    np.testing.assert_allclose(np.asarray(fast_delay), np.asarray(best_delay), rtol=1e-6)
    assert np.mean(np.asarray(chosen) == np.asarray(best)) == 1.0
    assert float(np.max(backlog)) > 10  # loaded ESs: waiting times mattered
    assert len(set(np.asarray(best).tolist())) > 3  # many different sets were chosen


def test_fast_myopic_needs_the_clean_preset_and_a_set_space():
    env, _ = build_mec({"scenario": "amcoedge", "preset": "fidelity"}, action_space="subset")
    with pytest.raises(ValueError, match="exact cwa and no quirks"):
        make_scheduler("optimal_myopic_cwa", env)
    env, _ = build_mec({"scenario": "amcoedge"}, action_space="pair")
    with pytest.raises(ValueError, match="subset or mask"):
        make_scheduler("optimal_myopic_cwa", env)


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=["+experiment=sweep", *overrides])


def test_sweep_experiment_leaves_out_what_cannot_exist_at_large_b():
    for num_servers in (5, 10, 20, 50):
        cfg = _compose(f"env.num_servers={num_servers}")
        validate(cfg)  # passes at every B: what cannot exist is left out, not an error
        reasons = {key: unbuildable(cfg, key, method, view_env_config(cfg, "clean", key))
                   for key, method in cfg.methods.items()}  # fmt: skip
        subsets_fail = num_servers > 16
        assert (reasons["ddrl_amsa"] is not None) == subsets_fail
        assert (reasons["amcoedge"] is not None) == subsets_fail
        assert all(reasons[key] is None for key in ("ddrl_amsa_factored", "smcoedge", "drlcoedge",
                                                     "randcoedge", "optimal_myopic"))  # fmt: skip
    assert cfg.views == ["clean"] and cfg.milp is None and cfg.yardstick == "optimal_myopic"
    assert dict(cfg.fallbacks) == {"ddrl_amsa_factored": "ddrl_amsa"}
    with pytest.raises(ConfigError, match="env.num_servers"):
        validate(_compose("env.num_servers=0"))
    with pytest.raises(ConfigError, match="env.action_space"):  # without skip_unbuildable: an error
        validate(_compose("env.num_servers=20", "skip_unbuildable=false"))
    with pytest.raises(ConfigError, match="env.capacity_max"):
        validate(_compose("env.capacity_max=5"))


def test_sweep_point_with_schedulers_notes_what_was_left_out(tmp_path: Path):
    run_dir = tmp_path / "point"
    result = run_cli("+experiment=sweep", "budget=smoke", "logger=none", "env.num_servers=20",
                     "env.num_slots=2", "env.num_tasks=4", "only=[amcoedge,optimal_myopic]",
                     run_dir=run_dir, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [m["name"] for m in summary["methods"]] == ["optimal_myopic"]
    assert [s["name"] for s in summary["skipped"]] == ["amcoedge"] and summary["yardstick"] == "optimal_myopic"
    myopic = summary["methods"][0]
    assert myopic["action_space"] == "mask" and myopic["failure_rate"][0] == 0.0 and 0 < myopic["mean"] < 0.3
    table = (run_dir / "results.md").read_text()
    assert "AMCoEdge (DQN, subsets) | not run here" in table and "`amcoedge` not run: env.action_space" in table


def test_report_of_a_sweep_notes_left_out_methods_and_pivots(tmp_path: Path):
    from ddrl.report import collect, to_markdown, write_report

    def job(name: str, num_servers: int, methods: dict[str, float], skipped: list[str]) -> None:
        directory = tmp_path / "sweep" / name
        (directory / ".hydra").mkdir(parents=True)
        (directory / ".hydra" / "overrides.yaml").write_text(f"- +experiment=sweep\n- env.num_servers={num_servers}\n")
        rows = [{"name": key, "view": "clean", "metric": "make_span", "mean": value, "ci95": 0.01,
                 "make_span": [value, 0.01], "failure_rate": [0.0, 0.0], "seeds": 3}
                for key, value in methods.items()]  # fmt: skip
        notes = [{"name": key, "view": "clean", "label": key, "reason": "env.action_space: subset needs 2^B - 1"}
                 for key in skipped]  # fmt: skip
        (directory / "summary.json").write_text(json.dumps(
            {"methods": rows, "yardstick": "optimal_myopic", "skipped": notes}))

    job("0", 5, {"amcoedge": 0.25, "optimal_myopic": 0.21}, [])
    job("1", 20, {"optimal_myopic": 0.22}, ["amcoedge"])
    rows = collect([tmp_path / "sweep"])
    assert [(r.method, r.note is not None, r.reference) for r in rows] == [
        ("amcoedge", False, False), ("optimal_myopic", False, True),
        ("optimal_myopic", False, True), ("amcoedge", True, False)]  # fmt: skip
    assert rows[0].metrics["failure_rate"].mean == 0.0  # [mean, ci95] pairs of the scheduling summary
    assert "not run: env.action_space" in to_markdown(rows).splitlines()[-1]
    written = write_report(rows, tmp_path / "out", pivot=True, logx=True)
    assert [p.name for p in written] == ["report.md", "report.csv", "pivot.md",
                                         "make_span_vs_env.num_servers.png", "failure_rate_vs_env.num_servers.png"]
    pivot = (tmp_path / "out" / "pivot.md").read_text()
    assert "| env.num_servers | amcoedge | optimal_myopic (reference) |" in pivot
    assert "| 5 | 0.2500 ± 0.0100 | 0.2100 ± 0.0100 |" in pivot and "| 20 | not run | 0.2200 ± 0.0100 |" in pivot
