"""`train_and_evaluate`: the spine every experiment runner shares for one learned method.

Build the trainer, open the method's logger, train the seeds chunk by chunk (checkpoints in
`run_dir/checkpoints/<name>`, resume), evaluate the trained agents, log the summary, save
the per-chunk history; the runner turns the result into its table row.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddrl.training import RunnerState, Trainer, make_trainer, run_training


@dataclasses.dataclass
class TrainedMethod:
    """One method's training run: its trainer, final state (seed axis first), per-chunk history."""

    name: str
    trainer: Trainer
    final: RunnerState
    history: dict[str, np.ndarray]  # metric -> (chunks, seeds)
    train_wall_s: float
    resumed: bool  # trained (in part) by an earlier process: train_wall_s is not the whole
    num_seeds: int

    @property
    def env_steps_per_s(self) -> float:
        """Environment steps per second over all seeds."""
        return self.trainer.total_steps * self.num_seeds / self.train_wall_s


def train_and_evaluate(
    cfg: DictConfig,
    method: Any,
    env: Any,
    env_params: Any,
    train_steps: int,
    run_dir: pathlib.Path,
    name: str,
    evaluate: Callable[[TrainedMethod], dict[str, Any]],
    *,
    num_envs: int | None = None,
    eval_episodes: int = 0,
    progress: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[TrainedMethod, dict[str, Any]]:
    """Train `method` (an algo config) for `cfg.budget.seeds` seeds, then `evaluate` it.

    `evaluate(trained)` returns the summary logged for the method (and returned beside it).
    `eval_episodes > 0` adds the trainer's own greedy evaluation at the end of every chunk;
    `progress=False` hides the progress bar (a worker process training beside others), which
    reports its chunks to `on_chunk(steps done, total steps)` instead.
    """
    from ddrl.log import make_logger

    run_dir = pathlib.Path(run_dir)
    num_seeds = int(cfg.budget.seeds)
    trainer = make_trainer(method, env, env_params, train_steps, num_envs=num_envs,
                           num_chunks=int(cfg.budget.get("num_chunks") or cfg.trainer.num_chunks),
                           eval_episodes=eval_episodes)  # fmt: skip
    checkpoints = run_dir / "checkpoints" / name
    resumed = bool(cfg.resume) and checkpoints.exists()
    config = OmegaConf.to_container(cfg, resolve=True)
    logger = make_logger(cfg.logger, run_dir / name, config, cfg.experiment_name, name, num_seeds)
    started = time.perf_counter()
    try:
        final, history = run_training(
            trainer, int(cfg.seed), num_seeds, checkpoint_dir=checkpoints, resume=bool(cfg.resume),
            logger=logger, desc=name, progress=progress, checkpoint_every_s=float(cfg.trainer.checkpoint_every_s),
            on_chunk=on_chunk,
        )  # fmt: skip
        trained = TrainedMethod(name, trainer, final, history, time.perf_counter() - started, resumed, num_seeds)
        summary = evaluate(trained)
        logger.summary(summary)
    finally:
        logger.close()
    np.savez(run_dir / f"{name}_history.npz", **history)
    return trained, summary
