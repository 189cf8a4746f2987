"""Wall time of scheduling decisions, after compilation: the low-level timer that the decision
benchmark (`python -m ddrl.bench decide`) and the experiments' decision-time column share.

Each timed call is one jitted call followed by `block_until_ready`; the figures are the 50th
and 99th percentiles over the repeated calls, in microseconds per task. Mode `one` times one
task per call; mode `slot` vmaps `slot_tasks` consecutive tasks of one rollout in one call and
divides the call's time by their number.
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from ddrl.envs.mec import MEC, MECParams, MECState

# A per-task function `(shared, task) -> action`: `shared` (network weights or None) is the
# same for every task of a call, `task` is a pytree of one task's inputs.
PerTask = Callable[[Any, Any], jax.Array]


@dataclass(frozen=True)
class Settings:
    """Command-line choices shared by every measurement."""

    calls: int  # timed calls per setting (at most)
    seconds: float  # time budget per setting; at least `min_calls` calls are made anyway
    min_calls: int
    slot_tasks: int
    warmup_slots: int
    modes: tuple[str, ...]
    only: frozenset[str] | None  # scheduler names to run (None: all)

    def wants(self, scheduler: str) -> bool:
        return self.only is None or scheduler in self.only


@dataclass(frozen=True)
class Tasks:
    """Consecutive tasks of one random-action rollout; every leaf has a leading task axis."""

    keys: jax.Array
    obs: jax.Array
    states: MECState


def rollout_tasks(env: MEC, params: MECParams, key: jax.Array, settings: Settings) -> Tasks:
    """`settings.slot_tasks` consecutive tasks after `warmup_slots` slots of random actions."""
    per_slot = env.num_servers * env.max_tasks * float(params.arrival_prob)
    warmup_steps = max(1, math.ceil(settings.warmup_slots * per_slot))

    def step(state, step_key):
        action_key, env_key = jax.random.split(step_key)
        obs, state, *_ = env.step(env_key, state, env.actions.sample(action_key), params)
        return state, (obs, state)

    @jax.jit
    def run(key: jax.Array) -> tuple[jax.Array, MECState]:
        reset_key, steps_key = jax.random.split(key)
        _, state = env.reset(reset_key, params)
        # one scan (one compilation of `step`); only the last `slot_tasks` steps are kept
        step_keys = jax.random.split(steps_key, warmup_steps + settings.slot_tasks)
        _, visited = jax.lax.scan(step, state, step_keys)
        return jax.tree.map(lambda x: x[warmup_steps:], visited)

    obs, states = jax.block_until_ready(run(key))
    keys = jax.random.split(jax.random.fold_in(key, 1), settings.slot_tasks)
    return Tasks(keys=keys, obs=obs, states=states)


def time_calls(per_task: PerTask, shared: Any, tasks: Any, mode: str, settings: Settings) -> dict[str, Any]:
    """p50 / p99 wall time per task of jitted calls in `mode`, and the compile time."""
    if mode == "one":
        fn, inputs, per_call = per_task, jax.tree.map(lambda x: x[0], tasks), 1
    else:
        fn, inputs, per_call = jax.vmap(per_task, in_axes=(None, 0)), tasks, settings.slot_tasks
    jitted = jax.jit(fn)
    started = time.perf_counter()
    jax.block_until_ready(jitted(shared, inputs))
    compile_s = time.perf_counter() - started
    for _ in range(3):
        jax.block_until_ready(jitted(shared, inputs))

    times_ns: list[int] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        budget_end = time.perf_counter_ns() + int(settings.seconds * 1e9)
        while len(times_ns) < settings.calls and (
            len(times_ns) < settings.min_calls or time.perf_counter_ns() < budget_end
        ):
            started_ns = time.perf_counter_ns()
            jax.block_until_ready(jitted(shared, inputs))
            times_ns.append(time.perf_counter_ns() - started_ns)
    finally:
        if gc_was_enabled:
            gc.enable()
    p50, p99 = np.percentile(np.asarray(times_ns) / 1e3 / per_call, [50, 99])
    return {
        "mode": mode,
        "tasks_per_call": per_call,
        "p50_us": round(float(p50), 3),
        "p99_us": round(float(p99), 3),
        "calls": len(times_ns),
        "compile_s": round(compile_s, 3),
    }




def decision_time_us(env: MEC, params: MECParams, make_policy: Callable, policy_input: Any, tasks: int = 75) -> float:
    """Median wall time per task of a policy `make_policy(policy_input)(key, obs, state, params)`,
    one slot of `tasks` tasks per jitted call."""
    settings = Settings(calls=200, seconds=0.5, min_calls=20, slot_tasks=tasks, warmup_slots=2,
                        modes=("slot",), only=None)  # fmt: skip
    sample = rollout_tasks(env, params, jax.random.PRNGKey(7), settings)
    policy = make_policy(policy_input)

    def per_task(shared, task):
        key, obs, state = task
        return policy(key, obs, state, params)

    timing = time_calls(per_task, None, (sample.keys, sample.obs, sample.states), "slot", settings)
    return float(timing["p50_us"])
