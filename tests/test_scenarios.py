"""Scenario presets, published environment copies, action spaces and uncertain capacity."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl.envs import make
from ddrl.envs.actions import ActionSpace
from ddrl.envs.scenarios import ConfigError, build_mec


def test_registry_builds_each_scenario_with_the_published_numbers():
    env, params = make("mec_amcoedge")
    assert (env.num_servers, env.max_tasks, env.actions.kind, env.num_actions) == (5, 50, "subset", 31)
    np.testing.assert_allclose(params.capacity, [10, 20, 30, 40, 50])
    assert params.num_slots == 60 and params.deadline == 1.0 and params.failure_penalty == 10.0
    env, params = make("mec_smcoedge")
    assert env.actions.kind == "topk" and env.actions.k == 3 and params.slot_length == 0.1
    env, params = make("mec_ladts")
    assert env.num_servers == 20 and env.actions.kind == "single" and math.isinf(params.deadline)
    assert env.obs_size == 22  # [D, W, Q_1..Q_20]


def test_fidelity_and_copies_switch_the_documented_quirks():
    clean, _ = build_mec({"scenario": "amcoedge"})
    assert clean.allocation == "cwa" and not any(vars(clean.quirks).values())
    own, _ = build_mec({"scenario": "amcoedge", "preset": "fidelity"})
    assert own.allocation == "cwa_published"
    assert own.quirks.tx_cap and own.quirks.make_span_over_selected and own.quirks.per_index_task_profile
    assert not own.quirks.wait_cap and not own.quirks.tx_counts_local_part
    drl, params = build_mec({"scenario": "amcoedge", "preset": "fidelity", "env_copy": "drlcoedge"})
    assert drl.quirks.local_pays_transfer and drl.quirks.local_waits_for_tx and drl.quirks.wait_cap
    assert not drl.quirks.tx_cap and params.failure_penalty == 2.0
    single_flag, _ = build_mec({"scenario": "amcoedge", "quirks": {"wait_cap": True}})
    assert single_flag.quirks.wait_cap and not single_flag.quirks.tx_cap


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"capacity": [10, 0, 30, 40, 50]}, "env.capacity"),
        ({"arrival_prob": 0.0}, "env.arrival_prob"),
        ({"arrival_prob": -0.1}, "env.arrival_prob"),
        ({"data_size": [5, 2]}, "env.data_size"),
        ({"deadline": -1}, "env.deadline"),
        ({"quirks": {"tx_kap": True}}, "env.quirks.tx_kap"),
        ({"scenario": "nowhere"}, "env.scenario"),
        ({"action_space": "triples"}, "env.action_space"),
    ],
)
def test_impossible_scenarios_name_their_field(overrides, field):
    with pytest.raises(ConfigError) as error:
        build_mec({"scenario": "amcoedge", **overrides})
    assert error.value.field_name == field


@pytest.mark.parametrize("kind", ["single", "pair", "subset"])
def test_discrete_actions_round_trip_through_masks(kind):
    space = ActionSpace(kind, 4)
    for bs in range(4):
        masks = space.all_masks(jnp.int32(bs))
        assert masks.shape == (space.num_actions, 4) and bool(jnp.all(jnp.any(masks, axis=1)))
        for action in range(space.num_actions):
            back = space.from_mask(masks[action], jnp.int32(bs))
            assert bool(jnp.all(space.to_mask(back, jnp.int32(bs)) == masks[action]))
    if kind == "subset":
        assert len({tuple(np.asarray(m)) for m in space.all_masks(jnp.int32(0))}) == 15


def test_topk_and_mask_spaces():
    topk = ActionSpace("topk", 5, k=2)
    mask = topk.to_mask(jnp.array([0.1, 0.9, 0.3, 0.8, 0.0]), jnp.int32(0))
    assert np.flatnonzero(np.asarray(mask)).tolist() == [1, 3]
    raw = ActionSpace("mask", 5)
    assert np.flatnonzero(np.asarray(raw.to_mask(jnp.zeros(5, bool), jnp.int32(2)))).tolist() == [2]


@pytest.mark.parametrize("kind", ["single", "pair", "subset", "topk", "mask"])
def test_a_batch_of_random_actions_is_valid_and_uniform(kind):
    space = ActionSpace(kind, num_servers=4, k=2)
    batch = np.asarray(space.sample(jax.random.PRNGKey(3), (4000,)))
    one = np.asarray(space.sample(jax.random.PRNGKey(3)))
    assert batch.shape == (4000,) + one.shape and batch.dtype == one.dtype
    if space.is_discrete:
        counts = np.bincount(batch, minlength=space.num_actions)
        assert batch.min() >= 0 and len(counts) == space.num_actions  # every action, no other
        assert counts.min() > 0.7 * 4000 / space.num_actions
    else:
        assert 0.45 < batch.mean() < 0.55 and 0.0 <= batch.min() and batch.max() <= 1.0


def test_uncertain_capacity_moves_within_its_bounds():
    base = {"scenario": "amcoedge", "num_tasks": 10, "num_slots": 30}
    noisy_env, noisy = build_mec({**base, "capacity_noise": 0.3, "capacity_floor": 0.4})
    calm_env, calm = build_mec(base)
    assert noisy_env.uncertain_capacity and not calm_env.uncertain_capacity

    def factors(env, params, key):
        _, state = env.reset(key, params)

        def step(state, k):
            _, state, _, _, _, info = env.step(k, state, env.actions.sample(k), params)
            return state, (state.capacity_factor, info["episode_utilisation"], info["episode_done"])

        return jax.lax.scan(step, state, jax.random.split(key, 300))[1]

    factor, _, _ = jax.jit(lambda k: factors(noisy_env, noisy, k))(jax.random.PRNGKey(0))
    factor = np.asarray(factor)
    assert factor.min() >= 0.4 - 1e-6 and factor.max() <= 1.0 + 1e-6
    assert factor.std() > 0.01  # it does move
    calm_factor, _, _ = jax.jit(lambda k: factors(calm_env, calm, k))(jax.random.PRNGKey(0))
    assert np.all(np.asarray(calm_factor) == 1.0)
