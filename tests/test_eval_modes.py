"""Evaluation modes: `sample` draws from π, `greedy` is the argmax of the chain-averaged π."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from ddrl.agents import common, d2sac, d2sac_factored
from ddrl.envs.scenarios import build_mec
from ddrl.experiments.scheduling import eval_modes_of
from ddrl.training import make_trainer
from tests.test_mec_agents import TINY_AMCOEDGE

SMALL = {"denoiser_hidden": (16, 16), "critic_hidden": (16, 16), "diffusion_steps": 3}


def _agent(chains: int, n_actions: int = 3, module=d2sac):
    cfg = common.config_from(d2sac.Config, {**SMALL, "greedy_chains": chains})
    return module.init(jax.random.PRNGKey(0), (4,), n_actions, cfg)


OBS = jnp.array([[0.3, -1.0, 0.5, 2.0]])


def test_sampled_actions_follow_pi_averaged_over_the_chain():
    """A sampled action is one chain's π drawn from: its frequencies are E_chain[π]."""
    state = _agent(chains=8)
    keys = jax.random.split(jax.random.PRNGKey(1), 8000)
    actions = jax.vmap(lambda k: d2sac.act(state, OBS, k, True)[0])(keys)
    frequencies = np.bincount(np.asarray(actions), minlength=3) / len(keys)
    chain_keys = jax.vmap(lambda k: jax.random.split(k)[0])(keys)  # the chain's key inside act
    expected = np.asarray(jax.vmap(lambda k: d2sac.policy(state, state.actor.params, OBS, k)[0])(chain_keys)).mean(0)
    assert expected.max() < 0.95  # a policy worth sampling
    np.testing.assert_allclose(frequencies, expected, atol=4 * np.sqrt(0.25 / len(keys)))


def test_greedy_is_the_argmax_of_the_k_chain_average_and_deterministic_per_key():
    state = _agent(chains=8)
    key = jax.random.PRNGKey(3)
    key_chain = jax.random.split(key)[0]
    chain_keys = jax.random.split(key_chain, 8)
    average = jnp.mean(jax.vmap(lambda k: d2sac.policy(state, state.actor.params, OBS, k))(chain_keys), axis=0)
    np.testing.assert_allclose(d2sac.greedy_probs(d2sac.policy, state, OBS, key_chain), average, rtol=1e-6)
    assert int(d2sac.act(state, OBS, key, False)[0]) == int(jnp.argmax(average))
    again = [int(d2sac.act(state, OBS, key, False)[0]) for _ in range(3)]
    assert again == [int(jnp.argmax(average))] * 3


def test_the_noise_free_chain_ignores_the_key():
    state = _agent(chains=0)
    first = d2sac.greedy_probs(d2sac.policy, state, OBS, jax.random.PRNGKey(1))
    for seed in (2, 3):
        np.testing.assert_array_equal(first, d2sac.greedy_probs(d2sac.policy, state, OBS, jax.random.PRNGKey(seed)))
    assert not np.allclose(first, d2sac.policy(state, state.actor.params, OBS, jax.random.PRNGKey(1)))


def _with_noise_scale(state, scale):
    return state.replace(cfg=state.cfg.replace(chain_noise_scale=jnp.asarray(scale, jnp.float32)))


def test_without_chain_noise_pi_and_the_sampled_actions_depend_on_the_state_alone():
    noisy = _agent(chains=8)
    quiet = _with_noise_scale(noisy, 0.0)
    keys = jax.random.split(jax.random.PRNGKey(1), 4000)
    probs = jax.vmap(lambda k: d2sac.policy(quiet, quiet.actor.params, OBS, k)[0])(keys)
    np.testing.assert_array_equal(probs, jnp.broadcast_to(probs[0], probs.shape))  # one π per state, any key
    np.testing.assert_allclose(probs[0], d2sac.greedy_probs(d2sac.policy, noisy.replace(cfg=noisy.cfg.replace(
        greedy_chains=0)), OBS, keys[0])[0], atol=1e-6)  # the noise-free chain's π (to rounding)  # fmt: skip
    assert not np.allclose(*jax.vmap(lambda k: d2sac.policy(noisy, noisy.actor.params, OBS, k)[0])(keys[:2]))
    actions = jax.vmap(lambda k: d2sac.act(quiet, OBS, k, True)[0])(keys)  # sampled from that one π
    frequencies = np.bincount(np.asarray(actions), minlength=3) / len(keys)
    np.testing.assert_allclose(frequencies, probs[0], atol=4 * np.sqrt(0.25 / len(keys)))


