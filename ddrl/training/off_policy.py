"""The off-policy iteration: collect `vec_steps` vectorised steps into replay, then learn.

Before `learning_starts` environment steps, actions are the agent's uniform warm-up actions
and no update is made; after it, `updates_per_train` gradient steps follow each collection,
and with `uniform_explore` > 0 that share of the actions (drawn per environment and step) is
still a warm-up action: every action keeps being tried, e.g. every set of a subset space that a
concentrated policy would stop sampling, while the agent learns off-policy from all of them.
Which buffer a transition goes to and which agent learns is the agent's business (`store`,
`learn`: `PerGroup` keeps one per base station).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ddrl.agents import common
from ddrl.training.phases import SCOPES
from ddrl.training.vec_env import VecEnv


def init_buffer(agent: Any, vec: VecEnv, obs: jax.Array, env_state: Any, agent_state: Any,
                capacity: int) -> common.ReplayBuffer:
    """An empty replay buffer shaped like the transitions the agent will store."""
    stored = agent.observe(agent_state, obs, vec.context(env_state, 0))
    action = jax.eval_shape(lambda: agent.random_action(jax.random.PRNGKey(0), (vec.num_envs,)))
    example = common.Transition(
        obs=stored[0], action=jnp.zeros(action.shape[1:], action.dtype), reward=jnp.zeros(()),
        next_obs=stored[0], terminated=jnp.zeros((), bool), truncated=jnp.zeros((), bool),
    )  # fmt: skip
    return agent.init_buffer(example, capacity, vec.num_envs)


def make_iteration(agent: Any, vec: VecEnv, vec_steps: int, steps_per_iteration: int,
                   learning_starts: int, updates_per_train: int, uniform_explore: float = 0.0):
    """`iteration(runner, index) -> (runner, (update metrics, whether updates were made))`."""

    def collect(runner, _):
        key, key_act, key_random, key_env = jax.random.split(runner.key, 4)
        ctx = vec.context(runner.env_state, runner.env_steps)
        with jax.named_scope(SCOPES["act"]):
            stored_obs = agent.observe(runner.agent, runner.obs, ctx)
            policy_action, aux = agent.act(runner.agent, runner.obs, ctx,
                                           jax.random.split(key_act, vec.num_envs), True)  # fmt: skip
            agent_state = agent.record(runner.agent, ctx, aux)
            uniform = runner.env_steps < learning_starts
            if uniform_explore:  # a key of its own: at 0 the run draws exactly what it drew before
                coin = jax.random.uniform(jax.random.fold_in(key_random, 1), policy_action.shape[:1])
                uniform = uniform | (coin < uniform_explore)
            random_action = agent.random_action(key_random, policy_action.shape[:1])
            action = jnp.where(uniform.reshape(uniform.shape + (1,) * (policy_action.ndim - uniform.ndim)),
                               random_action, policy_action)
        with jax.named_scope(SCOPES["env"]):
            obs, env_state, reward, terminated, truncated, true_next, stats = vec.step_and_count(
                key_env, runner.env_state, agent.env_action(action), runner.stats
            )
            next_ctx = vec.context(env_state, runner.env_steps + vec.num_envs)
        with jax.named_scope(SCOPES["store"]):
            transition = common.Transition(
                stored_obs, action, reward, agent.observe(agent_state, true_next, next_ctx), terminated, truncated
            )
            buffer = agent.store(runner.buffer, transition, ctx)
        runner = runner.replace(
            agent=agent_state, buffer=buffer, env_state=env_state,
            obs=obs, stats=stats, key=key, env_steps=runner.env_steps + vec.num_envs,
        )  # fmt: skip
        return runner, None

    def learn(agent_state, buffer, key):
        with jax.named_scope(SCOPES["learn"]):
            agent_state, metrics = jax.lax.scan(
                lambda state, k: agent.learn(state, buffer, k), agent_state,
                jax.random.split(key, updates_per_train),
            )  # fmt: skip
        return agent_state, jax.tree.map(jnp.mean, metrics)

    def iteration(runner, iteration_index: jax.Array):
        runner, _ = jax.lax.scan(collect, runner, None, vec_steps)
        key, key_update = jax.random.split(runner.key)
        metric_shapes = jax.eval_shape(learn, runner.agent, runner.buffer, key_update)[1]
        # From the iteration index, not runner.env_steps: it is the same for every seed, so
        # under vmap the cond stays a branch and the warm-up really skips the updates.
        ready = (iteration_index + 1) * steps_per_iteration >= learning_starts
        agent_state, metrics = jax.lax.cond(
            ready,
            lambda: learn(runner.agent, runner.buffer, key_update),
            lambda: (runner.agent, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)),
        )
        return runner.replace(agent=agent_state, key=key), (metrics, ready)

    return iteration
