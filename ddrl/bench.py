"""Benchmarks that print figures (one JSON line per setting): `python -m ddrl.bench WHAT`.

  env     environment decisions per second (random actions), vs the NumPy reference
  train   environment steps per second of each agent, including updates
  decide  wall time per scheduling decision (p50 / p99) of each scheduler and policy, and vs B
  hpsearch  16 settings × 5 seeds in one compiled program vs one program per run
  amsa    every method of +experiment=amsa (--experiment ats: of ats): training and greedy-evaluation seed-episodes/s
  profile where a learner's training time goes: one chunk under jax.profiler, by loop phase (act, env, store, learn)
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "env": "ddrl.benchmarks.env",
    "train": "ddrl.benchmarks.train",
    "decide": "ddrl.benchmarks.decide",
    "hpsearch": "ddrl.benchmarks.hpsearch",
    "amsa": "ddrl.benchmarks.amsa",
    "profile": "ddrl.benchmarks.profile",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m ddrl.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=sorted(BENCHMARKS))
    args, rest = parser.parse_known_args(argv)
    importlib.import_module(BENCHMARKS[args.what]).main(rest)


if __name__ == "__main__":
    main()
