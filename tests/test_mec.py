"""The MEC environment: hand-computed transitions, a differential test against the NumPy
reference of MEC_MODEL.md (`ddrl/envs/reference.py`), properties, and jit / vmap behaviour.

Compilation dominates the run time, so environments and their jitted functions are built
once per static configuration (module-level caches) and every case reuses them.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import zlib
from types import SimpleNamespace
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddrl.envs.mec import MEC, MECParams, MECState, Quirks
from ddrl.envs.reference import QUIRK_NAMES, MECReference

# --- presets used here ---------------------------------------------------------------------

CLEAN = Quirks()
AMCOEDGE = Quirks(  # the authors' own environment (MEC_MODEL.md §2, §4)
    per_index_task_profile=True, make_span_over_selected=True, tx_cap=True, tx_reset_each_slot=True
)
BASELINE_COPY = Quirks(  # DRLCoEdge's copy: the flags of the baseline table, tx_cap off
    per_index_task_profile=True,
    make_span_over_selected=True,
    tx_reset_each_slot=True,
    tx_counts_local_part=True,
    local_waits_for_tx=True,
    local_pays_transfer=True,
    wait_cap=True,
)
EVERY_QUIRK = Quirks(**{name: True for name in QUIRK_NAMES})


class EnvConfig(NamedTuple):
    """The static (shape and rule) choices of one environment."""

    num_servers: int = 3
    max_tasks: int = 2
    arrivals: str = "uniform_count"
    workload: str = "density"
    action_space: str = "subset"
    allocation: str = "cwa"
    quirks: Quirks = CLEAN
    uncertain_capacity: bool = False


@functools.cache
def make_env(config: EnvConfig) -> MEC:
    return MEC(
        num_servers=config.num_servers,
        max_tasks=config.max_tasks,
        arrivals=config.arrivals,
        workload=config.workload,
        action_space=config.action_space,
        allocation=config.allocation,
        quirks=config.quirks,
        uncertain_capacity=config.uncertain_capacity,
    )


def fast_jit(fn):
    """jax.jit with XLA's backend optimisation off: these programs run for milliseconds but
    took seconds to optimise, and compilation is most of this file's run time."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


_INT_FIELDS = {"num_slots", "steps_min", "steps_max", "max_steps_in_episode"}


def make_params(**values) -> MECParams:
    """MECParams with every leaf a fixed-dtype array, so that new values never retrace."""
    params = MECParams(**values)
    return params.replace(
        **{
            f.name: jnp.asarray(getattr(params, f.name), jnp.int32 if f.name in _INT_FIELDS else jnp.float32)
            for f in dataclasses.fields(params)
        }
    )


NUM_STEPS = 300  # every rollout has this length, so each configuration compiles once


# what a rollout records per step (fewer outputs compile faster)
RECORDED_STATE = (
    "queue", "slot_load", "tx_busy", "capacity_factor", "slot", "position", "bs_task_count",
    "data_size", "workload", "result_size", "task_profile", "num_decided",
)
RECORDED_INFO = (
    "make_span", "raw_delay", "failed", "allocation", "selected", "real_task", "bs", "slot",
    "episode_done", "episode_tasks", "final_observation",
)
ROLLOUT_TRACES: collections.Counter = collections.Counter()


def recorded(state: MECState) -> dict:
    return {name: getattr(state, name) for name in RECORDED_STATE}


@functools.cache
def rollout_fn(config: EnvConfig):
    """jit(key, state, use_reset, actions, params) -> per-step records of `actions`.

    Starts from `state`, or from `env.reset` where `use_reset`. Used by every test here,
    the hand-computed ones included (they read the first step), so that one compilation
    per configuration serves all; `ROLLOUT_TRACES` checks that it stays one.
    """
    env = make_env(config)

    def rollout(key, state, use_reset, actions, params):
        ROLLOUT_TRACES[config] += 1
        reset_key, run_key = jax.random.split(key)
        _, fresh = env.reset(reset_key, params)
        state = jax.tree.map(lambda a, b: jnp.where(use_reset, a, b), fresh, state)

        def body(state, inputs):
            step_key, action = inputs
            _, next_state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
            record = dict(
                after=recorded(next_state),
                info={name: info[name] for name in RECORDED_INFO},
                reward=reward, terminated=terminated, truncated=truncated,
            )
            return next_state, record

        keys = jax.random.split(run_key, actions.shape[0])
        return recorded(state), jax.lax.scan(body, state, (keys, actions))[1]

    return fast_jit(rollout)


def template_state(config: EnvConfig, params: MECParams) -> MECState:
    env = make_env(config)
    return env._new_episode(jnp.zeros((env.max_tasks, 4)), params)


def random_actions(config: EnvConfig, seed: int, num_steps: int = NUM_STEPS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, make_env(config).num_actions, num_steps).astype(np.int32)


def run_rollout(config, params, seed, actions=None, state=None):
    """NUM_STEPS steps from `state` (or from a reset), random or given actions; numpy records."""
    if actions is None:
        actions = random_actions(config, seed + 1000)
    use_reset = state is None
    state = template_state(config, params) if use_reset else state
    first, records = jax.device_get(
        rollout_fn(config)(jax.random.PRNGKey(seed), state, use_reset, np.asarray(actions, np.int32), params)
    )
    assert ROLLOUT_TRACES[config] == 1, "the rollout was traced again: a leaf changed type or shape"
    # the state before step k is the state after step k - 1 (recorded once, compiled faster)
    records["before"] = {
        name: np.concatenate([first[name][None], after[:-1]]) for name, after in records["after"].items()
    }
    records["action"] = np.asarray(actions)
    return records


def f32(x):
    return jnp.asarray(x, jnp.float32)


