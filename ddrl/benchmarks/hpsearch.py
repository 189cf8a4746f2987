"""Hyper-parameter search in one program vs one program per run, on CartPole-v1.

Times `ddrl.hpsearch.grid_search` over a grid of 16 d2sac settings (actor and critic
learning rates, α, γ; 2 values each) × 5 seeds, all 80 runs vmapped in one compiled
program, against separate runs, each its own `make_trainer` + `jax.jit` + train of one
setting and one seed (the settings as constants in its config), as a user running one
configuration at a time would do. Compile and run times are reported apart. Separate
runs are timed on a measured subset (`--separate`, default 8) and extrapolated to all
runs; the JSON says so. The subset's final metrics are checked against the grid's.

    python -m ddrl.bench hpsearch [--steps 1000] [--seeds 5] [--separate 8]
"""
import argparse
import json
import time

import gymnax
import jax
import numpy as np

from ddrl.hpsearch import grid_search
from ddrl.training import make_trainer, seed_keys

# A small d2sac (the project preset with 32-wide networks and batch 64), so that the
# comparison runs in minutes on a CPU; compile times do not depend much on the widths.
SMALL_D2SAC = {
    "name": "d2sac", "denoiser_hidden": [32, 32], "critic_hidden": [32, 32], "batch_size": 64,
    "learning_starts": 200,
}  # fmt: skip
GRID = {
    "actor_lr": [1e-4, 3e-4],
    "critic_lr": [3e-4, 1e-3],
    "alpha": [0.02, 0.05],
    "gamma": [0.95, 0.99],
}
METRICS = ("episode_return", "critic_loss", "actor_loss", "alpha")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="env steps per run")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--separate", type=int, default=8, help="separate runs timed (0: none)")
    args = parser.parse_args(argv)
    env, env_params = gymnax.make("CartPole-v1")
    common = {"backend": jax.default_backend(), "devices": len(jax.local_devices()),
              "agent": SMALL_D2SAC, "env_steps_per_run": args.steps}  # fmt: skip

    started = time.perf_counter()
    result = grid_search(
        SMALL_D2SAC, env, env_params, GRID, args.seeds, args.steps, num_chunks=args.chunks
    )
    grid_total = time.perf_counter() - started
    runs = len(result.settings) * args.seeds
    print(json.dumps({
        "mode": "one program", "settings": len(result.settings), "seeds": args.seeds,
        "runs": runs, "compile_s": round(result.compile_s, 2), "run_s": round(result.run_s, 2),
        "total_s": round(grid_total, 2), **common,
    }), flush=True)  # fmt: skip

    if args.separate <= 0:
        return
    keys = seed_keys(0, args.seeds)
    picks = np.linspace(0, runs - 1, min(args.separate, runs)).round().astype(int)
    compile_times, run_times, totals, differences = [], [], [], {m: 0.0 for m in METRICS}
    for run in picks:
        setting, seed = divmod(int(run), args.seeds)
        started = time.perf_counter()
        trainer = make_trainer(
            {**SMALL_D2SAC, **result.settings[setting]}, env, env_params, args.steps,
            num_chunks=args.chunks,
        )  # fmt: skip
        program = jax.jit(trainer.train).lower(keys[seed]).compile()
        compiled = time.perf_counter()
        _, metrics = jax.block_until_ready(program(keys[seed]))
        finished = time.perf_counter()
        compile_times.append(compiled - started)
        run_times.append(finished - compiled)
        totals.append(finished - started)
        for name in METRICS:
            diff = abs(float(metrics[name][-1]) - float(result.final(name)[setting, seed]))
            differences[name] = max(differences[name], diff)
    scale = runs / len(picks)
    separate_total = sum(totals) * scale
    print(json.dumps({
        "mode": "separate runs", "measured_runs": len(picks), "runs": runs,
        "compile_s_per_run": round(float(np.mean(compile_times)), 2),
        "run_s_per_run": round(float(np.mean(run_times)), 3),
        "measured_total_s": round(sum(totals), 2),
        "extrapolated_total_s": round(separate_total, 1),
        "extrapolated_compile_s": round(sum(compile_times) * scale, 1),
        "extrapolated_run_s": round(sum(run_times) * scale, 1),
        "speedup_total": round(separate_total / grid_total, 1),
        "max_abs_diff_final_vs_one_program": {k: float(f"{v:.3g}") for k, v in differences.items()},
        **common,
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
