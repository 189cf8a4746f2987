"""Agents learn the known optimal values and actions of the probe environment."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl import agents
from ddrl.agents import common, d2sac, d2sac_set
from ddrl.training import make_trainer
from probe_envs import ACTION, CONSTANT, DISCOUNT, OBSERVATION, ProbeEnv, probe_obs

GAMMA = 0.9
TINY = {
    "dqn": dict(hidden=[32, 32], learning_rate=3e-3, batch_size=64, learning_starts=200,
                train_every=8, updates_per_train=4, target_update_every=20,
                exploration_fraction=0.3, gamma=GAMMA),
    "sac": dict(hidden=[32, 32], actor_lr=3e-3, critic_lr=3e-3, batch_size=64, alpha=1e-3,
                learning_starts=200, train_every=8, updates_per_train=4, tau=0.05, gamma=GAMMA),
    "d2sac": dict(denoiser_hidden=[32, 32], critic_hidden=[32, 32], actor_lr=3e-3,
                  critic_lr=3e-3, batch_size=64, alpha=1e-3, learn_alpha=False,
                  learning_starts=200, train_every=8, updates_per_train=4, tau=0.05,
                  gamma=GAMMA, n_step=3),
}  # fmt: skip

# (probe, sign, phase) → optimal Q(s, ·) for actions 0 and 1
CASES = {
    "constant": ((CONSTANT, 1.0, 0), (1.0, 1.0)),
    "observation+": ((OBSERVATION, 1.0, 0), (1.0, 1.0)),
    "observation-": ((OBSERVATION, -1.0, 0), (-1.0, -1.0)),
    "discount-first": ((DISCOUNT, 1.0, 0), (GAMMA, GAMMA)),
    "discount-last": ((DISCOUNT, -1.0, 1), (1.0, 1.0)),
    "action+": ((ACTION, 1.0, 0), (0.0, 1.0)),
    "action-": ((ACTION, -1.0, 0), (1.0, 0.0)),
}


def q_values(name, state, obs):
    """The agent's Q(s, ·) estimate (min of the twin critics for the actor-critics)."""
    if name == "dqn":
        return state.q.apply_fn(state.q.params, obs)
    return jnp.minimum(*state.critic.apply_fn(state.critic.params, obs))


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request):
    env = ProbeEnv()
    trainer = make_trainer(
        {"name": request.param, **TINY[request.param]}, env, env.default_params, 6000,
        num_envs=8, num_chunks=2,
    )  # fmt: skip
    runner, metrics = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    return request.param, runner.agent, metrics


@pytest.mark.parametrize("case", sorted(CASES))
def test_learns_probe_values(trained, case):
    name, state, _ = trained
    (probe, sign, phase), expected = CASES[case]
    q = np.asarray(jax.jit(q_values, static_argnums=0)(name, state, probe_obs(probe, sign, phase)))
    if probe == ACTION:  # only the value of the best action is pinned down by the greedy target
        best = int(np.argmax(expected))
        assert abs(q[best] - 1.0) < 0.15, (name, case, q)
        assert q[best] > q[1 - best] + 0.3, (name, case, q)
    else:
        np.testing.assert_allclose(q, expected, atol=0.15, err_msg=f"{name} {case}")


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_greedy_action_is_optimal(trained, sign):
    name, state, _ = trained
    obs = jnp.stack([probe_obs(ACTION, sign, 0)] * 4)
    action = jax.jit(agents.get(name).act, static_argnums=3)(state, obs, jax.random.PRNGKey(1), False)
    assert np.all(np.asarray(action) == int(sign > 0)), (name, action)


def test_metrics_are_finite(trained):
    _, _, metrics = trained
    for key, value in metrics.items():
        if key != "episode_return":
            assert np.all(np.isfinite(np.asarray(value))), key


