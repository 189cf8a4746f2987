"""Training loop and host runner: resume, NaN guard, vmapped seeds and hyper-parameters."""
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl.training import NonFiniteLossError, make_trainer, run_training, seed_keys

STEPS_PER_CHUNK = 400
TINY_DQN = {
    "name": "dqn", "hidden": [16], "batch_size": 32, "buffer_size": 1000,
    "learning_starts": int(2.5 * STEPS_PER_CHUNK), "train_every": 4, "target_update_every": 10,
}  # fmt: skip


@pytest.fixture(scope="module")
def trainer():
    env, env_params = gymnax.make("CartPole-v1")
    return make_trainer(TINY_DQN, env, env_params, 4 * STEPS_PER_CHUNK, num_chunks=4, eval_episodes=2)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("checkpoint_every_s", [0.0, 1e9])
def test_resume_gives_the_uninterrupted_result(trainer, tmp_path, checkpoint_every_s):
    """Saved after every chunk, or (a long cadence) only after the last chunk a run makes."""
    import orbax.checkpoint as ocp

    assert trainer.steps_per_chunk == STEPS_PER_CHUNK
    full_state, full_history = run_training(
        trainer, 3, 2, checkpoint_dir=tmp_path / "full", progress=False
    )
    _, partial = run_training(
        trainer, 3, 2, checkpoint_dir=tmp_path / "cut", progress=False, max_chunks=3,
        checkpoint_every_s=checkpoint_every_s,
    )
    assert len(partial["episode_return"]) == 3
    assert ocp.CheckpointManager(tmp_path / "cut").latest_step() == 3
    resumed_state, resumed_history = run_training(
        trainer, 3, 2, checkpoint_dir=tmp_path / "cut", resume=True, progress=False
    )
    for expected, actual in zip(_leaves(full_state), _leaves(resumed_state), strict=True):
        np.testing.assert_array_equal(expected, actual)
    assert set(full_history) == set(resumed_history)
    for key in full_history:
        np.testing.assert_array_equal(full_history[key], resumed_history[key], err_msg=key)
    assert np.all(full_history["env_steps"][-1] == 4 * STEPS_PER_CHUNK)
    assert np.all(full_history["td_loss"][-1] > 0)  # updates happened after the cut


def test_nan_guard_names_metric_and_step_and_keeps_last_good_checkpoint(trainer, tmp_path):
    import orbax.checkpoint as ocp

    nan_lr = {"learning_rate": jnp.full((2,), jnp.nan)}  # updates start in chunk 3
    with pytest.raises(NonFiniteLossError, match=rf"td_loss.*step {3 * STEPS_PER_CHUNK}"):
        run_training(trainer, 0, 2, hparams=nan_lr, checkpoint_dir=tmp_path, progress=False)
    manager = ocp.CheckpointManager(tmp_path)
    assert manager.latest_step() == 2
    manager.close()


def test_jit_vmap_train_over_seeds_and_learning_rates(trainer):
    keys = seed_keys(0, 2)
    learning_rates = {"learning_rate": jnp.array([1e-3, 0.0])}
    final, metrics = jax.jit(jax.vmap(trainer.train))(keys, learning_rates)
    assert metrics["episode_return"].shape == (2, 4)  # (seeds, chunks)
    assert np.all(np.isfinite(np.asarray(metrics["td_loss"])))
    initial = jax.jit(jax.vmap(trainer.init))(keys, learning_rates)
    for start, end in zip(_leaves(initial.agent.q.params), _leaves(final.agent.q.params), strict=True):
        assert not np.allclose(start[0], end[0])  # learning rate 1e-3 moved the weights
        np.testing.assert_array_equal(start[1], end[1])  # learning rate 0 did not


@pytest.mark.parametrize("uniform_explore", [0.0, 0.5])
def test_uniform_explore_replaces_that_share_of_the_actions_after_warm_up(monkeypatch, uniform_explore):
    """`uniform_explore` (a method key): after warm-up, that share of the training actions is
    the agent's uniform warm-up action instead of its own (here always action 0)."""
    import dataclasses

    from probe_envs import ProbeEnv

    from ddrl import agents
    from ddrl.training import trainer as trainer_module

    make_agent = agents.make_agent

    def always_zero(name, *args, **kwargs):
        agent = make_agent(name, *args, **kwargs)

        class AlwaysZero(type(agent)):
            def act_observed(self, state, observed, ctx, keys, explore):
                action, aux = super().act_observed(state, observed, ctx, keys, explore)
                return jnp.zeros_like(action), aux

        return AlwaysZero(**{f.name: getattr(agent, f.name) for f in dataclasses.fields(agent)})

    monkeypatch.setattr(trainer_module.agents, "make_agent", always_zero)
    env = ProbeEnv()
    config = {**TINY_DQN, "learning_starts": 0, "buffer_size": 4000, "uniform_explore": uniform_explore}
    trainer = make_trainer(config, env, env.default_params, 2000, num_envs=4, num_chunks=1)
    runner, _ = jax.jit(trainer.train)(jax.random.PRNGKey(0))
    actions = np.asarray(runner.buffer.storage.action)
    assert actions.size == 2000 and (uniform_explore > 0 or not actions.any())
    # uniform over two actions: a share uniform_explore / 2 of them is action 1
    assert abs(np.mean(actions == 1) - uniform_explore / 2) < 0.04


def test_uniform_explore_is_checked():
    env, env_params = gymnax.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"uniform_explore: 1.0 is not in \[0, 1\)"):
        make_trainer({**TINY_DQN, "uniform_explore": 1.0}, env, env_params, 800)
    with pytest.raises(ValueError, match="uniform_explore: ppo is on-policy"):
        make_trainer({"name": "ppo", "uniform_explore": 0.1}, env, env_params, 800)
