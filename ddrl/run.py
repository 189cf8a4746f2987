"""Hydra entry point: `python -m ddrl.run [group=option ...] [+experiment=NAME] [-m]`.

Without an experiment it evaluates one scheduler (or trains and evaluates one agent) on one
environment; `+experiment=NAME` hands the composed config to `ddrl.experiments.NAME`.
Every run writes `config.yaml` (resolved), `manifest.json` (provenance and status, see
ddrl/provenance.py) and, once complete, `summary.json` into its Hydra run directory.

Before Hydra starts, the same overrides are composed and checked once (ddrl/validation.py):
a misspelt key, a wrong type, a non-finite number or an impossible parameter stops with one
line naming the field (exit 2), before anything is compiled. The run directory is then
locked; a directory that holds another run (or, with `resume=true`, a run of another config)
is refused with one line (exit 2). Faults end with one line too: an unreadable checkpoint or
directory, a NaN loss, a training run whose state cannot fit in memory, a training worker
killed by the operating system (exit 1), Ctrl-C or SIGTERM (exit 130); the manifest then says
`failed` and no `summary.json` or `results.md` is left behind.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ddrl.envs.scenarios import ConfigError
from ddrl.training.memory import InsufficientMemoryError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def validate(cfg: DictConfig) -> None:
    """Check what can be checked without compiling anything; raise ConfigError.

    First the typed pass over every field (ddrl.validation), then what needs the
    environment: every env the run builds, and the experiment's own checks.
    """
    from ddrl import validation

    validation.check(cfg)
    runner = cfg.get("experiment_runner")
    if runner is not None:
        module = _experiment_module(runner)
        if hasattr(module, "validate"):
            module.validate(cfg)
        return
    if cfg.env.kind == "mec":
        from ddrl.envs.scenarios import build_mec

        env, _ = build_mec(cfg.env, action_space=cfg.method.get("action_space"))
        if cfg.method.kind == "scheduler":
            from ddrl.schedulers import make_scheduler

            try:
                make_scheduler(cfg.method.name, env)
            except ValueError as error:
                raise ConfigError("method", str(error)) from None


def _experiment_module(runner: str):
    try:
        return importlib.import_module(f"ddrl.experiments.{runner}")
    except ModuleNotFoundError:
        raise ConfigError("experiment_runner", f"no experiment module ddrl.experiments.{runner}") from None


def evaluate_scheduler(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the configured scheduler on S seeds × E episodes; return the summary."""
    import jax

    from ddrl.envs.scenarios import build_mec
    from ddrl.evaluate import evaluate
    from ddrl.schedulers import make_scheduler
    from ddrl.stats import mean_ci

    env, params = build_mec(cfg.env, action_space=cfg.method.get("action_space"))
    policy = make_scheduler(cfg.method.name, env)
    start = time.perf_counter()
    metrics = evaluate(env, params, policy, jax.random.PRNGKey(cfg.seed), cfg.budget.seeds, cfg.budget.eval_episodes)
    metrics = jax.device_get(metrics)
    seconds = time.perf_counter() - start
    results = {}
    for metric in ("make_span", "failure_rate", "raw_delay", "lower_bound"):
        per_seed = getattr(metrics, metric).mean(axis=1)
        mean, ci = mean_ci(per_seed)
        results[metric] = {"mean": mean, "ci95": ci}
    return {
        "methods": [
            {
                "name": cfg.method.name,
                "metric": "make_span_s",
                "mean": results["make_span"]["mean"],
                "ci95": results["make_span"]["ci95"],
                "metrics": results,
                "utilisation": metrics.utilisation.mean(axis=(0, 1)).tolist(),
                "tasks_per_episode": float(metrics.tasks.mean()),
                "seeds": cfg.budget.seeds,
                "episodes": cfg.budget.eval_episodes,
                "scenario": cfg.env.scenario,
                "preset": cfg.env.preset,
                "env_copy": cfg.env.env_copy,
                "action_space": env.actions.kind,
                "allocation": env.allocation,
                "wall_time_s": seconds,
            }
        ]
    }


