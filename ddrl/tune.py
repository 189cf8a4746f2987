"""Hyper-parameter search with Optuna: `python -m ddrl.tune +experiment=hpsearch_d2sac [-m ...]`.

A persistent study (journal file by default, or an RDB URL such as `sqlite:///study.db`)
that survives the process, that a rerun of the same command continues and that many
processes (a Slurm array) feed at once. Trials are trained in batches: `tune.batch` trials
are asked from the sampler, trained together by `ddrl.hpsearch.search_settings` (numeric
hyper-parameters vmapped with the seeds in one compiled program; shape-setting ones, such
as the diffusion steps T, one program per value) and told together.

    python -m ddrl.tune +experiment=hpsearch_d2sac                     # 32 trials, 8 at a time
    python -m ddrl.tune +experiment=hpsearch_d2sac tune.n_trials=16    # 16 more in the same study
    python -m ddrl.tune +experiment=hpsearch_d2sac 'tune.params.gamma=choice(0.95,0.99)'
    python -m ddrl.tune -m +experiment=hpsearch_d2sac hydra/launcher=slurm tune.worker=0,1,2,3
    optuna-dashboard studies/hpsearch_d2sac.journal

The search space (`tune.params`) uses the syntax of Hydra's Optuna sweeper: `interval(a, b)`,
`int(interval(a, b))`, `tag(log, interval(a, b))`, `choice(x, y, ...)`, `range(a, b[, step])`
(b excluded, as Hydra's range). Its names are hyper-parameters of the method `tune.method`.
An unknown name, an empty range or a bad value stops with one line (exit 2) before anything
is compiled.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddrl import agents
from ddrl.envs.scenarios import ConfigError
from ddrl.run import CONFIG_DIR
from ddrl.run import validate as validate_run

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler", "cmaes": "CmaEsSampler"}


@dataclasses.dataclass
class Problem:
    """What every trial of a study trains: the method's base config, its environment, its budget."""

    algo_cfg: dict[str, Any]
    env: Any
    env_params: Any
    train_steps: int
    num_seeds: int
    num_chunks: int
    num_envs: int | None = None


# ----------------------------------------------------------------------------- search space


