"""The decision-latency benchmark runs and prints well-formed JSON lines (smallest setting only)."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from ddrl.benchmarks import decide
from ddrl.envs.scenarios import build_mec


def test_quick_cwa_lines_parse_and_have_positive_finite_times(capsys: pytest.CaptureFixture[str]) -> None:
    decide.main(["--quick", "--what", "scaling", "--only", "cwa", "--servers", "5"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    assert [(line["mode"], line["tasks_per_call"]) for line in lines] == [("one", 1), ("slot", 75)]
    for line in lines:
        assert (line["bench"], line["what"], line["scheduler"], line["B"]) == ("decide", "scaling", "cwa", 5)
        assert line["calls"] >= 10
        for field in ("p50_us", "p99_us"):
            assert math.isfinite(line[field]) and line[field] > 0
        assert line["p99_us"] >= line["p50_us"]


def test_spread_servers_covers_the_amcoedge_ranges() -> None:
    spread = decide.spread_servers(5)
    assert spread == {"capacity": [10.0, 20.0, 30.0, 40.0, 50.0], "rate": [400.0, 425.0, 450.0, 475.0, 500.0]}
    assert len(decide.spread_servers(50)["rate"]) == 50


def test_scaling_exponent_fits_the_power_over_b_from_10_to_200() -> None:
    times = {5: 1.0, 10: 3.0, 20: 12.0, 200: 1200.0}  # ∝ B² from 10 on; B = 5 is left out of the fit
    fit = decide.scaling_exponent(times)
    assert fit is not None and fit["fit_B"] == [10, 20, 200] and math.isclose(fit["k"], 2.0, abs_tol=1e-3)
    assert decide.scaling_exponent({5: 1.0, 10: 2.0}) is None


def test_the_noise_free_greedy_set_it_times_does_not_depend_on_the_key() -> None:
    """`greedy_chains: 0` is one chain run without noise: the same set for every key, where the
    sampled policy's draws differ (B = 5, fresh weights)."""
    env, params = build_mec(decide.load_env_config(), action_space="mask")
    obs, _ = env.reset(jax.random.PRNGKey(0), params)
    keys = jax.random.split(jax.random.PRNGKey(1), 16)
    chosen = {}
    for chains, explore in ((0, False), (None, True)):
        learned = decide.Learned("DDRL-AMSA (set)", "d2sac_set", "mask", (16,), explore, chains)
        per_task, weights = decide.learned_per_task(learned, env, obs.shape)
        chosen[learned.policy] = np.asarray(jax.jit(jax.vmap(lambda k: per_task(weights, (k, obs))))(keys))
    noise_free = chosen["greedy_noise_free"]
    assert noise_free.shape == (16, 5) and (noise_free == noise_free[0]).all()
    assert len({row.tobytes() for row in chosen["sample"]}) > 1
