"""Deterministic evaluation of any policy on the MEC environment: one code path for all.

`evaluate(env, params, policy, key, num_seeds, num_episodes)` runs `num_seeds × num_episodes`
independent episodes in one vmapped program; each copy of the environment plays exactly one
episode (a `lax.while_loop` until its episode ends) and reports that episode's metrics.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ddrl.envs.mec import MEC, MECParams

# Per-task raw delays are counted in log-spaced bins, so tail percentiles need no per-task
# storage: 40 bins per decade from 1 ms to 1000 s (a percentile is known to within 6 %).
DELAY_BINS_PER_DECADE = 40
DELAY_LOG10_RANGE = (-3.0, 3.0)
NUM_DELAY_BINS = int(DELAY_BINS_PER_DECADE * (DELAY_LOG10_RANGE[1] - DELAY_LOG10_RANGE[0]))


@struct.dataclass
class EpisodeMetrics:
    """Per-episode metrics (MEC_MODEL.md §6); leading axes (seeds, episodes)."""

    make_span: jax.Array  # mean over the episode's tasks, failures counted at τ
    failure_rate: jax.Array
    raw_delay: jax.Array  # mean make-span without the deadline cap
    lower_bound: jax.Array  # mean per-task lower bound (each task alone on empty queues)
    tasks: jax.Array  # tasks decided
    utilisation: jax.Array  # (..., B) processed / available Gcycles per ES
    delay_histogram: jax.Array  # (..., NUM_DELAY_BINS) tasks per raw-delay bin (see delay_bin)


def delay_bin(raw_delay: jax.Array) -> jax.Array:
    """Histogram bin of a raw delay (s); delays outside the range go to the end bins."""
    position = (jnp.log10(jnp.maximum(raw_delay, 1e-12)) - DELAY_LOG10_RANGE[0]) * DELAY_BINS_PER_DECADE
    return jnp.clip(jnp.floor(position), 0, NUM_DELAY_BINS - 1).astype(jnp.int32)


def delay_percentiles(histogram: np.ndarray, percents: tuple[float, ...] = (50, 95, 99)) -> np.ndarray:
    """Percentiles (s) of the delays counted in `histogram` (..., bins), log-interpolated in a bin."""
    counts = np.asarray(histogram, dtype=np.float64)
    cumulative = np.cumsum(counts, axis=-1)
    total = cumulative[..., -1:]
    out = []
    for percent in percents:
        target = percent / 100.0 * total
        index = np.minimum((cumulative < target).sum(axis=-1, keepdims=True), NUM_DELAY_BINS - 1)
        below = np.where(index > 0, np.take_along_axis(cumulative, np.maximum(index - 1, 0), -1), 0.0)
        inside = np.take_along_axis(counts, index, -1)
        fraction = np.clip((target - below) / np.maximum(inside, 1e-12), 0.0, 1.0)
        log_delay = DELAY_LOG10_RANGE[0] + (index + fraction) / DELAY_BINS_PER_DECADE
        out.append(np.where(total > 0, 10.0**log_delay, np.nan)[..., 0])
    return np.stack(out, axis=-1)


def run_episode(env: MEC, params: MECParams, policy: Callable, key: jax.Array) -> EpisodeMetrics:
    """Play one episode with `policy(key, obs, state, params)`; return its metrics."""
    reset_key, loop_key = jax.random.split(key)
    obs, state = env.reset(reset_key, params)
    empty = EpisodeMetrics(
        make_span=jnp.zeros(()), failure_rate=jnp.zeros(()), raw_delay=jnp.zeros(()),
        lower_bound=jnp.zeros(()), tasks=jnp.int32(0), utilisation=jnp.zeros(env.num_servers),
        delay_histogram=jnp.zeros(NUM_DELAY_BINS, jnp.int32),
    )

    def running(carry):
        return ~carry[3]

    def one_step(carry):
        obs, state, step_key, _, previous = carry
        step_key, act_key, env_key = jax.random.split(step_key, 3)
        action = policy(act_key, obs, state, params)
        obs, state, _, _, truncated, info = env.step(env_key, state, action, params)
        metrics = EpisodeMetrics(
            make_span=info["episode_make_span"], failure_rate=info["episode_failure_rate"],
            raw_delay=info["episode_raw_delay"], lower_bound=info["episode_lower_bound"],
            tasks=info["episode_tasks"], utilisation=info["episode_utilisation"],
            delay_histogram=previous.delay_histogram.at[delay_bin(info["raw_delay"])].add(
                info["real_task"].astype(jnp.int32)
            ),
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
