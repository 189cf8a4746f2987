"""Run `python -m ddrl.run` as a newcomer would, from the repository root (test helper)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*overrides: str, run_dir: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python -m ddrl.run OVERRIDES hydra.run.dir=run_dir`; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "ddrl.run", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
