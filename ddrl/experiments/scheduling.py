"""MEC scheduling tables: learned schedulers and baselines trained and evaluated per view.

Used by `+experiment=amsa` (scenario amcoedge: DDRL-AMSA, DDRL-ATS and the seed's
baselines) and `+experiment=ats` (scenario ladts: LAD-TS's comparison). Every learner trains
`budget.seeds` vmapped seeds for the same number of environment steps (the episode budget
times the expected decisions per episode); every method, learned or not, is then evaluated
greedily on the same evaluation episodes (same keys) of each view's environment.

Views (`views` in the experiment config):
  clean      every method on the corrected environment (the headline);
  fidelity   every method on the authors' own simulator (fidelity preset, env copy `own`);
  published  each baseline with a published environment copy on that copy (`published_env`),
             which should land near the authors' reported numbers; methods whose copy is
             `own` reuse their fidelity-view result.
  any key of `scenario_views`: every method on the clean environment with that view's `env`
             overrides (e.g. `+experiment=trace`: load levels, capacity noise, the prototype).

With `delay_percentiles: true` the tables add the p50/p95/p99 of per-task raw delays and
`delay_cdf.png` their distributions (tail latency, what AIGC users feel).

Scenario sweeps (`+experiment=sweep`, issue 5) set `skip_unbuildable: true`: a method whose
action space or scheduler cannot exist at this point (a subset space at B > 16, a scheduler
that needs the clean preset) is left out with a note in results.md and in summary.json's
`skipped`, instead of stopping the run; `fallbacks` (method -> method) runs a method only
where the one it stands in for was left out; `decision_time: false` skips the latency probe.

Zero-shot transfer (`+experiment=scale`): a learner with `train_view: V` trains only in view V
and is evaluated in every other view with V's trained weights (`ddrl.agents.transfer_weights`,
no retraining); its rows say `trained_in`. V runs first; a method identical to another one but
for its label and `train_view` reuses that one's training in V. A scenario view may carry a
number `x` (the experiment's `x_axis`, e.g. B): then `scale.md` and `scale.png` set make-span,
failure rate and the gap to the yardstick against it.

`plan_runs` fixes every (view, method) and how its row is made before anything trains (its
environment and converted config made once, for the plan and the run). With `jobs` > 1 (the table experiments say `auto`: one per CPU core up
to 4) the learners train at once in spawned worker processes while the schedulers are
evaluated here; a worker runs exactly the program this process would, so the rows are the
same for any `jobs` (tests/test_experiments_mec.py compares them number by number). The
learners' small matrix products do not fill two cores from one process: on this project's
2-core CPU the main job takes 28 min with two workers against 34 min with one (README, Speed).

Writes `results.md` (per view: make-span ± 95 % CI over seeds, failure rate, gap to
optimal_myopic, training wall time, decision time per task; the headline method's
reductions with bootstrap intervals beside the seed paper's claims), `learning_curves.png`,
`<view>_<method>_history.npz`, JSONL / W&B logs, and returns the summary for summary.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import math
import multiprocessing
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddrl import agents
from ddrl.envs.scenarios import ConfigError, build_mec
from ddrl.evaluate import delay_percentiles
from ddrl.progress import ExperimentProgress
from ddrl.provenance import atomic_write_text
from ddrl.schedulers import SCHEDULERS, make_scheduler
from ddrl.experiments.tables import (PERCENTILES, comparisons, fmt_mean_ci, plot_against_x, plot_delay_distributions,
                                    plot_learning_curves, results_table, scale_table)
from ddrl.stats import mean_ci, relative_difference
from ddrl.timing import decision_time_us

VIEWS = ("clean", "fidelity", "published")


def validate(cfg: DictConfig) -> None:
    """Methods name a known agent or scheduler; views, `only` and copies are known."""
    for key, method in cfg.methods.items():
        kind = method.get("kind")
        if kind == "scheduler" and method.name not in SCHEDULERS:
            raise ConfigError(f"methods.{key}.name", f"unknown scheduler {method.name!r}")
        if kind != "scheduler" and method.name not in agents.REGISTRY:
            raise ConfigError(f"methods.{key}.name", f"unknown agent {method.name!r}")
        if kind != "scheduler":  # misspelt hyper-parameters fail here, before any training
            from ddrl.training import METHOD_KEYS

            hyper = {k: v for k, v in OmegaConf.to_container(method).items() if k not in METHOD_KEYS}
            try:
                agents.make_config(method.name, hyper)
            except (ValueError, TypeError) as error:
                raise ConfigError(f"methods.{key}", str(error)) from None
    known = list(VIEWS) + list(cfg.get("scenario_views") or {})
    for view in cfg.views:
        if view not in known:
            raise ConfigError("views", f"unknown view {view!r}; expected some of {known}")
    for key in cfg.get("only") or []:
        if key not in cfg.methods:
            raise ConfigError("only", f"{key!r} is not one of the methods {list(cfg.methods)}")
    for key in cfg.get("published_env") or {}:
        if key not in cfg.methods:
            raise ConfigError("published_env", f"{key!r} is not one of the methods {list(cfg.methods)}")
    if cfg.headline not in cfg.methods:
        raise ConfigError("headline", f"{cfg.headline!r} is not one of the methods")
    for key, stands_in_for in (cfg.get("fallbacks") or {}).items():
        if key not in cfg.methods or stands_in_for not in cfg.methods:
            raise ConfigError("fallbacks", f"{key!r} -> {stands_in_for!r}: both must be methods {list(cfg.methods)}")
    for view in cfg.views:  # every environment the run will build, before anything trains
        for key, method in _selected(cfg).items():
            env_cfg = view_env_config(cfg, view, key)
            if env_cfg is not None:
                unbuildable(cfg, key, method, env_cfg)
    for key, method in _selected(cfg).items():
        if method.get("train_view") is not None:
            _check_transfer(cfg, key, method)


def _check_transfer(cfg: DictConfig, key: str, method: DictConfig) -> None:
    """A `train_view` method: a learner, its training view part of the run, and weights that
    fit every other view's environment (shapes only: nothing is compiled)."""
    from ddrl.training import make_trainer

    train_view = str(method.train_view)
    if method.get("kind") == "scheduler":
        raise ConfigError(f"methods.{key}.train_view", "a scheduler is not trained")
    if train_view not in cfg.views or view_env_config(cfg, train_view, key) is None:
        raise ConfigError(f"methods.{key}.train_view", f"{train_view!r} is not one of this run's views for it "
                          f"({list(cfg.views)}): the method trains there; add it to views or leave the "
                          f"method out with only=[...]")  # fmt: skip

    def weight_shapes(view: str) -> Any:
        setup = setup_method(cfg, method, view_env_config(cfg, view, key))
        trainer = make_trainer(setup.method, setup.env, setup.params, setup.train_steps, num_envs=1, num_chunks=1)
        return jax.eval_shape(trainer.init_agent, jax.random.PRNGKey(0))

    source = weight_shapes(train_view)
    for view in cfg.views:
        env_cfg = view_env_config(cfg, view, key)
        if view == train_view or env_cfg is None or unbuildable(cfg, key, method, env_cfg) is not None:
            continue
        try:
            agents.transfer_weights(source, weight_shapes(view))
        except ValueError as error:
            raise ConfigError(f"methods.{key}.train_view", f"view {view}: {error}") from None


