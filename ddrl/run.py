"""Hydra entry point: `python -m ddrl.run [group=option ...] [+experiment=NAME] [-m]`.

Without an experiment it evaluates one scheduler (or trains and evaluates one agent) on one
environment; `+experiment=NAME` hands the composed config to `ddrl.experiments.NAME`.
Every run writes `config.yaml` (resolved) and `summary.json` into its Hydra run directory.

Before Hydra starts, the same overrides are composed and checked once: a misspelt key, an
unknown option or an impossible parameter stops with one line naming the field (exit 2),
before anything is compiled.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ddrl.envs.scenarios import ConfigError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def validate(cfg: DictConfig) -> None:
    """Check what can be checked without compiling anything; raise ConfigError."""
    if cfg.budget.seeds < 1:
        raise ConfigError("budget.seeds", f"must be >= 1, got {cfg.budget.seeds}")
    if cfg.budget.eval_episodes < 1:
        raise ConfigError("budget.eval_episodes", f"must be >= 1, got {cfg.budget.eval_episodes}")
    if cfg.budget.train_steps is not None and cfg.budget.train_steps < 1:
        raise ConfigError("budget.train_steps", f"must be >= 1, got {cfg.budget.train_steps}")
    episodes = cfg.budget.get("episodes")
    if episodes is not None and episodes < 1:
        raise ConfigError("budget.episodes", f"must be >= 1, got {episodes}")
    runner = cfg.get("experiment_runner")
    if runner is not None:
        module = _experiment_module(runner)
        if hasattr(module, "validate"):
            module.validate(cfg)
        return
    if cfg.env.kind == "mec":
        from ddrl.envs.scenarios import build_mec

        env, _ = build_mec(cfg.env, action_space=cfg.algo.get("action_space"))
        if cfg.algo.kind == "scheduler":
            from ddrl.schedulers import make_scheduler

            try:
                make_scheduler(cfg.algo.name, env)
            except ValueError as error:
                raise ConfigError("algo", str(error)) from None


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

    env, params = build_mec(cfg.env, action_space=cfg.algo.get("action_space"))
    policy = make_scheduler(cfg.algo.name, env)
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
                "name": cfg.algo.name,
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
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    validate(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    episodes = cfg.budget.get("episodes")
    if episodes is not None and episodes < 1:
        raise ConfigError("budget.episodes", f"must be >= 1, got {episodes}")
    runner = cfg.get("experiment_runner")
    if runner is not None:
        summary = _experiment_module(runner).run(cfg, run_dir)
    elif cfg.algo.kind == "scheduler":
        summary = evaluate_scheduler(cfg)
        from ddrl.log import make_logger

        logger = make_logger(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True),
                             group=cfg.experiment_name, name=cfg.algo.name, num_seeds=1)
        logger.summary({m["name"]: m["mean"] for m in summary["methods"]})
        logger.close()
    else:
        raise ConfigError("algo", f"{cfg.algo.name} is a learning agent; run it through an +experiment")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(summary)
    print(f"run directory: {run_dir}")
    return objective(cfg, summary)


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


def precheck(argv: list[str]) -> None:
    """Compose and validate the command line's config once; exit 2 with one line if wrong."""
    from hydra import compose, initialize_config_dir

    try:
        overrides = first_values(_override_args(argv))
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        validate(cfg)
    except ConfigError as error:
        _fail(str(error))
    except Exception as error:  # Hydra / OmegaConf composition errors
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        cause = error.__cause__
        if cause is not None and str(cause) not in message:
            message += " (" + " ".join(line.strip() for line in str(cause).splitlines() if line.strip()) + ")"
        _fail(message)


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


def _fail(message: str) -> None:
    print(f"ddrl.run: error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    if not any(a in ("--help", "-h", "--info", "--cfg", "-c") or a.startswith("--info") for a in sys.argv[1:]):
        precheck(sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
