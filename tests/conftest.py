"""Test-wide settings, applied before any test module imports jax.

The suite is dominated by XLA compile time (tiny budgets, many small programs). Without
LLVM's expensive optimisation passes compiling takes about half the CPU time, and the
numbers agree with the optimised build to float32 rounding (A/B on the ats smoke run:
154 s vs 72 s of CPU). Subprocesses started by tests (the CLI runs) inherit the setting.
An XLA_FLAGS already set by the caller is left alone.

Eigen's multi-threaded intra-op pool is off as well: with it a vmapped program on this
2-core machine once wedged (every XLA worker idle, the host waiting for a buffer forever;
the CartPole smoke run's PPO in a CI rehearsal), a known XLA CPU hang that
`--xla_cpu_multi_thread_eigen=false` avoids. With one pytest worker per core the tests lose
no parallelism by it.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_multi_thread_eigen=false",
)
