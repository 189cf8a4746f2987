"""In-process hyper-parameter search and seed sharding over devices."""
import json
import os
import subprocess
import sys
import textwrap

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl import agents
from ddrl.agents import common
from ddrl.hpsearch import grid_search, split_grid
from ddrl.training import make_trainer, run_training, seed_keys

TINY_DQN = {
    "name": "dqn", "hidden": [16], "batch_size": 32, "buffer_size": 600,
    "learning_starts": 200, "train_every": 4, "target_update_every": 10,
}  # fmt: skip
STEPS, CHUNKS = 600, 3
LEARNING_RATES = [1e-3, 3e-4]
GAMMAS = [0.9, 0.99]
# float32: the batched and the unbatched XLA programs may round differently in the last bits
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(scope="module")
def cartpole():
    return gymnax.make("CartPole-v1")


@pytest.fixture(scope="module")
def separate_run(cartpole):
    """One seed, one setting at a time: the unbatched program, hyper-parameters as arguments."""
    env, env_params = cartpole
    trainer = make_trainer(TINY_DQN, env, env_params, STEPS, num_chunks=CHUNKS)
    return jax.jit(trainer.train)


def test_grid_search_equals_separate_runs(cartpole, separate_run):
    env, env_params = cartpole
    grid = {"learning_rate": LEARNING_RATES, "gamma": GAMMAS[:1]}
    result = grid_search(TINY_DQN, env, env_params, grid, 2, STEPS, seed=1, num_chunks=CHUNKS)
    assert result.programs == 1
    assert result.settings == [{"learning_rate": lr, "gamma": GAMMAS[0]} for lr in LEARNING_RATES]
    assert result.metrics["td_loss"].shape == (2, 2, CHUNKS)  # (settings, seeds, chunks)
    keys = seed_keys(1, 2)
    for index, setting in enumerate(result.settings):
        hparams = {k: jnp.float32(v) for k, v in setting.items()}
        for seed in range(2):
            _, metrics = separate_run(keys[seed], hparams)
            for name in ("td_loss", "q_mean", "episode_return", "env_steps", "episodes"):
                np.testing.assert_allclose(
                    result.metrics[name][index, seed], np.asarray(metrics[name]),
                    err_msg=f"{name} of {setting}, seed {seed}", **TOLERANCE,
                )  # fmt: skip
    final = result.final("td_loss")
    assert np.all(final > 0) and not np.allclose(final[0], final[1])  # the settings differ


def test_traced_hyperparameters_equal_the_configured_ones(cartpole, separate_run):
    """`train(key, {lr: array, γ: array})` equals a trainer built with those values in its
    config (constants in the program), as a user running one configuration would get."""
    env, env_params = cartpole
    key = seed_keys(2, 1)[0]
    setting = {"learning_rate": LEARNING_RATES[1], "gamma": GAMMAS[1]}
    traced = {k: jnp.float32(v) for k, v in setting.items()}
    traced_state, traced_metrics = separate_run(key, traced)
    configured = make_trainer({**TINY_DQN, **setting}, env, env_params, STEPS, num_chunks=CHUNKS)
    state, metrics = jax.jit(configured.train)(key)
    for name in ("td_loss", "q_mean", "episode_return"):
        np.testing.assert_allclose(traced_metrics[name], metrics[name], err_msg=name, **TOLERANCE)
    for a, b in zip(jax.tree.leaves(traced_state.agent.q.params),
                    jax.tree.leaves(state.agent.q.params), strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, **TOLERANCE)


@pytest.mark.parametrize("name", ["d2sac", "d2sac_published", "dqn", "sac", "ppo"])
def test_every_listed_hyperparameter_traces_under_vmap(cartpole, name):
    """Each agent's traced `Config` fields reach the program as arrays (no int(), if, shapes):
    lowering `jit(vmap(train))` with all of them batched succeeds (nothing is compiled). The
    program calls no LAPACK kernel: jaxlib 0.10's batched CPU QR hung vmapped PPO runs
    (`ddrl.nets.mlp.orthogonal`)."""
    env, env_params = cartpole
    small = {"d2sac": {"denoiser_hidden": [8], "critic_hidden": [8], "batch_size": 8,
                       "learning_starts": 16, "diffusion_steps": 2},
             "d2sac_published": {"denoiser_hidden": [8], "critic_hidden": [8], "batch_size": 8,
                                 "learning_starts": 16, "diffusion_steps": 2},
             "sac": {"hidden": [8], "batch_size": 8, "learning_starts": 16},
             "dqn": {"hidden": [8], "batch_size": 8, "learning_starts": 16},
             "ppo": {"hidden": [8], "num_envs": 2, "num_steps": 8}}  # fmt: skip
    trainer = make_trainer({"name": name, **small[name]}, env, env_params, 64, num_chunks=1)
    base = agents.make_config(name)
    hparams = {
        k: jnp.full((3,), 0.5 if getattr(base, k) is None else getattr(base, k), jnp.float32)
        for k in common.traced_fields(agents.get(name).Config)
    }
    lowered = jax.jit(jax.vmap(trainer.train)).lower(seed_keys(0, 3), hparams)
    assert "lapack" not in lowered.as_text()