def _view_order(cfg: DictConfig) -> list[str]:
    """The views in the order they run: those other methods transfer from first."""
    sources = {str(m.train_view) for m in _selected(cfg).values() if m.get("train_view") is not None}
    return [v for v in cfg.views if v in sources] + [v for v in cfg.views if v not in sources]


def _same_training(method: DictConfig, other: DictConfig) -> bool:
    """Whether two method configs train the same way (label, views and train_view aside)."""
    ignored = ("label", "views", "train_view")
    strip = lambda m: {k: v for k, v in OmegaConf.to_container(m, resolve=True).items() if k not in ignored}  # noqa: E731
    return strip(method) == strip(other)


def unbuildable(cfg: DictConfig, key: str, method: DictConfig, env_cfg: DictConfig) -> str | None:
    """Why `method` cannot run on `env_cfg` (None: it can).

    Without `skip_unbuildable` every reason is a ConfigError. With it, an action space the
    environment cannot offer or a scheduler that cannot act in it becomes the returned
    reason; any other config error still stops the run.
    """
    skip = bool(cfg.get("skip_unbuildable"))
    try:
        env, _ = build_mec(env_cfg, action_space=method.get("action_space"))
        if method.get("kind") == "scheduler":
            try:
                make_scheduler(method.name, env)
            except ValueError as error:
                raise ConfigError(f"methods.{key}", str(error)) from None
    except ConfigError as error:
        if skip and error.field_name in ("env.action_space", f"methods.{key}"):
            return str(error)
        raise
    return None


def _selected(cfg: DictConfig) -> dict[str, Any]:
    keys = cfg.get("only") or list(cfg.methods)
    return {key: cfg.methods[key] for key in keys}


def view_env_config(cfg: DictConfig, view: str, key: str) -> DictConfig | None:
    """The env config of method `key` in `view` (None: the method is not part of the view).

    A method config may list `views` to run in fewer views than the experiment.
    """
    only_views = cfg.methods[key].get("views")
    if only_views is not None and view not in only_views:
        return None
    if view == "clean":
        return OmegaConf.merge(cfg.env, {"preset": "clean", "env_copy": "own"})
    if view == "fidelity":
        return OmegaConf.merge(cfg.env, {"preset": "fidelity", "env_copy": "own"})
    if view in (cfg.get("scenario_views") or {}):
        overrides = cfg.scenario_views[view].get("env") or {}
        preset = cfg.scenario_views[view].get("preset") or "clean"
        return OmegaConf.merge(cfg.env, {"preset": preset, "env_copy": "own"}, overrides)
    copy = (cfg.get("published_env") or {}).get(key)
    if copy is None:
        return None
    return OmegaConf.merge(cfg.env, {"preset": "fidelity", "env_copy": copy})


def expected_decisions_per_episode(env: Any, params: Any) -> float:
    """Mean number of tasks (decisions) in one episode of `env`."""
    slots_tasks = env.num_servers * env.max_tasks * int(params.num_slots)
    if env.arrivals == "trace":  # the trace window's mean requests per slot
        return float(np.asarray(env.trace.counts).sum()) / env.trace.num_slots * int(params.num_slots)
    if env.arrivals == "bernoulli":
        return slots_tasks * float(params.arrival_prob)
    return slots_tasks * (env.max_tasks + 1) / (2.0 * env.max_tasks)  # uniform count 0..N


def train_steps_of(cfg: DictConfig, decisions_per_episode: float) -> tuple[int, float]:
    """Environment steps per seed and the episodes they amount to."""
    if cfg.budget.get("train_steps"):
        steps = int(cfg.budget.train_steps)
        return steps, steps / decisions_per_episode
    episodes = int(cfg.budget.get("episodes") or cfg.default_episodes)
    return int(round(episodes * decisions_per_episode)), float(episodes)


