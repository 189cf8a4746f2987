"""The per-slot clairvoyant optimum as a MILP (MEC_MODEL.md §9 "milp"): a yardstick.

All tasks of ONE slot are known in advance, in the published decision order (BS outer, task
index inner; here simply the order of the arrays). Given the queues and transmitter backlogs
at slot start, choose for every task k a set of edge servers and fractions x[k, i] that
minimise the slot's total make-span Σ_k T_k under the `clean` model of §4 (no quirks).

Model (k: task in decision order, i, j: edge servers, b_k: BS of task k)
-------------------------------------------------------------------------
Data: D_k (Mbit), W_k (Gcycles), R_k (Mbit, 0 in the density model); Q_i (Gcycles) and
TX_b (s) at slot start; capacity f_i (GHz, any capacity factor already applied); rate r_i.

    cost     c[k, i] = 1[i≠b_k]·D_k/r_i + W_k/f_i + R_k/r_i
    waiting  w[k, i] = 1[i≠b_k]·TX_{b_k}(k) + (Q_i + Σ_{k'<k} x[k', i]·W_{k'}) / f_i
    TX_b(k)  = TX_b + Σ_{k'<k, b_{k'}=b} Σ_{j≠b} x[k', j]·D_{k'}/r_j

so every waiting time is affine in the fractions of earlier tasks: w = w0 + A·x.

Variables: x[k, i] ∈ [0, 1] (fractions), y[k, i] ∈ {0, 1} (part (k, i) may be used),
T[k] ≥ T̲_k (make-spans), and, only with `allowed_sets`, z[k, s] ∈ {0, 1} (set s chosen).

    minimise   Σ_k T[k]
    subject to Σ_i x[k, i] = 1                                          (whole task)
               x[k, i] ≤ y[k, i]                                        (only used parts)
               Σ_i y[k, i] ≥ 1        (= 1 with single_only)
               T[k] ≥ w[k, i] + x[k, i]·c[k, i] − M[k, i]·(1 − y[k, i])  (finish of each part)
               T[k] ≥ w0[k, i]·y[k, i] + x[k, i]·c[k, i]                 (valid cut)
               Σ_s z[k, s] = 1,  y[k, i] ≤ Σ_{s ∋ i} z[k, s]              (with allowed_sets)

A used part (x > 0) forces y = 1 and so counts in T[k], as the clean make-span
max_{i: x_i > 0}(w_i + x_i c_i) does; a part with x = 0 may keep y = 1, which only raises
T[k], so at the optimum it has y = 0 and does not count: the optimum is the clean model's.

Bounds on T and the big-M. When y[k, i] = 0 then x[k, i] = 0 and the finish constraint
reads T[k] ≥ w[k, i] − M[k, i]; it must never bind, so M[k, i] ≥ max w[k, i] − min T[k]:
  * T̲_k = the water-filled (optimal cwa) make-span of task k alone over all servers with
    slot-start waits w0[k, :] (waits only grow within a slot and the make-span is
    monotone in them); it is the lower bound of the variable T[k];
  * T̄_k = U − Σ_{k'≠k} T̲_k', with U the total of the myopic schedule (`myopic_schedule`,
    restricted to the same action space): every schedule at least as good as the myopic
    one, the optimum included, has T_k ≤ T̄_k; it is the upper bound of T[k];
  * w̄[k, i] = transmitter part (every earlier task of BS b_k wholly on its slowest link)
    + queue part min(Σ_{k'<k} W_k'/f_i + Q_i/f_i,  max(Q_i/f_i, max_{k'<k} T̄_k')): the last
    earlier part on i ends after all the load queued on i before it, and by T̄ of its task;
  * M[k, i] = max(w̄[k, i] − T̲_k, 0).
Also returned: HiGHS's dual bound (a certified lower bound of the optimal total).

Cost of solving. The big-M relaxation is weak (the LP forgets most of the queueing
between tasks), so the exact optimum is cheap only for small slots. On the 2-core dev
machine (amcoedge-like, B = 5): K = 10 solves to optimality in about 0.5-3.5 s; K = 20 and
K = 40 stop at a 60 s limit with feasible schedules and gaps of about 15-35 % (an
amcoedge slot has about 75 tasks). Read `status`, `mip_gap` and `lower_bound` before
calling a number "optimal"; where the gap is open, a claim can only be made against the
interval [lower_bound, total_make_span].

Not modelled: deadlines. The objective is the raw make-span; the authors' failure cap
min(T, τ) and the failure penalty are ignored (the env's info["raw_delay"] is comparable,
info["make_span"] only where no task fails). Queues do not drain within the slot (as in §4).

`allowed_sets` restricts each task to an action space: the set of USED servers must lie
inside one allowed set. With the clean cwa allocation choosing S means using the best
subset of S, so this is exactly "the task picks an action of that space".

`slot_make_spans_of_schedule` replays any schedule (fractions per task) through the same
clean model in plain numpy, so that any scheduler's slot can be put beside the MILP.
Everything here is numpy / scipy only (HiGHS through `scipy.optimize.milp`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

__all__ = [
    "SlotTasks",
    "SlotSystem",
    "SlotSolution",
    "solve_slot",
    "slot_make_spans_of_schedule",
    "water_fill",
    "water_fill_split",
    "myopic_schedule",
    "slot_costs",
]


def _vector(value, dtype=float) -> np.ndarray:
    array = np.array(value, dtype=dtype).reshape(-1)
    return array


@dataclass(frozen=True)
class SlotTasks:
    """The tasks of one slot, in decision order (BS outer, task index inner)."""

    bs: np.ndarray  # (K,) int, base station b_k of each task
    data_size: np.ndarray  # (K,) D_k, Mbit
    workload: np.ndarray  # (K,) W_k, Gcycles
    result_size: np.ndarray | None = None  # (K,) R_k, Mbit (None: zeros, the density model)

    def __post_init__(self):
        bs = _vector(self.bs, np.int64)
        num_tasks = bs.shape[0]
        result = np.zeros(num_tasks) if self.result_size is None else _vector(self.result_size)
        object.__setattr__(self, "bs", bs)
        object.__setattr__(self, "data_size", _vector(self.data_size))
        object.__setattr__(self, "workload", _vector(self.workload))
        object.__setattr__(self, "result_size", result)
        for name in ("data_size", "workload", "result_size"):
            value = getattr(self, name)
            if value.shape != (num_tasks,):
                raise ValueError(f"SlotTasks.{name}: shape {value.shape}, expected ({num_tasks},)")
            if np.any(value < 0) or not np.all(np.isfinite(value)):
                raise ValueError(f"SlotTasks.{name}: must be finite and >= 0")

    @property
    def num_tasks(self) -> int:
        return int(self.bs.shape[0])


@dataclass(frozen=True)
class SlotSystem:
    """The edge servers at slot start."""

    queue: np.ndarray  # (B,) Q_i, Gcycles waiting at ES i
    tx_busy: np.ndarray  # (B,) TX_b, seconds BS b's transmitter is busy
    capacity: np.ndarray  # (B,) f_i, GHz (capacity factor already applied)
    rate: np.ndarray  # (B,) r_i, Mbit/s to ES i

    def __post_init__(self):
        for name in ("queue", "tx_busy", "capacity", "rate"):
            object.__setattr__(self, name, _vector(getattr(self, name)))
        num_servers = self.capacity.shape[0]
        for name in ("queue", "tx_busy", "rate"):
            if getattr(self, name).shape != (num_servers,):
                raise ValueError(f"SlotSystem.{name}: shape {getattr(self, name).shape}, expected ({num_servers},)")
        if np.any(self.capacity <= 0) or np.any(self.rate <= 0):
            raise ValueError("SlotSystem: capacity and rate must be > 0")
        if np.any(self.queue < 0) or np.any(self.tx_busy < 0):
            raise ValueError("SlotSystem: queue and tx_busy must be >= 0")

    @property
    def num_servers(self) -> int:
        return int(self.capacity.shape[0])


@dataclass(frozen=True)
class SlotSolution:
    """The MILP's schedule for one slot."""

    total_make_span: float  # Σ_k T_k (the solver's objective)
    make_spans: np.ndarray  # (K,) T_k
    fractions: np.ndarray  # (K, B) x[k, i]; zero outside the selected set, rows sum to 1
    selected: np.ndarray  # (K, B) bool, the used servers y[k, i]
    status: str  # "optimal" or "time_limit" (feasible, maybe not optimal)
    mip_gap: float  # relative gap reported by HiGHS
    lower_bound: float  # HiGHS's dual bound on the optimal total (= total when optimal)
    solve_time_s: float  # wall-clock time of the solver call


