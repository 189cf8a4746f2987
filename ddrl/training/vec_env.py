"""A gymnax environment stepped as `num_envs` copies, with the context agents may read."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ddrl.agents.base import ActContext, AgentSpec
from ddrl.training.metrics import EpisodeStats, add_step


@dataclasses.dataclass(frozen=True)
class VecEnv:
    """`num_envs` copies of `env` under `params`, reset and stepped together (vmapped)."""

    env: Any
    params: Any
    num_envs: int

    @property
    def has_base_stations(self) -> bool:
        """Whether the environment says which base station decides (MEC) or not (CartPole)."""
        return hasattr(self.env, "agent_context")

    def spec(self) -> AgentSpec:
        """What an agent needs to know of this environment to be built."""
        obs_shape = tuple(self.env.observation_space(self.params).shape)
        if not self.has_base_stations:
            return AgentSpec(obs_shape, num_actions(self.env, self.params))
        return AgentSpec(obs_shape, num_actions(self.env, self.params), int(self.env.num_servers),
                         int(self.env.cells_per_bs(self.params)))  # fmt: skip

    def reset(self, key: jax.Array, batch: int | None = None):
        batch = self.num_envs if batch is None else batch
        return jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(key, batch), self.params)

    def step(self, key: jax.Array, env_state: Any, action: jax.Array):
        batch = action.shape[0]
        return jax.vmap(self.env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key, batch), env_state, action, self.params
        )

    def context(self, env_state: Any, env_steps: jax.Array) -> ActContext:
        """Deciding BS and task cell of every environment (zeros without base stations)."""
        batch = jax.tree.leaves(env_state)[0].shape[0]
        if not self.has_base_stations:
            return ActContext.empty(batch, env_steps)
        group, cell = jax.vmap(lambda s: self.env.agent_context(s, self.params))(env_state)
        return ActContext(jnp.asarray(env_steps, jnp.int32), group, cell, jnp.ones((batch,), bool))

    def step_and_count(self, key: jax.Array, env_state: Any, action: jax.Array, stats: EpisodeStats):
        """Step every environment and add the step to the episode statistics.

        Returns (obs, env_state, reward, terminated, truncated, true next observation, stats);
        the true next observation is the one before an auto-reset (what replay stores).
        """
        obs, env_state, reward, terminated, truncated, info = self.step(key, env_state, action)
        true_next_obs = info.get("final_observation", obs)
        stats = add_step(stats, reward, terminated | truncated, info)
        return obs, env_state, reward.astype(jnp.float32), terminated, truncated, true_next_obs, stats

    def probe_info(self, key: jax.Array, action: jax.Array) -> dict:
        """The shapes of one vectorised step's `info` (for the metric accumulators)."""
        def probe():
            _, env_state = self.reset(key)
            return self.step(key, env_state, action)[-1]

        return jax.eval_shape(probe)


def num_actions(env: Any, params: Any) -> int:
    """Outputs of the agent's head: `env.num_actions` (e.g. per-server scores of a MEC
    top-k space), else the size of a discrete action space."""
    try:
        return int(env.num_actions)
    except (AttributeError, NotImplementedError):
        return int(env.action_space(params).n)