# Step counts of a method config that follow the authors' slot schedule (warm-up, update
# period, ε ramp); a method's `decisions_per_slot` says how many decisions a slot had where
# they were converted from slots.
SLOT_SCHEDULE_KEYS = ("learning_starts", "train_every", "exploration_start", "exploration_steps")


@dataclasses.dataclass
class MethodSetup:
    """One method in one view: its environment and its config converted to that environment's
    slot schedule and to the experiment's budget (what every runner of these tables trains)."""

    env: Any
    params: Any
    method: DictConfig  # the converted config (a scheduler's as it was)
    train_steps: int  # environment steps per seed
    episodes: float  # what they amount to in episodes
    decisions_per_episode: float


def setup_method(cfg: DictConfig, method: DictConfig, env_cfg: DictConfig) -> MethodSetup:
    """Build `env_cfg` for `method` and convert the method's step counts to it and to the budget."""
    env, params = build_mec(env_cfg, action_space=method.get("action_space"))
    per_episode = expected_decisions_per_episode(env, params)
    train_steps, episodes = train_steps_of(cfg, per_episode)
    if method.get("kind") != "scheduler":
        method = _method_config(cfg, method, episodes, per_episode / int(params.num_slots))
    return MethodSetup(env, params, method, train_steps, episodes, per_episode)


def _method_config(cfg: DictConfig, method: DictConfig, episodes: float, decisions_per_slot: float) -> DictConfig:
    """The method's config for this env and budget: slot schedule, capped warm-up, ε ramp.

    A config's step counts were converted from the authors' slots at its `decisions_per_slot`
    (e.g. "learn every 10 slots" = 750 decisions on amcoedge); on an environment with another
    rate they are converted again, so that the method keeps its schedule in slots. The
    published ε ramps (DQN baselines) are defined for the authors' episode counts; a
    smaller budget compresses the ramp in proportion (never stretches it), so that every
    baseline ends its run as greedy as it does in the paper.
    """
    if method.get("decisions_per_slot") is not None:  # null: the step counts are in decisions
        method = _schedule_for(method, decisions_per_slot)
    updates: dict[str, Any] = {}
    cap = cfg.budget.get("learning_starts")
    if cap is not None and "learning_starts" in method:
        updates["learning_starts"] = min(int(method.learning_starts), int(cap))
        if "exploration_start" in method:
            updates["exploration_start"] = min(int(method.exploration_start), int(cap))
    if method.get("exploration_steps"):
        scale = min(1.0, episodes / float(cfg.paper_episodes))
        updates["exploration_steps"] = max(1, int(round(method.exploration_steps * scale)))
    return OmegaConf.merge(method, updates) if updates else method


def _schedule_for(method: DictConfig, decisions_per_slot: float) -> DictConfig:
    """`method` with its slot schedule converted to this env's decisions per slot."""
    rate = decisions_per_slot / float(method.decisions_per_slot)
    rescaled = {key: max(1, int(round(int(method[key]) * rate))) for key in SLOT_SCHEDULE_KEYS if key in method}
    kept = OmegaConf.masked_copy(method, [key for key in method if key != "decisions_per_slot"])
    return OmegaConf.merge(kept, rescaled)


@dataclasses.dataclass
class PlannedRun:
    """One method in one view, and how `run` gets its row there."""

    view: str
    key: str
    action: str  # skip | reuse (the fidelity row) | evaluate (a scheduler) | transfer | twin | train
    setup: MethodSetup | None = None  # its environment and converted config (not for skip / reuse)
    env_cfg: DictConfig | None = None  # the env config `setup` was built from
    detail: str | None = None  # skip: why; twin: the method whose training it reuses


def plan_runs(cfg: DictConfig) -> list[PlannedRun]:
    """Every (view, method) of the run in the order `run` makes them.

    Left out: a method not part of a view, and one standing in (`fallbacks`) for a method that
    runs there. An unbuildable method is a `skip` with its reason; in the published view a
    method whose copy is `own` reuses its fidelity row; a `train_view` method is a `transfer`
    outside V, and inside V a `twin` of an identical method trained there before it.
    """
    fallbacks = dict(cfg.get("fallbacks") or {})
    plan: list[PlannedRun] = []
    rows: dict[str, list[str]] = {}  # view -> the methods with a result there
    for view in _view_order(cfg):
        rows[view], trained_here = [], []
        for key, method in _selected(cfg).items():
            env_cfg = view_env_config(cfg, view, key)
            if env_cfg is None or (key in fallbacks and fallbacks[key] in rows[view]):
                continue
            reason = unbuildable(cfg, key, method, env_cfg)
            if reason is not None:
                plan.append(PlannedRun(view, key, "skip", detail=reason))
                continue
            rows[view].append(key)
            if view == "published" and env_cfg.env_copy == "own" and key in rows.get("fidelity", []):
                plan.append(PlannedRun(view, key, "reuse", detail="fidelity"))
                continue
            setup = setup_method(cfg, method, env_cfg)
            train_view = method.get("train_view")
            if method.get("kind") == "scheduler":
                plan.append(PlannedRun(view, key, "evaluate", setup, env_cfg))
            elif train_view is not None and train_view != view:
                plan.append(PlannedRun(view, key, "transfer", setup, env_cfg))
            else:
                twin = next((other for other in trained_here
                             if train_view == view and _same_training(method, cfg.methods[other])), None)  # fmt: skip
                plan.append(PlannedRun(view, key, "train" if twin is None else "twin", setup, env_cfg, twin))
                trained_here.append(key)
    return plan


