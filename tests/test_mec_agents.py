"""Agents on the MEC environment: per-BS stacking, top-k DQN's target, LAD-TS's latent table."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl.agents import ActContext, AgentSpec, common, dqn, lad_ts, make_agent, topk_dqn
from ddrl.envs.scenarios import build_mec
from ddrl.training import make_trainer

TINY_AMCOEDGE = {"scenario": "amcoedge", "num_tasks": 3, "num_slots": 3, "arrival_prob": 0.9}
TINY_DQN = {"name": "dqn", "per_bs": True, "hidden": [8], "batch_size": 4, "buffer_size": 64,
            "learning_starts": 16, "train_every": 4}  # fmt: skip


def _transition(obs_dim: int, num_envs: int, value: float) -> common.Transition:
    return common.Transition(
        obs=jnp.full((num_envs, obs_dim), value), action=jnp.zeros((num_envs,), jnp.int32),
        reward=jnp.full((num_envs,), value), next_obs=jnp.full((num_envs, obs_dim), value),
        terminated=jnp.zeros((num_envs,), bool), truncated=jnp.zeros((num_envs,), bool),
    )  # fmt: skip


def test_per_bs_buffers_equal_separate_buffers():
    """Writing each step to the deciding BS's buffer = one separate buffer per BS."""
    num_groups, num_envs, steps = 3, 2, 12
    rng = np.random.default_rng(0)
    groups = rng.integers(0, num_groups, (steps, num_envs))
    example = jax.tree.map(lambda x: x[0], _transition(1, 1, 0.0))
    stacked = jax.tree.map(lambda x: jnp.stack([x] * num_groups), common.buffer_init(example, 8, num_envs))
    add = jax.vmap(common.buffer_add, in_axes=(0, None, 0))
    separate = {(g, e): [] for g in range(num_groups) for e in range(num_envs)}
    for t in range(steps):
        step = _transition(1, num_envs, float(t + 1))
        write = jnp.asarray(groups[t][None, :] == np.arange(num_groups)[:, None])
        stacked = add(stacked, step, write)
        for e in range(num_envs):
            separate[groups[t, e], e].append(float(t + 1))
    for (g, e), rewards in separate.items():
        own = jax.tree.map(lambda x: x[g], stacked)
        kept = rewards[-own.capacity_rows:]
        assert int(own.size[e]) == len(kept)
        stored = np.asarray(own.storage.reward[:, e])
        # the ring holds exactly this BS's last transitions of env e, oldest overwritten first
        assert sorted(stored[: len(kept)].tolist()) == sorted(kept)
    batch = common.buffer_sample(jax.tree.map(lambda x: x[0], stacked), jax.random.PRNGKey(1), 256)
    assert set(np.asarray(batch.rewards[:, 0]).tolist()) <= {r for (g, _), rs in separate.items() if g == 0 for r in rs}