# --- golden transitions, worked out by hand -----------------------------------------------
#
# Three servers: f = [10, 20, 40] GHz, r = [100, 200, 400] Mbit/s, Δ = 1 s, τ = 1 s, κ = 10.
# Uniform-count arrivals with N = 2, so a state at task n = 0 of a BS with 2 tasks stays in
# the slot (the booked queues are visible in the next state), and the last task of BS 2
# ends the slot. Subset action a means the servers of the bits of a + 1.

GOLDEN_PARAMS = make_params(
    capacity=[10.0, 20.0, 40.0], rate=[100.0, 200.0, 400.0], slot_length=1.0, num_slots=3,
    deadline=1.0, failure_penalty=10.0,
)
E_CLEAN = EnvConfig(uncertain_capacity=True)  # capacity_noise = 0 here: the authors' model
E_PUBLISHED = EnvConfig(workload="diffusion_steps", allocation="cwa_published")
E_AMCOEDGE = EnvConfig(quirks=AMCOEDGE)
E_BASELINE = EnvConfig(allocation="hecwa", quirks=BASELINE_COPY)


def subset_action(*servers) -> int:
    return sum(1 << i for i in servers) - 1


def golden_state(config, *, bs, queue=(0, 0, 0), slot_load=(0, 0, 0), tx=(0, 0, 0), D, W, R=0.0,
                 n=0, count=2, slot=0, profile=None, params=GOLDEN_PARAMS) -> MECState:
    env = make_env(config)
    if profile is None:
        profile = jnp.zeros((env.max_tasks, 4))
    return env._new_episode(f32(profile), params).replace(
        queue=f32(queue), slot_load=f32(slot_load), tx_busy=f32(tx),
        position=jnp.int32(bs * env.max_tasks + n), bs_task_count=jnp.int32(count), slot=jnp.int32(slot),
        data_size=f32(D), workload=f32(W), result_size=f32(R),
    )


def golden_step(config, state, action, params=GOLDEN_PARAMS, seed=0):
    """(obs, next state, reward, terminated, truncated, info) of one step, from a rollout."""
    records = run_rollout(config, params, seed, np.full(NUM_STEPS, action), state)
    first = jax.tree.map(lambda x: x[0], records)
    next_state = SimpleNamespace(**first["after"])
    return None, next_state, first["reward"], first["terminated"], first["truncated"], first["info"]


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol, atol=atol)


def test_golden_local_execution():
    # BS 1 keeps the task: w_1 = (Q_1 + Qb_1) / f_1 = (10 + 2) / 20 = 0.6 (its own TX_1 = 0.05
    # does not delay local work); c_1 = W / f_1 = 2 / 20 = 0.1; T = 0.7.
    state = golden_state(E_CLEAN, bs=1, queue=(5, 10, 0), slot_load=(0, 2, 0), tx=(0, 0.05, 0), D=4, W=2)
    _, next_state, reward, terminated, truncated, info = golden_step(E_CLEAN, state, subset_action(1))
    assert_close(info["raw_delay"], 0.7)
    assert_close(info["make_span"], 0.7)
    assert_close(reward, -0.7)
    assert not info["failed"] and not terminated and not truncated
    assert_close(info["allocation"], [0, 1, 0])
    np.testing.assert_array_equal(info["selected"], [False, True, False])
    assert int(info["bs"]) == 1 and int(info["slot"]) == 0 and bool(info["real_task"])
    # Qb_1 += W; nothing is sent; same slot, next task of BS 1
    assert_close(next_state.slot_load, [0, 4, 0])
    assert_close(next_state.tx_busy, [0, 0.05, 0])
    assert_close(next_state.queue, [5, 10, 0])
    assert int(next_state.position) == 1 * 2 + 1 and int(next_state.slot) == 0


def test_golden_single_remote():
    # BS 0 sends to ES 2: w_2 = TX_0 + Q_2 / f_2 = 0.1 + 8 / 40 = 0.3;
    # c_2 = D / r_2 + W / f_2 = 4 / 400 + 2 / 40 = 0.06; T = 0.36.
    # TX_0 += D / r_2 = 0.01 -> 0.11; Qb_2 += 2.
    state = golden_state(E_CLEAN, bs=0, queue=(0, 0, 8), tx=(0.1, 0, 0), D=4, W=2)
    _, next_state, reward, _, _, info = golden_step(E_CLEAN, state, subset_action(2))
    assert_close(info["raw_delay"], 0.36)
    assert_close(reward, -0.36)
    assert_close(info["allocation"], [0, 0, 1])
    assert_close(next_state.tx_busy, [0.11, 0, 0])
    assert_close(next_state.slot_load, [0, 0, 2])


def test_golden_split_over_three_with_exact_cwa():
    # BS 0, S = {0, 1, 2}, D = 10, W = 4, Q = [1, 2, 4] (Q/f = 0.1 each), TX_0 = 0.05:
    #   w = [0.1, 0.15, 0.15]
    #   c_0 = 4/10 = 0.4;  c_1 = 10/200 + 4/20 = 0.25;  c_2 = 10/400 + 4/40 = 0.125
    #   1/c = [2.5, 4, 8] (Σ 14.5), w/c = [0.25, 0.6, 1.2] (Σ 2.05)
    #   water-filling: U = {0}: T = 0.5 > w_1 -> U = {0,1}: T = 1.85/6.5 = 0.2846 > w_2 -> U = S:
    #   T* = 3.05 / 14.5 = 61/290 = 0.2103448
    #   x_0 = (61/290 - 29/290)/0.4 = 8/29, x_1 = (17.5/290)/0.25 = 7/29, x_2 = (17.5/290)/0.125 = 14/29
    #   Qb = x W = [32, 28, 56]/29; TX_0 += (7/29)(10/200) + (14/29)(10/400) = 0.7/29
    state = golden_state(E_CLEAN, bs=0, queue=(1, 2, 4), tx=(0.05, 0, 0), D=10, W=4)
    _, next_state, reward, _, _, info = golden_step(E_CLEAN, state, subset_action(0, 1, 2))
    assert_close(info["allocation"], np.array([8, 7, 14]) / 29)
    assert_close(info["raw_delay"], 61 / 290)
    assert_close(reward, -61 / 290)
    assert_close(next_state.slot_load, np.array([32, 28, 56]) / 29)
    assert_close(next_state.tx_busy, [0.05 + 0.7 / 29, 0, 0])
    assert_close(next_state.queue, [1, 2, 4])
    # lower bound: the task alone on empty queues over all servers, 1 / Σ 1/c = 1 / 14.5
    assert_close(jax.jit(make_env(E_CLEAN).lower_bound)(state, GOLDEN_PARAMS), 1 / 14.5)