def planned_runs(cfg: DictConfig, plan: list[PlannedRun]) -> list[tuple[str, str, float]]:
    """(view, method, environment steps over all seeds) of each run of `plan` that `run` makes,
    in order: a learner's training and evaluation steps, a scheduler's evaluation steps."""
    num_seeds = int(cfg.budget.seeds)
    _, eval_episodes = shared_evaluation(cfg)
    planned = []
    for step in plan:
        if step.setup is None:
            continue
        steps = eval_episodes * step.setup.decisions_per_episode
        if step.action == "train":
            steps += step.setup.train_steps
        planned.append((step.view, step.key, steps * num_seeds))
    return planned


def _weights_kept(cfg: DictConfig, plan: list[PlannedRun]) -> set[tuple[str, str]]:
    """The (view, method) trainings whose agents another view transfers from."""
    sources = {(str(m.train_view), key) for key, m in _selected(cfg).items() if m.get("train_view") is not None}
    return sources | {(s.view, s.detail) for s in plan if s.action == "twin" and (s.view, s.key) in sources}


def run(cfg: DictConfig, run_dir: pathlib.Path) -> dict[str, Any]:
    """Train and evaluate every method in every view; write tables and plots."""
    run_dir = pathlib.Path(run_dir)
    num_seeds = int(cfg.budget.seeds)
    eval_key, eval_episodes = shared_evaluation(cfg)
    plan = plan_runs(cfg)
    check_memory(cfg, plan)
    results: dict[str, dict[str, dict[str, Any]]] = {view: {} for view in _view_order(cfg)}
    histories: dict[str, dict[str, dict[str, np.ndarray]]] = {view: {} for view in _view_order(cfg)}
    budget_notes: dict[str, str] = {}
    skipped: list[dict[str, str]] = []
    progress = ExperimentProgress(planned_runs(cfg, plan))
    keep = _weights_kept(cfg, plan)
    trained_agents: dict[tuple[str, str], Any] = {}  # (view, method) -> agent states others transfer from
    with parallel_training(cfg, plan, run_dir, keep, progress) as in_workers:
        for step in plan:
            view, key, setup = step.view, step.key, step.setup
            method = cfg.methods[key]
            if step.action == "skip":
                skipped.append({"name": key, "view": view, "label": str(method.get("label") or key),
                                "reason": step.detail})  # fmt: skip
                progress.skip(view, key, step.detail)
                continue
            if step.action == "reuse":
                results[view][key] = {**results[step.detail][key], "reused_from": step.detail}
                continue
            progress.start(view, key)
            budget_notes[view] = (f"{setup.train_steps:,} environment steps (≈ {setup.episodes:g} episodes of "
                                  f"≈ {setup.decisions_per_episode:,.0f} decisions) per seed")  # fmt: skip
            if step.action == "evaluate":
                row = evaluate_scheduler(setup.env, setup.params, method, eval_key, num_seeds, eval_episodes,
                                         bool(cfg.get("decision_time", True)))  # fmt: skip
            elif step.action == "transfer":
                row = _evaluate_transferred(cfg, setup, trained_agents[(str(method.train_view), key)], eval_key,
                                            eval_episodes)  # fmt: skip
            elif step.action == "twin":  # the same training as `step.detail` in this view: its weights and row
                row = {**results[view][step.detail], "reused_from": step.detail}
                if (view, step.detail) in trained_agents:
                    trained_agents[(view, key)] = trained_agents[(view, step.detail)]
            else:
                if (view, key) in in_workers:
                    row, histories[view][key], leaves = in_workers[(view, key)].result()
                    agent = None if leaves is None else _agents_from_leaves(cfg, setup, leaves)
                else:
                    row, histories[view][key], agent = train_method(cfg, view, key, setup, run_dir,
                                                                    (view, key) in keep)  # fmt: skip
                if agent is not None:
                    trained_agents[(view, key)] = agent
            if method.get("train_view") is not None:
                row["trained_in"] = str(method.train_view)
            env_cfg = step.env_cfg
            row.update(label=method.get("label") or key, env_copy=str(env_cfg.env_copy),
                       preset=str(env_cfg.preset), action_space=setup.env.actions.kind,
                       observation=str(env_cfg.get("observation", "authors")))  # fmt: skip
            results[view][key] = row
            progress.finish(f"make-span {fmt_mean_ci(row['make_span'])} s, failure rate {row['failure_rate'][0]:.4f}")
    results = {view: results[view] for view in cfg.views}  # the tables in the order asked for
    histories = {view: histories[view] for view in cfg.views}
    milp = milp_yardstick(cfg) if cfg.get("milp") and "clean" in cfg.views else None
    notes = sorted(set(budget_notes.values()))
    budget_note = notes[0] if len(notes) == 1 else "; ".join(f"{v}: {n}" for v, n in budget_notes.items())
    table = results_table(cfg, results, budget_note, num_seeds, eval_episodes, milp, skipped)
    atomic_write_text(run_dir / "results.md", table)
    if any(histories.values()):
        plot_learning_curves(histories, run_dir / "learning_curves.png")
    if cfg.get("delay_percentiles"):
        plot_delay_distributions(cfg, results, run_dir / "delay_cdf.png")
    if cfg.get("x_axis"):
        atomic_write_text(run_dir / "scale.md", scale_table(cfg, results))
        plot_against_x(cfg, results, run_dir / "scale.png")
    print(table)
    return {
        "methods": [
            {"name": key, "view": view, "metric": "make_span", "mean": row["make_span"][0],
             "ci95": row["make_span"][1], "seeds": num_seeds, **_printable(row)}
            for view, rows in results.items() for key, row in rows.items()
        ],  # fmt: skip
        "comparisons": comparisons(cfg, results),
        "budget": budget_note,
        "milp": milp,
        "yardstick": cfg.get("yardstick"),
        "skipped": skipped,
    }