def _check(tasks: SlotTasks, system: SlotSystem) -> None:
    if tasks.num_tasks and (tasks.bs.min() < 0 or tasks.bs.max() >= system.num_servers):
        raise ValueError(f"SlotTasks.bs: every BS must be in [0, {system.num_servers})")


def slot_costs(tasks: SlotTasks, system: SlotSystem) -> np.ndarray:
    """c[k, i] = 1[i≠b_k]·D_k/r_i + W_k/f_i + R_k/r_i, shape (K, B)."""
    remote = np.arange(system.num_servers)[None, :] != tasks.bs[:, None]
    return (
        np.where(remote, tasks.data_size[:, None] / system.rate[None, :], 0.0)
        + tasks.workload[:, None] / system.capacity[None, :]
        + tasks.result_size[:, None] / system.rate[None, :]
    )


def water_fill(wait: np.ndarray, cost: np.ndarray) -> float:
    """Optimal min-max make-span of one task over all servers given (wait, cost) (clean cwa).

    Over the used set U the common finish time is T = (1 + Σ_U w/c) / Σ_U 1/c; growing U
    along increasing w, the optimum is the smallest such prefix value (MEC_MODEL.md §4).
    """
    order = np.argsort(wait, kind="stable")
    w, c = np.asarray(wait, float)[order], np.asarray(cost, float)[order]
    prefix = (1.0 + np.cumsum(w / c)) / np.cumsum(1.0 / c)
    return float(prefix.min())


