"""The on-policy iteration: a rollout of `vec_steps` vectorised steps, then one update on it."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ddrl.training.phases import SCOPES
from ddrl.training.vec_env import VecEnv


def make_iteration(agent: Any, vec: VecEnv, vec_steps: int):
    """`iteration(runner, index) -> (runner, (update metrics, True))`."""

    def collect(runner, _):
        key, key_act, key_env = jax.random.split(runner.key, 3)
        obs = runner.obs
        with jax.named_scope(SCOPES["act"]):
            action, log_prob, value = agent.act_and_value(runner.agent, obs, key_act)
        with jax.named_scope(SCOPES["env"]):
            next_obs, env_state, reward, terminated, truncated, true_next, stats = vec.step_and_count(
                key_env, runner.env_state, agent.env_action(action), runner.stats
            )
        step = agent.rollout_step(
            obs=obs, action=action, log_prob=log_prob, value=value, reward=reward,
            next_value=agent.value(runner.agent, true_next), terminated=terminated,
            done=terminated | truncated,
        )  # fmt: skip
        runner = runner.replace(env_state=env_state, obs=next_obs, stats=stats, key=key,
                                env_steps=runner.env_steps + vec.num_envs)  # fmt: skip
        return runner, step

    def iteration(runner, iteration_index: jax.Array):
        del iteration_index
        runner, rollout = jax.lax.scan(collect, runner, None, vec_steps)
        key, key_update = jax.random.split(runner.key)
        agent_state = runner.agent.replace(env_steps=runner.env_steps)
        with jax.named_scope(SCOPES["learn"]):
            agent_state, metrics = agent.update(agent_state, rollout, key_update)
        return runner.replace(agent=agent_state, key=key), (metrics, jnp.ones((), bool))

    return iteration