def check_memory(cfg: DictConfig, plan: list[PlannedRun]) -> None:
    """Every training of `plan` fits in memory (`ddrl.training.memory`), alone and the `jobs`
    largest together (worker processes): checked from shapes before the first one starts, so
    that a run too large for this machine stops at once with what to change, not when the
    operating system kills it after the runs before it."""
    from ddrl.training import make_trainer
    from ddrl.training.memory import check_together, check_training_fits, memory_to_check

    available = memory_to_check()
    if available is None:
        return
    needs = {}
    for step in plan:
        if step.action == "train":
            trainer = make_trainer(step.setup.method, step.setup.env, step.setup.params, step.setup.train_steps,
                                   num_envs=cfg.trainer.num_envs)  # fmt: skip
            what = f"{step.key} in view {step.view}"
            needs[what] = check_training_fits(trainer, int(cfg.budget.seeds), what, available)
    check_together(needs, training_jobs(cfg), available)


def shared_evaluation(cfg: DictConfig) -> tuple[jax.Array, int]:
    """The evaluation key every method shares, and the evaluation episodes per seed and mode."""
    eval_key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.seed)), 10_000)
    return eval_key, min(int(cfg.budget.eval_episodes), int(cfg.eval_episodes))


# ----------------------------------------------------------------------------- parallel training


def training_jobs(cfg: DictConfig) -> int:
    """How many learners train at once (`jobs`; auto: one per CPU core up to 4, 1 on an accelerator,
    whose memory the processes would otherwise fight over)."""
    jobs = cfg.get("jobs", 1)
    if jobs == "auto":
        return 1 if jax.default_backend() != "cpu" else max(1, min(4, len(os.sched_getaffinity(0))))
    return int(jobs)


@contextlib.contextmanager
def parallel_training(cfg: DictConfig, plan: list[PlannedRun], run_dir: pathlib.Path, keep: set[tuple[str, str]],
                      progress: ExperimentProgress | None = None,
                      ) -> Iterator[dict[tuple[str, str], concurrent.futures.Future]]:
    """With `jobs` > 1, every `train` run of `plan` starts in a pool of worker processes (fresh
    ones: spawned, so no JAX state is shared), the methods listed first (the costly learners)
    first; yields (view, method) -> the future of `train_method`'s result with the agents as
    leaves; `progress` learns the queue and when each worker run ends (for its ETA). Each worker
    trains exactly as `run` would in-process (same keys, same programs),
    so the rows do not depend on `jobs`. On any error or Ctrl-C the workers are stopped; their
    checkpoints stay for `resume=true`. With `jobs` = 1: an empty dict, everything in-process.
    """
    todo = [step for step in plan if step.action == "train"]
    jobs = min(training_jobs(cfg), len(todo))
    if jobs < 2:
        yield {}
        return
    order = list(_selected(cfg))
    todo.sort(key=lambda step: order.index(step.key))  # stable: within a method, the views in order
    config = OmegaConf.to_container(cfg, resolve=True)
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()  # (view, method, fraction of its training done) after each chunk of a worker
    reports.cancel_join_thread()  # progress only: exiting never waits on it (a terminated worker may hold its lock)

    def read_reports():
        while (report := reports.get()) is not None:
            if progress is not None:
                progress.worker_progress(*report)

    reader = threading.Thread(target=read_reports, name="worker-progress", daemon=True)
    reader.start()
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                                  initializer=_worker_started, initargs=(jobs, reports))  # fmt: skip
    try:
        futures = {(step.view, step.key): pool.submit(_train_in_worker, config, step.view, step.key, str(run_dir),
                                                      (step.view, step.key) in keep) for step in todo}  # fmt: skip
        if progress is not None:
            progress.in_workers(futures, jobs)
            for (view, key), future in futures.items():
                future.add_done_callback(lambda _, view=view, key=key: progress.worker_finished(view, key))
        yield futures
    except BaseException:
        for process in list((pool._processes or {}).values()):  # the executor has no public terminate
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        reports.put(None)
        reader.join(timeout=5)
    pool.shutdown()


_progress_reports = None  # in a worker: the parent's queue of chunk reports


def _worker_started(jobs: int, reports: Any = None) -> None:
    """A training worker: Ctrl-C is the parent's to handle (it stops the workers), on an
    accelerator each worker takes its share of the memory, and its chunks go to `reports`."""
    global _progress_reports
    _progress_reports = reports
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.7 / jobs:.3f}")


def _train_in_worker(config: dict, view: str, key: str, run_dir: str, keep_weights: bool):
    """`train_method` in a worker process; the agents come back as NumPy leaves (their pytree
    holds functions, which do not pickle), rebuilt by `_agents_from_leaves`."""
    cfg = OmegaConf.create(config)
    setup = setup_method(cfg, cfg.methods[key], view_env_config(cfg, view, key))

    def on_chunk(done: int, total: int) -> None:
        if _progress_reports is not None:
            _progress_reports.put((view, key, done / total))

    row, history, agent = train_method(cfg, view, key, setup, pathlib.Path(run_dir), keep_weights, progress=False,
                                       on_chunk=on_chunk)  # fmt: skip
    leaves = None if agent is None else [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(agent))]
    return row, history, leaves


