"""Metric sinks: console, JSONL in the run directory, and Weights & Biases (offline by default).

`make_logger(cfg.logger, run_dir, config, group, name, num_seeds)` returns one `Logger`:
metrics arrive per seed (arrays of shape (num_seeds,)) and go to `metrics.jsonl` and, with
`logger=wandb`, to one W&B run per seed. The W&B runs are grouped by experiment and, in a
Hydra multirun, by sweep (group `<experiment_name>@<sweep id>`, the sweep id being the last
two parts of `hydra.sweep.dir`, `<date>_<time>` by default); their job type is the algorithm
and their tags name the scenario, preset (or view), budget and, in a sweep, the job's
overrides (`wandb_init_kwargs` builds them). Offline runs land in `<run dir>/wandb/`, to be
uploaded with `wandb sync`; `wandb_note` is the line that says where they are. W&B is silent
on the console (no banner per run) unless `logger.verbose=true`. A W&B failure (not installed, no network, bad credentials)
prints one warning and logging goes on without it: logging never stops a run.
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

            sweep = hydra_sweep()
            for seed in range(self.num_seeds):
                kwargs = wandb_init_kwargs(cfg, config, group, name, seed, self.run_dir, sweep)
                self.wandb_runs.append(wandb.init(**kwargs, reinit="create_new"))
        except Exception as error:  # logging must never stop a run
            print(f"warning: Weights & Biases disabled ({type(error).__name__}: {error})", file=sys.stderr)
            for run in self.wandb_runs:  # the seeds' runs started before the failure
                self._safely(run.finish)
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


def hydra_sweep() -> dict[str, Any] | None:
    """The Hydra multirun this process runs a job of: its id, directory, job number and overrides.

    None outside a multirun (a single run, or no Hydra at all).
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return None
        sweep_dir = Path(str(hydra_cfg.sweep.dir))
        return {
            "id": "_".join(sweep_dir.parts[-2:]),
            "dir": str(sweep_dir),
            "job": int(hydra_cfg.job.num),
            "overrides": [str(o) for o in hydra_cfg.overrides.task],
        }
    except Exception:  # Hydra absent or its config incomplete: no sweep to group by
        return None


#: Views of the scheduling experiments and the preset each runs (ddrl.experiments.scheduling).
VIEW_PRESETS = {"clean": "clean", "fidelity": "fidelity", "published": "fidelity"}


def _method_and_view(config: Mapping[str, Any], name: str) -> tuple[Mapping[str, Any] | None, str | None]:
    """The method config that `name` logs (`<key>` or `<view>-<key>` of `config["methods"]`), and its view."""
    methods = config.get("methods") or {}
    if name in methods:
        return methods[name], None
    view, _, key = name.partition("-")
    if key in methods and view in VIEW_PRESETS:
        return methods[key], view
    return None, None


def wandb_init_kwargs(wandb_cfg: Mapping[str, Any], config: Mapping[str, Any], group: str, name: str,
                      seed: int, run_dir: Path, sweep: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `wandb.init` arguments of seed `seed` of method `name` (without `reinit`).

    group: `wandb_cfg.group` if set, else `group` (the experiment name), `@<sweep id>` appended
    in a multirun; job_type: the algorithm (`methods.<name>.name` in an experiment, else
    `method.name`); tags: `wandb_cfg.tags`, then `scenario:`, `preset:` (or `view:` and its
    preset), `budget:`, and in a multirun `sweep:<id>` and each override of the job;
    settings: silent (nothing on the console) unless `wandb_cfg.verbose`.
    """
    method, view = _method_and_view(config, name)
    algo = (method or {}).get("name") or (config.get("method") or {}).get("name") or name
    env = config.get("env") or {}
    budget = config.get("budget") or {}
    run_group = wandb_cfg.get("group") or group
    tags = [str(tag) for tag in wandb_cfg.get("tags") or []]
    tags.append(f"scenario:{env.get('scenario') or env.get('name') or '?'}")
    if view is not None:
        tags += [f"view:{view}", f"preset:{VIEW_PRESETS[view]}"]
    elif env.get("preset") is not None:
        tags.append(f"preset:{env['preset']}")
    if budget.get("name") is not None:
        tags.append(f"budget:{budget['name']}")
    run_name = f"{name}-seed{seed}"
    run_config = {**config, "seed_index": seed}
    if sweep is not None:
        if not wandb_cfg.get("group"):
            run_group = f"{run_group}@{sweep['id']}"
        tags.append(f"sweep:{sweep['id']}")
        tags += list(sweep.get("overrides") or [])
        run_name = f"{name}-job{sweep['job']}-seed{seed}"
        run_config["sweep"] = dict(sweep)
    tags = list(dict.fromkeys(tag[:64] for tag in tags if tag))  # W&B wants 1 to 64 characters a tag
    return {
        "project": wandb_cfg.get("project", "ddrl"), "entity": wandb_cfg.get("entity"),
        "group": run_group[:128], "job_type": str(algo)[:64], "name": run_name, "tags": tags,
        "config": run_config, "mode": wandb_cfg.get("mode", "offline"), "dir": str(run_dir),
        "settings": {"silent": not wandb_cfg.get("verbose", False)},
    }


def wandb_note(logger_cfg: Mapping[str, Any], run_dir: Path) -> str | None:
    """One line: how many W&B runs `run_dir` holds, where, and the command that uploads them.

    Offline runs are in `<run dir>/wandb/` (a scheduler run) or `<run dir>/<method>/wandb/` (an
    experiment). None without W&B runs there (`logger=none`, W&B disabled or failing).
    """
    if logger_cfg.get("kind") != "wandb":
        return None
    run_dir = Path(run_dir)
    offline = logger_cfg.get("mode", "offline") == "offline"
    prefix = "offline-run-*" if offline else "run-*"
    patterns = [p for p in ("wandb", "*/wandb") if any(run_dir.glob(f"{p}/{prefix}"))]
    if not patterns:
        return None
    count = sum(len(list(run_dir.glob(f"{p}/{prefix}"))) for p in patterns)
    where = " ".join(str(run_dir / p / prefix) for p in patterns)
    runs = f"{count} {'offline ' if offline else ''}run{'s' if count != 1 else ''}"
    if offline:
        return f"W&B: {runs} in {where}; upload {'them' if count != 1 else 'it'} with: wandb sync {where}"
    return f"W&B: {runs} synced to project {logger_cfg.get('project', 'ddrl')} (local copies: {where})"


def make_logger(logger_cfg: Mapping[str, Any], run_dir: Path, config: dict, group: str, name: str,
                num_seeds: int) -> Logger:
    """The logger that `logger=...` names (`none`: JSONL only; `wandb`: JSONL + W&B)."""
    kind = logger_cfg.get("kind", "none")
    if kind not in ("none", "wandb"):
        raise ValueError(f"logger.kind: unknown {kind!r}; expected none or wandb")
    return Logger(run_dir, config, group, name, num_seeds, logger_cfg if kind == "wandb" else None)
