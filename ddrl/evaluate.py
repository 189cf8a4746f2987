"""Deterministic evaluation of any policy on the MEC environment: one code path for all.

`evaluate(env, params, policy, key, num_seeds, num_episodes)` runs `num_seeds × num_episodes`
independent episodes in one vmapped program; each copy of the environment plays exactly one
episode (a `lax.while_loop` until its episode ends) and reports that episode's metrics.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from ddrl.envs.mec import MEC, MECParams


@struct.dataclass
class EpisodeMetrics:
    """Per-episode metrics (MEC_MODEL.md §6); leading axes (seeds, episodes)."""

    make_span: jax.Array  # mean over the episode's tasks, failures counted at τ
    failure_rate: jax.Array
    raw_delay: jax.Array  # mean make-span without the deadline cap
    lower_bound: jax.Array  # mean per-task lower bound (each task alone on empty queues)
    tasks: jax.Array  # tasks decided
    utilisation: jax.Array  # (..., B) processed / available Gcycles per ES


def run_episode(env: MEC, params: MECParams, policy: Callable, key: jax.Array) -> EpisodeMetrics:
    """Play one episode with `policy(key, obs, state, params)`; return its metrics."""
    reset_key, loop_key = jax.random.split(key)
    obs, state = env.reset(reset_key, params)
    empty = EpisodeMetrics(
        make_span=jnp.zeros(()), failure_rate=jnp.zeros(()), raw_delay=jnp.zeros(()),
        lower_bound=jnp.zeros(()), tasks=jnp.int32(0), utilisation=jnp.zeros(env.num_servers),
    )

    def running(carry):
        return ~carry[3]

    def one_step(carry):
        obs, state, step_key, _, _ = carry
        step_key, act_key, env_key = jax.random.split(step_key, 3)
        action = policy(act_key, obs, state, params)
        obs, state, _, _, truncated, info = env.step(env_key, state, action, params)
        metrics = EpisodeMetrics(
            make_span=info["episode_make_span"], failure_rate=info["episode_failure_rate"],
            raw_delay=info["episode_raw_delay"], lower_bound=info["episode_lower_bound"],
            tasks=info["episode_tasks"], utilisation=info["episode_utilisation"],
        )
        return obs, state, step_key, truncated, metrics

    carry = (obs, state, loop_key, jnp.zeros((), bool), empty)
    return jax.lax.while_loop(running, one_step, carry)[4]


def evaluate(
    env: MEC,
    params: MECParams,
    policy: Callable,
    key: jax.Array,
    num_seeds: int,
    num_episodes: int,
) -> EpisodeMetrics:
    """Metrics of `num_seeds × num_episodes` independent episodes, shape (seeds, episodes)."""
    play = jax.vmap(jax.vmap(lambda k: run_episode(env, params, policy, k)))
    return jax.jit(play)(_episode_keys(key, num_seeds, num_episodes))


def evaluate_per_seed(
    env: MEC,
    params: MECParams,
    make_policy: Callable,
    policy_inputs,
    key: jax.Array,
    num_episodes: int,
) -> EpisodeMetrics:
    """Like `evaluate`, for a policy per seed: seed s plays `make_policy(inputs[s])`.

    `policy_inputs` is a pytree with a leading seed axis (e.g. trained agent states);
    `make_policy(inputs)` returns `policy(key, obs, state, params)`. Same keys as `evaluate`.
    """
    num_seeds = jax.tree.leaves(policy_inputs)[0].shape[0]

    def play_seed(inputs, keys):
        policy = make_policy(inputs)
        return jax.vmap(lambda k: run_episode(env, params, policy, k))(keys)

    keys = _episode_keys(key, num_seeds, num_episodes)
    return jax.jit(jax.vmap(play_seed))(policy_inputs, keys)


def _episode_keys(key: jax.Array, num_seeds: int, num_episodes: int) -> jax.Array:
    """Keys (seeds, episodes): episode e of seed s uses split(fold_in(key, s))[e]."""
    return jax.vmap(lambda seed: jax.random.split(jax.random.fold_in(key, seed), num_episodes))(
        jnp.arange(num_seeds)
    )