# Same task, but ES 2 is busy: Q_2 = 40, so w = [0.1, 0.15, 0.05 + 40/40 = 1.05].
DROP_STATE = dict(bs=0, queue=(1, 2, 40), tx=(0.05, 0, 0), D=10, W=4)


def test_golden_exact_cwa_drops_a_late_server():
    # U = {0}: T = 0.5 > w_1 -> U = {0, 1}: T* = (1 + 0.25 + 0.6) / (2.5 + 4) = 37/130 = 0.284615
    # <= w_2 = 1.05, so ES 2 gets nothing: x_0 = (24/130)/0.4 = 6/13, x_1 = (17.5/130)/0.25 = 7/13.
    state = golden_state(E_CLEAN, **DROP_STATE)
    _, next_state, reward, _, _, info = golden_step(E_CLEAN, state, subset_action(0, 1, 2))
    assert_close(info["allocation"], [6 / 13, 7 / 13, 0])
    assert_close(info["raw_delay"], 37 / 130)
    assert not info["failed"]
    # only ES 1 was sent anything: TX_0 += (7/13)(10/200)
    assert_close(next_state.tx_busy, [0.05 + 0.35 / 13, 0, 0])


def test_golden_fidelity_make_span_counts_selected_server_without_work():
    # AMCoEdge's env: the same split, but the make-span is the max over all of S, so the idle
    # ES 2 adds its wait 1.05 > τ = 1: the task fails, recorded make-span τ, reward -κτ = -10.
    state = golden_state(E_AMCOEDGE, **DROP_STATE)
    _, _, reward, _, _, info = golden_step(E_AMCOEDGE, state, subset_action(0, 1, 2))
    assert_close(info["allocation"], [6 / 13, 7 / 13, 0])
    assert_close(info["raw_delay"], 1.05)
    assert bool(info["failed"])
    assert_close(info["make_span"], 1.0)
    assert_close(reward, -10.0)


def test_golden_published_cwa_solves_over_all_of_s_then_clips():
    # T_pub = (1 + 0.25 + 0.6 + 1.05·8) / 14.5 = 10.25/14.5 = 41/58
    # x = (T_pub - w)/c = [88/58, 129.2/58, -159.2/58] -> clip -> [88, 129.2, 0] / 217.2
    # finish: 0.1 + 0.4·88/217.2 = 0.26206, 0.15 + 0.25·129.2/217.2 = 0.29871 -> T = 0.29871
    state = golden_state(E_PUBLISHED, **DROP_STATE)
    _, _, reward, _, _, info = golden_step(E_PUBLISHED, state, subset_action(0, 1, 2))
    assert_close(info["allocation"], [88 / 217.2, 129.2 / 217.2, 0])
    assert_close(info["raw_delay"], 0.15 + 0.25 * 129.2 / 217.2)
    assert_close(reward, -(0.15 + 0.25 * 129.2 / 217.2))


def test_golden_baseline_copy_quirks_with_hecwa():
    # DRLCoEdge's copy, hecwa. Local part waits for TX_0 and pays D/r_0; waits capped at τ:
    #   w = [0.05 + 0.1, 0.05 + 0.1, min(0.05 + 1.0, 1) = 1.0]
    #   c = [10/100 + 0.4 = 0.5, 0.25, 0.125]; hecwa x ∝ [2, 4, 8] -> [1, 2, 4]/7
    #   finish: 0.15 + 0.5/7, 0.15 + 0.25·2/7, 1.0 + 0.125·4/7 = 1.0714 > τ: failed
    #   TX_0 += (1/7)(10/100) + (2/7)(10/200) + (4/7)(10/400) = 0.3/7 (local part counted)
    state = golden_state(E_BASELINE, **DROP_STATE)
    _, next_state, reward, _, _, info = golden_step(E_BASELINE, state, subset_action(0, 1, 2))
    assert_close(info["allocation"], np.array([1, 2, 4]) / 7)
    assert_close(info["raw_delay"], 1.0 + 0.5 / 7)
    assert bool(info["failed"])
    assert_close(info["make_span"], 1.0)
    assert_close(reward, -10.0)
    assert_close(next_state.tx_busy, [0.05 + 0.3 / 7, 0, 0])


