"""The episode-metrics accumulator of the training loops, reduced inside jit per chunk.

`EpisodeStats` adds up, per chunk, the returns of completed episodes, the environment's own
per-episode metrics (`info["episode_*"]` at the step that ends an episode, e.g. the MEC
make-span) and its per-step metrics (`env.step_metrics`, e.g. each task's make-span, over
the steps with `info["real_task"]`): their chunk means are smooth learning curves even when
episodes are long. Nothing is stored per step.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class EpisodeStats:
    """Running returns of the current episodes and totals of this chunk's completed ones."""

    current_return: jax.Array  # (num_envs,)
    completed_return_sum: jax.Array
    completed_count: jax.Array
    info_sums: dict
    step_sums: dict
    step_count: jax.Array


def episode_info_keys(info: dict) -> list[str]:
    """The environment's scalar per-episode metrics in `info` (keys `episode_*`)."""
    return sorted(
        k for k, v in info.items()
        if k.startswith("episode_") and k != "episode_done" and v.ndim == 1
    )  # fmt: skip


def init_stats(num_envs: int, info_example: dict, step_metrics: tuple[str, ...]) -> EpisodeStats:
    """Zero totals for the metrics that `info_example` (one vectorised step's info) carries."""
    return EpisodeStats(
        current_return=jnp.zeros(num_envs),
        completed_return_sum=jnp.zeros(()),
        completed_count=jnp.zeros((), jnp.int32),
        info_sums={k: jnp.zeros(()) for k in episode_info_keys(info_example)},
        step_sums={f"step_{k}": jnp.zeros(()) for k in step_metrics},
        step_count=jnp.zeros(()),
    )


def add_step(stats: EpisodeStats, reward: jax.Array, done: jax.Array, info: dict) -> EpisodeStats:
    """The totals after one vectorised environment step."""
    episode_return = stats.current_return + reward
    counted = info.get("real_task", jnp.ones_like(reward, bool)).astype(jnp.float32)
    return EpisodeStats(
        current_return=jnp.where(done, 0.0, episode_return),
        completed_return_sum=stats.completed_return_sum + jnp.sum(jnp.where(done, episode_return, 0.0)),
        completed_count=stats.completed_count + jnp.sum(done),
        info_sums={k: total + jnp.sum(jnp.where(done, info[k], 0.0)) for k, total in stats.info_sums.items()},
        step_sums={
            k: total + jnp.sum(counted * info[k.removeprefix("step_")].astype(jnp.float32))
            for k, total in stats.step_sums.items()
        },
        step_count=stats.step_count + jnp.sum(counted),
    )


def chunk_metrics(stats: EpisodeStats) -> dict[str, jax.Array]:
    """Means over the chunk: episode return, per-episode and per-step environment metrics."""
    completed = stats.completed_count > 0
    per_episode = jnp.maximum(stats.completed_count, 1)
    metrics = {"episode_return": jnp.where(completed, stats.completed_return_sum / per_episode, jnp.nan)}
    for k, total in stats.info_sums.items():
        metrics[k] = jnp.where(completed, total / per_episode, jnp.nan)
    for k, total in stats.step_sums.items():
        metrics[k] = total / jnp.maximum(stats.step_count, 1.0)
    metrics["episodes"] = stats.completed_count
    return metrics


def reset_totals(stats: EpisodeStats) -> EpisodeStats:
    """Keep the running returns, zero the chunk's totals."""
    return stats.replace(
        completed_return_sum=jnp.zeros_like(stats.completed_return_sum),
        completed_count=jnp.zeros_like(stats.completed_count),
        info_sums=jax.tree.map(jnp.zeros_like, stats.info_sums),
        step_sums=jax.tree.map(jnp.zeros_like, stats.step_sums),
        step_count=jnp.zeros_like(stats.step_count),
    )