def test_per_bs_update_equals_separate_agents():
    """vmap(update) over stacked BS agents = each agent updated on its own batch."""
    cfg = dqn.Config(hidden=(8,), batch_size=4)
    states = jax.vmap(lambda k: dqn.init(k, (6,), 31, cfg))(jax.random.split(jax.random.PRNGKey(0), 3))
    batches = common.Batch(
        obs=jax.random.normal(jax.random.PRNGKey(1), (3, 4, 6)),
        action=jax.random.randint(jax.random.PRNGKey(2), (3, 4), 0, 31),
        rewards=jax.random.normal(jax.random.PRNGKey(3), (3, 4, 1)),
        next_obs=jax.random.normal(jax.random.PRNGKey(4), (3, 4, 6)),
        num_steps=jnp.ones((3, 4), jnp.int32), terminated=jnp.zeros((3, 4), bool),
    )  # fmt: skip
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    stacked, _ = jax.vmap(dqn.update)(states, batches, keys)
    for g in range(3):
        pick = lambda tree: jax.tree.map(lambda x: x[g], tree)  # noqa: E731
        alone, _ = dqn.update(pick(states), pick(batches), keys[g])
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(pick(stacked)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_per_bs_policy_acts_with_the_deciding_bs_agent():
    """BS g's network prefers action g; the greedy policy follows whoever decides."""
    env, params = build_mec(TINY_AMCOEDGE, action_space="single")
    trainer = make_trainer(TINY_DQN, env, params, 64, num_envs=2, num_chunks=1)
    runner = trainer.init(jax.random.PRNGKey(0))
    assert trainer.per_bs and jax.tree.leaves(runner.agent.q.params)[0].shape[0] == env.num_servers

    def prefer_own_index(params):
        last = sorted(params["params"])[-1]
        layer = params["params"][last]
        bias = jnp.eye(env.num_servers) * 10.0  # agent g: Q(·, g) = 10, others 0
        return {"params": {**params["params"], last: {"kernel": jnp.zeros_like(layer["kernel"]), "bias": bias}}}

    agent = runner.agent.replace(q=runner.agent.q.replace(params=prefer_own_index(runner.agent.q.params)))
    policy = trainer.greedy_policy(agent)
    _, state = env.reset(jax.random.PRNGKey(1), params)
    for bs in range(env.num_servers):
        at_bs = state.replace(position=jnp.int32(bs * env.max_tasks))
        obs = env.get_obs(at_bs, params)
        assert int(policy(jax.random.PRNGKey(2), obs, at_bs, params)) == bs


def test_topk_target_is_the_jth_largest_next_value():
    cfg = topk_dqn.Config(hidden=(8,), k=3, gamma=0.5)
    state = topk_dqn.init(jax.random.PRNGKey(0), (4,), 5, cfg)
    batch = common.Batch(
        obs=jax.random.normal(jax.random.PRNGKey(1), (6, 4)),
        action=jnp.array([[0, 1, 2], [4, 3, 2], [1, 0, 4], [2, 4, 0], [3, 1, 0], [0, 2, 4]]),
        rewards=jnp.arange(6.0)[:, None] / 10, next_obs=jax.random.normal(jax.random.PRNGKey(2), (6, 4)),
        num_steps=jnp.ones(6, jnp.int32), terminated=jnp.array([False] * 5 + [True]),
    )  # fmt: skip
    _, metrics = topk_dqn.update(state, batch, jax.random.PRNGKey(3))
    q = np.asarray(state.q.apply_fn(state.q.params, batch.obs))
    next_q = np.asarray(state.q.apply_fn(state.target_params, batch.next_obs))
    expected = 0.0
    for i in range(6):
        ranked = np.sort(next_q[i])[::-1]
        for j, server in enumerate(np.asarray(batch.action[i])):
            bootstrap = 0.0 if i == 5 else 0.5 * ranked[j]
            expected += (q[i, server] - (float(batch.rewards[i, 0]) + bootstrap)) ** 2
    np.testing.assert_allclose(float(metrics["td_loss"]), expected / 18, rtol=1e-5)


def test_topk_actions_map_to_their_server_set():
    chosen = jnp.array([[3, 0, 4], [1, 2, 0]])
    scores = topk_dqn.TopKAgent("topk_dqn", topk_dqn, topk_dqn.Config(), 5).env_action(chosen)
    env, _ = build_mec({"scenario": "amcoedge"}, action_space="topk")
    for row, servers in zip(scores, np.asarray(chosen)):
        mask = np.asarray(env.actions.to_mask(row, jnp.int32(0)))
        assert set(np.flatnonzero(mask)) == set(servers.tolist())
    state = topk_dqn.init(jax.random.PRNGKey(0), (6,), 5, topk_dqn.Config(hidden=(8,)))
    greedy = np.asarray(topk_dqn.act(state, jnp.ones((2, 6)), jax.random.PRNGKey(1), False))
    q = np.asarray(state.q.apply_fn(state.q.params, jnp.ones((2, 6))))
    np.testing.assert_array_equal(greedy[0], np.argsort(-q[0])[:3])


@pytest.fixture(scope="module")
def lad_run():
    env, params = build_mec({"scenario": "ladts", "num_tasks": 2, "num_slots": 2, "capacity": [30.0, 40],
                             "rate": [450.0, 470]})  # fmt: skip
    trainer = make_trainer({"name": "lad_ts", "per_bs": True, "group_acting": "dense", "learning_starts": 8, "train_every": 4,
                            "batch_size": 4}, env, params, 192, num_envs=2, num_chunks=2)  # fmt: skip
    runner = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    table = lambda runner: np.asarray(runner.agent.latent).reshape(-1, env.num_servers)  # noqa: E731  (BS, cells)
    initial = table(runner)
    run_chunk = jax.jit(trainer.run_chunk)
    runner, _ = run_chunk(runner, jnp.int32(0))
    after_first = table(runner)
    runner, _ = run_chunk(runner, jnp.int32(1))
    return env, params, initial, after_first, table(runner)


def test_latent_table_holds_one_probability_vector_per_cell(lad_run):
    env, params, initial, _, final = lad_run
    assert final.shape == (env.num_servers * env.cells_per_bs(params), env.num_servers)  # (BS, slot, index) cells
    written = ~np.all(final == initial, axis=1)
    assert written.sum() >= 4  # several cells visited
    np.testing.assert_allclose(final[written].sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(final[written] >= 0)
    assert len({tuple(row.round(6)) for row in final[written]}) > 1  # one vector per cell, not shared


def test_latent_table_persists_across_episodes(lad_run):
    _, _, initial, after_first, final = lad_run
    # chunk 1 (96 steps on 2 envs) spans many 2-slot episodes; no reset back to N(0, 1)
    written_first = ~np.all(after_first == initial, axis=1)
    assert written_first.any()
    assert not np.any(np.all(final[written_first] == initial[written_first], axis=1))


def test_lad_chain_starts_from_the_latent():
    state = lad_ts.init(jax.random.PRNGKey(0), (4 + 3,), 3, lad_ts.Config())
    obs = jnp.concatenate([jnp.ones((2, 4)), jnp.array([[5.0, -5.0, 0.0], [-5.0, 5.0, 0.0]])], axis=1)
    key = jax.random.PRNGKey(1)
    probs = np.asarray(lad_ts.policy(state, state.actor.params, obs, key))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(probs[0], probs[1])  # same state, same noise, different start


def test_factored_set_value_and_actions():
    from ddrl.agents import d2sac_factored as factored_d2sac

    q = jnp.array([[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]])  # B = 4: per-ES | per-count
    mask = jnp.array([[True, False, True, False]])
    np.testing.assert_allclose(factored_d2sac.set_value(q, mask), [(1 + 3) / 2 + 20.0])
    state = factored_d2sac.init(jax.random.PRNGKey(0), (6,), 4, factored_d2sac.Config(
        denoiser_hidden=(8,), critic_hidden=(8,)))  # fmt: skip
    np.testing.assert_allclose(float(state.cfg.target_entropy), 0.7 * 2 * np.log(4), rtol=1e-6)
    sets = factored_d2sac.act(state, jnp.ones((64, 6)), jax.random.PRNGKey(1), True)
    assert sets.shape == (64, 4) and np.all(np.asarray(sets).sum(axis=1) >= 1)
    agent = factored_d2sac.FactoredAgent("d2sac_factored", factored_d2sac, factored_d2sac.Config(), 4)
    warmup = agent.random_action(jax.random.PRNGKey(2), (256,))
    assert set(np.asarray(warmup).sum(axis=1).tolist()) == {1, 2, 3, 4}


def test_factored_ddrl_amsa_trains_with_many_servers():
    """B = 12 (4095 subsets would be the flat head): the factored agent trains per BS."""
    servers = {"capacity": list(np.linspace(10, 50, 12)), "rate": list(np.linspace(400, 500, 12))}
    env, params = build_mec({**TINY_AMCOEDGE, "num_tasks": 2, **servers}, action_space="mask")
    config = {"name": "d2sac_factored", "per_bs": True, "denoiser_hidden": [16], "critic_hidden": [16],
              "batch_size": 8, "learning_starts": 32, "train_every": 8}  # fmt: skip
    trainer = make_trainer(config, env, params, 128, num_envs=4, num_chunks=1)
    runner, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    assert runner.buffer.storage.action.shape[-1] == 12 and runner.buffer.storage.action.dtype == bool
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"]))) and float(metrics["critic_loss"][0]) > 0
    assert 0 < float(metrics["step_make_span"][0]) < 5


@pytest.mark.parametrize("name", ["d2sac", "lad_ts"])
def test_per_bs_dense_acting_equals_the_per_environment_gather(name):
    """PerGroup's dense acting (every BS's agent on the whole batch, then select), its gather
    acting and, where the agent has it, its grouped acting (each layer's product with every
    BS's weights, then each environment's own row) give the actions of a per-environment
    gather of the deciding BS's agent state (the previous loop's way), key for key; LAD-TS's
    table is written only at the deciding BS's cells."""
    groups, envs, actions = 3, 7, 4
    config = agents_config(name)
    spec = AgentSpec((5,), actions, num_groups=groups, cells_per_group=6)
    dense = make_agent(name, config, spec, per_group=True, group_acting="dense")
    gather = make_agent(name, config, spec, per_group=True, group_acting="gather")
    modes = [dense, gather]
    if name == "d2sac":
        modes.append(make_agent(name, config, spec, per_group=True, group_acting="grouped"))
        assert modes[-1].acting_for(envs) == make_agent(name, config, spec, per_group=True).acting_for(envs) == "grouped"
    else:  # LAD-TS's chain starts from its latent table: no grouped acting
        with pytest.raises(ValueError, match="cannot act grouped"):
            make_agent(name, config, spec, per_group=True, group_acting="grouped")
    state = dense.init(jax.random.PRNGKey(0), spec)
    obs = jax.random.normal(jax.random.PRNGKey(1), (envs, 5))
    ctx = ActContext(jnp.int32(0), jnp.array([0, 2, 1, 2, 0, 1, 2]), jnp.array([0, 1, 2, 3, 4, 5, 0]),
                     jnp.ones(envs, bool))  # fmt: skip
    keys = jax.random.split(jax.random.PRNGKey(2), envs)
    inner = dense.inner

    @functools.partial(jax.jit, static_argnums=1)  # one program per mode, environment e traced
    def reference(e, explore=True):
        own = jax.tree.map(lambda leaf: leaf[ctx.group[e]], state)
        one = ActContext(ctx.env_steps, jnp.zeros(1, jnp.int32), ctx.cell[e][None], jnp.ones(1, bool))
        return inner.act(own, obs[e][None], one, keys[e][None], explore)

    expected = [reference(e) for e in range(envs)]
    greedy_expected = [reference(e, False)[0] for e in range(envs)] if name == "d2sac" else None
    auto = make_agent(name, config, spec, per_group=True)  # grouped or dense here (7 envs >= 3 groups)
    for agent in (*modes, auto):
        action, aux = jax.jit(lambda s: agent.act(s, obs, ctx, keys, True))(state)
        np.testing.assert_array_equal(np.asarray(action), np.concatenate([np.asarray(a) for a, _ in expected]))
        if name == "lad_ts":
            np.testing.assert_allclose(np.asarray(aux), np.concatenate([np.asarray(p) for _, p in expected]),
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
        if greedy_expected is None or agent.acting != "grouped":  # the greedy chains (K = 8): the grouped path
            continue
        greedy, _ = jax.jit(lambda s: agent.act(s, obs, ctx, keys, False))(state)
        np.testing.assert_array_equal(np.asarray(greedy), np.concatenate([np.asarray(a) for a in greedy_expected]))
    few = slice(0, 2)  # fewer environments than groups: auto gathers
    small_ctx = jax.tree.map(lambda leaf: leaf[few] if leaf.ndim else leaf, ctx)
    action, _ = jax.jit(lambda s: auto.act(s, obs[few], small_ctx, keys[few], True))(state)
    np.testing.assert_array_equal(np.asarray(action), np.concatenate([np.asarray(a) for a, _ in expected[few]]))
    if name == "lad_ts":
        recorded = dense.record(state, ctx, aux)
        for e in range(envs):
            g, c = int(ctx.group[e]), int(ctx.cell[e])
            np.testing.assert_allclose(np.asarray(recorded.latent[g, c]), np.asarray(aux[e]), rtol=1e-6)
        untouched = np.ones((groups, 6), bool)
        untouched[np.asarray(ctx.group), np.asarray(ctx.cell)] = False
        np.testing.assert_array_equal(np.asarray(recorded.latent)[untouched], np.asarray(state.latent)[untouched])


def test_which_agents_act_grouped_is_decided_in_one_place():
    """The config check (`ddrl.agents.acts_grouped`, no agent built) and a built agent agree,
    for every off-policy agent: only the diffusion actor acting through its module's `act`."""
    from ddrl.agents import REGISTRY, acts_grouped, make_config

    spec = AgentSpec((5,), 4, num_groups=2, cells_per_group=3)
    for name, module in REGISTRY.items():
        if module.KIND != "off_policy" or name == "d2sac_set":  # the set actor needs a set action space
            continue
        built = make_agent(name, make_config(name), spec).acts_grouped
        assert acts_grouped(name) == built == (name in ("d2sac", "d2sac_published")), name


def agents_config(name):
    from ddrl.agents import make_config

    small = {"denoiser_hidden": [8], "critic_hidden": [8]}
    return make_config(name, small)