def test_golden_baseline_copy_equal_waits():
    # BS 0, S = {0, 1}, Q = [2, 4, 0] (Q/f = 0.2), TX_0 = 0.2, D = 10, W = 4.
    # Baseline copy: w = [0.2 + 0.2, 0.2 + 0.2] = [0.4, 0.4], c = [0.1 + 0.4, 0.25] -> x = [1/3, 2/3],
    # T = 0.4 + 0.5/3; TX_0 += (1/3)(0.1) + (2/3)(0.05) = 0.2/3.
    kwargs = dict(bs=0, queue=(2, 4, 0), tx=(0.2, 0, 0), D=10, W=4)
    _, next_state, _, _, _, info = golden_step(E_BASELINE, golden_state(E_BASELINE, **kwargs), subset_action(0, 1))
    assert_close(info["allocation"], [1 / 3, 2 / 3, 0])
    assert_close(info["raw_delay"], 0.4 + 0.5 / 3)
    assert_close(next_state.tx_busy, [0.2 + 0.2 / 3, 0, 0])
    # Clean: w = [0.2, 0.4], c = [0.4, 0.25]: T* = (1 + 0.5 + 1.6) / 6.5 = 0.476923,
    # x = [(T* - 0.2)/0.4, (T* - 0.4)/0.25] = [9/13, 4/13]; TX_0 += (4/13)(0.05).
    _, next_state, _, _, _, info = golden_step(E_CLEAN, golden_state(E_CLEAN, **kwargs), subset_action(0, 1))
    assert_close(info["allocation"], [9 / 13, 4 / 13, 0])
    assert_close(info["raw_delay"], 3.1 / 6.5)
    assert_close(next_state.tx_busy, [0.2 + 0.2 / 13, 0, 0])


def test_golden_wait_cap_keeps_raw_delay_below_true_delay():
    # BS 0 sends to ES 2 with Q_2 = 80: w_2 = 0.2 + 80/40 = 2.2, c_2 = 0.025 + 0.1 = 0.125.
    # Clean: raw 2.325. Baseline copy: w_2 capped at τ = 1 -> raw 1.125. Both fail.
    kwargs = dict(bs=0, queue=(0, 0, 80), tx=(0.2, 0, 0), D=10, W=4)
    for config, raw in ((E_CLEAN, 2.325), (E_BASELINE, 1.125)):
        _, _, reward, _, _, info = golden_step(config, golden_state(config, **kwargs), subset_action(2))
        assert_close(info["raw_delay"], raw)
        assert bool(info["failed"]) and float(info["make_span"]) == 1.0
        assert_close(reward, -10.0)


@pytest.mark.parametrize("kappa", [10.0, 2.0])
def test_golden_failure_past_the_deadline(kappa):
    # BS 1 local with Q_1 = 30: w = 30/20 = 1.5, c = 2/20 = 0.1, T = 1.6 > τ = 1.2.
    # Recorded make-span τ = 1.2, raw 1.6 in info, reward -κτ.
    params = GOLDEN_PARAMS.replace(deadline=f32(1.2), failure_penalty=f32(kappa))
    state = golden_state(E_CLEAN, bs=1, queue=(0, 30, 0), D=4, W=2, params=params)
    _, next_state, reward, _, _, info = golden_step(E_CLEAN, state, subset_action(1), params)
    assert bool(info["failed"])
    assert_close(info["raw_delay"], 1.6)
    assert_close(info["make_span"], 1.2)
    assert_close(reward, -kappa * 1.2)
    assert_close(next_state.slot_load, [0, 32 - 30, 0])  # the failed task is still booked


def test_golden_no_deadline():
    # LAD-TS has no deadline: τ = inf, so a 1.6 s task is a success with reward -1.6.
    params = GOLDEN_PARAMS.replace(deadline=f32(jnp.inf))
    state = golden_state(E_CLEAN, bs=1, queue=(0, 30, 0), D=4, W=2, params=params)
    _, _, reward, _, _, info = golden_step(E_CLEAN, state, subset_action(1), params)
    assert not info["failed"]
    assert_close(info["make_span"], 1.6)
    assert_close(reward, -1.6)


def test_golden_result_size_is_charged_to_every_server():
    # diffusion_steps: c_i gains R / r_i, local execution too (as the authors do).
    # BS 1, D = 4, W = 3, R = 0.8, empty queues:
    #   local:  c_1 = 3/20 + 0.8/200 = 0.154
    #   remote: c_2 = 4/400 + 3/40 + 0.8/400 = 0.087; TX_1 += 4/400 only (R is not sent by BS 1)
    state = golden_state(E_PUBLISHED, bs=1, D=4, W=3, R=0.8)
    _, _, _, _, _, info = golden_step(E_PUBLISHED, state, subset_action(1))
    assert_close(info["raw_delay"], 0.154)
    _, next_state, _, _, _, info = golden_step(E_PUBLISHED, state, subset_action(2))
    assert_close(info["raw_delay"], 0.087)
    assert_close(next_state.tx_busy, [0, 0.01, 0])


def test_golden_tx_cap_after_multi_server_decision():
    # BS 0, S = {0, 1}, Q_0 = 10 (w_0 = 1.0), TX_0 = 0.9 (w_1 = 0.9), D = 50, W = 4, τ = 2:
    #   c_0 = 0.4, c_1 = 50/200 + 4/20 = 0.45
    #   T* = (1 + 0.9/0.45 + 1.0/0.4) / (1/0.45 + 1/0.4) = 5.5 / (85/18) = 99/85
    #   x_1 = (99/85 - 0.9)/0.45 = 10/17, x_0 = 7/17; TX_0 = 0.9 + (10/17)(0.25) = 1.047
    #   AMCoEdge's env caps TX_0 at Δ = 1 after a multi-server decision; clean does not.
    params = GOLDEN_PARAMS.replace(deadline=f32(2.0))
    kwargs = dict(bs=0, queue=(10, 0, 0), tx=(0.9, 0, 0), D=50, W=4, params=params)
    for config, tx in ((E_CLEAN, 0.9 + 2.5 / 17), (E_AMCOEDGE, 1.0)):
        _, next_state, _, _, _, info = golden_step(config, golden_state(config, **kwargs), subset_action(0, 1), params)
        assert_close(info["allocation"], [7 / 17, 10 / 17, 0])
        assert_close(info["raw_delay"], 99 / 85)
        assert_close(next_state.tx_busy, [tx, 0, 0])
    # a single remote decision is not capped, not even in AMCoEdge's env: 0.9 + 50/200 = 1.15
    state = golden_state(E_AMCOEDGE, **kwargs)
    _, next_state, _, _, _, _ = golden_step(E_AMCOEDGE, state, subset_action(1), params)
    assert_close(next_state.tx_busy, [1.15, 0, 0])


