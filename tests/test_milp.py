"""The per-slot MILP (ddrl/schedulers/milp.py) against brute force, replays and the env."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from scipy.optimize import linprog

from ddrl.schedulers.milp import (
    SlotSystem,
    SlotTasks,
    myopic_schedule,
    slot_make_spans_of_schedule,
    solve_slot,
)

EXACT_GAP = 1e-9  # ask HiGHS for the optimum, not a 1e-6 approximation


def random_slot(seed: int, num_tasks: int, num_servers: int, results: bool = False):
    """A slot with queues, busy transmitters and slow links, so every term of §4 matters."""
    rng = np.random.default_rng(seed)
    data_size = rng.uniform(2, 5, num_tasks)
    tasks = SlotTasks(
        bs=np.sort(rng.integers(0, num_servers, num_tasks)),
        data_size=data_size,
        workload=data_size * rng.uniform(0.1, 0.3, num_tasks),
        result_size=rng.uniform(0.6, 1.0, num_tasks) if results else None,
    )
    system = SlotSystem(
        queue=rng.uniform(0, 3, num_servers),
        tx_busy=rng.uniform(0, 0.05, num_servers),
        capacity=rng.uniform(5, 50, num_servers),
        rate=rng.uniform(20, 500, num_servers),
    )
    return tasks, system


def brute_force(tasks: SlotTasks, system: SlotSystem) -> float:
    """min over every assignment of non-empty sets of the LP 'every server of its set
    finishes by T'.

    A set whose LP optimum leaves some server at x = 0 is over-charged (its wait counts),
    but the smaller set without that server is enumerated too, so the minimum is exact.
    """
    K, B = tasks.num_tasks, system.num_servers
    f, r, Q, TX = system.capacity, system.rate, system.queue, system.tx_busy
    bs, D, W, R = tasks.bs, tasks.data_size, tasks.workload, tasks.result_size
    cost = np.array([[(i != bs[k]) * D[k] / r[i] + W[k] / f[i] + R[k] / r[i] for i in range(B)] for k in range(K)])
    sets = [s for n in range(1, B + 1) for s in itertools.combinations(range(B), n)]
    n_vars = K * B + K  # x[k, i] at k*B + i, then T[k]
    a_eq = np.zeros((K, n_vars))
    for k in range(K):
        a_eq[k, k * B : (k + 1) * B] = 1.0
    objective = np.zeros(n_vars)
    objective[K * B :] = 1.0
    best = np.inf
    for assignment in itertools.product(sets, repeat=K):
        a_ub, b_ub = [], []  # w[k, i] + x[k, i] c[k, i] - T[k] <= 0 for i in the set of k
        for k, chosen in enumerate(assignment):
            for i in chosen:
                row = np.zeros(n_vars)
                row[k * B + i] += cost[k, i]
                row[K * B + k] = -1.0
                for kp in range(k):
                    row[kp * B + i] += W[kp] / f[i]  # earlier parts on the queue of i
                    if i != bs[k] and bs[kp] == bs[k]:  # earlier sends of the same transmitter
                        for j in range(B):
                            if j != bs[kp]:
                                row[kp * B + j] += D[kp] / r[j]
                a_ub.append(row)
                b_ub.append(-((i != bs[k]) * TX[bs[k]] + Q[i] / f[i]))
        bounds = [(0, 1 if i in assignment[k] else 0) for k in range(K) for i in range(B)] + [(0, None)] * K
        lp = linprog(objective, A_ub=np.array(a_ub), b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(K), bounds=bounds, method="highs")
        assert lp.status == 0
        best = min(best, lp.fun)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_milp_equals_brute_force_on_two_tasks(seed):
    tasks, system = random_slot(seed, num_tasks=2, num_servers=3, results=seed % 2 == 1)
    if seed == 0:  # both tasks at one BS: the transmitter coupling is exercised
        tasks = SlotTasks(np.array([1, 1]), tasks.data_size, tasks.workload, tasks.result_size)
    solution = solve_slot(tasks, system, mip_rel_gap=EXACT_GAP)
    assert solution.status == "optimal"
    np.testing.assert_allclose(solution.total_make_span, brute_force(tasks, system), rtol=1e-6)
    assert solution.lower_bound <= solution.total_make_span * (1 + 1e-9)


def test_milp_equals_brute_force_on_three_tasks():
    tasks, system = random_slot(11, num_tasks=3, num_servers=3)
    tasks = SlotTasks(np.array([0, 0, 2]), tasks.data_size, tasks.workload)
    solution = solve_slot(tasks, system, mip_rel_gap=EXACT_GAP)
    np.testing.assert_allclose(solution.total_make_span, brute_force(tasks, system), rtol=1e-6)


def test_single_only_equals_enumeration_and_singleton_allowed_sets():
    tasks, system = random_slot(7, num_tasks=3, num_servers=3)
    single = solve_slot(tasks, system, single_only=True, mip_rel_gap=EXACT_GAP)
    eye = np.eye(3)
    expected = min(
        slot_make_spans_of_schedule(tasks, system, eye[list(choice)]).sum()
        for choice in itertools.product(range(3), repeat=3)
    )
    np.testing.assert_allclose(single.total_make_span, expected, rtol=1e-6)
    assert np.all(single.selected.sum(axis=1) == 1)
    via_sets = solve_slot(tasks, system, allowed_sets=np.eye(3, dtype=bool), mip_rel_gap=EXACT_GAP)
    np.testing.assert_allclose(via_sets.total_make_span, expected, rtol=1e-6)
    free = solve_slot(tasks, system, mip_rel_gap=EXACT_GAP)
    assert free.total_make_span <= single.total_make_span * (1 + 1e-9)


def test_pair_sets_keep_used_servers_inside_an_allowed_set():
    tasks, system = random_slot(3, num_tasks=4, num_servers=4)
    B = system.num_servers
    pair_sets = np.array([[(np.arange(B) == b) | (np.arange(B) == j) for j in range(B)] for b in tasks.bs])
    solution = solve_slot(tasks, system, allowed_sets=pair_sets, mip_rel_gap=EXACT_GAP)
    for k, used in enumerate(solution.selected):
        assert any(np.all(~used | allowed) for allowed in pair_sets[k])
    free = solve_slot(tasks, system, mip_rel_gap=EXACT_GAP)
    assert free.total_make_span <= solution.total_make_span * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_replayed_solution_reproduces_the_objective(seed):
    tasks, system = random_slot(100 + seed, num_tasks=5, num_servers=4, results=seed == 2)
    solution = solve_slot(tasks, system, mip_rel_gap=EXACT_GAP)
    np.testing.assert_allclose(solution.fractions.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(solution.fractions[~solution.selected] == 0)
    replayed = slot_make_spans_of_schedule(tasks, system, solution.fractions)
    np.testing.assert_allclose(replayed, solution.make_spans, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(replayed.sum(), solution.total_make_span, rtol=1e-6)


@pytest.mark.parametrize("seed", range(2))
def test_milp_beats_all_local_and_myopic_schedules(seed):
    tasks, system = random_slot(200 + seed, num_tasks=5, num_servers=4)
    solution = solve_slot(tasks, system, mip_rel_gap=EXACT_GAP)
    local = np.eye(system.num_servers)[tasks.bs]
    local_total = slot_make_spans_of_schedule(tasks, system, local).sum()
    myopic_total = slot_make_spans_of_schedule(tasks, system, myopic_schedule(tasks, system)).sum()
    assert solution.total_make_span <= local_total * (1 + 1e-9)
    assert solution.total_make_span <= myopic_total * (1 + 1e-9)


def test_one_task_on_empty_system_is_the_lower_bound():
    rng = np.random.default_rng(5)
    B = 5
    system = SlotSystem(np.zeros(B), np.zeros(B), rng.uniform(10, 50, B), rng.uniform(400, 500, B))
    tasks = SlotTasks(np.array([2]), np.array([3.5]), np.array([0.7]), np.array([0.8]))
    solution = solve_slot(tasks, system, mip_rel_gap=EXACT_GAP)
    remote = np.arange(B) != 2
    cost = remote * 3.5 / system.rate + 0.7 / system.capacity + 0.8 / system.rate
    np.testing.assert_allclose(solution.total_make_span, 1.0 / np.sum(1.0 / cost), rtol=1e-6)
    assert solution.selected.all()  # on empty queues every server helps


def test_replay_rejects_bad_fractions():
    tasks, system = random_slot(1, num_tasks=2, num_servers=3)
    with pytest.raises(ValueError):
        slot_make_spans_of_schedule(tasks, system, np.full((2, 3), 0.5))
    with pytest.raises(ValueError):
        slot_make_spans_of_schedule(tasks, system, np.ones((3, 3)) / 3)


def _play_slot(env, step, params, key, actions, target_slot):
    """Step until the current task is in `target_slot`; then play that slot's tasks.

    Returns the slot-start system, the slot's tasks and (allocation, raw_delay) per step.
    """
    key, reset_key = jax.random.split(key)
    _, state = env.reset(reset_key, params)
    for n in range(200):
        if int(state.slot) == target_slot:
            break
        key, step_key = jax.random.split(key)
        _, state, _, _, _, _ = step(step_key, state, actions[n % len(actions)], params)
    else:
        return None
    if int(state.slot) != target_slot:
        return None
    assert np.all(np.asarray(state.slot_load) == 0)  # the first task of the slot
    system = SlotSystem(
        queue=np.asarray(state.queue, float),
        tx_busy=np.asarray(state.tx_busy, float),
        capacity=np.asarray(params.capacity * state.capacity_factor, float),
        rate=np.asarray(params.rate, float),
    )
    bs, data, work, result, fractions, raw = [], [], [], [], [], []
    for n in range(100):
        record = (int(env.deciding_bs(state)), float(state.data_size), float(state.workload), float(state.result_size))
        key, step_key = jax.random.split(key)
        _, next_state, _, _, truncated, info = step(step_key, state, actions[n % len(actions)], params)
        if int(info["slot"]) != target_slot:
            break
        for values, value in zip((bs, data, work, result), record):
            values.append(value)
        fractions.append(np.asarray(info["allocation"], float))
        raw.append(float(info["raw_delay"]))
        state = next_state
        if bool(truncated) or int(state.slot) != target_slot:
            break
    return system, SlotTasks(np.array(bs), np.array(data), np.array(work), np.array(result)), np.array(fractions), np.array(raw)


def test_replay_agrees_with_the_jax_environment():
    from ddrl.envs.scenarios import build_mec

    base = {"scenario": "amcoedge", "num_tasks": 3, "num_slots": 2, "preset": "clean"}
    env, params = build_mec(base)
    # slow servers and links carry queues and transmitter backlog into the second slot
    _, slow = build_mec({**base, "capacity": [0.2, 0.3, 0.4, 0.5, 0.6], "rate": [4.0, 5, 6, 7, 8]})
    actions = [30, 0, 6, 17, 9, 24, 3, 12]  # subset actions: all servers, {0}, {0,1,2}, ...
    step = jax.jit(env.step)  # one compilation: both parameter sets share the static env
    checked = []
    for label, p, target in (("default", params, 0), ("slow", slow, 1)):
        for seed in range(20):
            played = _play_slot(env, step, p, jax.random.PRNGKey(seed), actions, target)
            if played is not None and played[1].num_tasks >= 2:
                break
        else:
            pytest.fail(f"{label}: no slot with two tasks found")
        system, tasks, fractions, raw = played
        fractions = fractions / fractions.sum(axis=1, keepdims=True)  # float32 round-off
        replayed = slot_make_spans_of_schedule(tasks, system, fractions)
        np.testing.assert_allclose(replayed, raw, rtol=1e-4)
        checked.append((label, tasks.num_tasks, system.queue.max(), system.tx_busy.max()))
    slow_queue, slow_tx = checked[1][2], checked[1][3]
    assert slow_queue > 0 and slow_tx > 0, checked  # the carried state was really exercised
