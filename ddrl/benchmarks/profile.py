"""Where a learner's training time goes: one chunk under `jax.profiler`, split by loop phase.

For each learner of `+experiment=amsa` (or `--experiment ats`), built as `python -m ddrl.bench
amsa` builds it (clean view, the paper budget's schedules, updates from the first step, `--seeds`
vmapped seeds × the experiment's environments per seed), one warm chunk of `--episodes`
episodes per seed is traced. Every compiled operation's own time (its time minus the
operations nested in it) is attributed to the phase of the training loop it was traced in,
from the named scopes of `ddrl.training.phases.SCOPES` that XLA keeps in each operation's
metadata: `act` (observe, the policy), `env` (the environment step and episode statistics),
`store` (replay writes), `learn` (sampling and the gradient steps), `other` (what carries no
scope: loop control and the copies of loop-carried buffers). Within each phase it says how
much is matrix products (`dot_general`) and random numbers (`jax.random`). Prints one JSON line
per learner: the chunk's wall time, the operations' summed time (across the CPU's threads,
so it may exceed the wall time), the phases and the slowest operations.

    python -m ddrl.bench profile [--methods ddrl_amsa amcoedge] [--episodes 0.5] [--seeds 10] [--top 12]
    python -m ddrl.bench profile --experiment scale --view B20 --methods ddrl_amsa_set --seeds 3 --episodes 0.1
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp

from ddrl.benchmarks.amsa import compose_experiment, steady_trainer
from ddrl.training.phases import SCOPES

PHASES = (*SCOPES, "other")
RANDOM_MARKERS = ("_normal", "_uniform", "threefry", "random_bits", "_gumbel", "categorical", "random_")
# Host-side events of the runtime and of Python, not compiled operations.
NOT_OPERATIONS = ("ThunkExecutor", "PjitFunction", "Threadpool", "ThreadPool", "SlinkyThreadPool")


@dataclasses.dataclass(frozen=True)
class Operation:
    """One compiled HLO instruction, as its metadata describes it."""

    name: str
    op_name: str  # JAX's name stack: transformations, named scopes, the primitive
    shape: str

    @property
    def phase(self) -> str:
        for phase, scope in SCOPES.items():
            if scope in self.op_name:
                return phase
        return "other"

    @property
    def is_random(self) -> bool:
        return any(marker in self.op_name for marker in RANDOM_MARKERS)

    @property
    def is_matmul(self) -> bool:
        return "dot_general" in self.op_name or self.name.startswith("dot")


_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*?metadata=\{op_name="([^"]*)"', re.M)


def operations(hlo_text: str) -> dict[str, Operation]:
    """Every instruction of a compiled module's text that carries an op_name, by name."""
    return {m.group(1): Operation(m.group(1), m.group(3), m.group(2)) for m in _INSTRUCTION.finditer(hlo_text)}


def self_times(events: list[dict]) -> tuple[collections.Counter, collections.Counter]:
    """(own time in µs, number of calls) per event name, from complete ("X") trace events:
    an event's duration minus that of the events nested in it on the same thread."""
    by_thread: dict[Any, list[dict]] = collections.defaultdict(list)
    for event in events:
        if event.get("ph") == "X":
            by_thread[(event.get("pid"), event.get("tid"))].append(event)
    own: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[dict] = []
        for event in thread_events:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= event["ts"]:
                stack.pop()
            if stack:
                own[stack[-1]["name"]] -= event["dur"]
            own[event["name"]] += event["dur"]
            calls[event["name"]] += 1
            stack.append(event)
    return own, calls


def attribute(own: collections.Counter, calls: collections.Counter, ops: dict[str, Operation],
              top: int) -> dict[str, Any]:
    """Own times of the compiled operations, by phase, with their matmul and random shares."""
    phases = {p: collections.Counter() for p in PHASES}
    slowest = []
    for name, micros in own.items():
        if name.startswith("$") or any(marker in name for marker in NOT_OPERATIONS):
            continue
        op = ops.get(name[len("end: "):] if name.startswith("end: ") else name)
        phase = op.phase if op else "other"
        phases[phase]["s"] += micros / 1e6
        if op and op.is_matmul:
            phases[phase]["matmul_s"] += micros / 1e6
        if op and op.is_random:
            phases[phase]["random_s"] += micros / 1e6
        slowest.append((micros, name, calls[name], phase, op.shape if op else "", op.op_name[-90:] if op else ""))
    total = sum(c["s"] for c in phases.values())
    slowest.sort(reverse=True)
    return {
        "ops_s": round(total, 4),
        "phases": {p: {"s": round(c["s"], 4), "share": round(c["s"] / total, 3) if total else 0.0,
                       "matmul_s": round(c["matmul_s"], 4), "random_s": round(c["random_s"], 4)}
                   for p, c in phases.items()},  # fmt: skip
        "slowest": [{"op": n, "ms": round(m / 1e3, 2), "calls": c, "phase": p, "shape": s, "op_name": o}
                    for m, n, c, p, s, o in slowest[:top]],  # fmt: skip
    }


def profile_learner(cfg, key: str, episodes: float, num_seeds: int, top: int, view: str = "clean") -> dict[str, Any]:
    """One traced chunk of the learner `key` in `view`, attributed to the loop's phases."""
    run = steady_trainer(cfg, key, episodes, num_seeds, repeats=1, view=view)
    compiled = run.trainer.batched_run_chunk.lower(run.runner, jnp.int32(0)).compile()
    runner, _ = jax.block_until_ready(compiled(run.runner, jnp.int32(0)))  # warm: buffers, caches
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        started = time.perf_counter()
        jax.block_until_ready(compiled(runner, jnp.int32(1)))
        chunk_s = time.perf_counter() - started
        jax.profiler.stop_trace()
        files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
        if not files:
            raise RuntimeError(f"jax.profiler wrote no trace under {trace_dir}")
        with gzip.open(files[0]) as handle:
            events = json.load(handle)["traceEvents"]
    own, calls = self_times(events)
    line = {"bench": "profile", "experiment": str(cfg.experiment_name), "view": view, "method": key, "seeds": num_seeds,
            "envs_per_seed": cfg.trainer.num_envs,
            "chunk_episodes_per_seed": round(run.trainer.steps_per_chunk / run.decisions_per_episode, 3),
            "chunk_wall_s": round(chunk_s, 3)}  # fmt: skip
    line.update(attribute(own, calls, operations(compiled.as_text()), top))
    line["backend"] = jax.default_backend()
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="amsa", help="a scheduling experiment: amsa, ats or scale")
    parser.add_argument("--view", default="clean", help="the view the learners are built in (scale: B5 ... B100)")
    parser.add_argument("--methods", nargs="+", default=["ddrl_amsa"], help="keys of the experiment's learners")
    parser.add_argument("--episodes", type=float, default=0.5, help="training episodes per seed in the traced chunk")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--top", type=int, default=12, help="slowest operations listed")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the experiment, e.g. trainer.num_envs=64")
    args = parser.parse_args(argv)
    cfg = compose_experiment(args.overrides, args.experiment)
    for key in args.methods:
        if key not in cfg.methods or cfg.methods[key].get("kind") == "scheduler":
            parser.error(f"{key!r} is not a learner of +experiment={args.experiment}")
        print(json.dumps(profile_learner(cfg, key, args.episodes, args.seeds, args.top, args.view)), flush=True)


if __name__ == "__main__":
    main()