# Slot end. The last task of the last BS (BS 2, task 0 of 1) is decided locally:
#   w_2 = 50/40 = 1.25, Qb_2 += W = 4.
# With Δ = 0.5 the servers serve f Δ = [5, 10, 20]:
#   Q = max(Q + Qb - fΔ, 0) = [max(5 + 3 - 5, 0), 10 + 30 - 10, 50 + 4 - 20] = [3, 30, 34]
# Transmitters: clean carries the unfinished part, TX - Δ = [1.3 - 0.5, 0.4 - 0.5 -> 0, 0]
# = [0.8, 0, 0]; AMCoEdge's env resets TX to 0.
ROLLOVER_PARAMS = GOLDEN_PARAMS.replace(slot_length=f32(0.5))
ROLLOVER_STATE = dict(bs=2, queue=(5, 10, 50), slot_load=(3, 30, 0), tx=(1.3, 0.4, 0), D=10, W=4, count=1,
                      params=ROLLOVER_PARAMS)


@pytest.mark.parametrize("config, tx", [(E_CLEAN, [0.8, 0, 0]), (E_AMCOEDGE, [0, 0, 0])])
def test_golden_slot_rollover(config, tx):
    state = golden_state(config, slot=1, **ROLLOVER_STATE)
    _, next_state, _, _, truncated, info = golden_step(config, state, subset_action(2), ROLLOVER_PARAMS)
    assert_close(info["raw_delay"], 1.35)
    assert int(info["slot"]) == 1 and not truncated and not info["episode_done"]
    assert_close(next_state.queue, [3, 30, 34])
    assert_close(next_state.slot_load, [0, 0, 0])
    assert_close(next_state.tx_busy, tx)
    assert int(next_state.slot) == 2 and int(next_state.position) == 0  # uniform_count: BS 0, task 0
    assert 1 <= int(next_state.bs_task_count) <= 2


def test_golden_episode_end_truncates_and_resets_keeping_profile():
    profile = np.arange(8, dtype=np.float32).reshape(2, 4) / 10 + 0.1
    state = golden_state(E_CLEAN, slot=2, profile=profile, **ROLLOVER_STATE)  # num_slots = 3
    _, next_state, _, terminated, truncated, info = golden_step(E_CLEAN, state, subset_action(2), ROLLOVER_PARAMS)
    assert bool(truncated) and not terminated and bool(info["episode_done"])
    assert int(info["slot"]) == 2
    assert_close(info["final_observation"][1:], [3, 30, 34])  # queues after the last slot
    assert int(next_state.slot) == 0
    assert_close(next_state.queue, [0, 0, 0])
    assert_close(next_state.slot_load, [0, 0, 0])
    assert_close(next_state.tx_busy, [0, 0, 0])
    assert int(next_state.num_decided) == 0
    np.testing.assert_array_equal(next_state.task_profile, profile)


def test_golden_per_index_task_profile():
    # AMCoEdge's env: the density of task n is profile[n, 0] in every slot; clean draws anew.
    profile = np.array([[0.11, 0, 1, 0], [0.37, 0, 1, 0]], np.float32)
    for seed in range(3):
        state = golden_state(E_AMCOEDGE, bs=0, D=4, W=1, profile=profile)
        _, next_state, *_ = golden_step(E_AMCOEDGE, state, subset_action(0), seed=seed)
        assert int(next_state.position) == 1  # task n = 1 of BS 0
        assert_close(next_state.workload / next_state.data_size, 0.37)
        state = golden_state(E_CLEAN, bs=0, D=4, W=1, profile=profile)
        _, next_state, *_ = golden_step(E_CLEAN, state, subset_action(0), seed=seed)
        density = float(next_state.workload / next_state.data_size)
        assert GOLDEN_PARAMS.density_min <= density <= GOLDEN_PARAMS.density_max + 1e-6
        assert abs(density - 0.37) > 1e-4


# --- differential test against the NumPy reference -------------------------------------


def random_params(rng: np.random.Generator, config: EnvConfig) -> MECParams:
    """A small scenario where queues build up now and then and some tasks fail."""
    B = config.num_servers
    no_deadline = config.workload == "diffusion_steps" and rng.random() < 0.5
    return make_params(
        capacity=rng.uniform(2.0, 15.0, B),
        rate=rng.uniform(20.0, 200.0, B),
        slot_length=rng.uniform(0.2, 1.0),
        num_slots=int(rng.integers(2, 6)),
        arrival_prob=rng.uniform(0.3, 0.9),
        data_size_min=1.0, data_size_max=8.0,
        density_min=0.1, density_max=0.8,
        steps_min=1, steps_max=8, step_cost_min=0.1, step_cost_max=0.6,
        result_size_min=0.5, result_size_max=2.0,
        deadline=np.inf if no_deadline else rng.uniform(0.4, 2.0),
        failure_penalty=rng.choice([2.0, 10.0]),
        capacity_noise=0.2 if config.uncertain_capacity else 0.0,
        capacity_noise_corr=0.8,
        capacity_floor=0.5,
    )


DIFFERENTIAL_CONFIGS = {
    "clean-subset-cwa-uncertain": E_CLEAN,
    "clean-subset-published-diffusion": E_PUBLISHED,
    "amcoedge-subset-cwa": E_AMCOEDGE,
    "baseline-subset-hecwa": E_BASELINE,
    "clean-single-cwa-bernoulli": EnvConfig(num_servers=2, max_tasks=3, arrivals="bernoulli", action_space="single"),
    "every-quirk-pair-published-bernoulli": EnvConfig(
        num_servers=4, max_tasks=2, arrivals="bernoulli", workload="diffusion_steps", action_space="pair",
        allocation="cwa_published", quirks=EVERY_QUIRK,
    ),
}


