"""The real AIGC request trace (MEC_MODEL.md §8) as arrays the MEC environment can read in jit.

The raw trace (`shared/data/genai/lora_request_trace.csv`, 26,823 Stable Diffusion serving
requests over 23 days) is reduced once, by `scripts/derive_genai_trace.py`, to the small
packaged table `ddrl/data/genai_trace.npz`; `ddrl/data/genai_trace.md` records how. This
module only reads that table (numpy, at set-up time) and turns it into jnp lookup tables.

Pipeline:

1. `load_genai_trace()` -> `GenaiTrace`: one numpy array per request field, timestamp order,
   arrival times in trace seconds since the first request.
2. Optionally `trace_window(trace, start_s, end_s)`: a sub-period, re-based to start at 0.
3. Choose a time compression `C` (trace seconds per simulated second), e.g. with
   `compression_for_utilisation` so that the mean offered load is a chosen fraction of the
   total edge capacity. A request at trace time `a` arrives in simulated slot
   `floor(a / (C * slot_length_s))`.
4. `make_trace_tables(...)` -> `TraceTables`: per (slot, BS) counts and per-task arrays;
   `cell_index(tables)` adds the flat lookups with which the MEC environment (`arrivals:
   trace`) jumps from one request to the next inside jit.

Units follow MEC_MODEL.md: Gcycles, GHz (= Gcycles/s), Mbit, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

TYPE_NAMES: tuple[str, ...] = ("TXT_2_IMG", "IMG_2_IMG", "INPAINTING")  # type_code 0, 1, 2
STATUS_NAMES: tuple[str, ...] = ("SUCCEED", "FAILED", "OTHER")  # status_code 0, 1, 2
STATUS_SUCCEED, STATUS_FAILED, STATUS_OTHER = 0, 1, 2

WorkloadKind = Literal["steps", "exec"]
Assignment = Literal["random", "round_robin", "group"]

DEFAULT_TRACE_PATH = Path(__file__).resolve().parent.parent / "data" / "genai_trace.npz"

# Assumed task sizes (the trace records none). They are the midpoints of the `ladts`
# scenario's ranges (MEC_MODEL.md §7: D ~ U[2, 5] Mbit, R ~ U(0.6, 1) Mbit), so trace runs
# stay comparable with it; the result is charged per generated image.
DEFAULT_INPUT_MBIT_BY_TYPE: tuple[float, float, float] = (3.5, 3.5, 3.5)
DEFAULT_RESULT_MBIT_PER_IMAGE: float = 0.8


@dataclass(frozen=True)
class GenaiTrace:
    """The derived trace: one entry per request, in arrival order.

    `arrival_s` is in trace seconds since the start of the (possibly windowed) trace, and
    every arrival lies in `[0, duration_s)`. `request_id` is the request's row index in the
    full derived table, so a window keeps stable identities (used for BS assignment).
    Failed and pending requests are kept: they still arrived and took a scheduling decision.
    """

    arrival_s: np.ndarray  # float64 [R], trace seconds
    duration_s: float  # length of the covered period (trace seconds)
    request_id: np.ndarray  # int32 [R]
    type_code: np.ndarray  # int8 [R], index into TYPE_NAMES
    status_code: np.ndarray  # int8 [R], index into STATUS_NAMES
    steps: np.ndarray  # int16 [R], denoising steps (imputed where missing)
    images: np.ndarray  # int8 [R], images per prompt (imputed where missing)
    exec_time_s: np.ndarray  # float32 [R], as recorded (0 for pending requests)
    workload_steps_gcycles: np.ndarray  # float32 [R], step_cost * steps * images (default)
    workload_exec_gcycles: np.ndarray  # float32 [R], exec time * reference capacity
    steps_imputed: np.ndarray  # bool [R], steps and images were missing
    exec_imputed: np.ndarray  # bool [R], exec time was 0 (not run); W_exec imputed
    group_code: np.ndarray  # int16 [R], numeric part of the anonymised groupId
    step_cost_gcycles: float  # c_ref, Gcycles per denoising step per image
    reference_capacity_ghz: float  # f_ref, GHz, used for workload_exec_gcycles

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def failed(self) -> np.ndarray:
        return self.status_code == STATUS_FAILED

    def workload(self, kind: WorkloadKind = "steps") -> np.ndarray:
        """Per-request workload in Gcycles: `"steps"` (default) or `"exec"`."""
        if kind == "steps":
            return self.workload_steps_gcycles
        if kind == "exec":
            return self.workload_exec_gcycles
        raise ValueError(f"workload must be 'steps' or 'exec', got {kind!r}")


def load_genai_trace(path: str | Path | None = None) -> GenaiTrace:
    """Read the derived table (default: the packaged `ddrl/data/genai_trace.npz`)."""
    path = DEFAULT_TRACE_PATH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"derived GenAI trace not found at {path}; regenerate it from the raw CSV with "
            "`python scripts/derive_genai_trace.py` (see ddrl/data/genai_trace.md)"
        )
    with np.load(path, allow_pickle=False) as z:
        arrival = z["arrival_s"].astype(np.float64)
        return GenaiTrace(
            arrival_s=arrival,
            duration_s=float(z["duration_s"]),
            request_id=np.arange(arrival.shape[0], dtype=np.int32),
            type_code=z["type_code"],
            status_code=z["status_code"],
            steps=z["steps"],
            images=z["images"],
            exec_time_s=z["exec_time_s"],
            workload_steps_gcycles=z["workload_steps_gcycles"],
            workload_exec_gcycles=z["workload_exec_gcycles"],
            steps_imputed=z["steps_imputed"],
            exec_imputed=z["exec_imputed"],
            group_code=z["group_code"],
            step_cost_gcycles=float(z["step_cost_gcycles"]),
            reference_capacity_ghz=float(z["reference_capacity_ghz"]),
        )


def trace_window(trace: GenaiTrace, start_s: float, end_s: float) -> GenaiTrace:
    """The requests with `start_s <= arrival < end_s`, arrival times re-based to `start_s`.

    Useful because the trace is far from stationary (the first four days carry ~1/20 of the
    later daily volume; see genai_trace.md).
    """
    if not 0 <= start_s < min(end_s, trace.duration_s):
        raise ValueError(
            f"need 0 <= start_s < end_s and start_s < duration_s ({trace.duration_s:g}), "
            f"got {start_s:g}, {end_s:g}"
        )
    keep = (trace.arrival_s >= start_s) & (trace.arrival_s < end_s)
    window = select_requests(trace, keep)
    return replace(
        window, arrival_s=window.arrival_s - start_s, duration_s=min(end_s, trace.duration_s) - start_s
    )


_PER_REQUEST = (
    "arrival_s", "request_id", "type_code", "status_code", "steps", "images", "exec_time_s",
    "workload_steps_gcycles", "workload_exec_gcycles", "steps_imputed", "exec_imputed", "group_code",
)  # fmt: skip


def select_requests(trace: GenaiTrace, keep: np.ndarray) -> GenaiTrace:
    """The requests where `keep` is true, same period and times (e.g. only SUCCEED ones)."""
    return replace(trace, **{name: getattr(trace, name)[keep] for name in _PER_REQUEST})


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


def num_slots_for(trace: GenaiTrace, slot_length_s: float, compression: float) -> int:
    """Slots needed to cover the trace: `ceil(duration_s / (compression * slot_length_s))`."""
    _check_positive(slot_length_s=slot_length_s, compression=compression)
    return max(1, int(np.ceil(trace.duration_s / (compression * slot_length_s))))


def arrival_slots(trace: GenaiTrace, slot_length_s: float, compression: float) -> np.ndarray:
    """Slot of each request: `floor(arrival_s / (compression * slot_length_s))` (int64)."""
    _check_positive(slot_length_s=slot_length_s, compression=compression)
    return np.floor(trace.arrival_s / (compression * slot_length_s)).astype(np.int64)


def slot_arrival_counts(trace: GenaiTrace, slot_length_s: float, compression: float) -> np.ndarray:
    """Requests arriving in each simulated slot (int64, length `num_slots_for(...)`).

    `compression` is trace seconds per simulated second: a request at trace time `a` falls
    in slot `floor(a / (compression * slot_length_s))`.
    """
    slots = arrival_slots(trace, slot_length_s, compression)
    return np.bincount(slots, minlength=num_slots_for(trace, slot_length_s, compression))


def compression_for_utilisation(
    trace: GenaiTrace,
    total_capacity_gcycles_per_s: float,
    utilisation: float,
    workload: WorkloadKind = "steps",
) -> float:
    """Compression `C` at which the mean offered load is `utilisation` × total capacity.

    Compressed by `C`, the trace's `duration_s` lasts `duration_s / C` simulated seconds, so
    its mean offered load is `C · ΣW / duration_s` Gcycles/s. Setting that equal to
    `utilisation · F` (F = total capacity in GHz) gives

        C = utilisation · F · duration_s / ΣW.

    This is a whole-trace (or whole-window) average: short windows vary a lot around it.
    """
    _check_positive(
        total_capacity_gcycles_per_s=total_capacity_gcycles_per_s, utilisation=utilisation
    )
    total_workload = float(np.sum(trace.workload(workload), dtype=np.float64))
    if total_workload <= 0:
        raise ValueError("trace has no workload")
    return utilisation * total_capacity_gcycles_per_s * trace.duration_s / total_workload


def assign_base_stations(
    trace: GenaiTrace, num_bs: int, assignment: Assignment = "random", seed: int = 0
) -> np.ndarray:
    """Base station of each request (int64), a pure function of its identity and `seed`.

    - `"random"`: uniform, independently per request (`request_id`): a random thinning of
      the real arrival process, so every BS sees the trace's burstiness, scaled down.
    - `"round_robin"`: `request_id % num_bs`, the most even split.
    - `"group"`: uniform per anonymised user group (`groupId`), so one group's requests all
      come from one cell and a busy group's bursts hit one BS.
    """
    if num_bs < 1:
        raise ValueError(f"num_bs must be >= 1, got {num_bs}")
    if assignment == "round_robin":
        return trace.request_id.astype(np.int64) % num_bs
    if assignment == "random":
        keys = trace.request_id
    elif assignment == "group":
        keys = trace.group_code
    else:
        raise ValueError(f"assignment must be 'random', 'round_robin' or 'group', got {assignment!r}")
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    # One uniform per possible key; a prefix of the stream is the same whatever its length,
    # so a key keeps its BS in any window of the trace.
    uniforms = np.random.default_rng(seed).random(int(keys.max()) + 1)
    return np.minimum((uniforms[keys] * num_bs).astype(np.int64), num_bs - 1)


@struct.dataclass
class TraceTables:
    """Per-slot, per-BS arrivals from the trace, and the attributes of every kept task.

    Indexing: the tasks of slot `s` at BS `b` are entries
    `first_request[s, b] + n` for `n = 0 .. counts[s, b] - 1` of the per-task arrays, which
    are ordered by (slot, BS, arrival time). `first_request` is the exclusive cumulative sum
    of `counts` in row-major (slot, BS) order, so `counts.sum() == workload.shape[0]`.
    Requests beyond `max_tasks_per_bs` in one (slot, BS) are dropped (the latest arrivals);
    `num_clipped` says how many. Failed requests are kept and flagged in `failed`.
    """

    counts: jax.Array  # int32 [S, B], tasks of slot s at BS b (after clipping)
    first_request: jax.Array  # int32 [S, B], index of the first of them in the task arrays
    workload: jax.Array  # float32 [M], Gcycles
    input_mbit: jax.Array  # float32 [M], D (assumed per type; the trace has no sizes)
    result_mbit: jax.Array  # float32 [M], R = images × result size per image (assumed)
    steps: jax.Array  # int32 [M], denoising steps q
    images: jax.Array  # int32 [M], images per prompt
    type_code: jax.Array  # int32 [M], index into TYPE_NAMES
    failed: jax.Array  # bool [M], the request failed in production
    request_id: jax.Array  # int32 [M], row in the derived trace table
    slot_length_s: float = struct.field(pytree_node=False, default=1.0)
    compression: float = struct.field(pytree_node=False, default=1.0)
    max_tasks_per_bs: int = struct.field(pytree_node=False, default=1)
    num_clipped: int = struct.field(pytree_node=False, default=0)

    @property
    def num_slots(self) -> int:
        return int(self.counts.shape[0])

    @property
    def num_bs(self) -> int:
        return int(self.counts.shape[1])


def make_trace_tables(
    trace: GenaiTrace,
    slot_length_s: float,
    compression: float,
    num_bs: int,
    max_tasks_per_bs: int,
    *,
    workload: WorkloadKind = "steps",
    assignment: Assignment = "random",
    seed: int = 0,
    input_mbit_by_type: tuple[float, float, float] = DEFAULT_INPUT_MBIT_BY_TYPE,
    result_mbit_per_image: float = DEFAULT_RESULT_MBIT_PER_IMAGE,
) -> TraceTables:
    """Slot the trace (compressed by `compression`), split it over `num_bs` BSs, clip, index.

    Slots: `floor(arrival_s / (compression * slot_length_s))`, `num_slots_for(...)` of them.
    BSs: `assign_base_stations(trace, num_bs, assignment, seed)`. At most `max_tasks_per_bs`
    tasks per (slot, BS) are kept, earliest first; see `TraceTables` for the indexing.
    """
    if max_tasks_per_bs < 1:
        raise ValueError(f"max_tasks_per_bs must be >= 1, got {max_tasks_per_bs}")
    if trace.num_requests == 0:
        raise ValueError("the trace (window) holds no requests")
    num_slots = num_slots_for(trace, slot_length_s, compression)
    slot = arrival_slots(trace, slot_length_s, compression)
    bs = assign_base_stations(trace, num_bs, assignment, seed)

    cell = slot * num_bs + bs  # row-major (slot, BS) cell of each request
    order = np.argsort(cell, kind="stable")  # stable: arrival order kept inside a cell
    raw_counts = np.bincount(cell, minlength=num_slots * num_bs)
    cell_start = np.concatenate([[0], np.cumsum(raw_counts)[:-1]])
    rank_in_cell = np.arange(order.size) - cell_start[cell[order]]
    kept = order[rank_in_cell < max_tasks_per_bs]  # request indices, (slot, BS, arrival) order

    counts = np.minimum(raw_counts, max_tasks_per_bs)
    first_request = np.concatenate([[0], np.cumsum(counts)[:-1]])
    input_by_type = np.asarray(input_mbit_by_type, dtype=np.float32)
    return TraceTables(
        counts=jnp.asarray(counts.reshape(num_slots, num_bs), dtype=jnp.int32),
        first_request=jnp.asarray(first_request.reshape(num_slots, num_bs), dtype=jnp.int32),
        workload=jnp.asarray(trace.workload(workload)[kept], dtype=jnp.float32),
        input_mbit=jnp.asarray(input_by_type[trace.type_code[kept]], dtype=jnp.float32),
        result_mbit=jnp.asarray(
            result_mbit_per_image * trace.images[kept].astype(np.float32), dtype=jnp.float32
        ),
        steps=jnp.asarray(trace.steps[kept], dtype=jnp.int32),
        images=jnp.asarray(trace.images[kept], dtype=jnp.int32),
        type_code=jnp.asarray(trace.type_code[kept], dtype=jnp.int32),
        failed=jnp.asarray(trace.failed[kept], dtype=jnp.bool_),
        request_id=jnp.asarray(trace.request_id[kept], dtype=jnp.int32),
        slot_length_s=float(slot_length_s),
        compression=float(compression),
        max_tasks_per_bs=int(max_tasks_per_bs),
        num_clipped=int(trace.num_requests - kept.size),
    )


@struct.dataclass
class CellIndex:
    """Lookups over the flattened (slot, BS) cells `c = slot · B + b` of `TraceTables`.

    Entry `end = S·B` is a sentinel: no request (count 0), and `next_nonempty` points to it
    when no later cell holds a request.
    """

    counts: jax.Array  # int32 [S·B + 1], requests in cell c
    first: jax.Array  # int32 [S·B + 1], index of cell c's first request in the task arrays
    next_nonempty: jax.Array  # int32 [S·B + 1], smallest c' >= c with requests, else `end`
    end: int = struct.field(pytree_node=False, default=0)


def cell_index(tables: TraceTables) -> CellIndex:
    """The flat lookups the environment uses to jump to the next request in O(1)."""
    counts = np.asarray(tables.counts).reshape(-1)
    end = counts.size
    cells = np.where(counts > 0, np.arange(end), end)
    next_nonempty = np.minimum.accumulate(cells[::-1])[::-1]
    return CellIndex(
        counts=jnp.asarray(np.append(counts, 0), jnp.int32),
        first=jnp.asarray(np.append(np.asarray(tables.first_request).reshape(-1), 0), jnp.int32),
        next_nonempty=jnp.asarray(np.append(next_nonempty, end), jnp.int32),
        end=int(end),
    )
