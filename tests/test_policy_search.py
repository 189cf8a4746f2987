"""scripts/policy_search.py: the per-BS table of set probabilities and its direct search."""
from __future__ import annotations

import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli import ROOT
from ddrl.envs.scenarios import build_mec
from ddrl.evaluate import evaluate
from ddrl.schedulers import make_scheduler

spec = importlib.util.spec_from_file_location("policy_search", ROOT / "scripts" / "policy_search.py")
policy_search = importlib.util.module_from_spec(spec)
sys.modules["policy_search"] = policy_search  # its dataclass looks its module up
spec.loader.exec_module(policy_search)

TINY = {"scenario": "amcoedge", "preset": "fidelity", "num_tasks": 3, "num_slots": 3, "arrival_prob": 0.9}


def test_a_table_certain_of_each_bs_own_server_plays_the_local_scheduler():
    env, params = build_mec(TINY, action_space="subset")
    num_bs = int(params.capacity.shape[0])
    own = jnp.stack([env.actions.from_mask(jnp.arange(num_bs) == bs, bs) for bs in range(num_bs)])
    logits = jnp.where(jnp.arange(env.num_actions)[None, :] == own[:, None], 0.0, -1e9)[:, None, :]
    key = jax.random.PRNGKey(3)
    table = evaluate(env, params, policy_search.table_policy(env, logits), key, 2, 3)
    local = evaluate(env, params, make_scheduler("local", env), key, 2, 3)
    np.testing.assert_array_equal(np.asarray(table.make_span), np.asarray(local.make_span))
    # and a table that differs per BS is read per BS: BS 0 offloads to ES 4 alone, the others stay local
    moved = logits.at[0, 0].set(jnp.where(jnp.arange(env.num_actions) == env.actions.from_mask(jnp.arange(num_bs) == 4, 0), 0.0, -1e9))
    assert not np.array_equal(np.asarray(evaluate(env, params, policy_search.table_policy(env, moved), key, 2, 3).make_span),
                              np.asarray(local.make_span))  # fmt: skip


def test_d_bins_cover_the_input_range_and_refuse_other_observations():
    env, params = build_mec(TINY, action_space="subset")
    sizes = jnp.array([params.data_size_min, 3.49, 3.51, params.data_size_max])
    bins = jax.vmap(lambda d: policy_search.d_bin(env, jnp.zeros(env.obs_size).at[0].set(d), params, 2))(sizes)
    assert bins.tolist() == [0, 0, 1, 1]
    rich, rich_params = build_mec({**TINY, "observation": "rich"}, action_space="subset")
    with pytest.raises(ValueError, match="authors' observation"):
        policy_search.d_bin(rich, jnp.zeros(rich.obs_size), rich_params, 2)


def test_the_search_runs_each_key_apart_deterministically_and_reports_its_progress():
    env, params = build_mec(TINY, action_space="subset")
    settings = policy_search.SearchSettings(generations=4, population=4, episodes=2, learning_rate=0.3)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    seen = []
    logits, history = policy_search.search(env, params, keys, 2, settings, 2, lambda done, span: seen.append(done))
    again, _ = policy_search.search(env, params, keys, 2, settings, 2)
    assert logits.shape == (2, int(params.capacity.shape[0]), 2, env.num_actions) and history.shape == (2, 4)
    assert seen == [2, 4] and np.isfinite(history).all()
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(again))
    assert not np.array_equal(np.asarray(logits[0]), np.asarray(logits[1]))  # the seeds search apart


def test_slot_rest_sums_each_reward_with_those_after_it_in_its_slot():
    rewards = jnp.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])  # (time, envs)
    same_slot_as_next = jnp.array([[True, False], [False, True], [True, True], [False, False]])
    np.testing.assert_allclose(np.asarray(policy_search.slot_rest(rewards, same_slot_as_next)),
                               [[3.0, 10.0], [2.0, 90.0], [7.0, 70.0], [4.0, 40.0]])  # fmt: skip


@pytest.mark.parametrize("credit", ["task", "slot"])
def test_the_policy_gradient_learns_a_table_better_than_the_uniform_one(credit):
    env, params = build_mec(TINY, action_space="subset")
    settings = policy_search.GradientSettings(updates=40, envs=8, steps=64, learning_rate=0.2)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    logits, history = policy_search.policy_gradient(env, params, keys, 1, settings, credit, report_every=20)
    assert logits.shape == (2, int(params.capacity.shape[0]), 1, env.num_actions) and history.shape == (2, 40)
    key = jax.random.PRNGKey(5)
    learnt = evaluate(env, params, policy_search.table_policy(env, logits[0]), key, 1, 64).make_span.mean()
    uniform = evaluate(env, params, policy_search.table_policy(env, jnp.zeros_like(logits[0])), key, 1, 64).make_span.mean()
    assert learnt < 0.9 * uniform, (float(learnt), float(uniform))
    with pytest.raises(ValueError, match="task or slot"):
        policy_search.policy_gradient(env, params, keys, 1, settings, "episode", report_every=20)