def search_space(algo_cfg: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`tune.params` → {name: optuna distribution}; ConfigError naming the bad entry.

    Names must be fields of the agent's `Config`; choices that are lists (network widths)
    become categorical strings, decoded by `decode`.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from ddrl.training import split_method

    name = algo_cfg["name"]
    config = agents.make_config(name, split_method(algo_cfg)[1])
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if not params:
        raise ConfigError("tune.params", "empty search space: give at least one hyper-parameter")
    parser = OverridesParser.create()
    space = {}
    for key, text in params.items():
        field = f"tune.params.{key}"
        if key not in fields:
            raise ConfigError(field, f"{name} has no hyper-parameter {key!r}; its fields: {sorted(fields)}")
        try:
            value = parser.parse_override(f"{key}={text}").value()
        except Exception as error:  # the override grammar's own message, on one line
            raise ConfigError(field, " ".join(str(error).split())) from None
        is_float = isinstance(fields[key], float)
        if isinstance(value, IntervalSweep):
            low, high, log = value.start, value.end, "log" in value.tags
            if low > high:
                raise ConfigError(field, f"empty range: interval({low}, {high}) has low > high")
            if log and low <= 0:
                raise ConfigError(field, f"a log interval needs low > 0, got {low}")
            if isinstance(low, int) and isinstance(high, int) and not is_float:
                space[key] = IntDistribution(low, high, log=log)
            else:
                space[key] = FloatDistribution(float(low), float(high), log=log)
        elif isinstance(value, RangeSweep):
            step = value.step
            values = np.arange(value.start, value.stop, step)
            if values.size == 0:
                raise ConfigError(field, f"empty range: range({value.start}, {value.stop}, {step})")
            if all(isinstance(v, int) for v in (value.start, value.stop, step)):
                space[key] = IntDistribution(int(values[0]), int(values[-1]), step=int(step))
            else:
                space[key] = FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
        elif isinstance(value, ChoiceSweep):
            choices = [repr(c) if isinstance(c, (list, tuple)) else c for c in value.list]
            space[key] = CategoricalDistribution(choices)
        else:
            raise ConfigError(field, f"not a search dimension: {text!r} (set methods.<method>.{key} to fix a value)")
    return space


def decode(params: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's params as hyper-parameter values: list choices back from their strings."""
    return {k: ast.literal_eval(v) if isinstance(v, str) and isinstance(fields.get(k), (list, tuple)) else v
            for k, v in params.items()}  # fmt: skip


# ----------------------------------------------------------------------------- the problem


def method_config(cfg: DictConfig) -> dict[str, Any]:
    """The searched method's config (`methods[tune.method]`) as a dict."""
    key = cfg.tune.method
    if key not in cfg.get("methods", {}):
        raise ConfigError("tune.method", f"{key!r} is not one of the methods {list(cfg.get('methods', {}))}")
    method = cfg.methods[key]
    if method.get("kind") == "scheduler" or method.name not in agents.REGISTRY:
        raise ConfigError("tune.method", f"{key!r} ({method.name}) is not a learning agent")
    return OmegaConf.to_container(method, resolve=True)


def build_problem(cfg: DictConfig) -> Problem:
    """The method, environment and budget of every trial, as the experiment runner trains them.

    CartPole (`experiment_runner: cartpole`): the gymnax environment, `budget.train_steps`
    (else `default_train_steps`) steps. MEC (`scheduling`): the view `tune.view`'s
    environment, the episode budget in decisions, the slot schedule converted to it and
    `num_envs` environments per seed, as `+experiment=amsa` trains the method.
    """
    key = cfg.tune.method
    method_config(cfg)
    method = cfg.methods[key]
    num_seeds = int(cfg.budget.seeds)
    num_chunks = int(cfg.budget.get("num_chunks") or cfg.trainer.num_chunks)
    if cfg.get("experiment_runner") == "scheduling":
        from ddrl.experiments import scheduling

        env_cfg = scheduling.view_env_config(cfg, cfg.tune.view, key)
        if env_cfg is None:
            raise ConfigError("tune.view", f"{key!r} does not run in view {cfg.tune.view!r}")
        setup = scheduling.setup_method(cfg, method, env_cfg)
        algo_cfg = OmegaConf.to_container(setup.method, resolve=True)
        return Problem(algo_cfg, setup.env, setup.params, setup.train_steps, num_seeds, num_chunks, cfg.trainer.num_envs)
    import gymnax

    if cfg.env.get("kind") != "gymnax":
        raise ConfigError("env", f"ddrl.tune trains on gymnax environments or through +experiment=amsa-like "
                                 f"MEC experiments, not env {cfg.env.name!r} alone")  # fmt: skip
    cap = cfg.budget.get("learning_starts")
    if cap is not None and "learning_starts" in method:
        method = OmegaConf.merge(method, {"learning_starts": min(int(method.learning_starts), int(cap))})
    env, env_params = gymnax.make(cfg.env.id)
    train_steps = int(cfg.budget.train_steps or cfg.default_train_steps)
    return Problem(OmegaConf.to_container(method, resolve=True), env, env_params, train_steps, num_seeds,
                   num_chunks, cfg.trainer.num_envs)  # fmt: skip


def objective_values(metrics: Mapping[str, np.ndarray], objective: Mapping[str, Any]) -> np.ndarray:
    """Per setting and seed, the objective: `metric` averaged over all chunks or its last chunk.

    `metrics` are a `SearchResult`'s, shape (settings, seeds, chunks). Returns (settings, seeds);
    NaN where a run completed no episode.
    """
    name = objective["metric"]
    if name not in metrics:
        raise ConfigError("tune.objective.metric", f"{name!r} is not a training metric; have {sorted(metrics)}")
    values = np.asarray(metrics[name], float)
    if objective.get("chunks", "all") == "last":
        return values[..., -1]
    with np.errstate(all="ignore"):
        finite = np.isfinite(values)
        total = np.where(finite, values, 0.0).sum(axis=-1)
        return np.where(finite.any(axis=-1), total / np.maximum(finite.sum(axis=-1), 1), np.nan)


# ----------------------------------------------------------------------------- the study


def storage_of(url: str, cwd: Path | str = ".") -> Any:
    """An optuna storage: an RDB URL (`sqlite:///x.db`, `postgresql://...`) as is, else a
    journal file path (relative to `cwd`) behind a `JournalStorage`, created if missing."""
    import optuna

    if "://" in str(url):
        return str(url)
    path = Path(cwd) / Path(str(url).removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(sampler_cfg: Mapping[str, Any], seed: int) -> Any:
    """The sampler `tune.sampler.kind` with `seed` and its arguments `tune.sampler.<kind>`."""
    import optuna

    kind = sampler_cfg.get("kind", "tpe")
    if kind not in SAMPLERS:
        raise ConfigError("tune.sampler.kind", f"unknown sampler {kind!r}; expected one of {sorted(SAMPLERS)}")
    options = dict(sampler_cfg.get(kind) or {})
    try:
        return getattr(optuna.samplers, SAMPLERS[kind])(seed=seed, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"tune.sampler.{kind}", str(error)) from None


def open_study(tune_cfg: Mapping[str, Any], cwd: Path | str = ".") -> Any:
    """Create the study, or load it with `load_if_exists` (a rerun continues it)."""
    import optuna

    return optuna.create_study(
        study_name=str(tune_cfg["study_name"]), storage=storage_of(tune_cfg["storage"], cwd),
        direction=str(tune_cfg["direction"]), load_if_exists=bool(tune_cfg["load_if_exists"]),
    )  # fmt: skip


def tune(cfg: DictConfig, cwd: Path | str = ".", out_dir: Path | str | None = None) -> dict[str, Any]:
    """Ask, train and tell `tune.n_trials` trials in batches of `tune.batch`; return a summary.

    The sampler's seed is drawn from (`tune.sampler.seed`, `tune.worker`, the trials already in
    the study), so parallel workers and reruns do not repeat each other's random trials. A
    batch that raises (or is interrupted) is told FAIL before the error propagates; a trial
    whose objective is NaN is told FAIL.
    """
    import optuna

    from ddrl.hpsearch import search_settings

    tune_cfg = OmegaConf.to_container(cfg.tune, resolve=True)
    problem = build_problem(cfg)
    space = search_space(problem.algo_cfg, tune_cfg["params"])
    fields = dataclasses.asdict(agents.make_config(problem.algo_cfg["name"]))
    study = open_study(tune_cfg, cwd)
    first = len(study.trials)
    seed = int(np.random.SeedSequence([int(tune_cfg["sampler"].get("seed") or 0), int(tune_cfg["worker"]),
                                       first]).generate_state(1)[0])  # fmt: skip
    study.sampler = make_sampler(tune_cfg["sampler"], seed)
    batches = []
    remaining = int(tune_cfg["n_trials"])
    while remaining > 0:
        size = min(int(tune_cfg["batch"]), remaining)
        trials = [study.ask(space) for _ in range(size)]
        settings = [decode(t.params, fields) for t in trials]
        try:
            result = search_settings(
                problem.algo_cfg, problem.env, problem.env_params, settings, problem.num_seeds,
                problem.train_steps, seed=int(cfg.seed), num_chunks=problem.num_chunks,
                num_envs=problem.num_envs,
            )  # fmt: skip
            values = objective_values(result.metrics, tune_cfg["objective"])
        except BaseException:
            for trial in trials:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        for trial, per_seed in zip(trials, values, strict=True):
            trial.set_user_attr("per_seed", [float(v) for v in per_seed])
            trial.set_user_attr("worker", int(tune_cfg["worker"]))
            value = float(np.mean(per_seed))
            if np.isfinite(value):
                study.tell(trial, value)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        batch = {"trials": [t.number for t in trials], "values": [float(np.mean(v)) for v in values],
                 "programs": result.programs, "compile_s": round(result.compile_s, 2),
                 "run_s": round(result.run_s, 2)}  # fmt: skip
        batches.append(batch)
        print(json.dumps({"study": study.study_name, **batch}), flush=True)
        remaining -= size
    summary = study_summary(study)
    summary.update(worker=int(tune_cfg["worker"]), batches=batches, first_trial=first)
    if out_dir is not None:
        (Path(out_dir) / "tune.json").write_text(json.dumps(summary, indent=2))
    return summary


def study_summary(study: Any) -> dict[str, Any]:
    """The study's trial counts by state and its best trial (None before one completes)."""
    import optuna

    states = [t.state for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "trials": len(states),
        "complete": len(complete),
        "failed": sum(s == optuna.trial.TrialState.FAIL for s in states),
        "best_value": None if best is None else best.value,
        "best_params": None if best is None else best.params,
        "best_trial": None if best is None else best.number,
    }


# ----------------------------------------------------------------------------- command line


def validate(cfg: DictConfig) -> None:
    """Everything `ddrl.run` checks, plus the search: method, space, sampler, objective."""
    validate_run(cfg)
    if cfg.get("tune") is None:
        raise ConfigError("tune", "no tune section: use a search config such as +experiment=hpsearch_d2sac")
    tune_cfg = cfg.tune
    if tune_cfg.direction not in ("minimize", "maximize"):
        raise ConfigError("tune.direction", f"expected minimize or maximize, got {tune_cfg.direction!r}")
    for key in ("n_trials", "batch"):
        if int(tune_cfg[key]) < 1:
            raise ConfigError(f"tune.{key}", f"must be >= 1, got {tune_cfg[key]}")
    if tune_cfg.objective.get("chunks", "all") not in ("all", "last"):
        raise ConfigError("tune.objective.chunks", f"expected all or last, got {tune_cfg.objective.chunks!r}")
    make_sampler(OmegaConf.to_container(tune_cfg.sampler, resolve=True), 0)
    search_space(method_config(cfg), OmegaConf.to_container(tune_cfg.params, resolve=True))


def quote_params(argv: list[str]) -> list[str]:
    """Command-line `tune.params.NAME=interval(...)` as quoted strings, so that Hydra keeps the
    search space's syntax for the study instead of reading it as a multirun sweep."""
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+").startswith("tune.params.") and not value.startswith(("'", '"')):
            arg = f"{key}='{value}'"
        quoted.append(arg)
    return quoted


def precheck(argv: list[str]) -> None:
    """Compose and check the config once, before Hydra starts; exit 2 with one line if wrong."""
    from hydra import compose, initialize_config_dir

    from ddrl.run import _override_args, first_values

    try:
        overrides = first_values(_override_args(argv))
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        validate(cfg)
    except ConfigError as error:
        _fail(str(error))
    except Exception as error:  # Hydra / OmegaConf composition errors
        _fail(" ".join(line.strip() for line in str(error).splitlines() if line.strip()))


def _fail(message: str) -> None:
    print(f"ddrl.tune: error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    runtime = HydraConfig.get().runtime
    validate(cfg)
    out_dir = Path(runtime.output_dir)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    started = time.perf_counter()
    summary = tune(cfg, cwd=runtime.cwd, out_dir=out_dir)
    print(json.dumps({**{k: v for k, v in summary.items() if k != "batches"},
                      "wall_s": round(time.perf_counter() - started, 1)}))  # fmt: skip
    return summary["best_value"]


def main() -> None:
    sys.argv = [sys.argv[0], *quote_params(sys.argv[1:])]
    if not any(a in ("--help", "-h", "--info", "--cfg", "-c") or a.startswith("--info") for a in sys.argv[1:]):
        precheck(sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
