"""The host runner: a compiled training run chunk by chunk, with progress, loggers,
orbax checkpoints, resume and a NaN/inf guard on the losses; seed sharding over devices."""
from __future__ import annotations

import logging
import pathlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ddrl import interrupts
from ddrl.training.memory import check_training_fits
from ddrl.training.trainer import RunnerState, Trainer

class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def batch_sharding(size: int, axis_name: str = "seeds") -> jax.sharding.NamedSharding | None:
    """A sharding of a leading batch axis of `size` (seeds, or settings × seeds) over all
    local devices, or None: one device, or `size` does not divide evenly over them (then a
    warning says the run stays on one device)."""
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    if size % len(devices):
        warnings.warn(
            f"{size} runs do not divide evenly over {len(devices)} devices: "
            f"not sharding, everything runs on {devices[0]}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices), (axis_name,))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis_name))


def shard(tree: Any, sharding: jax.sharding.NamedSharding | None) -> Any:
    """Place every leaf's leading axis on `sharding` (no-op for None); jit then partitions
    the vmapped program over the devices, each running its share of the batch."""
    return tree if sharding is None else jax.device_put(tree, sharding)


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Keys of the seeds of a run: seed i uses fold_in(PRNGKey(seed), i)."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_seeds))


def run_training(
    trainer: Trainer,
    seed: int,
    num_seeds: int,
    *,
    hparams: dict | None = None,
    checkpoint_dir: pathlib.Path | str | None = None,
    resume: bool = False,
    logger: Any = None,
    progress: bool = True,
    desc: str = "",
    max_chunks: int | None = None,
    sharded: bool = True,
    checkpoint_every_s: float = 0.0,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[RunnerState, dict[str, np.ndarray]]:
    """Run `trainer` for `num_seeds` vmapped seeds, chunk by chunk, on the host.

    Returns the final state (leading axis: seeds) and the per-chunk metrics as arrays of
    shape (chunks, seeds). With `checkpoint_dir` the state is saved after a chunk once
    `checkpoint_every_s` seconds have passed since the last save (0: after every chunk) and
    always after the last one;
    `resume=True` continues from the latest checkpoint there and gives the same result
    as an uninterrupted run. `max_chunks` stops early (for tests of resume). A NaN or
    infinite loss raises `NonFiniteLossError` naming the metric and step; the checkpoint
    of the last good chunk stays on disk. `hparams` (arrays with a leading seed axis) are
    checked before anything is compiled, and so is memory: a run whose state cannot fit twice
    in what is free raises `InsufficientMemoryError` (`ddrl.training.memory`). With several
    local devices (`sharded=True`) the
    seed axis is sharded over them when `num_seeds` divides evenly (else a warning, and
    one device); the results are those of the unsharded run. `on_chunk(steps done, total
    steps)` is called after every chunk (per seed; a worker process reports its progress so).
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    from ddrl.provenance import CheckpointError

    trainer.check_hparams(hparams)
    sharding = batch_sharding(num_seeds) if sharded else None
    shards = 1 if sharding is None else sharding.num_devices
    check_training_fits(trainer, num_seeds, desc or trainer.agent.name, shards=shards)
    keys = shard(seed_keys(seed, num_seeds), sharding)
    if hparams is not None:
        hparams = shard({k: jnp.asarray(v) for k, v in hparams.items()}, sharding)
    run_chunk = trainer.batched_run_chunk
    runner = shard(trainer.batched_init(keys, hparams), sharding)
    history: dict[str, np.ndarray] = {}
    start_chunk = 0

    manager = None
    if checkpoint_dir is not None:
        logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
        checkpoint_dir = pathlib.Path(checkpoint_dir).absolute()
        manager = ocp.CheckpointManager(
            checkpoint_dir, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        )
        latest = manager.latest_step() if resume else None
        if latest is not None:
            metric_shapes = jax.eval_shape(run_chunk, runner, 0)[1]
            target = {
                "runner": runner,
                "history": {
                    k: np.zeros((trainer.num_chunks,) + v.shape, np.float64)
                    for k, v in metric_shapes.items()
                },
            }
            try:
                restored = manager.restore(latest, args=ocp.args.StandardRestore(target))
            except Exception as error:  # a corrupt or truncated checkpoint: one clear line
                raise CheckpointError(checkpoint_dir / str(latest), error) from error
            runner = shard(restored["runner"], sharding)
            history = {k: np.asarray(v) for k, v in restored["history"].items()}
            start_chunk = latest

    end_chunk = trainer.num_chunks if max_chunks is None else min(trainer.num_chunks, max_chunks)
    bar = tqdm(
        total=trainer.total_steps,
        initial=start_chunk * trainer.steps_per_chunk,
        desc=desc or trainer.agent.name,
        unit="step",
        unit_scale=True,
        disable=not progress,
    )
    last_save = time.perf_counter()
    try:
        for chunk in range(start_chunk, end_chunk):
            started = time.perf_counter()
            runner, metrics = run_chunk(runner, jnp.int32(chunk))
            runner = shard(runner, sharding)  # keep the seed axis split (a no-op if it is)
            metrics = jax.tree.map(np.asarray, jax.device_get(metrics))
            elapsed = time.perf_counter() - started
            step = (chunk + 1) * trainer.steps_per_chunk
            _check_finite(metrics, step)
            for k, v in metrics.items():
                if k not in history:
                    history[k] = np.full((trainer.num_chunks,) + v.shape, np.nan)
                history[k][chunk] = v
            stop = interrupts.requested()  # a Ctrl-C Python swallowed: save, then stop
            due = time.perf_counter() - last_save >= checkpoint_every_s or chunk + 1 == end_chunk or stop
            if manager is not None and due:
                last_save = time.perf_counter()
                manager.save(
                    chunk + 1,
                    args=ocp.args.StandardSave({"runner": runner, "history": history}),
                )
            if logger is not None:
                logger.log(step, {k: v for k, v in metrics.items() if k != "env_steps"})
            bar.update(trainer.steps_per_chunk)
            if on_chunk is not None:
                on_chunk(step, trainer.total_steps)
            bar.set_postfix(
                steps_per_s=f"{trainer.steps_per_chunk * num_seeds / elapsed:,.0f}",
                ret=_finite_mean(metrics["episode_return"]),
            )
            interrupts.raise_if_requested()
    finally:
        bar.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    return runner, {k: v[:end_chunk] for k, v in history.items()}


def _finite_mean(values: np.ndarray) -> str:
    finite = np.asarray(values)[np.isfinite(values)]
    return f"{finite.mean():.1f}" if finite.size else "–"


def _check_finite(metrics: dict[str, np.ndarray], step: int) -> None:
    for name, value in metrics.items():
        if "loss" in name and not np.all(np.isfinite(value)):
            bad = np.flatnonzero(~np.isfinite(np.atleast_1d(value)))
            raise NonFiniteLossError(
                f"metric {name!r} is not finite at env step {step} (seeds {bad.tolist()}); "
                "stopping, the last good checkpoint is kept"
            )
