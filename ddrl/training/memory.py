"""Does a training run fit in memory? Answered from shapes alone, before anything is compiled.

A training run carries one `RunnerState` per seed (agents, replay buffers, environments)
from chunk to chunk, and the chunk program does not donate its input: while a chunk runs,
its input state and its output state are both alive. So a run needs at least twice its state,
whatever XLA's temporaries add. A run that cannot have that much is refused with what to
change, instead of being killed by the operating system after its earlier runs (a
`+experiment=scale` run with DDRL-ATS at B = 100 on the 2-core machine: 100 per-BS replay
buffers of 10,000 transitions per seed, a 14.2 GiB state for 3 seeds on a 23 GiB machine,
killed 13 minutes in, every finished row lost with it).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

PEAK_STATES = 2  # the chunk's input and output states, both alive while it runs
GIB = 2**30


class InsufficientMemoryError(MemoryError):
    """A training run whose state cannot fit in the memory this machine has."""


def state_bytes(trainer: Any, num_seeds: int) -> tuple[int, int]:
    """(bytes of the training state of `num_seeds` seeds, of which the replay buffers), from
    the shapes of `trainer.batched_init` (nothing is allocated or compiled)."""
    keys = jax.ShapeDtypeStruct((num_seeds, 2), np.uint32)
    shapes = jax.eval_shape(trainer.batched_init, keys)

    def total(tree: Any) -> int:
        return int(sum(np.prod(leaf.shape, dtype=np.int64) * np.dtype(leaf.dtype).itemsize
                       for leaf in jax.tree.leaves(tree)))  # fmt: skip

    return total(shapes), total(shapes.buffer)


def memory_to_check() -> tuple[int, str] | None:
    """`available_bytes()`, or None (no check) where it is unknown or `DDRL_SKIP_MEMORY_CHECK` is set."""
    return None if os.environ.get("DDRL_SKIP_MEMORY_CHECK") else available_bytes()


def available_bytes() -> tuple[int, str] | None:
    """(bytes free for a new run, where): the default device's unused memory on an accelerator,
    Linux's MemAvailable on the CPU; None where neither is known."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.device_kind} memory"
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        return None
    return None


def check_training_fits(trainer: Any, num_seeds: int, what: str, available: tuple[int, str] | None = None,
                        shards: int = 1) -> int:
    """Raise `InsufficientMemoryError` if `PEAK_STATES` training states of `num_seeds` seeds
    exceed `available` (default: `memory_to_check()`; None there means no check, and 0 is
    returned); else return the bytes the run needs. `shards`: devices the seeds are split
    over (each holds its share; `available` is one device's)."""
    available = memory_to_check() if available is None else available
    if available is None:
        return 0
    free, where = available
    state, buffers = state_bytes(trainer, num_seeds)
    need = PEAK_STATES * state // shards
    if need <= free:
        return need
    raise InsufficientMemoryError(
        f"{what}: the training state of {num_seeds} seeds is {state / GIB:.2f} GiB ({buffers / GIB:.2f} GiB of it "
        f"replay buffers) and a chunk holds it twice (its input and its output): {need / GIB:.2f} GiB"
        f"{f' per device over {shards} devices' if shards > 1 else ''}, but "
        f"{free / GIB:.2f} GiB of {where} are free. Train fewer seeds (budget.seeds), fewer environments per "
        f"seed (trainer.num_envs), with a smaller replay buffer (methods.<key>.buffer_size), or leave this run "
        f"out; DDRL_SKIP_MEMORY_CHECK=1 skips this check."
    )


def check_together(needs: dict[str, int], jobs: int, available: tuple[int, str]) -> None:
    """Runs that fit one by one may not fit `jobs` at a time (worker processes): refuse when
    the `jobs` largest of `needs` (bytes by run) exceed `available` together."""
    largest = sorted(needs.items(), key=lambda item: item[1], reverse=True)[:jobs]
    together = sum(need for _, need in largest)
    free, where = available
    if len(largest) < 2 or together <= free:
        return
    raise InsufficientMemoryError(
        f"{', '.join(name for name, _ in largest)}: each fits alone, but with jobs={jobs} they may train at once and "
        f"together need {together / GIB:.2f} GiB, while {free / GIB:.2f} GiB of {where} are free. Set jobs=1 "
        f"(or a smaller jobs), or make the largest smaller; DDRL_SKIP_MEMORY_CHECK=1 skips this check."
    )