def replay_through_reference(config: EnvConfig, params: MECParams, records) -> dict:
    """Feed the recorded tasks and sets to the reference; check states and outcomes on the way."""
    p = {name: float(getattr(params, name)) for name in ("slot_length", "deadline", "failure_penalty")}
    reference = None
    before, after, info = records["before"], records["after"], records["info"]
    counts = dict(steps=0, slot_ends=0, failed=0, skipped_failure_ties=0)
    tol = dict(rtol=1e-4, atol=1e-4)
    for k in range(len(records["reward"])):
        if not info["real_task"][k]:  # a whole episode without arrivals: one empty step
            assert records["truncated"][k] and records["reward"][k] == 0
            assert before["slot"][k] >= int(params.num_slots)
            reference = None
            counts["steps"] += 1
            continue
        if reference is None:  # start of an episode
            reference = MECReference(
                np.asarray(params.capacity, float), np.asarray(params.rate, float), p["slot_length"],
                p["deadline"], p["failure_penalty"], config.allocation, config.quirks,
            )
        where = f"step {k}"
        reference.capacity_factor = before["capacity_factor"][k].astype(float)
        np.testing.assert_allclose(before["queue"][k], reference.queue, **tol, err_msg=where + " queue")
        np.testing.assert_allclose(before["slot_load"][k], reference.slot_load, **tol, err_msg=where + " Qb")
        np.testing.assert_allclose(before["tx_busy"][k], reference.tx_busy, **tol, err_msg=where + " TX")
        bs = int(info["bs"][k])
        assert bs == before["position"][k] // config.max_tasks
        task = [float(before[name][k]) for name in ("data_size", "workload", "result_size")]
        expected = reference.decide(bs, *task, info["selected"][k])
        np.testing.assert_allclose(info["allocation"][k], expected["fractions"], **tol, err_msg=where + " x")
        np.testing.assert_allclose(info["raw_delay"][k], expected["raw_delay"], **tol, err_msg=where + " T")
        near_deadline = abs(expected["raw_delay"] - p["deadline"]) < 1e-4 * max(1.0, p["deadline"])
        if near_deadline and bool(info["failed"][k]) != expected["failed"]:
            counts["skipped_failure_ties"] += 1  # float32 and float64 on different sides of τ
        else:
            assert bool(info["failed"][k]) == expected["failed"], where
            np.testing.assert_allclose(info["make_span"][k], expected["make_span"], **tol, err_msg=where)
            np.testing.assert_allclose(records["reward"][k], expected["reward"], **tol, err_msg=where)
        counts["steps"] += 1
        counts["failed"] += int(expected["failed"])
        if records["truncated"][k]:  # the episode's remaining slots end: final observation
            for _ in range(int(params.num_slots) - int(info["slot"][k])):
                reference.end_slot(reference.capacity_factor)
            final_queue = info["final_observation"][k][-config.num_servers :]
            np.testing.assert_allclose(final_queue, reference.queue, **tol, err_msg=where + " final queue")
            reference = None
            continue
        for _ in range(int(after["slot"][k]) - int(info["slot"][k])):  # empty slots roll over too
            reference.end_slot(reference.capacity_factor)
            counts["slot_ends"] += 1
        np.testing.assert_allclose(after["queue"][k], reference.queue, **tol, err_msg=where + " queue after")
        np.testing.assert_allclose(after["tx_busy"][k], reference.tx_busy, **tol, err_msg=where + " TX after")
    return counts


@pytest.mark.parametrize("name", sorted(DIFFERENTIAL_CONFIGS))
def test_differential_against_numpy_reference(name):
    config = DIFFERENTIAL_CONFIGS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    totals = dict(steps=0, slot_ends=0, failed=0, skipped_failure_ties=0)
    for seed in range(2):
        params = random_params(rng, config)
        counts = replay_through_reference(config, params, run_rollout(config, params, seed))
        totals = {key: totals[key] + counts[key] for key in totals}
    assert totals["steps"] == 2 * NUM_STEPS
    assert totals["slot_ends"] > 10  # the queue update was exercised
    assert totals["skipped_failure_ties"] <= 2


def test_reference_knows_every_quirk():
    assert {f.name for f in dataclasses.fields(Quirks)} == set(QUIRK_NAMES)


# --- properties --------------------------------------------------------------------------


def reference_lower_bounds(config: EnvConfig, params: MECParams, records) -> np.ndarray:
    """Per step: the task alone on empty queues over every server, 1 / Σ 1/c_i (§9)."""
    reference = MECReference(
        np.asarray(params.capacity, float), np.asarray(params.rate, float), float(params.slot_length),
        float(params.deadline), quirks=config.quirks,
    )
    before, bounds = records["before"], []
    for k in range(len(records["reward"])):
        reference.capacity_factor = before["capacity_factor"][k].astype(float)
        task = [float(before[name][k]) for name in ("data_size", "workload", "result_size")]
        bounds.append(reference.lower_bound(int(records["info"]["bs"][k]), *task))
    return np.array(bounds)


def expected_sets(config: EnvConfig, actions, bs) -> np.ndarray:
    """The set S that each discrete action names (MEC_MODEL.md §3), written out in NumPy."""
    servers = np.arange(config.num_servers)
    actions, bs = np.asarray(actions)[:, None], np.asarray(bs)[:, None]
    if config.action_space == "single":
        return servers == actions
    if config.action_space == "pair":
        return (servers == actions) | (servers == bs)
    assert config.action_space == "subset"
    return ((actions + 1) >> servers) & 1 == 1


