"""Metric sinks: console, JSONL in the run directory, and Weights & Biases (offline by default).

`make_logger(cfg.logger, run_dir, config, group, name, num_seeds)` returns one `Logger`:
metrics arrive per seed (arrays of shape (num_seeds,)) and go to `metrics.jsonl` and, with
`logger=wandb`, to one W&B run per seed grouped by experiment. A W&B failure (not
installed, no network, bad credentials) prints one warning and logging goes on without it:
logging never stops a run.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _plain(value: Any) -> Any:
    """JSON-friendly version of a metric value."""
    array = np.asarray(value)
    if array.ndim == 0:
        item = array.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    return [_plain(v) for v in array]


class Logger:
    """JSONL always; W&B runs (one per seed) when `wandb_cfg` is given and W&B starts."""

    def __init__(self, run_dir: Path, config: dict, group: str, name: str, num_seeds: int,
                 wandb_cfg: Mapping[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = (self.run_dir / "metrics.jsonl").open("a")
        self.num_seeds = num_seeds
        self.wandb_runs: list[Any] = []
        if wandb_cfg is not None and wandb_cfg.get("mode", "offline") != "disabled":
            self._start_wandb(config, group, name, wandb_cfg)

    def _start_wandb(self, config: dict, group: str, name: str, cfg: Mapping[str, Any]) -> None:
        try:
            import wandb

            for seed in range(self.num_seeds):
                self.wandb_runs.append(
                    wandb.init(
                        project=cfg.get("project", "ddrl"), entity=cfg.get("entity"), group=group,
                        name=f"{name}-seed{seed}", job_type=name, tags=list(cfg.get("tags") or []),
                        config={**config, "seed_index": seed}, mode=cfg.get("mode", "offline"),
                        dir=str(self.run_dir), reinit="create_new",
                    )
                )
        except Exception as error:  # logging must never stop a run
            print(f"warning: Weights & Biases disabled ({type(error).__name__}: {error})", file=sys.stderr)
            self.wandb_runs = []

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Per-seed metrics (arrays of shape (num_seeds,)) or scalars at `step`."""
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for seed, run in enumerate(self.wandb_runs):
            per_seed = {}
            for key, value in metrics.items():
                array = np.asarray(value)
                per_seed[key] = float(array[seed]) if array.ndim == 1 and array.size == self.num_seeds else _plain(value)
            self._safely(run.log, per_seed, step=int(step))

    def summary(self, values: Mapping[str, Any]) -> None:
        """Final figures: into the JSONL and each W&B run's summary."""
        self.jsonl.write(json.dumps({"summary": {k: _plain(v) for k, v in values.items()}}) + "\n")
        self.jsonl.flush()
        for run in self.wandb_runs:
            self._safely(run.summary.update, {k: _plain(v) for k, v in values.items()})

    def close(self) -> None:
        self.jsonl.close()
        for run in self.wandb_runs:
            self._safely(run.finish)

    @staticmethod
    def _safely(call, *args, **kwargs) -> None:
        try:
            call(*args, **kwargs)
        except Exception as error:  # logging must never stop a run
            print(f"warning: Weights & Biases call failed ({type(error).__name__}: {error})", file=sys.stderr)


def make_logger(logger_cfg: Mapping[str, Any], run_dir: Path, config: dict, group: str, name: str,
                num_seeds: int) -> Logger:
    """The logger that `logger=...` names (`none`: JSONL only; `wandb`: JSONL + W&B)."""
    kind = logger_cfg.get("kind", "none")
    if kind not in ("none", "wandb"):
        raise ValueError(f"logger.kind: unknown {kind!r}; expected none or wandb")
    return Logger(run_dir, config, group, name, num_seeds, logger_cfg if kind == "wandb" else None)
