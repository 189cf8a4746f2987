"""Test-wide settings, applied before any test module imports jax.

The suite is dominated by XLA compile time (tiny budgets, many small programs). Without
LLVM's expensive optimisation passes compiling takes about half the CPU time, and the
numbers agree with the optimised build to float32 rounding (A/B on the ats smoke run:
154 s vs 72 s of CPU). Subprocesses started by tests (the CLI runs) inherit the setting.
An XLA_FLAGS already set by the caller is left alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