def test_bad_hyperparameters_fail_before_compiling(cartpole):
    env, env_params = cartpole
    d2sac = {"name": "d2sac", "batch_size": 8}
    with pytest.raises(ValueError, match=r"unknown hyper-parameter 'actor_rate'"):
        grid_search(d2sac, env, env_params, {"actor_rate": [1e-4]}, 2, 100)
    with pytest.raises(ValueError, match=r"'actor_lr' must be a number or .* got 'fast'"):
        grid_search(d2sac, env, env_params, {"actor_lr": [1e-4, "fast"]}, 2, 100)
    with pytest.raises(ValueError, match=r"'alpha' must be a number.*got True"):
        split_grid(d2sac, {"alpha": [True]})
    with pytest.raises(ValueError, match="non-empty list"):
        split_grid(d2sac, {"alpha": []})
    grid = {"alpha": [0.1], "diffusion_steps": [2, 5]}  # T: one program per value
    assert split_grid(d2sac, grid) == (["alpha"], ["diffusion_steps"])

    trainer = make_trainer(TINY_DQN, env, env_params, STEPS, num_chunks=CHUNKS)
    keys = seed_keys(0, 2)
    for message, hparams in {  # raised while tracing (lower), before any compilation
        "unknown hyper-parameter 'lr'": {"lr": jnp.ones(2)},
        "'hidden' sets a shape or Python control flow": {"hidden": jnp.ones(2)},
    }.items():
        with pytest.raises(ValueError, match=message):
            jax.jit(jax.vmap(trainer.train)).lower(keys, hparams)
    with pytest.raises(ValueError, match="'gamma' must be a number or a numeric array"):
        trainer.train(keys[0], {"gamma": "fast"})
    with pytest.raises(ValueError, match="'gamma' must be a number or a numeric array"):
        run_training(trainer, 0, 2, hparams={"gamma": np.array(["a", "b"])}, progress=False)
    with pytest.raises(ValueError, match="'target_update_every' sets a shape"):
        run_training(trainer, 0, 2, hparams={"target_update_every": np.ones(2)}, progress=False)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import gymnax, jax, numpy as np
    from ddrl.training import batch_sharding, make_trainer, run_training

    assert len(jax.devices()) == 2, jax.devices()
    env, env_params = gymnax.make("CartPole-v1")
    trainer = make_trainer(CONFIG, env, env_params, STEPS, num_chunks=CHUNKS)
    hparams = {"learning_rate": np.array([1e-3, 1e-3, 3e-4, 3e-4], np.float32)}
    sharded, sharded_history = run_training(trainer, 5, 4, hparams=hparams, progress=False)
    single, single_history = run_training(
        trainer, 5, 4, hparams=hparams, progress=False, sharded=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert batch_sharding(3) is None  # 3 seeds on 2 devices: no sharding, a warning
    leaves = jax.tree.leaves(sharded)
    print(json.dumps({
        "devices_per_leaf": sorted({len(leaf.sharding.device_set) for leaf in leaves}),
        "single_devices": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(single)}),
        "max_param_diff": max(float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))
                              for a, b in zip(leaves, jax.tree.leaves(single))),
        "max_metric_diff": {k: float(np.nanmax(np.abs(sharded_history[k] - single_history[k])))
                            for k in sharded_history},
        "td_loss": float(np.mean(sharded_history["td_loss"][-1])),
        "warnings": [str(w.message) for w in caught],
    }))
    """
)


def test_sharded_seeds_equal_the_unsharded_run():
    script = f"CONFIG = {TINY_DQN!r}\nSTEPS, CHUNKS = {STEPS}, {CHUNKS}\n" + SHARDED_SCRIPT
    # Two host devices must be asked for before jax is imported, so the run is a subprocess;
    # optimisation level 0 halves its compile time (both runs are compiled the same way).
    flags = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices_per_leaf"] == [2]  # every leaf of the state split over both devices
    assert report["single_devices"] == [1]
    assert report["td_loss"] > 0
    assert report["max_param_diff"] < 1e-4, report
    for name, diff in report["max_metric_diff"].items():
        assert diff < 1e-4 * max(1.0, report["td_loss"]), (name, diff)
    assert any("3 runs do not divide evenly over 2 devices" in w for w in report["warnings"])


def test_kept_agents_are_each_settings_trained_states(cartpole, separate_run):
    from ddrl.hpsearch import search_settings

    env, env_params = cartpole
    settings = [{"learning_rate": lr} for lr in LEARNING_RATES]
    result = search_settings(TINY_DQN, env, env_params, settings, 2, STEPS, seed=1, num_chunks=CHUNKS,
                             keep_agents=True)  # fmt: skip
    assert len(result.agents) == len(result.trainers) == 2 and result.trainers[0] is result.trainers[1]
    keys = seed_keys(1, 2)
    for index, setting in enumerate(settings):
        final, _ = separate_run(keys[1], {"learning_rate": jnp.float32(setting["learning_rate"])})
        kept = jax.tree.map(lambda leaf: leaf[1], result.agents[index])  # seed 1 of this setting
        for ours, alone in zip(jax.tree.leaves(kept), jax.tree.leaves(final.agent), strict=True):
            np.testing.assert_allclose(np.asarray(ours), np.asarray(alone), err_msg=str(setting), **TOLERANCE)
    plain = search_settings(TINY_DQN, env, env_params, settings[:1], 1, STEPS, num_chunks=CHUNKS)
    assert plain.agents is None and plain.trainers is None
