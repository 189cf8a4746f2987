"""Test-wide settings, applied before any test module imports jax.

The suite is dominated by XLA compile time (tiny budgets, many small programs). Without
LLVM's expensive optimisation passes compiling takes about half the CPU time, and the
numbers agree with the optimised build to float32 rounding (A/B on the ats smoke run:
154 s vs 72 s of CPU). Subprocesses started by tests (the CLI runs) inherit the setting.
An XLA_FLAGS already set by the caller is left alone.

Eigen's multi-threaded intra-op pool is off as well: with one pytest worker per core the
tests lose no parallelism by it. (It was first set against a hang of the CartPole smoke run's
PPO, which it did not cure; the hang's cause was jaxlib's batched LAPACK QR behind the
orthogonal initialiser, now replaced: `ddrl.nets.mlp.orthogonal`, README Troubleshooting.)
"""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_multi_thread_eigen=false",
)

# One JAX compilation cache for the whole session, shared by the pytest-xdist workers (they
# inherit the controller's environment) and the CLI runs the tests start: many modules compile
# the same programs (the smoke runs of one experiment in several views, the tuned rows beside the
# published ones, the training worker processes). Fresh each session and removed after it, so a
# run here costs what it costs on a clean CI machine; every size and compile time is cached
# (the defaults skip programs that compile in under a second, most of them at -O0). Measured on
# the amsa smoke run (clean view) with a cold cache: 278 s of CPU against 355 s without, the same
# rows. A cache directory set by the caller is left alone.
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="ddrl-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_unconfigure(config):
    """The process that made the session's cache (the controller, or a run without workers) removes it."""
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


# The modules that take longest, longest first (`pytest --durations=0`, seconds summed per
# module, on 2026-12-04, before the session cache). pytest-xdist's loadscope hands whole
# modules to the workers, by default the modules with the most tests first, so the few-test,
# long modules (the CLI smoke runs of test_experiments*.py) came last and one worker ran them
# alone while the other had finished (28 min 22 s for 2939 s of tests on two workers).
# `--no-loadscope-reorder` (pyproject.toml) keeps the collection order, which this hook sets:
# the longest modules first, so the short ones fill the end. Only the order changes; a module
# not named keeps its place after these.
LONGEST_MODULES_FIRST = (
    "test_experiments_mec.py",
    "test_set_actor.py",
    "test_scale.py",
    "test_tune.py",
    "test_tuning.py",
    "test_mec_agents.py",
    "test_experiments_workers.py",
    "test_experiments.py",
    "test_hpsearch.py",
    "test_run.py",
    "test_run_integrity.py",
    "test_sweeps.py",
    "test_agents.py",
    "test_train.py",
    "test_experiments_trace.py",
    "test_eval_modes.py",
    "test_experiments_ats.py",
    "test_validation.py",
    "test_schedulers.py",
    "test_console.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Run the longest modules first (a stable sort: tests keep their order within a module)."""
    rank = {name: index for index, name in enumerate(LONGEST_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