def test_nstep_target_stops_at_episode_end():
    """A 3-step window over [r=1, terminal r=2 | next episode r=4] returns 1 + γ·2, no bootstrap."""
    example = common.Transition(jnp.zeros(1), jnp.zeros((), jnp.int32), jnp.zeros(()),
                                jnp.zeros(1), jnp.zeros((), bool), jnp.zeros((), bool))  # fmt: skip
    buffer = common.buffer_init(example, 8, 1)
    for reward, terminated in [(1.0, False), (2.0, True), (4.0, False)]:
        transition = example.replace(reward=jnp.array([reward]), terminated=jnp.array([terminated]),
                                     obs=jnp.full((1, 1), reward), next_obs=jnp.full((1, 1), reward))  # fmt: skip
        buffer = common.buffer_add(buffer, transition)
    batch = common.buffer_sample(buffer, jax.random.PRNGKey(0), 64, n_step=3)
    reward, bootstrap = common.nstep_target(batch, jnp.float32(0.5))
    first = np.asarray(batch.obs[:, 0]) == 1.0
    last = np.asarray(batch.obs[:, 0]) == 4.0
    assert first.any() and last.any()
    np.testing.assert_allclose(np.asarray(reward)[first], 2.0)  # 1 + 0.5·2
    np.testing.assert_allclose(np.asarray(bootstrap)[first], 0.0)
    # the newest step has no successor stored yet: a 1-step window that bootstraps
    np.testing.assert_allclose(np.asarray(reward)[last], 4.0)
    np.testing.assert_allclose(np.asarray(bootstrap)[last], 0.5)


def test_presets_differ_where_published():
    ours, published = agents.make_config("d2sac"), agents.make_config("d2sac_published")
    assert (published.clip_x0, published.soft_target, published.learn_alpha) == (None, False, False)
    assert (published.gamma, published.n_step, published.alpha, published.batch_size) == (0.95, 3, 0.05, 512)
    assert ours.clip_x0 is not None and ours.soft_target and ours.learn_alpha
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        agents.make_config("dqn", {"name": "dqn", "learnin_rate": 1.0})


SOFT_AC_TRACED = {"actor_lr", "critic_lr", "alpha_lr", "weight_decay", "gamma", "tau", "alpha",
                  "target_entropy_ratio", "target_entropy"}  # fmt: skip
DIFFUSION_TRACED = SOFT_AC_TRACED | {"chain_noise_scale"}  # the diffusion actors also scale their chain's noise
DQN_TRACED = {"learning_rate", "weight_decay", "gamma", "tau", "eps_start", "eps_end", "exploration_fraction",
              "exploration_steps", "exploration_start"}  # fmt: skip


