"""Evaluate the trained agents of a finished scheduling run again, in another mode, without training.

    python scripts/reevaluate.py RUN_DIR --view clean --method ddrl_amsa --mode greedy --set greedy_chains=0

Reads the run's resolved `config.yaml`, rebuilds the view's environment and the method's
trainer exactly as `ddrl.experiments.scheduling` did, restores the final state from
`RUN_DIR/checkpoints/<view>-<method>` (the run must be complete: every chunk trained) and
evaluates it on the run's own evaluation episodes (same keys) in `--mode`. `--set name=value`
changes an agent field that does not change the trained parameters (e.g. `greedy_chains`).
Prints one JSON line: make-span and failure rate, mean ± 95 % CI over the seeds.
"""
from __future__ import annotations

import argparse
import ast
import json
import pathlib

import jax
from omegaconf import OmegaConf

from ddrl.evaluate import evaluate_per_seed
from ddrl.experiments import scheduling
from ddrl.training import make_trainer, run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=pathlib.Path)
    parser.add_argument("--view", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--mode", choices=("greedy", "sample"), default="greedy")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    cfg = OmegaConf.load(args.run_dir / "config.yaml")
    method = cfg.methods[args.method]
    env_cfg = scheduling.view_env_config(cfg, args.view, args.method)
    if env_cfg is None:
        raise SystemExit(f"{args.method} did not run in view {args.view}")
    setup = scheduling.setup_method(cfg, method, env_cfg)
    env, params, method, train_steps = setup.env, setup.params, setup.method, setup.train_steps
    changes = {}
    for item in args.set:
        name, _, text = item.partition("=")
        try:
            changes[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            changes[name] = text
    method = OmegaConf.merge(method, changes)
    trainer = make_trainer(method, env, params, train_steps, num_envs=int(cfg.trainer.num_envs),
                           num_chunks=int(cfg.budget.get("num_chunks") or cfg.trainer.num_chunks))  # fmt: skip
    checkpoints = (args.run_dir / "checkpoints" / f"{args.view}-{args.method}").absolute()
    saved = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
    if max(saved, default=0) != trainer.num_chunks:
        raise SystemExit(f"{checkpoints}: no checkpoint of the last chunk ({trainer.num_chunks}); saved: {saved}")
    final, _ = run_training(trainer, int(cfg.seed), int(cfg.budget.seeds), checkpoint_dir=checkpoints,
                            resume=True, max_chunks=0, progress=False)  # restore only: nothing trains
    eval_episodes = min(int(cfg.budget.eval_episodes), int(cfg.eval_episodes))
    eval_key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.seed)), 10_000)
    metrics = evaluate_per_seed(env, params, lambda agent: trainer.policy(agent, args.mode), final.agent,
                                eval_key, eval_episodes)  # fmt: skip
    row = scheduling._metric_row(jax.block_until_ready(metrics))
    print(json.dumps({"view": args.view, "method": args.method, "mode": args.mode, "set": changes,
                      "make_span": row["make_span"], "failure_rate": row["failure_rate"],
                      "seeds": int(cfg.budget.seeds), "eval_episodes": eval_episodes}))  # fmt: skip


if __name__ == "__main__":
    main()
