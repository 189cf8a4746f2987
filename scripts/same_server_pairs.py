"""How often a trained single-ES scheduler sends two consecutive tasks of one BS in one slot to the same ES.

    python scripts/same_server_pairs.py RUN_DIR --method dqn_ts --mode greedy [--view clean] [--decisions 3000]

Restores the final agents of a finished scheduling run (`scheduling.restore_trained`), runs
each seed's agents on one fresh episode (key 7) for `--decisions` decisions in `--mode`, and
prints one JSON line: the number of pairs of consecutive decisions of the same BS in the same
slot, and the share of them that chose the same ES. Under the authors' observation such tasks
see nearly the same `[D, (W,) Q(t)]`, so a deterministic policy tends to stack them on one ES.
"""
from __future__ import annotations

import json

import jax
import numpy as np

from ddrl.experiments import scheduling


def main() -> None:
    parser = scheduling.restore_arguments(__doc__.splitlines()[0], view="clean")
    parser.add_argument("--mode", choices=("greedy", "sample"), default="greedy")
    parser.add_argument("--decisions", type=int, default=3000)
    args = parser.parse_args()

    restored = scheduling.restore_or_exit(args)
    env, params = restored.setup.env, restored.setup.params
    if env.actions.kind != "single":
        raise SystemExit(f"{args.method} chooses {env.actions.kind} actions, not one ES")

    action, bs, slot = scheduling.play_restored(
        restored, args.mode, args.decisions, lambda agent, obs, state, action: (action, env.deciding_bs(state), state.slot))
    num_seeds = action.shape[0]
    pairs = (bs[:, 1:] == bs[:, :-1]) & (slot[:, 1:] == slot[:, :-1])
    same = (action[:, 1:] == action[:, :-1])[pairs]
    print(json.dumps({"view": args.view, "method": args.method, "mode": args.mode, "seeds": int(num_seeds),
                      "pairs": int(pairs.sum()), "share_same_es": round(float(same.mean()), 3) if same.size else None,
                      "uniform_share": round(1.0 / env.num_servers, 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