def _wait_model(tasks: SlotTasks, system: SlotSystem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """w = w0 + (A_queue + A_tx)·x: slot-start waits w0 (K, B) and the effect of earlier
    fractions, A[k, i, k', j] (K, B, K, B), zero for k' >= k, split into the processing
    queue and the transmitter parts."""
    K, B = tasks.num_tasks, system.num_servers
    servers = np.arange(B)
    remote = servers[None, :] != tasks.bs[:, None]  # (K, B)
    w0 = np.where(remote, system.tx_busy[tasks.bs][:, None], 0.0) + (system.queue / system.capacity)[None, :]
    a_queue, a_tx = np.zeros((K, B, K, B)), np.zeros((K, B, K, B))
    # sent data of earlier task k' on remote server j: D_k'/r_j seconds of BS b_k' transmitter
    sent = np.where(remote, tasks.data_size[:, None] / system.rate[None, :], 0.0)  # (K', B)
    for k in range(K):
        for kp in range(k):
            # processing queue: part (k', i) runs before part (k, i) on server i
            a_queue[k, servers, kp, servers] = tasks.workload[kp] / system.capacity
            # transmitter: remote parts of k wait for remote parts of earlier tasks at the same BS
            if tasks.bs[kp] == tasks.bs[k]:
                a_tx[k, remote[k], kp, :] = sent[kp][None, :]
    return w0, a_queue, a_tx


def _allowed_array(allowed_sets, K: int, B: int) -> np.ndarray | None:
    if allowed_sets is None:
        return None
    allowed = np.asarray(allowed_sets, bool)
    if allowed.ndim == 2:
        allowed = np.broadcast_to(allowed, (K,) + allowed.shape)
    if allowed.ndim != 3 or allowed.shape[0] != K or allowed.shape[2] != B:
        raise ValueError(f"allowed_sets: shape {allowed.shape}, expected (S, {B}) or ({K}, S, {B})")
    if not np.all(allowed.any(axis=2)):
        raise ValueError("allowed_sets: every allowed set must be non-empty")
    return allowed


def _big_m(tasks, system, w0, a_queue, a_tx, lower, upper) -> np.ndarray:
    """M[k, i] = w̄[k, i] − T̲_k, w̄ an upper bound of w[k, i] over schedules with T ≤ T̄.

    Transmitter part: every earlier task of the same BS wholly on its slowest link. Queue
    part: the smaller of (a) every earlier task wholly on i, and (b) the finish bound of the
    last earlier part on i, max(Q_i/f_i, max_{k'<k} T̄_k'): that part ends after all the load
    queued on i before it, and it ends by T_k' ≤ T̄_k'.
    """
    queue_start = (system.queue / system.capacity)[None, :]
    tx_max = (w0 - queue_start) + a_tx.max(axis=3).sum(axis=2)
    queue_all = queue_start + a_queue.sum(axis=(2, 3))  # Σ_{k'<k} W_k'/f_i + Q_i/f_i
    earlier_upper = np.concatenate([[0.0], np.maximum.accumulate(upper)[:-1]])  # max_{k'<k} T̄
    queue_max = np.minimum(queue_all, np.maximum(queue_start, earlier_upper[:, None]))
    return np.maximum(tx_max + queue_max - lower[:, None], 0.0)


def _candidate_sets(allowed, single_only: bool, K: int, B: int) -> np.ndarray:
    """Sets (K, S, B) a task may choose from, for the heuristic that bounds the MILP."""
    if not single_only:
        return np.ones((K, 1, B), bool) if allowed is None else allowed
    singles = np.broadcast_to(np.eye(B, dtype=bool), (K, B, B))
    if allowed is None:
        return singles
    permitted = allowed.any(axis=1)  # (K, B): servers inside some allowed set
    return singles & permitted[:, :, None]  # singleton s kept where server s is permitted


def water_fill_split(wait: np.ndarray, cost: np.ndarray, selected: np.ndarray) -> tuple[float, np.ndarray]:
    """Optimal min-max split of one task over `selected`: (make-span, fractions)."""
    wait, cost, selected = np.asarray(wait, float), np.asarray(cost, float), np.asarray(selected, bool)
    finish = water_fill(wait[selected], cost[selected])
    fractions = np.where(selected, np.maximum(finish - wait, 0.0) / cost, 0.0)
    return finish, fractions / fractions.sum()


def myopic_schedule(tasks: SlotTasks, system: SlotSystem, candidate_sets: np.ndarray | None = None) -> np.ndarray:
    """The myopic full-information schedule (§9 optimal_myopic): task by task, the set and
    clean cwa split with the smallest make-span given the earlier decisions. Fractions (K, B).

    `candidate_sets`: bool (K, S, B) or (S, B) (default: all servers, i.e. the subset space,
    where the best set is the water-filling over every server).
    """
    _check(tasks, system)
    K, B = tasks.num_tasks, system.num_servers
    sets = np.ones((K, 1, B), bool) if candidate_sets is None else np.asarray(candidate_sets, bool)
    if sets.ndim == 2:
        sets = np.broadcast_to(sets, (K,) + sets.shape)
    servers = np.arange(B)
    cost = slot_costs(tasks, system)
    slot_load, tx_busy = np.zeros(B), system.tx_busy.copy()
    fractions = np.zeros((K, B))
    for k in range(K):
        b = tasks.bs[k]
        remote = servers != b
        wait = np.where(remote, tx_busy[b], 0.0) + (system.queue + slot_load) / system.capacity
        options = [water_fill_split(wait, cost[k], mask) for mask in sets[k] if mask.any()]
        fractions[k] = min(options, key=lambda option: option[0])[1]
        slot_load = slot_load + fractions[k] * tasks.workload[k]
        tx_busy[b] += np.sum(np.where(remote, fractions[k] * tasks.data_size[k] / system.rate, 0.0))
    return fractions


def solve_slot(
    tasks: SlotTasks,
    system: SlotSystem,
    time_limit_s: float = 60.0,
    single_only: bool = False,
    allowed_sets: np.ndarray | None = None,
    mip_rel_gap: float = 1e-6,
) -> SlotSolution:
    """Minimise the slot's total raw make-span Σ_k T_k (module docstring for the model).

    `single_only`: each task on exactly one server (the `single` action space).
    `allowed_sets`: bool (S, B) shared by all tasks, or (K, S, B) per task (e.g. the `pair`
    sets {b_k, j}, or `env.actions.all_masks(b_k)`): the used servers must lie in one of them.
    Raises RuntimeError if HiGHS fails, or stops at the time limit with no feasible schedule.
    """
    _check(tasks, system)
    K, B = tasks.num_tasks, system.num_servers
    if K == 0:
        empty = np.zeros((0, B))
        return SlotSolution(0.0, np.zeros(0), empty, empty.astype(bool), "optimal", 0.0, 0.0, 0.0)
    allowed = _allowed_array(allowed_sets, K, B)
    S = 0 if allowed is None else allowed.shape[1]

    cost = slot_costs(tasks, system)
    w0, a_queue, a_tx = _wait_model(tasks, system)
    A = a_queue + a_tx
    lower = np.array([water_fill(w0[k], cost[k]) for k in range(K)])  # T̲_k
    # T̄_k: a heuristic schedule's total U bounds every optimal T_k by U − Σ_{k'≠k} T̲_k'
    heuristic = myopic_schedule(tasks, system, _candidate_sets(allowed, single_only, K, B))
    heuristic_total = float(slot_make_spans_of_schedule(tasks, system, heuristic).sum())
    upper = heuristic_total - (lower.sum() - lower) + 1e-9 * (1.0 + heuristic_total)
    big_m = _big_m(tasks, system, w0, a_queue, a_tx, lower, upper)
    # variable layout: x (K·B) | y (K·B) | T (K) | z (K·S)
    n_x, n_y, n_t = K * B, K * B, K
    ix = lambda k, i: k * B + i  # noqa: E731
    iy = lambda k, i: n_x + k * B + i  # noqa: E731
    it = lambda k: n_x + n_y + k  # noqa: E731
    iz = lambda k, s: n_x + n_y + n_t + k * S + s  # noqa: E731
    num_vars = n_x + n_y + n_t + K * S

    rows, cols, vals, lo, hi = [], [], [], [], []
    row = 0

    def add(entries, lower_bound, upper_bound):
        nonlocal row
        for col, val in entries:
            rows.append(row)
            cols.append(col)
            vals.append(val)
        lo.append(lower_bound)
        hi.append(upper_bound)
        row += 1

    for k in range(K):
        add([(ix(k, i), 1.0) for i in range(B)], 1.0, 1.0)  # Σ_i x = 1
        add([(iy(k, i), 1.0) for i in range(B)], 1.0, 1.0 if single_only else np.inf)  # Σ_i y ≥ 1
        for i in range(B):
            add([(ix(k, i), 1.0), (iy(k, i), -1.0)], -np.inf, 0.0)  # x ≤ y
            # T_k − x c − A x − M y ≥ w0 − M
            entries = [(it(k), 1.0), (ix(k, i), -cost[k, i]), (iy(k, i), -big_m[k, i])]
            earlier = A[k, i, :k, :]
            for kp, j in zip(*np.nonzero(earlier)):
                entries.append((ix(kp, j), -earlier[kp, j]))
            add(entries, w0[k, i] - big_m[k, i], np.inf)
            # valid cut for the LP relaxation: T_k ≥ w0·y + c·x (w ≥ w0 when used)
            add([(it(k), 1.0), (ix(k, i), -cost[k, i]), (iy(k, i), -w0[k, i])], 0.0, np.inf)
        if allowed is not None:
            add([(iz(k, s), 1.0) for s in range(S)], 1.0, 1.0)  # one allowed set
            for i in range(B):  # y ≤ Σ_{s ∋ i} z
                add([(iy(k, i), 1.0)] + [(iz(k, s), -1.0) for s in range(S) if allowed[k, s, i]], -np.inf, 0.0)

    matrix = sparse.csr_array((vals, (rows, cols)), shape=(row, num_vars))
    objective = np.zeros(num_vars)
    objective[n_x + n_y : n_x + n_y + n_t] = 1.0
    var_lo = np.zeros(num_vars)
    var_hi = np.ones(num_vars)
    var_lo[n_x + n_y : n_x + n_y + n_t] = lower
    var_hi[n_x + n_y : n_x + n_y + n_t] = upper
    integrality = np.zeros(num_vars)
    integrality[n_x : n_x + n_y] = 1
    integrality[n_x + n_y + n_t :] = 1

    start = time.perf_counter()
    result = milp(
        objective,
        integrality=integrality,
        bounds=Bounds(var_lo, var_hi),
        constraints=LinearConstraint(matrix, np.array(lo), np.array(hi)),
        options={"time_limit": float(time_limit_s), "mip_rel_gap": float(mip_rel_gap), "disp": False},
    )
    solve_time = time.perf_counter() - start
    if result.x is None:
        reason = "time limit reached with no feasible schedule" if result.status == 1 else result.message
        raise RuntimeError(f"solve_slot: HiGHS found no schedule for K={K}, B={B} (status {result.status}: {reason})")
    if result.status not in (0, 1):
        raise RuntimeError(f"solve_slot: HiGHS failed (status {result.status}: {result.message})")

    x = result.x[:n_x].reshape(K, B)
    selected = result.x[n_x : n_x + n_y].reshape(K, B) > 0.5
    fractions = np.where(selected, np.clip(x, 0.0, None), 0.0)
    # a part the solver left at round-off size only counted if its y is 1; renormalise rows
    fractions = fractions / fractions.sum(axis=1, keepdims=True)
    make_spans = result.x[n_x + n_y : n_x + n_y + n_t].copy()
    gap = getattr(result, "mip_gap", None)
    dual_bound = getattr(result, "mip_dual_bound", None)
    return SlotSolution(
        total_make_span=float(result.fun),
        make_spans=make_spans,
        fractions=fractions,
        selected=selected & (fractions > 0),
        status="optimal" if result.status == 0 else "time_limit",
        mip_gap=float("nan") if gap is None else float(gap),
        lower_bound=float(lower.sum()) if dual_bound is None else max(float(dual_bound), float(lower.sum())),
        solve_time_s=solve_time,
    )


def slot_make_spans_of_schedule(
    tasks: SlotTasks,
    system: SlotSystem,
    fractions: np.ndarray,
    atol: float = 1e-6,
) -> np.ndarray:
    """Make-span T_k of every task when the slot is played with `fractions` (K, B).

    A sequential replay of the clean model (§4), independent of the MILP's matrices: the
    make-span counts the used parts only (x > 0); earlier parts raise the queues and the
    transmitter backlog of their BS. Rows must be >= 0 and sum to 1 within `atol`.
    """
    _check(tasks, system)
    K, B = tasks.num_tasks, system.num_servers
    x = np.asarray(fractions, float)
    if x.shape != (K, B):
        raise ValueError(f"fractions: shape {x.shape}, expected ({K}, {B})")
    if np.any(x < -atol) or np.any(np.abs(x.sum(axis=1) - 1.0) > atol):
        raise ValueError("fractions: every row must be >= 0 and sum to 1")
    x = np.clip(x, 0.0, None)
    servers = np.arange(B)
    slot_load = np.zeros(B)
    tx_busy = system.tx_busy.copy()
    make_spans = np.zeros(K)
    for k in range(K):
        b = tasks.bs[k]
        remote = servers != b
        wait = np.where(remote, tx_busy[b], 0.0) + (system.queue + slot_load) / system.capacity
        cost = (
            np.where(remote, tasks.data_size[k] / system.rate, 0.0)
            + tasks.workload[k] / system.capacity
            + tasks.result_size[k] / system.rate
        )
        used = x[k] > 0
        make_spans[k] = np.max(np.where(used, wait + x[k] * cost, -np.inf))
        slot_load = slot_load + x[k] * tasks.workload[k]
        tx_busy[b] += np.sum(np.where(remote, x[k] * tasks.data_size[k] / system.rate, 0.0))
    return make_spans


def rollout_slots(env, params, policy, key, num_steps: int, tasks_per_slot: int) -> list[tuple[SlotTasks, SlotSystem]]:
    """Slots met by `policy` in one rollout of `num_steps` decisions of a `MEC` env.

    For every slot whose first task is seen: the system at that moment (queues, transmitter
    backlogs, capacities) and its first `tasks_per_slot` tasks in decision order, i.e. the
    slot-start problems `solve_slot` compares schedulers on (clean preset; no deadlines).
    """
    import jax

    def step(state, step_key):
        act_key, env_key = jax.random.split(step_key)
        record = (state.slot, env.deciding_bs(state), state.data_size, state.workload,
                  state.result_size, state.queue, state.tx_busy, state.capacity_factor,
                  state.slot_load)  # fmt: skip
        action = policy(act_key, env.get_obs(state, params), state, params)
        _, state, *_ = env.step(env_key, state, action, params)
        return state, record

    @jax.jit
    def run(key):
        reset_key, steps_key = jax.random.split(key)
        _, state = env.reset(reset_key, params)
        return jax.lax.scan(step, state, jax.random.split(steps_key, num_steps))[1]

    slot, bs, data, work, result, queue, tx_busy, factor, slot_load = (
        np.asarray(x) for x in run(key)
    )
    capacity, rate = np.asarray(params.capacity, float), np.asarray(params.rate, float)
    problems = []
    for start in np.flatnonzero(np.all(slot_load == 0, axis=1)):
        if start > 0 and slot[start] == slot[start - 1]:
            continue  # not the slot's first task (nothing assigned yet by coincidence)
        same = np.flatnonzero(slot[start:start + tasks_per_slot] == slot[start]) + start
        if same.size < tasks_per_slot:
            continue
        system = SlotSystem(queue[start], tx_busy[start], capacity * factor[start], rate)
        problems.append((SlotTasks(bs[same], data[same], work[same], result[same]), system))
    return problems
