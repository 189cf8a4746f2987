"""Run `python -m ddrl.run` as a newcomer would, from the repository root (test helper)."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*overrides: str, run_dir: Path, timeout: int = 300, retries: int = 2) -> subprocess.CompletedProcess:
    """`python -m ddrl.run OVERRIDES hydra.run.dir=run_dir`; output captured as text.

    A run that exceeds `timeout` is killed and started again (at most `retries` times) in an
    emptied `run_dir`:
    a guard against a run that hangs (every XLA worker idle, the host waiting on a buffer
    forever: what jaxlib's batched LAPACK QR did to PPO until 2026-12-05; README,
    Troubleshooting), as the smoke runs here take well under a minute.
    """
    command = [sys.executable, "-m", "ddrl.run", *overrides, f"hydra.run.dir={run_dir}"]
    for attempt in range(retries + 1):
        try:
            return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if attempt == retries:
                raise
            warnings.warn(f"{' '.join(overrides)}: no result after {timeout} s (a wedged XLA CPU run?); "
                          "starting it again", RuntimeWarning, stacklevel=2)  # fmt: skip
            shutil.rmtree(run_dir, ignore_errors=True)
    raise AssertionError("unreachable")


def precheck_lines(overrides: list[str]) -> tuple[int | None, list[str]]:
    """`ddrl.run`'s config check of `overrides` in process: (exit code or None, stderr lines)."""
    from ddrl.run import precheck

    stderr = io.StringIO()
    code = None
    with contextlib.redirect_stderr(stderr):
        try:
            precheck(overrides)
        except SystemExit as stop:
            code = stop.code
    return code, [line for line in stderr.getvalue().splitlines() if line.strip()]
