"""Schedulers without learning, evaluated by the shared evaluation path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl.envs.scenarios import build_mec
from ddrl.evaluate import evaluate
from ddrl.schedulers import make_scheduler

SMALL = dict(scenario="amcoedge", num_tasks=4, num_slots=3)


def test_optimal_myopic_picks_the_best_subset_on_the_true_state():
    env, params = build_mec({**SMALL, "preset": "clean"})
    _, state = env.reset(jax.random.PRNGKey(3), params)
    state = state.replace(queue=jnp.array([5.0, 0.0, 30.0, 1.0, 0.0]))
    action = make_scheduler("optimal_myopic", env)(None, None, state, params)
    bs = env.deciding_bs(state)
    spans = [float(env.evaluate_mask(state, env.actions.to_mask(a, bs), params).raw_delay)
             for a in range(env.num_actions)]
    assert int(action) == int(np.argmin(spans))


def test_optimal_myopic_single_space_is_the_best_single_server():
    env, params = build_mec({**SMALL, "preset": "clean"}, action_space="single")
    _, state = env.reset(jax.random.PRNGKey(0), params)
    action = make_scheduler("optimal_myopic", env)(None, None, state, params)
    wait, cost = env.wait_and_cost(state, params)
    assert int(action) == int(np.argmin(np.asarray(wait + cost)))


def test_randcoedge_needs_the_pair_space():
    env, _ = build_mec({**SMALL}, action_space="subset")
    with pytest.raises(ValueError, match="pair"):
        make_scheduler("randcoedge", env)


def test_local_always_chooses_the_own_server():
    env, params = build_mec({**SMALL}, action_space="subset")
    policy = make_scheduler("local", env)
    key = jax.random.PRNGKey(0)
    _, state = env.reset(key, params)
    for step in range(20):
        action = policy(None, None, state, params)
        mask = env.actions.to_mask(action, env.deciding_bs(state))
        assert np.flatnonzero(np.asarray(mask)).tolist() == [int(env.deciding_bs(state))]
        _, state, *_ = env.step(jax.random.fold_in(key, step), state, action, params)


@pytest.mark.parametrize("preset", ["clean", "fidelity"])
def test_evaluation_ranks_schedulers_sensibly(preset):
    """At low load (queues empty every slot) the myopic optimum beats a random pair and local
    execution on the same tasks; every episode is above the per-task lower bound."""
    results = {}
    for name, space in [("optimal_myopic", "subset"), ("randcoedge", "pair"), ("local", "single")]:
        env, params = build_mec({**SMALL, "num_slots": 5, "preset": preset}, action_space=space)
        metrics = evaluate(env, params, make_scheduler(name, env), jax.random.PRNGKey(0), 2, 3)
        assert metrics.make_span.shape == (2, 3)
        assert np.all(np.asarray(metrics.make_span) >= np.asarray(metrics.lower_bound) - 1e-6)
        assert np.all(np.asarray(metrics.tasks) > 0)
        results[name] = float(metrics.make_span.mean())
    assert results["optimal_myopic"] <= results["randcoedge"] + 1e-6
    assert results["optimal_myopic"] <= results["local"] + 1e-6


def test_evaluation_is_reproducible_and_seeds_differ():
    env, params = build_mec({**SMALL}, action_space="pair")
    policy = make_scheduler("randcoedge", env)
    first = evaluate(env, params, policy, jax.random.PRNGKey(7), 2, 2)
    again = evaluate(env, params, policy, jax.random.PRNGKey(7), 2, 2)
    np.testing.assert_array_equal(np.asarray(first.make_span), np.asarray(again.make_span))
    assert not np.allclose(np.asarray(first.make_span)[0], np.asarray(first.make_span)[1])