def _agents_from_leaves(cfg: DictConfig, setup: MethodSetup, leaves: list[np.ndarray]) -> Any:
    """The trained agents (seed axis first) of `setup`'s method from their leaves."""
    from ddrl.training import make_trainer

    trainer = make_trainer(setup.method, setup.env, setup.params, setup.train_steps, num_envs=cfg.trainer.num_envs)
    keys = jax.random.split(jax.random.PRNGKey(0), int(cfg.budget.seeds))
    structure = jax.tree.structure(jax.eval_shape(jax.vmap(trainer.init_agent), keys))
    return jax.tree.unflatten(structure, [jax.numpy.asarray(leaf) for leaf in leaves])


def milp_yardstick(cfg: DictConfig) -> dict[str, Any]:
    """optimal_myopic against the per-slot MILP optimum on sampled slot prefixes (clean env).

    A slot of amcoedge holds about 75 tasks, beyond what HiGHS solves exactly in seconds, so
    the first `milp.tasks` tasks of `milp.slots` slots met by optimal_myopic are solved.
    """
    from ddrl.schedulers.milp import (myopic_schedule, rollout_slots, slot_make_spans_of_schedule,
                                      solve_slot)  # fmt: skip

    env, params = build_mec(view_env_config(cfg, "clean", cfg.yardstick),
                            action_space=cfg.methods[cfg.yardstick].get("action_space"))  # fmt: skip
    policy = make_scheduler("optimal_myopic", env)
    steps = int(cfg.milp.slots * 2 * expected_decisions_per_episode(env, params) / int(params.num_slots))
    problems = rollout_slots(env, params, policy, jax.random.PRNGKey(int(cfg.seed) + 77), steps + 1,
                             int(cfg.milp.tasks))[: int(cfg.milp.slots)]  # fmt: skip
    single = env.actions.kind == "single"
    ratios, bound_ratios, optimal, started = [], [], 0, time.perf_counter()
    for tasks, system in problems:
        candidate = np.eye(system.num_servers, dtype=bool) if single else None
        myopic = slot_make_spans_of_schedule(tasks, system, myopic_schedule(tasks, system, candidate)).sum()
        solution = solve_slot(tasks, system, time_limit_s=float(cfg.milp.time_limit_s),
                              single_only=single, mip_rel_gap=1e-4)  # fmt: skip
        optimal += solution.status == "optimal"
        ratios.append(myopic / solution.total_make_span - 1.0)
        bound_ratios.append(myopic / solution.lower_bound - 1.0)
    mean, ci = mean_ci(100.0 * np.asarray(ratios)) if ratios else (math.nan, math.nan)
    bound, bound_ci = mean_ci(100.0 * np.asarray(bound_ratios)) if ratios else (math.nan, math.nan)
    return {"slots": len(ratios), "tasks_per_slot": int(cfg.milp.tasks), "solved_optimal": optimal,
            "myopic_above_milp_pct": float(mean), "ci95": float(ci),
            "myopic_above_bound_pct": float(bound), "bound_ci95": float(bound_ci),
            "wall_s": time.perf_counter() - started}  # fmt: skip


def evaluate_scheduler(env, params, method, key, num_seeds, eval_episodes, timed=True) -> dict[str, Any]:
    """A rule scheduler on `num_seeds` × `eval_episodes` episodes of `key`: its metric row."""
    from ddrl.evaluate import evaluate

    policy = make_scheduler(method.name, env)
    started = time.perf_counter()
    metrics = evaluate(env, params, policy, key, num_seeds, eval_episodes)
    jax.block_until_ready(metrics)
    row = _metric_row(metrics)
    row["eval_wall_s"] = time.perf_counter() - started
    row["eval_mode"] = "rule"  # a scheduler's own decision rule (random ones draw)
    row["decision_us"] = decision_time_us(env, params, lambda inputs: policy, None) if timed else math.nan
    return row


def eval_modes_of(cfg: DictConfig, trainer: Any) -> tuple[str, tuple[str, ...]]:
    """(headline mode, every mode evaluated) of a trained learner.

    `eval_modes` lists the modes to evaluate where the learner has them (the DQN family has
    only `greedy`); `headline_mode: trained` takes the policy the algorithm optimises
    (sampled π for soft actor-critics and PPO, argmax Q for DQNs), chosen before any result.
    """
    available = trainer.eval_modes()  # the trained policy first
    modes = tuple(m for m in (cfg.get("eval_modes") or available) if m in available) or available[:1]
    wanted = str(cfg.get("headline_mode") or "trained")
    headline = available[0] if wanted == "trained" or wanted not in available else wanted
    return headline, tuple(dict.fromkeys((headline,) + modes))


