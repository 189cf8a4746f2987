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

Writes `results.md` (per view: make-span ± 95 % CI over seeds, failure rate, gap to
optimal_myopic, training wall time, decision time per task; the headline method's
reductions with bootstrap intervals beside the seed paper's claims), `learning_curves.png`,
`<view>_<method>_history.npz`, JSONL / W&B logs, and returns the summary for summary.json.
"""
from __future__ import annotations

import math
import pathlib
import time
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddrl import agents
from ddrl.envs.scenarios import ConfigError, build_mec
from ddrl.evaluate import DELAY_BINS_PER_DECADE, DELAY_LOG10_RANGE, delay_percentiles
from ddrl.progress import ExperimentProgress
from ddrl.provenance import atomic_write_text
from ddrl.schedulers import SCHEDULERS, make_scheduler
from ddrl.stats import mean_ci

VIEWS = ("clean", "fidelity", "published")
PERCENTILES = (50, 95, 99)
VIEW_TITLES = {
    "clean": "every method on the clean environment (headline)",
    "fidelity": "every method on the authors' own simulator (fidelity preset, AMCoEdge's env)",
    "published": "each baseline on its published environment copy (as published)",
}


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
        return OmegaConf.merge(cfg.env, {"preset": "clean", "env_copy": "own"}, overrides)
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


def _method_config(cfg: DictConfig, method: DictConfig, episodes: float, decisions_per_slot: float) -> DictConfig:
    """The method's config for this env and budget: slot schedule, capped warm-up, ε ramp.

    A config's step counts were converted from the authors' slots at its `decisions_per_slot`
    (e.g. "learn every 10 slots" = 750 decisions on amcoedge); on an environment with another
    rate they are converted again, so that the method keeps its schedule in slots. The
    published ε ramps (DQN baselines) are defined for the authors' episode counts; a
    smaller budget compresses the ramp in proportion (never stretches it), so that every
    baseline ends its run as greedy as it does in the paper.
    """
    if "decisions_per_slot" in method:
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


def planned_runs(cfg: DictConfig) -> list[tuple[str, str, float]]:
    """(view, method, environment steps over all seeds) of each run `run` will make, in order.

    A learner's steps are its training and evaluation steps, a scheduler's its evaluation
    steps; methods left out (unbuildable, standing in for one that runs, reused from the
    fidelity view) are not planned.
    """
    num_seeds = int(cfg.budget.seeds)
    eval_episodes = min(int(cfg.budget.eval_episodes), int(cfg.eval_episodes))
    fallbacks = dict(cfg.get("fallbacks") or {})
    planned, rows = [], {}  # rows: view -> the methods with a result there, as in `run`
    for view in cfg.views:
        rows[view] = []
        for key, method in _selected(cfg).items():
            env_cfg = view_env_config(cfg, view, key)
            if env_cfg is None or (key in fallbacks and fallbacks[key] in rows[view]):
                continue
            if unbuildable(cfg, key, method, env_cfg) is not None:
                continue
            rows[view].append(key)
            if view == "published" and env_cfg.env_copy == "own" and key in rows.get("fidelity", []):
                continue  # reused
            env, params = build_mec(env_cfg, action_space=method.get("action_space"))
            per_episode = expected_decisions_per_episode(env, params)
            steps = eval_episodes * per_episode
            if method.get("kind") != "scheduler":
                steps += train_steps_of(cfg, per_episode)[0]
            planned.append((view, key, steps * num_seeds))
    return planned


def run(cfg: DictConfig, run_dir: pathlib.Path) -> dict[str, Any]:
    """Train and evaluate every method in every view; write tables and plots."""
    run_dir = pathlib.Path(run_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    num_seeds = int(cfg.budget.seeds)
    eval_episodes = min(int(cfg.budget.eval_episodes), int(cfg.eval_episodes))
    eval_key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.seed)), 10_000)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    histories: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    budget_notes: dict[str, str] = {}
    skipped: list[dict[str, str]] = []
    fallbacks = dict(cfg.get("fallbacks") or {})
    progress = ExperimentProgress(planned_runs(cfg))
    for view in cfg.views:
        results[view], histories[view] = {}, {}
        for key, method in _selected(cfg).items():
            env_cfg = view_env_config(cfg, view, key)
            if env_cfg is None:
                continue
            if key in fallbacks and fallbacks[key] in results[view]:
                continue  # stands in for a method that ran here
            reason = unbuildable(cfg, key, method, env_cfg)
            if reason is not None:
                skipped.append({"name": key, "view": view, "label": str(method.get("label") or key),
                                "reason": reason})  # fmt: skip
                progress.skip(view, key, reason)
                continue
            if view == "published" and env_cfg.env_copy == "own" and key in results.get("fidelity", {}):
                results[view][key] = {**results["fidelity"][key], "reused_from": "fidelity"}
                continue
            progress.start(view, key)
            env, params = build_mec(env_cfg, action_space=method.get("action_space"))
            per_episode = expected_decisions_per_episode(env, params)
            train_steps, episodes = train_steps_of(cfg, per_episode)
            budget_notes[view] = (f"{train_steps:,} environment steps (≈ {episodes:g} episodes of "
                                  f"≈ {per_episode:,.0f} decisions) per seed")  # fmt: skip
            if method.get("kind") == "scheduler":
                row = _evaluate_scheduler(env, params, method, eval_key, num_seeds, eval_episodes,
                                          bool(cfg.get("decision_time", True)))  # fmt: skip
            else:
                row, history = _train_and_evaluate(
                    cfg, env, params, _method_config(cfg, method, episodes, per_episode / int(params.num_slots)),
                    train_steps,
                    eval_key, eval_episodes, run_dir, view, key, config,
                )  # fmt: skip
                histories[view][key] = history
            row.update(label=method.get("label") or key, env_copy=str(env_cfg.env_copy),
                       preset=str(env_cfg.preset), action_space=env.actions.kind)  # fmt: skip
            results[view][key] = row
            progress.finish(f"make-span {_fmt(row['make_span'])} s, failure rate {row['failure_rate'][0]:.4f}")
    milp = milp_yardstick(cfg) if cfg.get("milp") and "clean" in cfg.views else None
    notes = sorted(set(budget_notes.values()))
    budget_note = notes[0] if len(notes) == 1 else "; ".join(f"{v}: {n}" for v, n in budget_notes.items())
    table = results_table(cfg, results, budget_note, num_seeds, eval_episodes, milp, skipped)
    atomic_write_text(run_dir / "results.md", table)
    if any(histories.values()):
        plot_learning_curves(histories, run_dir / "learning_curves.png")
    if cfg.get("delay_percentiles"):
        plot_delay_distributions(cfg, results, run_dir / "delay_cdf.png")
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


def _evaluate_scheduler(env, params, method, key, num_seeds, eval_episodes, timed=True) -> dict[str, Any]:
    from ddrl.evaluate import evaluate

    policy = make_scheduler(method.name, env)
    started = time.perf_counter()
    metrics = evaluate(env, params, policy, key, num_seeds, eval_episodes)
    jax.block_until_ready(metrics)
    row = _metric_row(metrics)
    row["eval_wall_s"] = time.perf_counter() - started
    row["decision_us"] = decision_time_us(env, params, lambda inputs: policy, None) if timed else math.nan
    return row


def _train_and_evaluate(cfg, env, params, method, train_steps, eval_key, eval_episodes,
                        run_dir, view, key, config) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from ddrl.evaluate import evaluate_per_seed
    from ddrl.log import make_logger
    from ddrl.training import make_trainer, run_training

    num_seeds = int(cfg.budget.seeds)
    trainer = make_trainer(
        method, env, params, train_steps, num_envs=int(cfg.num_envs),
        num_chunks=int(cfg.budget.get("num_chunks") or cfg.num_chunks),
    )  # fmt: skip
    name = f"{view}-{key}"
    resumed = bool(cfg.resume) and (run_dir / "checkpoints" / name).exists()
    logger = make_logger(cfg.logger, run_dir / name, config, cfg.experiment_name, name, num_seeds)
    started = time.perf_counter()
    try:
        final, history = run_training(
            trainer, int(cfg.seed), num_seeds, checkpoint_dir=run_dir / "checkpoints" / name,
            resume=bool(cfg.resume), logger=logger, desc=name,
            checkpoint_every_s=float(cfg.get("checkpoint_every_s", 0.0)),
        )  # fmt: skip
        train_wall = time.perf_counter() - started
        started = time.perf_counter()
        inputs = final.agent
        metrics = evaluate_per_seed(env, params, trainer.greedy_policy, inputs, eval_key, eval_episodes)
        jax.block_until_ready(metrics)
        row = _metric_row(metrics)
        logger.summary({"make_span": row["make_span"][0], "failure_rate": row["failure_rate"][0]})
    finally:
        logger.close()
    row["eval_wall_s"] = time.perf_counter() - started
    row["train_wall_s"] = train_wall
    row["resumed"] = resumed  # trained (in part) by an earlier process: train_wall_s is not the whole
    row["train_make_span"] = tuple(float(x) for x in mean_ci(history["step_make_span"][-1]))
    row["env_steps_per_s"] = trainer.total_steps * num_seeds / train_wall
    row["env_steps"] = trainer.total_steps
    first_seed = jax.tree.map(lambda x: x[0], inputs)
    row["decision_us"] = (decision_time_us(env, params, trainer.greedy_policy, first_seed)
                          if cfg.get("decision_time", True) else math.nan)  # fmt: skip
    np.savez(run_dir / f"{name}_history.npz", **history)
    return row, history


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


def decision_time_us(env, params, make_policy, policy_input, tasks: int = 75) -> float:
    """Median wall time per task of the greedy policy, one slot of tasks per jitted call."""
    from ddrl.benchmarks.decide import Settings, rollout_tasks, time_calls

    settings = Settings(calls=200, seconds=0.5, min_calls=20, slot_tasks=tasks, warmup_slots=2,
                        modes=("slot",), only=None)  # fmt: skip
    sample = rollout_tasks(env, params, jax.random.PRNGKey(7), settings)
    policy = make_policy(policy_input)

    def per_task(shared, task):
        key, obs, state = task
        return policy(key, obs, state, params)

    timing = time_calls(per_task, None, (sample.keys, sample.obs, sample.states), "slot", settings)
    return float(timing["p50_us"])


def _printable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("per_seed_make_span", "delay_histogram")}


# ----------------------------------------------------------------------------- tables


def relative_change_ci(new, baseline, key: int = 0, resamples: int = 10_000) -> tuple[float, float, float]:
    """100·(mean(new) − mean(baseline))/mean(baseline) with a 95 % bootstrap interval."""
    from ddrl.experiments.cartpole import relative_difference

    return relative_difference(np.asarray(new), np.asarray(baseline), key, resamples)


def comparisons(cfg: DictConfig, results: dict) -> list[dict[str, Any]]:
    """The headline method's make-span change vs each compared baseline, per view."""
    rows = []
    headline = cfg.headline
    for view, view_rows in results.items():
        if headline not in view_rows:
            continue
        for baseline, paper in (cfg.get("compare_to") or {}).items():
            other = view_rows.get(baseline) or (
                results.get("published", {}).get(baseline) if view == "fidelity" else None
            )
            if other is None or baseline not in view_rows:
                continue
            point, low, high = relative_change_ci(
                view_rows[headline]["per_seed_make_span"], other["per_seed_make_span"]
            )
            rows.append({"view": view, "method": headline, "baseline": baseline,
                         "relative_pct": point, "ci95_low": low, "ci95_high": high,
                         "seed_paper_pct": _claim(paper)})  # fmt: skip
        if view == "fidelity" and "published" in results:  # ours on own env vs baselines as published
            for baseline, paper in (cfg.get("compare_to") or {}).items():
                other = results["published"].get(baseline)
                if other is None:
                    continue
                point, low, high = relative_change_ci(
                    view_rows[headline]["per_seed_make_span"], other["per_seed_make_span"]
                )
                rows.append({"view": "fidelity vs published copies", "method": headline,
                             "baseline": baseline, "relative_pct": point, "ci95_low": low,
                             "ci95_high": high, "seed_paper_pct": _claim(paper)})  # fmt: skip
    return rows


def _claim(paper: Any) -> float:
    return math.nan if paper is None else float(paper)


def _fmt(pair, digits: int = 4) -> str:
    mean, ci = pair
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def results_table(cfg, results, budget_note: str, num_seeds: int, eval_episodes: int,
                  milp: dict[str, Any] | None = None, skipped: list[dict[str, str]] | None = None) -> str:
    """Markdown tables: one per view, then the headline method's reductions."""
    reference = dict(cfg.get("reference") or {})
    lines = [
        f"# {cfg.experiment_name}: scenario {cfg.env.scenario}",
        "",
        f"Budget: {budget_note}; {num_seeds} seeds; evaluation: {eval_episodes} greedy episodes "
        "per seed (the same episodes for every method of a view; argmax actions). Make-span (s) "
        "is the mean over tasks (failures count at τ), mean ± 95 % t-interval over seeds. The "
        "training make-span is that of the tasks decided by the exploring policy in the last "
        "chunk of training, the authors' kind of figure (they average their last 50 training episodes). The gap is to "
        f"`{cfg.get('yardstick', 'optimal_myopic')}` of the same view. Decision time: median per task with one slot of "
        "tasks per jitted call on this machine's CPU.",
        "",
    ]
    for view, rows in results.items():
        if not rows:
            continue
        myopic = rows.get(cfg.get("yardstick", "optimal_myopic"))
        tails = bool(cfg.get("delay_percentiles"))
        tail_head = "".join(f" delay p{p} (s) |" for p in PERCENTILES) if tails else ""
        lines += [f"## {view}: {view_title(cfg, view)}", "",
                  f"| method | env | make-span (s) | failure rate | gap to {cfg.get('yardstick', 'optimal_myopic')} |"
                  f"{tail_head} training make-span, last chunk (s) | authors' figure | train wall (s) | decision (µs/task) |",
                  "|---|---|---|---|---|" + "---|" * (len(PERCENTILES) if tails else 0) + "---|---|---|---|"]  # fmt: skip
        for key, row in sorted(rows.items(), key=lambda item: item[1]["make_span"][0]):
            gap = "–"
            if myopic is not None:
                gap = f"{100 * (row['make_span'][0] / myopic['make_span'][0] - 1):+.1f} %"
            env_name = f"{row['preset']}/{row['env_copy']}, {row['action_space']}"
            shown = view == cfg.get("reference_view", "published") and key in reference
            authors = f"{reference[key]:.4f}" if shown else ""
            wall = f"{row['train_wall_s']:.0f}" if "train_wall_s" in row else "–"
            wall = f"{wall} (resumed)" if row.get("resumed") else wall
            training = _fmt(row["train_make_span"]) if "train_make_span" in row else "–"
            tail = "".join(f" {_fmt(row[f'delay_p{p}'], 3)} |" for p in PERCENTILES) if tails else ""
            lines.append(
                f"| {row['label']} | {env_name} | {_fmt(row['make_span'])} | "
                f"{row['failure_rate'][0]:.4f} | {gap} |{tail} {training} | {authors} | {wall} | "
                f"{_us(row['decision_us'])} |"
            )
        for note in skipped or []:
            if note["view"] == view:
                columns = 9 + (len(PERCENTILES) if tails else 0)
                lines.append(f"| {note['label']} | not run here (see below) |" + " – |" * (columns - 2))
        lines.append("")
    for note in skipped or []:
        lines.append(f"- {note['view']}: `{note['name']}` not run: {note['reason']}")
    if skipped:
        lines.append("")
    if milp:
        lines += [
            "## Per-slot optimum (MILP, HiGHS), clean environment", "",
            f"On {milp['slots']} slots met by the yardstick, the first {milp['tasks_per_slot']} tasks "
            f"of each solved jointly ({milp['solved_optimal']} to proven optimality within "
            f"{cfg.milp.time_limit_s} s): the yardstick's total make-span is "
            f"{milp['myopic_above_milp_pct']:+.2f} % ± {milp['ci95']:.2f} % above the best MILP "
            f"schedule and at most {milp['myopic_above_bound_pct']:+.2f} % ± {milp['bound_ci95']:.2f} % "
            "above the optimum (HiGHS's dual bound); mean ± 95 % CI over slots, raw delays, no "
            "deadline. A method's gap to the optimum is about its gap to the yardstick plus this.", "",
        ]  # fmt: skip
    rows = comparisons(cfg, results)
    if rows:
        lines += ["## Make-span change of the headline method (95 % bootstrap interval over seeds)", "",
                  "| view | method | vs | measured | published claim |", "|---|---|---|---|---|"]  # fmt: skip
        for row in rows:
            lines.append(
                f"| {row['view']} | {row['method']} | {row['baseline']} | {row['relative_pct']:+.2f} % "
                f"[{row['ci95_low']:+.2f}, {row['ci95_high']:+.2f}] | {_claim_text(cfg, row)} |"
            )
        lines.append("")
    return "\n".join(lines)


def view_title(cfg: DictConfig, view: str) -> str:
    if view in VIEW_TITLES:
        return VIEW_TITLES[view]
    return str(cfg.scenario_views[view].get("title") or view)


def _us(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "–"


def _claim_text(cfg: DictConfig, row: dict[str, Any]) -> str:
    if math.isfinite(row["seed_paper_pct"]):
        return f"{row['seed_paper_pct']:+.2f} %"
    return str(cfg.get("claim") or "–")


def plot_learning_curves(histories: dict, path: pathlib.Path) -> None:
    """Mean make-span of the tasks decided in each chunk of training (exploring policies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = [view for view, rows in histories.items() if rows]
    fig, axes = plt.subplots(1, len(views), figsize=(5.5 * len(views), 4), squeeze=False)
    for ax, view in zip(axes[0], views):
        for key, history in histories[view].items():
            if "step_make_span" not in history:
                continue
            steps = history["env_steps"][:, 0]
            values = history["step_make_span"]
            stats = np.array([mean_ci(row[np.isfinite(row)]) if np.isfinite(row).sum() > 1 else
                              (np.nan, np.nan) for row in values])  # fmt: skip
            ax.plot(steps, stats[:, 0], label=key)
            ax.fill_between(steps, stats[:, 0] - np.nan_to_num(stats[:, 1]),
                            stats[:, 0] + np.nan_to_num(stats[:, 1]), alpha=0.2)  # fmt: skip
        ax.set_title(f"{view}: training (exploring policies)")
        ax.set_xlabel("environment steps per seed")
        ax.set_ylabel("make-span of the tasks decided (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_delay_distributions(cfg: DictConfig, results: dict, path: pathlib.Path) -> None:
    """Per view, the tail of the per-task raw delay distribution: P(delay > x), log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = [view for view, rows in results.items() if rows]
    fig, axes = plt.subplots(1, len(views), figsize=(5.0 * len(views), 4), squeeze=False)
    edges = 10.0 ** (DELAY_LOG10_RANGE[0] + np.arange(1, len(next(iter(results[views[0]].values()))["delay_histogram"]) + 1)
                     / DELAY_BINS_PER_DECADE)  # fmt: skip
    for ax, view in zip(axes[0], views):
        for key, row in sorted(results[view].items(), key=lambda item: item[1]["make_span"][0]):
            counts = np.asarray(row["delay_histogram"], dtype=np.float64)
            survival = 1.0 - np.cumsum(counts) / max(counts.sum(), 1.0)
            shown = survival > 0
            ax.step(edges[shown], survival[shown], where="post", label=row["label"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(view_title(cfg, view), fontsize=9)
        ax.set_xlabel("per-task delay x (s, no deadline cap)")
        ax.set_ylabel("P(delay > x)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
