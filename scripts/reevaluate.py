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

import ast
import json

import jax

from ddrl.evaluate import evaluate_per_seed
from ddrl.experiments import scheduling


def main() -> None:
    parser = scheduling.restore_arguments(__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("greedy", "sample"), default="greedy")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    changes = {}
    for item in args.set:
        name, _, text = item.partition("=")
        try:
            changes[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            changes[name] = text
    restored = scheduling.restore_or_exit(args, changes)
    cfg, setup, trainer = restored.cfg, restored.setup, restored.trainer
    eval_key, eval_episodes = scheduling.shared_evaluation(cfg)  # the run's own evaluation episodes
    metrics = evaluate_per_seed(setup.env, setup.params, lambda agent: trainer.policy(agent, args.mode),
                                restored.final.agent, eval_key, eval_episodes)  # fmt: skip
    row = scheduling._metric_row(jax.block_until_ready(metrics))
    print(json.dumps({"view": args.view, "method": args.method, "mode": args.mode, "set": changes,
                      "make_span": row["make_span"], "failure_rate": row["failure_rate"],
                      "seeds": int(cfg.budget.seeds), "eval_episodes": eval_episodes}))  # fmt: skip


if __name__ == "__main__":
    main()
