"""Environment throughput: task decisions per second with random actions.

For each scenario and number of parallel environments, one jitted `lax.scan` of
`vmap(env.step)`; compile time is reported separately from the timed second call. The same
random-action rollout in the plain NumPy reference (`ddrl.envs.reference`) gives the
baseline figure and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import numpy as np

from ddrl.envs.reference import MECReference
from ddrl.envs.scenarios import SCENARIOS, build_mec


def jax_rollout(env, params, num_envs: int, num_steps: int):
    """Jitted function key -> total reward of `num_steps` steps of `num_envs` environments."""

    def rollout(key):
        reset_keys = jax.random.split(key, num_envs)
        _, state = jax.vmap(env.reset, (0, None))(reset_keys, params)

        def one_step(state, step_key):
            action_key, env_key = jax.random.split(step_key)
            actions = env.actions.sample(action_key, (num_envs,))  # one draw for all: the env is timed, not key splits
            step = jax.vmap(env.step, (0, 0, 0, None))
            _, state, reward, _, _, _ = step(jax.random.split(env_key, num_envs), state, actions, params)
            return state, reward.sum()

        return jax.lax.scan(one_step, state, jax.random.split(key, num_steps))[1].sum()

    return jax.jit(rollout)


def numpy_decisions_per_second(env, params, seconds: float = 2.0, seed: int = 0) -> float:
    """Random-action rollout of the NumPy reference for about `seconds`."""
    rng = np.random.default_rng(seed)
    reference = MECReference(
        np.asarray(params.capacity), np.asarray(params.rate), float(params.slot_length),
        float(params.deadline), float(params.failure_penalty), env.allocation, env.quirks,
    )
    B, N = env.num_servers, env.max_tasks
    decisions, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for bs in range(B):
            count = N if env.arrivals == "bernoulli" else rng.integers(1, N + 1)
            for n in range(count):
                if env.arrivals == "bernoulli" and rng.random() >= float(params.arrival_prob):
                    continue
                data_size = rng.uniform(float(params.data_size_min), float(params.data_size_max))
                if env.workload_model == "density":
                    workload = data_size * rng.uniform(float(params.density_min), float(params.density_max))
                    result_size = 0.0
                else:
                    steps = rng.integers(int(params.steps_min), int(params.steps_max) + 1)
                    workload = steps * rng.uniform(float(params.step_cost_min), float(params.step_cost_max))
                    result_size = rng.uniform(float(params.result_size_min), float(params.result_size_max))
                reference.decide(bs, data_size, workload, result_size, _random_mask(env, rng, bs))
                decisions += 1
        reference.end_slot()
    return decisions / (time.perf_counter() - start)


def _random_mask(env, rng, bs: int) -> np.ndarray:
    B = env.num_servers
    kind = env.actions.kind
    mask = np.zeros(B, bool)
    if kind == "single":
        mask[rng.integers(B)] = True
    elif kind == "pair":
        mask[[bs, rng.integers(B)]] = True
    elif kind == "topk":
        mask[rng.choice(B, env.actions.k, replace=False)] = True
    else:
        subset = rng.integers(1, 2**B)
        mask = ((subset >> np.arange(B)) & 1).astype(bool)
    return mask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ddrl.bench env")
    parser.add_argument("--scenarios", nargs="*", default=sorted(SCENARIOS))
    parser.add_argument("--num-envs", nargs="*", type=int, default=[1, 256, 4096])
    parser.add_argument("--decisions", type=int, default=8_000_000, help="decisions per timed run (approx.)")
    parser.add_argument("--preset", default="fidelity")
    args = parser.parse_args(argv)
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    for scenario in args.scenarios:
        env, params = build_mec({"scenario": scenario, "preset": args.preset})
        numpy_rate = numpy_decisions_per_second(env, params)
        for num_envs in args.num_envs:
            num_steps = max(100, min(20_000, args.decisions // num_envs))
            rollout = jax_rollout(env, params, num_envs, num_steps)
            start = time.perf_counter()
            rollout(jax.random.PRNGKey(0)).block_until_ready()
            first_call = time.perf_counter() - start
            start = time.perf_counter()
            rollout(jax.random.PRNGKey(1)).block_until_ready()
            run_time = time.perf_counter() - start
            rate = num_envs * num_steps / run_time
            print(json.dumps({
                "benchmark": "env", "scenario": scenario, "preset": args.preset,
                "action_space": env.actions.kind, "num_envs": num_envs, "steps": num_steps,
                "decisions_per_s": round(rate), "compile_s": round(first_call - run_time, 2),
                "run_s": round(run_time, 3), "numpy_reference_decisions_per_s": round(numpy_rate),
                "speedup_vs_numpy": round(rate / numpy_rate, 1), "device": device,
                "cpu_count": __import__("os").cpu_count(), "machine": platform.machine(),
            }), flush=True)
