"""Threefry random numbers on the CPU as straight-line code instead of an XLA while loop.

JAX lowers its threefry2x32 hash (every `jax.random.split`, `uniform`, `normal`, `randint`)
to a rolled `fori_loop` of five iterations on the CPU, to keep compile times short, and
unrolled on every other backend. XLA's CPU runtime then executes each hash as a small while
loop: per iteration a handful of tiny kernels and the loop's own control, so a key split of
320 environments costs about 20 µs of which almost nothing is arithmetic. The training
loops here draw keys and actions for every environment at every step, so these loops were a
large part of what the profile (`python -m ddrl.bench profile`) called the loop's "many small
operations". Lowered unrolled, as on a GPU, each hash becomes one fused elementwise kernel.

The arithmetic is the same 20 rounds on the same integers, so every random number, and so
every trained weight and result, is bit for bit what the rolled loop gives
(`tests/test_cpu_kernels.py` checks the published threefry test vectors and the equality).

`DDRL_ROLLED_THREEFRY=1` in the environment keeps JAX's own CPU lowering (for comparison).
The lowering function is a private JAX module; if a JAX release moves it, `install` leaves
JAX's lowering in place and `installed()` says so (the test then fails, naming it).
"""
from __future__ import annotations

import functools
import os

_STATE = {"installed": False}


def install() -> bool:
    """Register the unrolled threefry lowering for the CPU platform (once); whether it is in force."""
    if _STATE["installed"] or os.environ.get("DDRL_ROLLED_THREEFRY", "") not in ("", "0"):
        return _STATE["installed"]
    try:
        from jax.extend.random import threefry2x32_p as primitive
        from jax.interpreters import mlir

        from jax._src.random import threefry2x32  # the lowering itself is not public
    except ImportError:
        return False
    lowering = getattr(threefry2x32, "_threefry2x32_lowering", None)
    if lowering is None:
        return False
    rule = mlir.lower_fun(functools.partial(lowering, use_rolled_loops=False), multiple_results=True)
    mlir.register_lowering(primitive, rule, platform="cpu")
    _STATE["installed"] = True
    return True


def installed() -> bool:
    """Whether the unrolled lowering is registered in this process."""
    return _STATE["installed"]
