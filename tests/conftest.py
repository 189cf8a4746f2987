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

# The modules that take longest, longest first (`pytest --durations=0`, seconds summed per
# module, on 2026-12-03). pytest-xdist's loadscope hands whole modules to the workers, by
# default the modules with the most tests first, so the few-test, long modules (the CLI smoke
# runs of test_experiments*.py) came last and one worker ran them alone while the other had
# finished (28 min 22 s for 2939 s of tests on two workers). `--no-loadscope-reorder`
# (pyproject.toml) keeps the collection order, which this hook sets: the longest modules first,
# so the short ones fill the end. Only the order changes; a module not named keeps its place
# after these.
LONGEST_MODULES_FIRST = (
    "test_experiments_mec.py",
    "test_scale.py",
    "test_experiments.py",
    "test_mec_agents.py",
    "test_tuning.py",
    "test_tune.py",
    "test_set_actor.py",
    "test_experiments_workers.py",
    "test_run_integrity.py",
    "test_hpsearch.py",
    "test_run.py",
    "test_sweeps.py",
    "test_train.py",
    "test_schedulers.py",
    "test_agents.py",
    "test_experiments_trace.py",
    "test_eval_modes.py",
    "test_validation.py",
    "test_experiments_ats.py",
    "test_console.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Run the longest modules first (a stable sort: tests keep their order within a module)."""
    rank = {name: index for index, name in enumerate(LONGEST_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