def print_table(summary: dict[str, Any]) -> None:
    """One line per method: its headline metric with the 95 % CI over seeds."""
    rows = ["| method | scenario | preset | metric | mean ± 95% CI | seeds |", "|---|---|---|---|---|---|"]
    for m in summary["methods"]:
        rows.append(
            f"| {m['name']} | {m.get('scenario', '-')} | {m.get('preset', '-')} | {m['metric']} | "
            f"{m['mean']:.4f} ± {m['ci95']:.4f} | {m['seeds']} |"
        )
    print("\n".join(rows))


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    """Validate, claim the run directory, run, and record the outcome in its manifest."""
    from hydra.core.hydra_config import HydraConfig

    from ddrl import interrupts, provenance

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    resume = bool(cfg.get("resume"))
    stop_on_interrupt = contextlib.ExitStack()  # from the claim to the summary no Ctrl-C is lost
    stop_on_interrupt.enter_context(interrupts.installed())
    try:
        validate(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
        earlier = provenance.claim(run_dir, config, resume)
        manifest = provenance.start(run_dir, config, list(hydra_cfg.overrides.task), resume, earlier)
        if manifest["resumed_across"]:
            print(f"ddrl.run: warning: resuming a run begun with other code or on another machine "
                  f"({'; '.join(manifest['resumed_across'])}): valid, but not bit for bit the uninterrupted "
                  "run; manifest.json lists each part under `earlier`", file=sys.stderr)
    except (ConfigError, provenance.RunDirError) as error:
        stop_on_interrupt.close()
        _fail(str(error))
    except OSError as error:
        stop_on_interrupt.close()
        _fail(f"cannot write to run directory {run_dir}: {error}", code=1)
    except KeyboardInterrupt:  # during the claim: mark the manifest failed if it was written yet
        stop_on_interrupt.close()
        written = provenance.read_manifest(run_dir)  # ours only if `running`: we hold the lock
        _interrupted(cfg, run_dir, written if written and written.get("status") == "running" else None)
    try:
        with stop_on_interrupt:
            summary = _run(cfg, run_dir)
            interrupts.raise_if_requested()  # a Ctrl-C whose exception Python swallowed
            provenance.atomic_write_text(run_dir / "summary.json", provenance.strict_json(summary))
    except KeyboardInterrupt:
        _interrupted(cfg, run_dir, manifest)
    except ConfigError as error:
        provenance.finish(run_dir, manifest, "failed", str(error))
        _fail(str(error))
    except (provenance.CheckpointError, FloatingPointError, InsufficientMemoryError, OSError) as error:
        # FloatingPointError: the NaN guard; InsufficientMemoryError: a run whose state cannot fit
        text = str(error)
        if isinstance(error, OSError):
            text = f"cannot write to run directory {run_dir}: {error}"
        provenance.finish(run_dir, manifest, "failed", text)
        _fail(text, code=1)
    except BrokenProcessPool:  # a worker of `jobs` > 1 ended without an answer (SIGKILL)
        text = ("a training worker process died without an answer (killed by the operating system? an "
                "out-of-memory kill shows in `dmesg`); trainings that finished kept their checkpoints: "
                "resume=true continues from them")
        provenance.finish(run_dir, manifest, "failed", text)
        _fail(text, code=1)
    except BaseException as error:
        provenance.finish(run_dir, manifest, "failed", f"{type(error).__name__}: {error}")
        raise
    provenance.finish(run_dir, manifest, "complete")
    if cfg.get("experiment_runner") is None:  # an experiment has printed its own tables
        print_table(summary)
    print_where(cfg, run_dir)
    return objective(cfg, summary)


def _interrupted(cfg: DictConfig, run_dir: Path, manifest: dict[str, Any] | None) -> None:
    """Ctrl-C or SIGTERM: the manifest (if any) `failed` with where the run stopped (its
    results, if just written, removed by `finish`), one line, exit 130."""
    from ddrl import provenance

    where = provenance.last_step(run_dir)
    text = f"interrupted at step {where[1]} of {where[0]}" if where else "interrupted before any chunk of training ended"
    if manifest is not None:
        provenance.finish(run_dir, manifest, "failed", text)
    print(f"ddrl.run: error: {text}" + ("; resume with resume=true" if "resume" in cfg else "; rerun it"),
          file=sys.stderr)  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit now, without the interpreter's finalisation: a stop that lands while XLA still runs
    # work the loop dispatched made that finalisation crash (SIGSEGV) or re-raise the interrupt
    # (exit -2) in about 1 of 12 tries. Everything that matters is on disk by here: the manifest
    # says `failed`, checkpoints are written atomically and the training workers are stopped.
    os._exit(130)


def _run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The run itself: the experiment's runner, or one scheduler's evaluation."""
    runner = cfg.get("experiment_runner")
    if runner is not None:
        return _experiment_module(runner).run(cfg, run_dir)
    summary = evaluate_scheduler(cfg)
    from ddrl.log import make_logger

    logger = make_logger(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True),
                         group=cfg.experiment_name, name=cfg.method.name, num_seeds=1)  # fmt: skip
    logger.summary({m["name"]: m["mean"] for m in summary["methods"]})
    logger.close()
    return summary


#: The multirun directories whose jobs ran in this process (for the line after the last job).
_SWEEP_DIRS: list[Path] = []


def print_where(cfg: DictConfig, run_dir: Path) -> None:
    """The run's last lines: where its results, plots and W&B runs are."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ddrl.log import wandb_note

    files = [name for name in ("results.md", "summary.json") if (run_dir / name).exists()]
    files += sorted(path.name for path in run_dir.glob("*.png"))
    print(f"results in {run_dir}: {', '.join(files)}")
    note = wandb_note(cfg.logger, run_dir)
    if note:
        print(note)
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN and Path(hydra_cfg.sweep.dir) not in _SWEEP_DIRS:
        _SWEEP_DIRS.append(Path(hydra_cfg.sweep.dir))


def print_sweep_where(sweep_dirs: list[Path]) -> None:
    """After a multirun: where its jobs are, how to tabulate them, how to upload their W&B runs."""
    for sweep_dir in sweep_dirs:
        jobs = sorted(path.parent.name for path in sweep_dir.glob("*/summary.json"))
        print(f"multirun: {len(jobs)} jobs in {sweep_dir}/<job>/; one table of them all: "
              f"python -m ddrl.report {sweep_dir}")  # fmt: skip
        offline = [p for p in ("*/wandb", "*/*/wandb") if any(sweep_dir.glob(f"{p}/offline-run-*"))]
        if offline:
            where = " ".join(str(sweep_dir / p / "offline-run-*") for p in offline)
            print(f"W&B: upload the offline runs of every job with: wandb sync {where}")


def objective(cfg: DictConfig, summary: dict[str, Any]) -> float:
    """The number a Hydra sweeper optimises: the headline method's headline metric, its mean.

    The headline method is the experiment's `headline` if it ran, else the first of `only`, else
    the first method of the summary (a single scheduler run has only one). Its metric is the
    summary's `metric`: make-span in seconds for MEC runs (minimise), the average training
    return for CartPole (maximise). (`python -m ddrl.tune` computes its own objective from
    the training metrics of each batch of trials: `tune.objective`.)
    """
    methods = summary["methods"]
    for name in (cfg.get("headline"), *(cfg.get("only") or [])):
        match = [m for m in methods if m["name"] == name]
        if match:
            return float(match[0]["mean"])
    return float(methods[0]["mean"])


def first_values(overrides: list[str]) -> list[str]:
    """The overrides of one job of a multirun: each sweep's first value (an interval's low
    end), without the `hydra.*` ones, to compose and check the config before Hydra starts."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    composed = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if key.startswith("hydra") or key.lstrip("+~").startswith("hydra"):
            continue
        if override.is_interval_sweep():
            composed.append(f"{key}={override.value().start}")
        elif override.is_sweep_override():
            composed.append(f"{key}={next(iter(override.sweep_string_iterator()))}")
        else:
            composed.append(override.input_line)
    return composed


def precheck(argv: list[str]) -> dict[str, Any]:
    """Compose and validate the command line's config; exit 2 with one line if wrong.

    A sweep is checked at every value of each swept key (the others at their first value)
    and an Optuna interval at both ends, so that no job of a multirun stops on a bad value.
    Returns the resolved config of the sweep's first point.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides: list[str] = []
    alternatives: list[tuple[int, list[str]]] = []  # (index in overrides, its other values)
    try:
        parsed = OverridesParser.create().parse_overrides(_override_args(argv))
        for override in parsed:
            key = override.get_key_element()
            if key.startswith("hydra") or key.lstrip("+~").startswith("hydra"):
                continue
            moved = moved_key(key)
            if moved is not None:
                raise ConfigError(key.lstrip("+~"), moved)
            if override.is_interval_sweep():  # Optuna's interval(low, high): check both ends
                interval = override.value()
                overrides.append(f"{key}={interval.start}")
                alternatives.append((len(overrides) - 1, [f"{key}={interval.end}"]))
            elif override.is_sweep_override():
                values = list(override.sweep_string_iterator())
                overrides.append(f"{key}={values[0]}")
                alternatives.append((len(overrides) - 1, [f"{key}={value}" for value in values[1:]]))
            else:
                overrides.append(override.input_line)
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
            validate(cfg)
            for index, others in alternatives:
                for other in others:
                    validate(compose(config_name="config", overrides=[*overrides[:index], other, *overrides[index + 1:]]))
        return OmegaConf.to_container(cfg, resolve=True)
    except ConfigError as error:
        _fail(str(error))
    except Exception as error:  # Hydra / OmegaConf composition errors
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        cause = error.__cause__
        if cause is not None and str(cause) not in message:
            message += " (" + " ".join(line.strip() for line in str(cause).splitlines() if line.strip()) + ")"
        _fail(message)


# Root keys that moved into a config group: an override of the old name is told the new one.
MOVED_KEYS = {"num_envs": "trainer.num_envs", "num_chunks": "trainer.num_chunks",
              "checkpoint_every_s": "trainer.checkpoint_every_s"}  # fmt: skip


def moved_key(key: str) -> str | None:
    """Why an override's key no longer exists and what replaced it (None: it was not moved).
    The trainer's settings moved into the `trainer` group; the `algo` group holds only
    learners' hyper-parameters, so a method (root or under `methods.`) is a `method` now."""
    bare = key.lstrip("+~")
    if bare in MOVED_KEYS:
        return f"is now {MOVED_KEYS[bare]} (the trainer group, conf/trainer/)"
    group, _, package = bare.partition("@")
    head, _, rest = group.partition(".")
    if head != "algo":
        return None
    if package:
        return (f"is now +method@{package}=NAME (conf/method/: a method's wrapper with its hyper-parameters; "
                "conf/algo/ holds hyper-parameters only)")  # fmt: skip
    return (f"is now method{'.' + rest if rest else ''} (conf/method/: the method wrapper; conf/algo/ holds "
            "hyper-parameters only)")  # fmt: skip

_FLAGS_WITH_VALUE = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--experimental-rerun")


def _override_args(argv: list[str]) -> list[str]:
    """The command line's overrides, without Hydra's own flags (and their values)."""
    overrides, skip_next = [], False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in _FLAGS_WITH_VALUE:
            skip_next = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def literal_run_dir(argv: list[str]) -> Path | None:
    """The `hydra.run.dir=PATH` of a single run's command line when PATH is literal (no ${...})."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(arg in ("-m", "--multirun") for arg in argv):
        return None
    for override in OverridesParser.create().parse_overrides(_override_args(argv)):
        if override.get_key_element().lstrip("+~") == "hydra.run.dir":
            value = override.value()
            return Path(value) if isinstance(value, str) and "${" not in value else None
    return None


def claim_run_dir(argv: list[str], config: dict[str, Any]) -> None:
    """Before Hydra writes `.hydra/` there: lock a literal run directory and check it may be used.

    So that a refused run (locked, another run's results, a resume with another config)
    leaves the directory as it was. Timestamped and multirun directories are new, and
    `hydra_main` claims them itself.
    """
    from ddrl import provenance

    run_dir = literal_run_dir(argv)
    if run_dir is None:
        return
    try:
        provenance.claim(run_dir, config, bool(config.get("resume")))
    except provenance.RunDirError as error:
        _fail(str(error))


def _fail(message: str, code: int = 2) -> None:
    print(f"ddrl.run: error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    argv = sys.argv[1:]
    if not any(a in ("--help", "-h", "--info", "--cfg", "-c") or a.startswith("--info") for a in argv):
        config = precheck(argv)
        claim_run_dir(argv, config)
    hydra_main()
    print_sweep_where(_SWEEP_DIRS)


if __name__ == "__main__":
    main()