def check_outcomes(config: EnvConfig, params: MECParams, records) -> None:
    """Queues, sets, fractions, make-span bounds and the deadline rule on every step."""
    info, after = records["info"], records["after"]
    np.testing.assert_array_equal(info["selected"], expected_sets(config, records["action"], info["bs"]))
    for name in ("queue", "slot_load", "tx_busy"):
        assert np.all(after[name] >= 0), f"negative {name}"
    selected, fractions = info["selected"], info["allocation"]
    assert np.all(selected.any(axis=1))
    assert np.all(np.isfinite(fractions)) and np.all(fractions >= 0)
    assert np.all(fractions[~selected] == 0)
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-5)

    real = info["real_task"]
    tau, kappa = float(params.deadline), float(params.failure_penalty)
    raw, make_span, failed = info["raw_delay"][real], info["make_span"][real], info["failed"][real]
    lower_bound = reference_lower_bounds(config, params, records)[real]
    assert np.all(raw >= lower_bound * (1 - 1e-5))
    assert np.all(make_span >= np.minimum(lower_bound, tau) * (1 - 1e-5))
    np.testing.assert_array_equal(failed, raw > tau)  # failure iff past the deadline
    np.testing.assert_array_equal(make_span, np.where(failed, np.float32(tau), raw))
    np.testing.assert_array_equal(records["reward"][real], np.where(failed, -np.float32(kappa) * np.float32(tau), -raw))
    assert np.all(records["reward"][~real] == 0)
    assert not records["terminated"].any()


def episodes(records):
    """(first, last) step of every episode that the rollout saw from its reset to its end."""
    ends = np.flatnonzero(records["truncated"])
    return list(zip(np.concatenate([[0], ends[:-1] + 1]), ends))


def check_each_arrival_decided_once(config: EnvConfig, params: MECParams, records) -> int:
    """Within an episode the (slot, BS, task) decided strictly increase, all lie inside the
    episode, the episode's task count matches, and with uniform_count arrivals every BS of
    every slot has between 1 and N tasks, decided as tasks 0..count-1. Returns #episodes."""
    B, N, T = config.num_servers, config.max_tasks, int(params.num_slots)
    info, before = records["info"], records["before"]
    np.testing.assert_array_equal(info["slot"], before["slot"])
    np.testing.assert_array_equal(info["bs"], before["position"] // N)
    complete = episodes(records)
    for first, last in complete:
        steps = np.arange(first, last + 1)
        real = info["real_task"][steps]
        if not real.any():  # nothing arrived in the whole episode: one empty step
            assert len(steps) == 1 and info["episode_tasks"][last] == 0
            assert config.arrivals == "bernoulli"
            continue
        assert real.all()
        slot, position = before["slot"][steps], before["position"][steps]
        assert np.all((0 <= slot) & (slot < T)) and np.all((0 <= position) & (position < B * N))
        order = slot * B * N + position
        assert np.all(np.diff(order) > 0), "a task decided twice or out of order"
        assert info["episode_tasks"][last] == len(steps)
        if config.arrivals == "uniform_count":
            bs = position // N
            for t in range(T):
                for b in range(B):
                    at = (slot == t) & (bs == b)
                    count = int(at.sum())
                    assert 1 <= count <= N, f"slot {t} BS {b}: {count} tasks"
                    np.testing.assert_array_equal(before["bs_task_count"][steps][at], count)
                    np.testing.assert_array_equal(position[at] % N, np.arange(count))
    return len(complete)


PROPERTY_CONFIGS = sorted(DIFFERENTIAL_CONFIGS)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(PROPERTY_CONFIGS),
    seed=st.integers(0, 2**16),
    load=st.floats(0.2, 4.0),
    arrival_prob=st.floats(0.02, 1.0),
    deadline=st.one_of(st.floats(0.05, 3.0), st.just(np.inf)),
)
def test_rollout_properties(name, seed, load, arrival_prob, deadline):
    config = DIFFERENTIAL_CONFIGS[name]
    params = random_params(np.random.default_rng(seed), config)
    params = params.replace(
        capacity=params.capacity / load, arrival_prob=f32(arrival_prob), deadline=f32(deadline)
    )
    records = run_rollout(config, params, seed)
    check_outcomes(config, params, records)
    check_each_arrival_decided_once(config, params, records)


BERNOULLI = "clean-single-cwa-bernoulli"
BERNOULLI_SLOTS, BERNOULLI_P = 3, 0.4


@functools.cache
def bernoulli_sample():
    """Many short episodes with Bernoulli arrivals: per-episode counts and presence per
    potential task (slot, position), over the episodes that start with an auto-reset."""
    config = DIFFERENTIAL_CONFIGS[BERNOULLI]
    params = random_params(np.random.default_rng(0), config).replace(
        num_slots=jnp.int32(BERNOULLI_SLOTS), arrival_prob=f32(BERNOULLI_P)
    )
    B, N = config.num_servers, config.max_tasks
    tasks, present, first_position = [], [], []
    for seed in range(8):
        records = run_rollout(config, params, seed)
        check_each_arrival_decided_once(config, params, records)
        for first, last in episodes(records)[1:]:  # the first episode came from `reset`
            tasks.append(records["info"]["episode_tasks"][last])
            real = records["info"]["real_task"][first : last + 1]
            order = (records["before"]["slot"] * B * N + records["before"]["position"])[first : last + 1][real]
            seen = np.zeros(BERNOULLI_SLOTS * B * N, bool)
            seen[order] = True
            present.append(seen)
            first_position.append(order[0] if len(order) else BERNOULLI_SLOTS * B * N)
    return config, np.array(tasks), np.array(present), np.array(first_position)


