"""A plain NumPy / Python-loop model of MEC_MODEL.md §4–§5, written from the spec.

It is the independent side of the differential tests in `tests/test_mec.py` and the baseline
of `python -m ddrl.bench env`: float64, explicit loops, and its own algorithms (water-filling
by growing the used set, the authors' linear system solved with `np.linalg.solve`), so that
it shares no code with the JAX environment.
"""

from __future__ import annotations

import dataclasses

import numpy as np

QUIRK_NAMES = (
    "per_index_task_profile",  # task generation only; the reference is fed the tasks
    "make_span_over_selected",
    "tx_cap",
    "tx_reset_each_slot",
    "tx_counts_local_part",
    "local_waits_for_tx",
    "local_pays_transfer",
    "wait_cap",
)


def cwa_water_filling(wait, cost, selected) -> np.ndarray:
    """Exact min-max split: sort S by wait, grow U while the next wait is below T*."""
    wait, cost = np.asarray(wait, float), np.asarray(cost, float)
    members = sorted((i for i in range(len(wait)) if selected[i]), key=lambda i: wait[i])
    used = [members[0]]
    finish = _common_finish(wait, cost, used)
    for i in members[1:]:
        if wait[i] >= finish:
            break
        used.append(i)
        finish = _common_finish(wait, cost, used)
    fractions = np.zeros(len(wait))
    for i in used:
        fractions[i] = (finish - wait[i]) / cost[i]
    return fractions


def _common_finish(wait, cost, used) -> float:
    """T* = (1 + Σ w/c) / Σ 1/c over the used set."""
    return (1.0 + sum(wait[i] / cost[i] for i in used)) / sum(1.0 / cost[i] for i in used)


def cwa_linear_system(wait, cost, selected) -> np.ndarray:
    """The authors' CWA: solve w_i + x_i c_i = T (i in S), Σ x = 1; clip negatives; renormalise."""
    wait, cost = np.asarray(wait, float), np.asarray(cost, float)
    members = [i for i in range(len(wait)) if selected[i]]
    k = len(members)
    # unknowns: x_{members[0]}, ..., x_{members[k-1]}, T
    matrix = np.zeros((k + 1, k + 1))
    rhs = np.zeros(k + 1)
    for row, i in enumerate(members):
        matrix[row, row] = cost[i]
        matrix[row, k] = -1.0
        rhs[row] = -wait[i]
    matrix[k, :k] = 1.0
    rhs[k] = 1.0
    solution = np.linalg.solve(matrix, rhs)
    fractions = np.zeros(len(wait))
    for row, i in enumerate(members):
        fractions[i] = max(solution[row], 0.0)
    return fractions / fractions.sum()


def inverse_cost_split(wait, cost, selected) -> np.ndarray:
    """HECWA: x_i ∝ 1 / c_i over S, waits ignored."""
    fractions = np.array([1.0 / c if s else 0.0 for c, s in zip(cost, selected)])
    return fractions / fractions.sum()


ALLOCATION_RULES = {
    "cwa": cwa_water_filling,
    "cwa_published": cwa_linear_system,
    "hecwa": inverse_cost_split,
}


class MECReference:
    """Queues Q, within-slot loads Qb and transmitter backlogs TX of B edge servers."""

    def __init__(
        self,
        capacity,
        rate,
        slot_length=1.0,
        deadline=np.inf,
        failure_penalty=10.0,
        allocation="cwa",
        quirks=None,
    ):
        self.capacity = np.asarray(capacity, float)
        self.rate = np.asarray(rate, float)
        self.num_servers = len(self.capacity)
        self.slot_length = float(slot_length)
        self.deadline = float(deadline)
        self.failure_penalty = float(failure_penalty)
        self.allocate = ALLOCATION_RULES[allocation]
        flags = {} if quirks is None else dataclasses.asdict(quirks)
        unknown = set(flags) - set(QUIRK_NAMES)
        if unknown:
            raise ValueError(f"reference does not model quirks {sorted(unknown)}")
        self.quirks = {name: bool(flags.get(name, False)) for name in QUIRK_NAMES}
        self.queue = np.zeros(self.num_servers)
        self.slot_load = np.zeros(self.num_servers)
        self.tx_busy = np.zeros(self.num_servers)
        self.capacity_factor = np.ones(self.num_servers)  # u_i(t) of the running slot

    def wait_and_cost(self, bs, D, W, R):
        """w_i and c_i of §4 for a task of size D, workload W, result R arriving at `bs`."""
        q = self.quirks
        wait = np.zeros(self.num_servers)
        cost = np.zeros(self.num_servers)
        for i in range(self.num_servers):
            f = self.capacity[i] * self.capacity_factor[i]
            local = i == bs
            wait[i] = (self.queue[i] + self.slot_load[i]) / f
            if not local or q["local_waits_for_tx"]:
                wait[i] += self.tx_busy[bs]
            if q["wait_cap"]:
                wait[i] = min(wait[i], self.deadline)
            cost[i] = W / f + R / self.rate[i]
            if not local or q["local_pays_transfer"]:
                cost[i] += D / self.rate[i]
        return wait, cost

    def evaluate(self, bs, D, W, R, selected) -> dict:
        """The outcome of sending the task to `selected`, without booking it."""
        selected = np.asarray(selected, bool)
        wait, cost = self.wait_and_cost(bs, D, W, R)
        fractions = self.allocate(wait, cost, selected)
        finishes = [
            wait[i] + fractions[i] * cost[i]
            for i in range(self.num_servers)
            if selected[i] and (fractions[i] > 0 or self.quirks["make_span_over_selected"])
        ]
        raw_delay = max(finishes)
        failed = raw_delay > self.deadline
        return dict(
            fractions=fractions,
            wait=wait,
            cost=cost,
            raw_delay=raw_delay,
            make_span=self.deadline if failed else raw_delay,
            failed=failed,
            reward=-self.failure_penalty * self.deadline if failed else -raw_delay,
        )

    def decide(self, bs, D, W, R, selected) -> dict:
        """Decide one task and book it into Qb and TX_b (§4, "After the decision")."""
        outcome = self.evaluate(bs, D, W, R, selected)
        fractions = outcome["fractions"]
        self.slot_load = self.slot_load + fractions * W
        for i in range(self.num_servers):
            if i != bs or self.quirks["tx_counts_local_part"]:
                self.tx_busy[bs] += fractions[i] * D / self.rate[i]
        if self.quirks["tx_cap"] and np.sum(selected) > 1:
            self.tx_busy[bs] = min(self.tx_busy[bs], self.slot_length)
        return outcome

    def end_slot(self, capacity_factor=1.0):
        """§5: Q <- max(Q + Qb - f·u·Δ, 0), Qb <- 0; transmitters reset or drain by Δ."""
        served = self.capacity * np.broadcast_to(capacity_factor, self.capacity.shape) * self.slot_length
        self.queue = np.maximum(self.queue + self.slot_load - served, 0.0)
        self.slot_load = np.zeros(self.num_servers)
        if self.quirks["tx_reset_each_slot"]:
            self.tx_busy = np.zeros(self.num_servers)
        else:
            self.tx_busy = np.maximum(self.tx_busy - self.slot_length, 0.0)

    def lower_bound(self, bs, D, W, R) -> float:
        """The task alone on empty queues over every server with exact cwa: 1 / Σ 1/c_i."""
        _, cost = self.wait_and_cost(bs, D, W, R)
        return 1.0 / np.sum(1.0 / cost)