def _evaluate_learner(cfg, env, params, trainer, agent_states, eval_key, eval_episodes) -> dict[str, Any]:
    """A learner's row: every evaluation mode it has on the same episodes (keys), the headline
    mode's figures at the top level and each mode's under `modes`."""
    from ddrl.evaluate import evaluate_per_seed

    headline, modes = eval_modes_of(cfg, trainer)
    evaluation = {}
    for mode in modes:
        started = time.perf_counter()
        metrics = evaluate_per_seed(env, params, lambda agent: trainer.policy(agent, mode), agent_states,
                                    eval_key, eval_episodes)  # fmt: skip
        evaluation[mode] = _metric_row(jax.block_until_ready(metrics))
        evaluation[mode]["eval_wall_s"] = time.perf_counter() - started
    row = dict(evaluation[headline])
    row["eval_mode"] = headline
    row["modes"] = {mode: {k: result[k] for k in ("make_span", "failure_rate", "per_seed_make_span", "eval_wall_s")}
                    for mode, result in evaluation.items()}  # fmt: skip
    first_seed = jax.tree.map(lambda x: x[0], agent_states)
    row["decision_us"] = (decision_time_us(env, params, lambda agent: trainer.policy(agent, headline), first_seed)
                          if cfg.get("decision_time", True) else math.nan)  # fmt: skip
    return row


def _evaluate_transferred(cfg, setup: MethodSetup, source_agents, eval_key, eval_episodes) -> dict[str, Any]:
    """Agents trained elsewhere, their weights moved into fresh agents of this environment."""
    from ddrl.training import make_trainer

    trainer = make_trainer(setup.method, setup.env, setup.params, setup.train_steps, num_envs=cfg.trainer.num_envs)
    num_seeds = jax.tree.leaves(source_agents)[0].shape[0]
    fresh = jax.vmap(trainer.init_agent)(jax.random.split(jax.random.PRNGKey(int(cfg.seed)), num_seeds))
    agent_states = agents.transfer_weights(source_agents, fresh)
    return _evaluate_learner(cfg, setup.env, setup.params, trainer, agent_states, eval_key, eval_episodes)