def test_bernoulli_tasks_per_episode():
    config, tasks, _, _ = bernoulli_sample()
    B, N = config.num_servers, config.max_tasks
    assert len(tasks) > 200
    expected = B * N * BERNOULLI_P * BERNOULLI_SLOTS
    spread = np.sqrt(B * N * BERNOULLI_SLOTS * BERNOULLI_P * (1 - BERNOULLI_P) / len(tasks))
    assert abs(tasks.mean() - expected) < 5 * spread, (tasks.mean(), expected)


def test_bernoulli_each_potential_task_present_with_probability_p():
    """Every one of the T·B·N potential tasks of an episode is present w.p. p, also the
    first ones of an episode that began with an auto-reset."""
    _, _, present, first_position = bernoulli_sample()
    p, count = BERNOULLI_P, len(present)
    # the first task of an episode is at position k w.p. p (1 - p)^k
    assert abs(np.mean(first_position == 0) - p) < 5 * np.sqrt(p * (1 - p) / count), np.bincount(first_position)
    frequency = present.mean(axis=0)
    assert np.all(np.abs(frequency - p) < 5 * np.sqrt(p * (1 - p) / count)), frequency


def test_uniform_count_tasks_per_base_station():
    config = E_CLEAN
    params = random_params(np.random.default_rng(1), config)
    counts = []
    for seed in range(4):
        records = run_rollout(config, params, seed)
        check_each_arrival_decided_once(config, params, records)
        first_of_bs = records["before"]["position"] % config.max_tasks == 0
        counts.append(records["before"]["bs_task_count"][first_of_bs & records["info"]["real_task"]])
    counts = np.concatenate(counts)
    assert set(np.unique(counts)) == set(range(1, config.max_tasks + 1))
    share_of_one = np.mean(counts == 1)
    assert abs(share_of_one - 1 / config.max_tasks) < 5 * np.sqrt(0.25 / len(counts))


# --- jit, vmap, retracing, keys ------------------------------------------------------------


def state_at(config, params, records, k) -> MECState:
    """The full state before step k (episode totals, which no step reads, left at zero)."""
    fields = {name: jnp.asarray(values[k]) for name, values in records["before"].items()}
    return template_state(config, params).replace(**fields)


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    def check(a, b):
        a, b = np.asarray(a), np.asarray(b)
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(a, b)

    jax.tree.map(check, actual, expected)


def test_jit_matches_plain_calls():
    """Steps of the compiled rollout equal the same steps run op by op without jit."""
    config = E_CLEAN  # uncertain capacity on, so the capacity noise path is compared too
    params = random_params(np.random.default_rng(7), config)
    seed = 5
    actions = random_actions(config, seed)
    records = run_rollout(config, params, seed, actions)
    env = make_env(config)
    keys = rollout_keys(seed)
    ends_slot = np.flatnonzero(records["after"]["slot"] != records["before"]["slot"])
    picks = [1, ends_slot[0], np.flatnonzero(records["truncated"])[0]]  # within a slot, slot end, episode end
    with jax.disable_jit():
        for k in picks:
            state = state_at(config, params, records, k)
            _, state, reward, _, truncated, info = env.step(keys[k], state, jnp.int32(actions[k]), params)
            record = jax.tree.map(lambda x: x[k], records)
            assert_trees_close(recorded(state), record["after"])
            assert_trees_close((reward, truncated), (record["reward"], record["truncated"]))
            assert_trees_close({name: info[name] for name in RECORDED_INFO}, record["info"])


def rollout_keys(seed: int):
    """The step keys that `run_rollout(..., seed)` uses."""
    return jax.random.split(jax.random.split(jax.random.PRNGKey(seed))[1], NUM_STEPS)


@functools.cache
def guarded_batched_step(config: EnvConfig):
    """jit(vmap(step)) over states, actions and numeric parameters; fails if traced twice."""
    env = make_env(config)

    @chex.assert_max_traces(n=1)
    def step(key, state, action, params):
        return env.step(key, state, action, params)

    return fast_jit(jax.vmap(step))


def test_vmap_matches_single_env_and_is_not_retraced():
    """A batch of states, actions and parameters (a sweep) gives what each environment alone
    gave in its own rollout; new batches of states do not retrace the jitted step."""
    config = E_AMCOEDGE
    rng = np.random.default_rng(11)
    batch = 4
    params = [random_params(rng, config) for _ in range(batch)]
    records = [run_rollout(config, p, seed) for seed, p in enumerate(params)]
    step = guarded_batched_step(config)

    def stack(trees):
        return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)

    for _ in range(3):
        picks = rng.choice(NUM_STEPS, batch, replace=False)
        states = stack([state_at(config, p, r, k) for p, r, k in zip(params, records, picks)])
        keys = jnp.stack([rollout_keys(seed)[k] for seed, k in enumerate(picks)])
        actions = np.array([r["action"][k] for r, k in zip(records, picks)], np.int32)
        _, after, reward, _, truncated, info = step(keys, states, actions, stack(params))
        for i, (r, k) in enumerate(zip(records, picks)):
            alone = jax.tree.map(lambda x: x[k], r)
            assert_trees_close(jax.tree.map(lambda x: x[i], recorded(after)), alone["after"])
            assert_trees_close((reward[i], truncated[i]), (alone["reward"], alone["truncated"]))
            assert_trees_close({name: info[name][i] for name in RECORDED_INFO}, alone["info"])


def test_same_key_same_trajectory_and_different_keys_differ():
    config = DIFFERENTIAL_CONFIGS["clean-single-cwa-bernoulli"]
    params = random_params(np.random.default_rng(5), config)
    actions = random_actions(config, 0)
    first = run_rollout(config, params, 1, actions)
    again = run_rollout(config, params, 1, actions)
    jax.tree.map(np.testing.assert_array_equal, first, again)
    other = run_rollout(config, params, 2, actions)
    assert not np.allclose(first["before"]["data_size"], other["before"]["data_size"])
    assert not np.array_equal(first["before"]["position"], other["before"]["position"])