def test_the_chain_noise_scale_cools_the_chain_between_its_mean_path_and_the_ddpm_chain():
    noisy = _agent(chains=8)
    keys = jax.random.split(jax.random.PRNGKey(2), 256)

    def x0_over_keys(state):
        return jax.vmap(lambda k: d2sac.reverse_chain(state, state.actor.params, OBS, k))(keys)

    default = x0_over_keys(noisy)
    np.testing.assert_array_equal(default, x0_over_keys(_with_noise_scale(noisy, 1.0)))  # 1: the DDPM chain as it was
    spread = [float(jnp.mean(jnp.std(x0_over_keys(_with_noise_scale(noisy, s)), axis=0))) for s in (0.0, 0.3, 1.0)]
    assert spread[0] < 1e-6 and 0.1 < spread[1] < spread[2], spread  # 0: the mean path (to rounding)


def test_a_traced_explore_flag_picks_the_same_actions_as_the_static_one():
    for module in (d2sac, d2sac_factored):
        state = _agent(chains=4, module=module)
        static_flag = jax.jit(module.act, static_argnums=3)
        traced_flag = jax.jit(module.act)  # explore is a tracer here: the jnp.where path
        for seed in range(4):
            key = jax.random.PRNGKey(seed)
            for explore in (True, False):
                np.testing.assert_array_equal(static_flag(state, OBS, key, explore),
                                              traced_flag(state, OBS, key, jnp.bool_(explore)))  # fmt: skip


def compose_method(name: str) -> dict:
    """conf/method/<name>.yaml as Hydra composes it (its wrapper and its algo's hyper-parameters)."""
    from hydra import compose, initialize_config_dir

    from ddrl.run import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=[f"method={name}"]).method)


@pytest.mark.parametrize(("name", "modes"), [("ddrl_amsa", ("sample", "greedy")), ("amcoedge", ("greedy",))])
def test_each_family_is_headlined_by_the_policy_it_trains(name, modes):
    method = compose_method(name)
    method = {k: v for k, v in method.items() if k not in ("kind", "label", "decisions_per_slot")}
    env, params = build_mec(TINY_AMCOEDGE, action_space=method.pop("action_space"))
    trainer = make_trainer(method, env, params, 64, num_envs=2, num_chunks=1)
    assert trainer.eval_modes() == modes
    assert eval_modes_of(OmegaConf.create({}), trainer) == (modes[0], modes)
    forced = eval_modes_of(OmegaConf.create({"headline_mode": "greedy"}), trainer)
    assert forced == ("greedy", tuple(dict.fromkeys(("greedy",) + modes)))
    if modes == ("greedy",):
        with pytest.raises(ValueError, match="no sampled policy"):
            trainer.policy(None, "sample")


def test_on_a_probe_with_a_stochastic_optimum_sample_reproduces_it_and_greedy_takes_its_argmax():
    """A one-step bandit, r = (1, 0.8, 0), fixed α = 0.2: the soft-optimal policy is
    softmax(r/α) ≈ (0.73, 0.27, 0.005). Trained diffusion SAC's `sample` mode draws actions
    at those frequencies (within 0.06: what a few thousand updates of a tiny actor reach)
    and `greedy` takes action 0: always from the noise-free chain, and for all but a few keys
    from the 8-chain average (an estimate of the mixture π over chains, deterministic per key)."""
    from probe_envs import SoftBanditEnv

    env, alpha = SoftBanditEnv(), 0.2
    config = {"name": "d2sac", "denoiser_hidden": [16, 16], "critic_hidden": [16, 16], "diffusion_steps": 3,
              "actor_lr": 3e-3, "critic_lr": 3e-3, "batch_size": 64, "alpha": alpha, "learn_alpha": False,
              "normalize_q": False, "clip_x0": None, "learning_starts": 64, "train_every": 8, "updates_per_train": 2,
              "tau": 0.05, "greedy_chains": 8}  # fmt: skip
    trainer = make_trainer(config, env, env.default_params, 12_000, num_envs=8, num_chunks=1)
    runner, _ = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    obs, state = env.reset(jax.random.PRNGKey(1), env.default_params)
    keys = jax.random.split(jax.random.PRNGKey(2), 4000)
    frequencies = {}
    noise_free = runner.agent.replace(cfg=runner.agent.cfg.replace(greedy_chains=0))
    for name, agent, mode in (("sample", runner.agent, "sample"), ("greedy", runner.agent, "greedy"),
                              ("noise-free", noise_free, "greedy")):  # fmt: skip
        policy = trainer.policy(agent, mode)
        actions = jax.jit(jax.vmap(lambda k: policy(k, obs, state, env.default_params)))(keys)
        frequencies[name] = np.bincount(np.asarray(actions), minlength=3) / len(keys)
    optimum = np.asarray(env.soft_optimal_policy(alpha))
    np.testing.assert_allclose(frequencies["sample"], optimum, atol=0.06)
    assert frequencies["greedy"][0] >= 0.97, frequencies
    np.testing.assert_array_equal(frequencies["noise-free"], [1.0, 0.0, 0.0])