def train_method(cfg: DictConfig, view: str, key: str, setup: MethodSetup, run_dir: pathlib.Path,
                 keep_weights: bool, progress: bool = True, on_chunk: Callable[[int, int], None] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """Train method `key` in `view` and evaluate it: its row, per-chunk history, and its trained
    agents (seed axis first) if `keep_weights` (another view transfers from them), else None.
    `progress=False`: no progress bar; `on_chunk(steps done, total)` after every chunk."""
    from ddrl.experiments.methods import train_and_evaluate

    eval_key, eval_episodes = shared_evaluation(cfg)
    env, params = setup.env, setup.params
    rows: dict[str, Any] = {}

    def evaluate(trained):
        rows["row"] = row = _evaluate_learner(cfg, env, params, trained.trainer, trained.final.agent, eval_key,
                                              eval_episodes)  # fmt: skip
        return {f"{mode}/{metric}": result[metric][0] for mode, result in row["modes"].items()
                for metric in ("make_span", "failure_rate")}  # fmt: skip

    trained, _ = train_and_evaluate(cfg, setup.method, env, params, setup.train_steps, run_dir, f"{view}-{key}",
                                    evaluate, num_envs=cfg.trainer.num_envs, progress=progress,
                                    on_chunk=on_chunk)  # fmt: skip
    row = rows["row"]
    row["train_wall_s"] = trained.train_wall_s
    row["resumed"] = trained.resumed
    row["train_make_span"] = tuple(float(x) for x in mean_ci(trained.history["step_make_span"][-1]))
    row["env_steps_per_s"] = trained.env_steps_per_s
    row["env_steps"] = trained.trainer.total_steps
    return row, trained.history, trained.final.agent if keep_weights else None


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """A learner of a finished scheduling run, rebuilt as `run` built it, its final state restored."""

    cfg: DictConfig  # the run's resolved config.yaml
    setup: MethodSetup  # its environment and converted config in the view (with any `changes`)
    trainer: Any
    final: Any  # the training state after the last chunk, seed axis first


def restore_trained(run_dir: pathlib.Path, view: str, key: str, changes: dict[str, Any] | None = None) -> RestoredRun:
    """Method `key` of view `view` in the finished run `run_dir`, restored from
    `run_dir/checkpoints/<view>-<key>` without training (the run must have saved its last
    chunk). `changes`: agent fields that do not change the trained parameters (e.g.
    `greedy_chains`), merged into the method's config before the trainer is built."""
    from ddrl.training import make_trainer, run_training

    cfg = OmegaConf.load(run_dir / "config.yaml")
    if key not in cfg.methods:
        raise ValueError(f"{run_dir}: no method {key!r} (it has {sorted(cfg.methods)})")
    env_cfg = view_env_config(cfg, view, key)
    if env_cfg is None:
        raise ValueError(f"{run_dir}: {key} did not run in view {view!r}")
    setup = setup_method(cfg, cfg.methods[key], env_cfg)
    setup = dataclasses.replace(setup, method=OmegaConf.merge(setup.method, changes or {}))
    num_chunks = int(cfg.budget.get("num_chunks") or cfg.trainer.num_chunks)
    trainer = make_trainer(setup.method, setup.env, setup.params, setup.train_steps,
                           num_envs=int(cfg.trainer.num_envs), num_chunks=num_chunks)  # fmt: skip
    checkpoints = (run_dir / "checkpoints" / f"{view}-{key}").absolute()
    saved = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
    if max(saved, default=0) != trainer.num_chunks:
        raise FileNotFoundError(f"{checkpoints}: no checkpoint of the last chunk ({trainer.num_chunks}); saved: {saved}")
    final, _ = run_training(trainer, int(cfg.seed), int(cfg.budget.seeds), checkpoint_dir=checkpoints,
                            resume=True, max_chunks=0, progress=False)  # restore only: nothing trains
    return RestoredRun(cfg, setup, trainer, final)


def restore_arguments(description: str, view: str | None = None) -> argparse.ArgumentParser:
    """A command-line parser for a script that reads a finished run's learner: RUN_DIR,
    `--method` and `--view` (required unless `view` gives a default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run_dir", type=pathlib.Path)
    parser.add_argument("--method", required=True)
    parser.add_argument("--view", required=view is None, default=view)
    return parser


def restore_or_exit(args: argparse.Namespace, changes: dict[str, Any] | None = None) -> RestoredRun:
    """`restore_trained` for `restore_arguments`' arguments; a missing run, method, view or
    checkpoint ends the script with its one-line reason."""
    try:
        return restore_trained(args.run_dir, args.view, args.method, changes)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(str(error)) from None


def deciding_critic(agent: Any, obs: jax.Array, bs: jax.Array, target: bool = False) -> jax.Array:
    """min(Q1, Q2)(obs, ·) of the critic a twin-critic learner decides BS `bs`'s task with: that
    BS's agent of a per-BS stack, or the one shared agent; its online or its Polyak target critic."""
    own = jax.tree.map(lambda leaf: leaf[bs], agent) if agent.update_count.ndim else agent
    q1, q2 = own.critic.apply_fn(own.critic_target if target else own.critic.params, obs[None])
    return jnp.minimum(q1, q2)[0]


def against_reference(metrics: Any, reference_per_seed: np.ndarray) -> dict:
    """A policy's evaluation (metrics with axes seeds × episodes) as the diagnostic scripts report
    it: make-span ± 95 % CI over seeds, per seed, and its gap (%, bootstrap CI) to a reference
    scheduler's per-seed make-span on the same episodes (`optimal_myopic` in every script)."""
    per_seed = np.asarray(metrics.make_span, np.float64).mean(axis=1)
    return {"make_span": [round(x, 5) for x in mean_ci(per_seed)],
            "per_seed_make_span": np.round(per_seed, 5).tolist(),
            "gap_to_optimal_myopic_pct": [round(x, 2) for x in relative_difference(per_seed, reference_per_seed)]}


def decisions_per_episode(decisions: int, episodes: int) -> int:
    """`decisions` split evenly over `episodes` fresh episodes (`play_restored`); a ValueError if
    they do not split (scripts check their arguments with it before restoring anything)."""
    if episodes < 1 or decisions % episodes:
        raise ValueError(f"{decisions} decisions: not a whole number per episode for {episodes} episodes")
    return decisions // episodes


def play_restored(restored: RestoredRun, mode: str, decisions: int, record: Callable, key: int = 7,
                  episodes: int = 1) -> Any:
    """Each seed's restored agents acting in `mode` for `decisions` steps from one fresh episode
    (episodes follow on as the environment resets), the seeds' keys split from `PRNGKey(key)`;
    with `episodes` > 1, `decisions / episodes` steps from the start of each of that many fresh
    episodes (on the fidelity preset each its own task profile), played side by side.
    `record(agent, obs, state, action)` is called on the state each action is decided in,
    before the step (`agent`: that seed's agents); its pytree comes back as NumPy arrays with
    axes (seeds, decisions, ...)."""
    steps = decisions_per_episode(decisions, episodes)
    env, params = restored.setup.env, restored.setup.params

    def one_episode(agent, episode_key, steps):
        policy = restored.trainer.policy(agent, mode)
        obs, state = env.reset(episode_key, params)

        def step(carry, step_key):
            obs, state = carry
            act_key, env_key = jax.random.split(step_key)
            action = policy(act_key, obs, state, params)
            recorded = record(agent, obs, state, action)
            obs, state, *_ = env.step(env_key, state, action, params)
            return (obs, state), recorded

        return jax.lax.scan(step, (obs, state), jax.random.split(episode_key, steps))[1]

    def one_seed(agent, seed_key):
        if episodes == 1:
            return one_episode(agent, seed_key, decisions)
        played = jax.vmap(lambda k: one_episode(agent, k, steps))(jax.random.split(seed_key, episodes))
        return jax.tree.map(lambda leaf: leaf.reshape((decisions,) + leaf.shape[2:]), played)

    agents = restored.final.agent
    num_seeds = jax.tree.leaves(agents)[0].shape[0]
    played = jax.jit(jax.vmap(one_seed))(agents, jax.random.split(jax.random.PRNGKey(key), num_seeds))
    return jax.tree.map(np.asarray, played)


def _metric_row(metrics) -> dict[str, Any]:
    """Per-seed means over the evaluation episodes, then mean ± 95 % CI over seeds."""
    per_seed = {
        "make_span": np.asarray(metrics.make_span).mean(axis=1),
        "failure_rate": np.asarray(metrics.failure_rate).mean(axis=1),
        "raw_delay": np.asarray(metrics.raw_delay).mean(axis=1),
        "lower_bound": np.asarray(metrics.lower_bound).mean(axis=1),
    }
    row: dict[str, Any] = {k: tuple(float(x) for x in mean_ci(v)) for k, v in per_seed.items()}
    row["per_seed_make_span"] = per_seed["make_span"].tolist()
    histogram = np.asarray(metrics.delay_histogram).sum(axis=1)  # (seeds, bins)
    for percent, values in zip(PERCENTILES, delay_percentiles(histogram, PERCENTILES).T):
        row[f"delay_p{percent}"] = tuple(float(x) for x in mean_ci(values))
    row["delay_histogram"] = histogram.sum(axis=0).tolist()
    return row


def _printable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("per_seed_make_span", "delay_histogram")}
