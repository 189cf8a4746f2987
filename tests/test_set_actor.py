"""The set-structured diffusion SAC (d2sac_set): tokens, equivariance, B-free weights, the set
distribution's exact probabilities, the actor's gradient estimator, one update, one training run."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl.agents import common, d2sac_set
from ddrl.envs.mec import MEC, MECParams
from ddrl.envs.scenarios import build_mec
from ddrl.training import make_trainer
from tests.test_mec_agents import TINY_AMCOEDGE

TINY = d2sac_set.Config(token_hidden=(8,), embed_dim=8, denoiser_hidden=(8, 8), critic_hidden=(8,),
                        diffusion_steps=3, greedy_chains=0)  # fmt: skip


def _rich_obs(num_servers: int, seed: int, batch: int = 4) -> jax.Array:
    """Random rich observations: positive loads, a one-hot deciding BS."""
    key_values, key_bs = jax.random.split(jax.random.PRNGKey(seed))
    obs = jax.random.uniform(key_values, (batch, 4 * num_servers + 4), minval=0.0, maxval=3.0)
    one_hot = jax.nn.one_hot(jax.random.randint(key_bs, (batch,), 0, num_servers), num_servers)
    return obs.at[:, 3 + 2 * num_servers : 3 + 3 * num_servers].set(one_hot)


def _permute_rich(obs: jax.Array, order: np.ndarray) -> jax.Array:
    """The same observation with the servers reordered (every per-server block)."""
    B = len(order)
    out = obs
    for start in (2, 2 + B, 3 + 2 * B, 4 + 3 * B):  # Q, slot load, BS one-hot, capacity factor
        out = out.at[:, start : start + B].set(obs[:, start : start + B][:, order])
    return out


@pytest.mark.parametrize("observation", ["authors", "rich", "servers"])
def test_tokens_read_each_server_and_the_task_from_the_env_observation(observation):
    params = MECParams(capacity=jnp.array([10.0, 30.0, 50.0]), rate=jnp.array([400.0, 450.0, 500.0]))
    env = MEC(num_servers=3, observation=observation, default_params=params)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(queue=jnp.array([1.0, 2.0, 3.0]), slot_load=jnp.array([0.1, 0.2, 0.3]),
                          last_capacity_factor=jnp.array([0.7, 0.8, 0.9]), tx_busy=jnp.array([0.5, 0.6, 0.4]))  # fmt: skip
    obs = env.get_obs(state)
    layout = d2sac_set.TokenLayout.of(obs.shape[-1], 3)
    tokens = np.asarray(layout.tokens(obs))
    assert layout.kind == observation and tokens.shape == (3, layout.token_size)
    np.testing.assert_allclose(tokens[:, 0], [1.0, 2.0, 3.0])
    if observation in ("rich", "servers"):
        bs = int(env.deciding_bs(state))
        np.testing.assert_allclose(tokens[:, 1:4], np.stack([[0.1, 0.2, 0.3], [0.7, 0.8, 0.9],
                                                             np.eye(3)[bs]], axis=1), rtol=1e-6)  # fmt: skip
        task = [state.data_size, state.workload, state.tx_busy[bs], state.slot / env.default_params.num_slots]
        statics = 2 if observation == "servers" else 0
        if statics:  # capacity and rate over their means: 10/30, 30/30, 50/30 and 400/450, 1, 500/450
            np.testing.assert_allclose(tokens[:, 4:6], [[1 / 3, 8 / 9], [1.0, 1.0], [5 / 3, 10 / 9]], rtol=1e-6)
        np.testing.assert_allclose(tokens[:, 4 + statics :], np.tile(np.asarray(task, np.float32), (3, 1)),
                                   rtol=1e-6)  # fmt: skip
    else:
        np.testing.assert_allclose(tokens[:, 1], float(state.data_size), rtol=1e-6)
    with pytest.raises(ValueError, match="no MEC observation"):
        d2sac_set.TokenLayout.of(7, 3)  # sizes over 3 servers: 4, 5, 16, 22


def test_permuting_the_servers_permutes_scores_greedy_set_and_leaves_q_unchanged():
    B = 6
    state = d2sac_set.init(jax.random.PRNGKey(0), (4 * B + 4,), B, TINY)
    obs = _rich_obs(B, seed=1)
    order = np.array([3, 0, 5, 1, 4, 2])
    permuted = _permute_rich(obs, order)
    key = jax.random.PRNGKey(2)
    params = state.actor.params
    base = d2sac_set.scores(state, params, obs, key, noise_free=True)
    moved = d2sac_set.scores(state, params, permuted, key, noise_free=True)
    assert float(jnp.std(base)) > 1e-3  # the servers get different scores
    np.testing.assert_allclose(moved, base[:, order], rtol=1e-5, atol=1e-5)
    greedy = d2sac_set.act(state, obs, key, False)  # greedy_chains = 0: the noise-free chain
    np.testing.assert_array_equal(d2sac_set.act(state, permuted, key, False), np.asarray(greedy)[:, order])
    np.testing.assert_array_equal(d2sac_set.act(state, obs, key, jnp.bool_(False)), greedy)  # traced flag
    sampled = d2sac_set.act(state, obs, jax.random.PRNGKey(3), True)
    np.testing.assert_array_equal(d2sac_set.act(state, obs, jax.random.PRNGKey(3), jnp.bool_(True)), sampled)
    chosen = sampled.astype(jnp.float32)
    layout = d2sac_set.token_layout(state)
    q_base = state.critic.apply_fn(state.critic.params, layout.tokens(obs), chosen)
    q_moved = state.critic.apply_fn(state.critic.params, layout.tokens(permuted), chosen[:, order])
    for a, b in zip(q_base, q_moved):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_the_same_weights_act_and_learn_at_five_and_twenty_servers():
    small = d2sac_set.init(jax.random.PRNGKey(0), (4 * 5 + 4,), 5, TINY)
    large = d2sac_set.init(jax.random.PRNGKey(1), (4 * 20 + 4,), 20, TINY)
    shapes = lambda tree: jax.tree.map(jnp.shape, tree)  # noqa: E731
    assert shapes(small.actor.params) == shapes(large.actor.params)
    assert shapes(small.critic.params) == shapes(large.critic.params)
    moved = large.replace(actor=large.actor.replace(params=small.actor.params), actor_target=small.actor.params,
                          critic=large.critic.replace(params=small.critic.params),
                          critic_target=small.critic.params)  # fmt: skip
    for state, B in ((small, 5), (moved, 20)):
        obs = _rich_obs(B, seed=B)
        sets = d2sac_set.act(state, obs, jax.random.PRNGKey(4), True)
        assert sets.shape == (4, B) and np.all(np.asarray(sets).any(axis=1))
        _, metrics = jax.jit(d2sac_set.update)(state, _batch(obs, sets), jax.random.PRNGKey(5))
        assert all(np.isfinite(float(v)) for v in metrics.values())


def test_set_probabilities_and_entropy_match_sampling_frequencies():
    """B = 3: the 7 non-empty sets' exact π(S) (the empty set's mass on {argmax p}) sum to one,
    match the frequencies of sampled sets within 4σ, and give the closed-form entropy."""
    logits = jnp.array([-0.4, 0.6, -1.2])  # P(empty) = 0.19: the fallback matters
    sets = jnp.array(list(itertools.product([False, True], repeat=3)))
    log_probs = d2sac_set.set_log_prob(logits, sets)
    exact = np.exp(np.asarray(log_probs))
    empty = ~np.asarray(sets).any(axis=1)
    assert exact[empty] == 0 and np.isclose(exact.sum(), 1.0, atol=1e-6)
    draws = 40_000
    sampled = np.asarray(jax.vmap(lambda k: d2sac_set.sample_set(logits, k))(jax.random.split(jax.random.PRNGKey(0), draws)))
    codes = sampled @ np.array([4, 2, 1])
    frequencies = np.bincount(codes, minlength=8) / draws
    expected = exact[np.asarray(sets) @ np.array([4, 2, 1])]
    sigma = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(frequencies - expected) <= 4 * sigma + 1e-9), (frequencies, expected)
    plain = 1 / (1 + np.exp(-np.asarray(logits)))
    assert exact[np.argmax(np.asarray(sets) @ np.array([4, 2, 1]) == 2)] > plain[1] * (1 - plain[0]) * (1 - plain[2])
    nonzero = exact > 0
    np.testing.assert_allclose(float(d2sac_set.set_entropy(logits)), -np.sum(exact[nonzero] * np.log(exact[nonzero])),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(-np.mean(np.asarray(d2sac_set.set_log_prob(logits, sampled))),
                               float(d2sac_set.set_entropy(logits)), rtol=0.03)  # fmt: skip


def test_straight_through_sets_are_the_sampled_sets_and_their_gradient_points_uphill():
    """The relaxed set's value is `sample_set` with the same key; for Q(S) = Σ_i w_i s_i the
    estimated ∇ E[Q] has the sign of the true w_i·p_i(1 − p_i) (and never vanishes)."""
    logits = jnp.array([0.3, -0.5, 1.0, -2.0])
    weights = jnp.array([1.0, -2.0, 0.5, 3.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    relaxed = jax.vmap(lambda k: d2sac_set.relaxed_set(logits, k, 1.0))(keys)
    hard = jax.vmap(lambda k: d2sac_set.sample_set(logits, k))(keys)
    np.testing.assert_array_equal(np.asarray(relaxed), np.asarray(hard).astype(np.float32))
    grad = jax.grad(lambda l: jnp.mean(jax.vmap(lambda k: d2sac_set.relaxed_set(l, k, 1.0) @ weights)(keys)))(logits)
    np.testing.assert_array_equal(np.sign(np.asarray(grad)), np.sign(np.asarray(weights)))


def _batch(obs: jax.Array, sets: jax.Array) -> common.Batch:
    batch = obs.shape[0]
    return common.Batch(obs=obs, action=sets, rewards=-jnp.ones((batch, 1)), next_obs=obs[::-1],
                        num_steps=jnp.ones((batch,), jnp.int32), terminated=jnp.zeros((batch,), bool))  # fmt: skip


def test_one_update_gives_finite_losses_and_moves_the_weights():
    B = 4
    state = d2sac_set.init(jax.random.PRNGKey(0), (1 + B,), B, TINY)  # the authors' observation
    obs = jax.random.uniform(jax.random.PRNGKey(1), (8, 1 + B), maxval=4.0)
    sets = d2sac_set.act(state, obs, jax.random.PRNGKey(2), True)
    new, metrics = jax.jit(d2sac_set.update)(state, _batch(obs, sets), jax.random.PRNGKey(3))
    assert set(metrics) >= {"critic_loss", "actor_loss", "entropy", "alpha", "q_mean"}
    assert all(np.isfinite(float(v)) for v in metrics.values()) and float(metrics["critic_loss"]) > 0
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.actor.params, new.actor.params)
    assert any(jax.tree.leaves(moved)) and int(new.update_count) == 1


def test_ddrl_amsa_set_trains_per_bs_on_the_mask_space():
    env, params = build_mec({**TINY_AMCOEDGE, "num_tasks": 2}, action_space="mask")
    config = {"name": "d2sac_set", "per_bs": True, "token_hidden": [8], "embed_dim": 8, "denoiser_hidden": [8],
              "critic_hidden": [8], "diffusion_steps": 2, "greedy_chains": 2, "batch_size": 8,
              "learning_starts": 32, "train_every": 8}  # fmt: skip
    trainer = make_trainer(config, env, params, 256, num_envs=4, num_chunks=1)
    runner, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    assert runner.buffer.storage.action.dtype == bool and runner.buffer.storage.action.shape[-1] == 5
    for name in ("critic_loss", "actor_loss", "entropy", "step_make_span"):
        assert np.all(np.isfinite(np.asarray(metrics[name]))), name
    assert float(metrics["critic_loss"][0]) > 0 and 0 < float(metrics["step_make_span"][0]) < 5


def test_normalize_q_scale_sets_are_uniform_and_never_empty():
    """The sets `normalize_q` measures Q's spread over do not depend on the policy: each server
    with probability 1/2, the empty set replaced by one server drawn uniformly."""
    sets = d2sac_set.uniform_sets(jax.random.PRNGKey(0), (20_000, 3))
    assert bool(jnp.all(jnp.any(sets, axis=-1)))
    freq = np.asarray(jnp.mean(sets, axis=0))
    # 1/2 + (1/8 empty sets)/3 per server; 4 standard errors
    np.testing.assert_allclose(freq, 0.5 + 1 / 24, atol=4 * np.sqrt(0.25 / 20_000))


def test_normalize_q_scale_is_the_spread_over_sets_not_across_states():
    """The actor's Q is divided by how much Q varies over the sets drawn for one state: adding
    any per-state value (how good the state is) leaves the scale unchanged, scaling Q scales it."""
    q = jax.random.normal(jax.random.PRNGKey(0), (4, 32)) * 0.01  # (sets, states)
    offsets = jax.random.normal(jax.random.PRNGKey(1), (32,)) * 100.0
    spread = float(d2sac_set.set_spread(q))
    np.testing.assert_allclose(spread, float(jnp.mean(jnp.std(q, axis=0))), rtol=1e-6)
    np.testing.assert_allclose(float(d2sac_set.set_spread(q + offsets)), spread, rtol=1e-3)
    np.testing.assert_allclose(float(d2sac_set.set_spread(3.0 * q)), 3.0 * spread, rtol=1e-5)
    with pytest.raises(ValueError, match="value_samples must be at least 2"):
        d2sac_set.init(jax.random.PRNGKey(0), (11,), 5, {"normalize_q": True, "value_samples": 1})


def test_actor_loss_scales_q_by_the_uniform_sets_spread_and_takes_no_gradient_through_it():
    """With `normalize_q` the actor's loss is −mean min Q(s, S̃)/spread − α·H, the spread measured
    on uniform sets in a critic call of its own: the same loss and gradient as when the
    uniform sets share the relaxed sets' call (the form before the split)."""
    B = 4
    cfg = TINY.replace(normalize_q=True, value_samples=3)
    state = d2sac_set.init(jax.random.PRNGKey(0), (1 + B,), B, cfg)
    obs = jax.random.uniform(jax.random.PRNGKey(1), (6, 1 + B), maxval=4.0)
    key, alpha = jax.random.PRNGKey(2), jnp.float32(0.1)

    def shared_call(actor_params):
        key_chain, key_set, key_scale = jax.random.split(key, 3)
        logits = d2sac_set.scores(state, actor_params, obs, key_chain)
        chosen = jax.vmap(lambda k: d2sac_set.relaxed_set(logits, k, cfg.relax_temperature))(
            jax.random.split(key_set, cfg.value_samples))
        both = jnp.concatenate([chosen, d2sac_set.uniform_sets(key_scale, chosen.shape).astype(chosen.dtype)])
        q, q_uniform = jnp.split(jnp.minimum(*state.critic.apply_fn(
            state.critic.params, d2sac_set.token_layout(state).tokens(obs), both)), 2)
        q = q / (jax.lax.stop_gradient(d2sac_set.set_spread(q_uniform)) + 1e-6)
        return jnp.mean(-jnp.mean(q, axis=0) - alpha * d2sac_set.set_entropy(logits))

    def split_call(actor_params):
        return d2sac_set.actor_loss(actor_params, state, state.critic.params, obs, key, alpha)[0]

    np.testing.assert_allclose(split_call(state.actor.params), shared_call(state.actor.params), rtol=1e-5)
    ours, reference = jax.grad(split_call)(state.actor.params), jax.grad(shared_call)(state.actor.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), ours, reference)
    assert any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in jax.tree.leaves(ours))
