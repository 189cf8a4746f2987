"""Training throughput on gymnax CartPole-v1: environment steps per second, updates included.

Prints one JSON line per agent and seed count. Updates start at step 0 (learning_starts
is overridden to 0) so the figure is the steady-state cost of training, not of warm-up;
compilation is timed separately.

    python -m ddrl.benchmarks.train --agents dqn sac d2sac ppo --steps 5000 --seeds 1 10
"""
import argparse
import json
import time

import gymnax
import jax

from ddrl import agents
from ddrl.training import make_trainer, seed_keys


def measure(name: str, steps: int, num_seeds: int, repeats: int) -> dict:
    """Compile and run `steps` env steps of agent `name` on `num_seeds` vmapped seeds."""
    env, env_params = gymnax.make("CartPole-v1")
    algo_cfg = {"name": name}
    if agents.get(name).KIND == "off_policy":
        algo_cfg["learning_starts"] = 0
    trainer = make_trainer(algo_cfg, env, env_params, steps, num_chunks=1)
    init = jax.jit(jax.vmap(trainer.init))
    runner = jax.block_until_ready(init(seed_keys(0, num_seeds)))
    started = time.perf_counter()
    chunk = jax.numpy.int32(0)
    run_chunk = trainer.batched_run_chunk.lower(runner, chunk).compile()
    compile_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        runner, metrics = jax.block_until_ready(run_chunk(runner, chunk))
        times.append(time.perf_counter() - started)
    best = min(times)
    return {
        "agent": name,
        "seeds": num_seeds,
        "env_steps_per_seed": trainer.steps_per_chunk,
        "compile_s": round(compile_s, 2),
        "run_s": round(best, 3),
        "env_steps_per_s_per_seed": round(trainer.steps_per_chunk / best, 1),
        "env_steps_per_s_total": round(trainer.steps_per_chunk * num_seeds / best, 1),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["dqn", "sac", "d2sac", "d2sac_published", "ppo"])
    parser.add_argument("--steps", type=int, default=2048, help="env steps per seed per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best is kept")
    args = parser.parse_args(argv)
    for name in args.agents:
        for num_seeds in args.seeds:
            print(json.dumps(measure(name, args.steps, num_seeds, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