@pytest.mark.parametrize("name, traced", [
    ("dqn", DQN_TRACED), ("topk_dqn", DQN_TRACED), ("sac", SOFT_AC_TRACED), ("d2sac", DIFFUSION_TRACED | {"clip_x0"}),
    ("d2sac_factored", DIFFUSION_TRACED | {"clip_x0"}), ("lad_ts", DIFFUSION_TRACED),
    ("d2sac_set", DIFFUSION_TRACED | {"relax_temperature"}),
    ("ppo", {"learning_rate", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef"}),
])  # fmt: skip
def test_traced_config_fields_are_the_numeric_hyperparameters(name, traced):
    """The Config's metadata says what may be vmapped; an agent state holds its config with
    those fields as float32 arrays, so plain and traced configs give one pytree structure."""
    module = agents.get(name)
    assert set(common.traced_fields(module.Config)) == traced
    with pytest.raises(ValueError, match="'activation' sets a shape or Python control flow and cannot be vmapped"):
        common.config_from(module.Config, {"activation": jnp.ones(2)})
    if name in ("dqn", "sac", "d2sac", "ppo"):
        small = {"hidden": (8,)} if name != "d2sac" else {"denoiser_hidden": (8,), "critic_hidden": (8,)}
        plain = module.init(jax.random.PRNGKey(0), (4,), 2, module.Config(**small))
        traced_cfg = module.Config(**small, gamma=jnp.float32(0.5))
        traced_state = module.init(jax.random.PRNGKey(0), (4,), 2, traced_cfg)
        assert jax.tree.structure(traced_state.cfg) == jax.tree.structure(plain.cfg)
        assert all(jnp.asarray(getattr(plain.cfg, k)).dtype == jnp.float32 for k in traced)


def test_sampled_actions_follow_the_probabilities_and_greedy_takes_the_argmax():
    """common.select_action: inverse-CDF sampling reproduces π's frequencies; greedy = argmax."""
    from ddrl.agents import common

    probs = jnp.array([0.1, 0.0, 0.6, 0.3])
    keys = jax.random.split(jax.random.PRNGKey(0), 40_000)
    sampled = jax.vmap(lambda k: common.select_action(probs, k, True))(keys)
    frequencies = np.bincount(np.asarray(sampled), minlength=4) / len(keys)
    np.testing.assert_allclose(frequencies, np.asarray(probs), atol=0.01)
    assert frequencies[1] == 0.0  # an action of probability 0 is never drawn
    assert int(common.select_action(probs, keys[0], False)) == 2


@pytest.mark.parametrize("soft", [False, True])
def test_d2sac_chain_clips_x0_hard_or_soft_as_configured(soft):
    """`soft_clip` reaches d2sac's chain: with a bound inside the untrained chain's spread of x̂_0
    the hard clip parks a share of the logits exactly on ±clip_x0, the soft clip none."""
    cfg = d2sac.Config(denoiser_hidden=(16,), critic_hidden=(16,), diffusion_steps=3, clip_x0=1.0, soft_clip=soft)
    state = d2sac.init(jax.random.PRNGKey(0), (4,), 5, cfg)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    x_0 = np.abs(np.asarray(d2sac.reverse_chain(state, state.actor.params, obs, jax.random.PRNGKey(2))))
    on_bound = np.mean(np.isclose(x_0, 1.0, rtol=0.0, atol=1e-6))
    if soft:
        assert x_0.max() < 1.0 and on_bound == 0.0
    else:
        assert x_0.max() <= 1.0 + 1e-6 and on_bound > 0.2


def _diffusion_agent_and_batch(name: str, reads_target: bool):
    """A tiny d2sac (31 logits) or d2sac_set (4 servers) agent and a batch of 8 transitions for it."""
    obs = jax.random.uniform(jax.random.PRNGKey(1), (8, 5), maxval=4.0)
    if name == "d2sac":
        cfg = d2sac.Config(denoiser_hidden=(16,), critic_hidden=(16,), diffusion_steps=3,
                           actor_reads_target_critic=reads_target)  # fmt: skip
        state, action = d2sac.init(jax.random.PRNGKey(0), (5,), 5, cfg), jnp.arange(8) % 5
    else:
        cfg = d2sac_set.Config(token_hidden=(8,), embed_dim=8, denoiser_hidden=(8, 8), critic_hidden=(8,),
                               diffusion_steps=3, greedy_chains=0, actor_reads_target_critic=reads_target)  # fmt: skip
        state = d2sac_set.init(jax.random.PRNGKey(0), (5,), 4, cfg)  # the authors' observation [D, Q_1..Q_4]
        action = d2sac_set.act(state, obs, jax.random.PRNGKey(2), True)
    batch = common.Batch(obs=obs, action=action, rewards=jnp.linspace(-1.0, 0.0, 8)[:, None], next_obs=obs[::-1],
                         num_steps=jnp.ones(8, jnp.int32), terminated=jnp.zeros(8, bool))  # fmt: skip
    return state, batch


@pytest.mark.parametrize("name", ["d2sac", "d2sac_set"])
@pytest.mark.parametrize("reads_target", [False, True])
def test_the_diffusion_actor_step_reads_the_critic_it_is_configured_to(name, reads_target):
    """`actor_reads_target_critic`: the actor step follows the Polyak target critic, so two agents
    that differ only in their online critic take the same actor step; by default they do not."""
    update = {"d2sac": d2sac.update, "d2sac_set": d2sac_set.update}[name]
    state, batch = _diffusion_agent_and_batch(name, reads_target)
    noise = jax.random.PRNGKey(9)
    other = state.replace(critic=state.critic.replace(
        params=jax.tree.map(lambda p: p + 0.5 * jax.random.normal(noise, p.shape), state.critic.params)))
    actors = [jax.jit(update)(s, batch, jax.random.PRNGKey(3))[0].actor.params for s in (state, other)]
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(actors[0]), jax.tree.leaves(actors[1])))
    assert same == reads_target
