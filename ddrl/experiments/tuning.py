"""A fair tuning protocol: `python -m ddrl.run +experiment=tune_amsa` (and `tune_ats`; issue 12).

Published settings of baselines against a method tuned by its authors is not a fair
comparison. Here every method in `tune.methods` is tuned by the same procedure and budget:

1. Draw. `tune.settings` settings of the method's space `tune.spaces.<method>` are drawn with
   a seeded random draw (`tag(log, interval(a, b))`: log-uniform, `interval(a, b)`: uniform,
   `choice(...)`: uniform over the choices, `int(...)`/`range(...)`: integers; the syntax of
   `ddrl.tune`). Setting 0 is always the method's published setting (its conf/algo config),
   so the tuned setting is never worse than the published one on validation. A space may
   only name traced fields of the agent's `Config` (`traced_fields`): the settings ×
   validation seeds of a method then train in one vmapped program
   (`ddrl.hpsearch.search_settings`).
2. Train and select. Every setting trains `tune.validation_seeds` seeds (base `seed`) for the
   episode budget of the tuned experiment (`tunes`: amsa or ats; `budget.episodes` or
   `default_episodes`, in environment steps of the tuning's view of its scenario, slot schedule
   and ε ramp converted as there). The view is the experiment's one entry of `views` (`clean`
   by default; `views=[fidelity]` tunes every method on the authors' simulator).
   Each seed's trained agents play `eval_episodes` evaluation episodes (the same episodes for
   every setting); the setting with the lowest mean make-span over the validation seeds is
   chosen (ties: the lower index, so the published setting wins a tie).
3. Test. The chosen and the published settings are retrained on `budget.seeds` fresh seeds
   (base `seed + tune.test_seed_offset`, disjoint from the validation seeds) and evaluated on
   fresh episodes; results.md reports both, make-span ± 95 % CI over the test seeds, and each
   one's gap to the reference scheduler `tune.reference` (e.g. optimal_myopic) played on the
   same test seeds and episodes.

Every method gets the same settings × validation seeds × episodes (checked before anything
trains, recorded in summary.json as `trials`). The evaluated policy is `tune.eval_mode.<method>`:
`sample` (a draw from π: what soft actor-critic learners optimise) or `greedy` (argmax Q; a
diffusion actor's argmax of its chain-averaged π), as `+experiment=amsa` evaluates them.

Writes `results.md` (with the headline method's change vs every other method, published and
tuned on either side, bootstrap intervals over the common test seeds), `tuned/<method>.yaml`
(the chosen setting as an algo config override) and returns the summary (summary.json).
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddrl import agents
from ddrl.agents.common import traced_fields
from ddrl.envs.scenarios import ConfigError
from ddrl.experiments import scheduling
from ddrl.experiments.tables import fmt_mean_ci
from ddrl.provenance import atomic_write_text
from ddrl.stats import mean_ci, relative_difference
from ddrl.training import EVAL_MODES

SIGNIFICANT_DIGITS = 4  # drawn floats are rounded to this many, so that the files show what was trained


# ----------------------------------------------------------------------------- the search space


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched hyper-parameter and how its values are drawn."""

    name: str
    kind: str  # float | int | choice
    low: float = 0.0
    high: float = 0.0
    log: bool = False  # log-uniform between low and high (> 0)
    step: float | None = None  # a grid low, low + step, ... <= high
    choices: tuple[float, ...] = ()

    def draw(self, rng: np.random.Generator) -> float | int:
        """One value: uniform (or log-uniform) in [low, high], on the step grid, or a choice."""
        if self.kind == "choice":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.step is not None:
            count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            value = self.low + self.step * int(rng.integers(count))
            return int(round(value)) if self.kind == "int" else _rounded(value)
        if self.kind == "int":
            if self.log:
                value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
                return int(min(max(math.floor(value), self.low), self.high))
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return min(max(_rounded(value), self.low), self.high)


def _rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def parse_space(method_key: str, algo_cfg: Mapping[str, Any], space: Mapping[str, Any] | None) -> list[Dimension]:
    """`tune.spaces.<method_key>` → its dimensions; a ConfigError naming the bad entry.

    Only the agent's vmappable numeric hyper-parameters (the traced fields of its `Config`)
    may be searched, so that all settings of a method train in one compiled program. The
    syntax is `ddrl.tune`'s.
    """
    from ddrl.tune import search_space

    field = f"tune.spaces.{method_key}"
    if not space:
        raise ConfigError(field, "empty search space: give at least one hyper-parameter")
    name = algo_cfg["name"]
    vmappable = traced_fields(agents.get(name).Config)
    for key in space:
        if key not in vmappable:
            raise ConfigError(f"{field}.{key}", f"{name} cannot vmap {key!r} (shape or Python branch, or no such "
                                                f"field); searchable: {sorted(vmappable)}")  # fmt: skip
    try:
        distributions = search_space(algo_cfg, space)
    except ConfigError as error:  # ddrl.tune names its own section: name ours
        where = error.field_name.replace("tune.params", field, 1)
        raise ConfigError(where, str(error).split(": ", 1)[-1]) from None
    return [_dimension(f"{field}.{key}", key, distribution) for key, distribution in distributions.items()]


def _dimension(field: str, key: str, distribution: Any) -> Dimension:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        choices = tuple(distribution.choices)
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
            raise ConfigError(field, f"choices must be numbers, got {list(choices)}")
        return Dimension(key, "choice", choices=choices)
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    step = distribution.step if kind == "float" or distribution.step != 1 else None  # an int step of 1: plain integers
    return Dimension(key, kind, distribution.low, distribution.high, bool(distribution.log), step)


def draw_settings(
    dimensions: Sequence[Dimension], published: Mapping[str, Any], num_settings: int, seed: int, stream: str = ""
) -> list[dict[str, Any]]:
    """`num_settings` settings: the published one first, then random draws of the dimensions.

    Deterministic for (`seed`, `stream`); `stream` (the method's name) gives every method its
    own draws.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(stream.encode())]))
    settings = [{d.name: published[d.name] for d in dimensions}]
    for _ in range(num_settings - 1):
        settings.append({d.name: d.draw(rng) for d in dimensions})
    return settings


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class TrialBudget:
    """What each method's search costs: the same for every method (checked)."""

    settings: int
    validation_seeds: int
    episodes: float  # training episodes per run
    env_steps: int  # environment steps per run (the budget; the trainer rounds it down to whole iterations)

    @property
    def runs(self) -> int:
        return self.settings * self.validation_seeds

    @property
    def total_env_steps(self) -> int:
        return self.runs * self.env_steps


def tuning_view(cfg: DictConfig) -> str:
    """The one view every method trains and is evaluated on: the experiment's `views` entry."""
    views = list(cfg.get("views") or [])
    if len(views) != 1:
        raise ConfigError("views", f"the tuning protocol trains and evaluates every method on one view; got {views}")
    return str(views[0])


@dataclasses.dataclass(frozen=True)
class ReferencePlan:
    """The scheduler every tested setting is set beside (`tune.reference`), in the tuning's view."""

    key: str
    method: DictConfig
    env: Any
    env_params: Any


def plan_reference(cfg: DictConfig, view: str) -> ReferencePlan | None:
    """`tune.reference` checked and built (None when unset); a ConfigError naming it otherwise."""
    key = cfg.tune.get("reference")
    if key is None:
        return None
    if key not in cfg.methods:
        raise ConfigError("tune.reference", f"unknown method {key!r}; the experiment's methods: {list(cfg.methods)}")
    method = cfg.methods[key]
    if method.get("kind") != "scheduler":
        raise ConfigError("tune.reference", f"{key!r} is a learner; the reference is a rule scheduler (e.g. optimal_myopic)")
    env_cfg = scheduling.view_env_config(cfg, view, key)
    if env_cfg is None:
        raise ConfigError(f"methods.{key}.views", f"{key!r} does not run in the {view} view")
    setup = scheduling.setup_method(cfg, method, env_cfg)
    return ReferencePlan(str(key), method, setup.env, setup.params)


@dataclasses.dataclass
class MethodPlan:
    """One method's search: its config for this env and budget, its space and settings."""

    key: str
    label: str
    algo_cfg: dict[str, Any]  # the published config, converted to this env and budget as +experiment=amsa does
    dimensions: list[Dimension]
    settings: list[dict[str, Any]]  # settings[0] is the published one
    eval_mode: str  # requested: greedy | sample
    env: Any
    env_params: Any
    budget: TrialBudget


def plan_methods(cfg: DictConfig) -> list[MethodPlan]:
    """Every method's search, checked before anything compiles (ConfigError naming the field)."""
    tune_cfg = cfg.tune
    methods = list(tune_cfg.methods)
    if len(set(methods)) != len(methods):
        raise ConfigError("tune.methods", f"a method is listed twice: {methods}")
    if int(tune_cfg.settings) < 1:
        raise ConfigError("tune.settings", f"must be >= 1, got {tune_cfg.settings}")
    spaces = tune_cfg.get("spaces") or {}
    modes = tune_cfg.get("eval_mode") or {}
    view = tuning_view(cfg)
    plans = []
    for key in methods:
        if key not in cfg.methods:
            raise ConfigError("tune.methods", f"unknown method {key!r}; the experiment's methods: {list(cfg.methods)}")
        method = cfg.methods[key]
        if method.get("kind") == "scheduler" or method.name not in agents.REGISTRY:
            raise ConfigError("tune.methods", f"{key!r} ({method.name}) is not a learning agent")
        if key not in spaces:
            raise ConfigError(f"tune.spaces.{key}", "no search space for this method")
        mode = modes.get(key, "greedy")
        if mode not in EVAL_MODES:
            raise ConfigError(f"tune.eval_mode.{key}", f"expected one of {list(EVAL_MODES)}, got {mode!r}")
        if mode == "sample" and not agents.get(method.name).SAMPLED_POLICY:
            raise ConfigError(f"tune.eval_mode.{key}", f"{method.name} has no sampled policy (ε-greedy on Q); use greedy")
        env_cfg = scheduling.view_env_config(cfg, view, key)
        if env_cfg is None:
            raise ConfigError(f"methods.{key}.views", f"{key!r} does not run in the {view} view")
        setup = scheduling.setup_method(cfg, method, env_cfg)
        env, params, train_steps, episodes = setup.env, setup.params, setup.train_steps, setup.episodes
        algo_cfg = OmegaConf.to_container(setup.method, resolve=True)
        space = OmegaConf.to_container(spaces[key], resolve=True) if spaces[key] is not None else None
        dimensions = parse_space(key, algo_cfg, space)
        config = agents.make_config(algo_cfg["name"], _hyper_parameters(algo_cfg))
        published = {d.name: getattr(config, d.name) for d in dimensions}
        settings = draw_settings(dimensions, published, int(tune_cfg.settings), int(tune_cfg.draw_seed), key)
        budget = TrialBudget(len(settings), int(tune_cfg.validation_seeds), episodes, train_steps)
        plans.append(MethodPlan(key, str(method.get("label") or key), algo_cfg, dimensions, settings, mode,
                                env, params, budget))  # fmt: skip
    budgets = {plan.key: plan.budget for plan in plans}
    if len(set(budgets.values())) > 1:
        raise RuntimeError(f"unequal search budgets: {budgets}")
    return plans


def _hyper_parameters(algo_cfg: Mapping[str, Any]) -> dict[str, Any]:
    from ddrl.training import METHOD_KEYS

    return {k: v for k, v in algo_cfg.items() if k not in METHOD_KEYS}


def validate(cfg: DictConfig) -> None:
    """The scheduling checks (methods, views, envs), then the search of every method."""
    scheduling.validate(cfg)
    plan_methods(cfg)
    plan_reference(cfg, tuning_view(cfg))


# ----------------------------------------------------------------------------- training and evaluation


@dataclasses.dataclass
class Evaluation:
    """Per setting and seed, the mean over the evaluation episodes; shape (settings, seeds)."""

    make_span: np.ndarray
    failure_rate: np.ndarray

    def setting_make_span(self) -> np.ndarray:
        """Mean make-span of each setting over its seeds (NaN counted as worst)."""
        means = self.make_span.mean(axis=1)
        return np.where(np.isfinite(means), means, np.inf)


def evaluate_settings(result: Any, env: Any, params: Any, make_policy: Callable, key: jax.Array,
                      episodes: int) -> Evaluation:  # fmt: skip
    """Every setting's trained agents on the same `episodes` evaluation episodes per seed.

    One program: `evaluate_per_seed` vmapped over the settings, all with the same key (common
    episodes, so settings differ by their agents alone).
    """
    from ddrl.evaluate import evaluate_per_seed

    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *result.agents)  # (settings, seeds, ...)
    play = jax.jit(jax.vmap(lambda agent_states: evaluate_per_seed(env, params, make_policy, agent_states, key,
                                                                   episodes)))  # fmt: skip
    metrics = jax.block_until_ready(play(stacked))
    return Evaluation(np.asarray(metrics.make_span, np.float64).mean(axis=-1),
                      np.asarray(metrics.failure_rate, np.float64).mean(axis=-1))  # fmt: skip


def train_and_evaluate(plan: MethodPlan, settings: Sequence[Mapping[str, Any]], num_seeds: int, seed: int,
                       eval_key: jax.Array, eval_episodes: int, num_envs: int, num_chunks: int,
                       ) -> tuple[Evaluation, str, dict[str, float]]:  # fmt: skip
    """Train `settings` × `num_seeds` seeds (base `seed`) in one program, evaluate them.

    Returns the evaluation, the mode evaluated, and the wall times / env steps of the run.
    """
    from ddrl.hpsearch import search_settings

    started = time.perf_counter()
    result = search_settings(plan.algo_cfg, plan.env, plan.env_params, settings, num_seeds, plan.budget.env_steps,
                             seed=seed, num_chunks=num_chunks, num_envs=num_envs, keep_agents=True)  # fmt: skip
    trainer = result.trainers[0]
    if any(other is not trainer for other in result.trainers):
        raise RuntimeError(f"{plan.key}: the settings needed several programs; search traced fields only")
    mode = plan.eval_mode
    make_policy = lambda agent_state: trainer.policy(agent_state, mode)  # noqa: E731
    trained = time.perf_counter()
    evaluation = evaluate_settings(result, plan.env, plan.env_params, make_policy, eval_key, eval_episodes)
    cost = {"compile_s": result.compile_s, "train_s": result.run_s, "eval_s": time.perf_counter() - trained,
            "wall_s": time.perf_counter() - started, "trained_env_steps_per_run": trainer.total_steps}  # fmt: skip
    return evaluation, mode, cost


# ----------------------------------------------------------------------------- the protocol


def run(cfg: DictConfig, run_dir: pathlib.Path) -> dict[str, Any]:
    """Search, select on validation seeds, retest chosen and published on test seeds; write tables."""
    run_dir = pathlib.Path(run_dir)
    plans = plan_methods(cfg)
    view = tuning_view(cfg)
    reference_plan = plan_reference(cfg, view)
    seed = int(cfg.seed)
    test_seed = seed + int(cfg.tune.test_seed_offset)
    num_test_seeds = int(cfg.budget.seeds)
    eval_episodes = min(int(cfg.budget.eval_episodes), int(cfg.eval_episodes))
    num_chunks = int(cfg.budget.get("num_chunks") or cfg.trainer.num_chunks)
    validation_key = jax.random.fold_in(jax.random.PRNGKey(seed), 10_000)
    test_key = jax.random.fold_in(jax.random.PRNGKey(test_seed), 10_000)
    reference = None
    if reference_plan is not None:  # a rule: seconds; first, so that a failure costs no training
        reference = scheduling.evaluate_scheduler(reference_plan.env, reference_plan.env_params, reference_plan.method,
                                                  test_key, num_test_seeds, eval_episodes, timed=False)  # fmt: skip
        reference = {"name": reference_plan.key, **{k: reference[k] for k in
                     ("make_span", "failure_rate", "per_seed_make_span", "eval_mode")}}  # fmt: skip
        print(f"reference {reference_plan.key} on the test seeds: {fmt_mean_ci(reference['make_span'])} s", flush=True)
    rows = []
    for number, plan in enumerate(plans, 1):
        budget = plan.budget
        print(f"[{number}/{len(plans)}] {plan.key}: {budget.settings} settings × {budget.validation_seeds} "
              f"validation seeds", flush=True)  # fmt: skip
        validation, mode, search_cost = train_and_evaluate(
            plan, plan.settings, budget.validation_seeds, seed, validation_key, eval_episodes, cfg.trainer.num_envs,
            num_chunks,
        )  # fmt: skip
        scores = validation.setting_make_span()
        chosen = int(np.argmin(scores))  # first minimum: the published setting wins ties
        print(f"  chose setting {chosen} ({plan.settings[chosen]}), validation make-span {scores[chosen]:.4f} s "
              f"(published {scores[0]:.4f} s); retraining both on {num_test_seeds} test seeds", flush=True)  # fmt: skip
        test, _, test_cost = train_and_evaluate(
            plan, [plan.settings[0], plan.settings[chosen]], num_test_seeds, test_seed, test_key, eval_episodes,
            cfg.trainer.num_envs, num_chunks,
        )  # fmt: skip
        rows.append(_method_row(plan, validation, scores, chosen, test, mode, search_cost, test_cost, reference))
    for plan, row in zip(plans, rows, strict=True):  # once every method has finished: an interrupted run leaves none
        _write_tuned(run_dir / "tuned" / f"{plan.key}.yaml", plan, row, cfg, view)
    header = _header(cfg, plans, rows, eval_episodes, num_test_seeds, test_seed, view)
    changes = tuned_comparisons(rows, str(cfg.headline), dict(cfg.get("compare_to") or {}))
    table = header + _table(rows, reference) + comparisons_table(changes)
    atomic_write_text(run_dir / "results.md", table)
    print(table)
    return {
        "methods": [
            {"name": row["name"], "setting": setting, "view": view, "metric": "make_span",
             "mean": row[setting]["make_span"][0], "ci95": row[setting]["make_span"][1], "seeds": num_test_seeds,
             "failure_rate": row[setting]["failure_rate"][0], "hyper_parameters": row[setting]["hyper_parameters"]}
            for row in rows for setting in ("tuned", "published")  # tuned first: ddrl.run's objective reads it
        ],  # fmt: skip
        "searches": rows,
        "comparisons": changes,
        "validation_seed_base": seed,
        "test_seed_base": test_seed,
        "eval_episodes": eval_episodes,
        "view": view,
        "reference": reference,
        "observation": str(cfg.env.get("observation", "authors")),
    }


def _method_row(plan: MethodPlan, validation: Evaluation, scores: np.ndarray, chosen: int, test: Evaluation,
                mode: str, search_cost: dict[str, float], test_cost: dict[str, float],
                reference: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    budget = plan.budget

    def tested(index: int) -> dict[str, Any]:  # index 0: published, 1: tuned (the test program's order)
        result = {"make_span": tuple(float(x) for x in mean_ci(test.make_span[index])),
                  "failure_rate": tuple(float(x) for x in mean_ci(test.failure_rate[index])),
                  "per_seed_make_span": test.make_span[index].tolist(),
                  "hyper_parameters": dict(plan.settings[0 if index == 0 else chosen])}  # fmt: skip
        if reference is not None:  # same test seeds and episodes: % above the reference, 95 % bootstrap interval
            result["gap_to_reference_pct"] = relative_difference(test.make_span[index], reference["per_seed_make_span"])
        return result

    return {
        "name": plan.key,
        "label": plan.label,
        "trials": {"settings": budget.settings, "validation_seeds": budget.validation_seeds,
                   "runs": budget.runs, "episodes": budget.episodes, "env_steps_per_run": budget.env_steps,
                   "total_env_steps": budget.total_env_steps,
                   "trained_env_steps_per_run": int(search_cost["trained_env_steps_per_run"])},  # fmt: skip
        "eval_mode": mode,
        "evaluated_settings": [
            {"index": i, "hyper_parameters": dict(s), "validation_make_span": float(validation.make_span[i].mean()),
             "validation_failure_rate": float(validation.failure_rate[i].mean())}
            for i, s in enumerate(plan.settings)
        ],  # fmt: skip
        "chosen_index": chosen,
        "validation_make_span": {"published": float(scores[0]), "tuned": float(scores[chosen])},
        "published": tested(0),
        "tuned": tested(1),
        "cost_s": {phase: {k: round(float(v), 3) for k, v in cost.items() if k.endswith("_s")}
                   for phase, cost in (("search", search_cost), ("test", test_cost))},  # fmt: skip
    }


def _format_setting(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())


def _header(cfg: DictConfig, plans: list[MethodPlan], rows: list[dict[str, Any]], eval_episodes: int,
            num_test_seeds: int, test_seed: int, view: str) -> str:  # fmt: skip
    budget = plans[0].budget
    modes = ", ".join(f"{row['name']} {row['eval_mode']}" for row in rows)
    trained = ", ".join(f"{row['name']} {row['trials']['trained_env_steps_per_run']:,}" for row in rows)
    return (
        f"# Tuned vs published settings (scenario {cfg.env.scenario})\n\n"
        f"- environment: view `{view}` of scenario `{cfg.env.scenario}`, observation `{cfg.env.get('observation')}`\n"
        f"- budget per run: ≈ {budget.episodes:g} episodes = {budget.env_steps:,} environment steps "
        f"(trained, whole iterations: {trained})\n"
        f"- search per method: {budget.settings} settings (setting 0 the published one) × "
        f"{budget.validation_seeds} validation seeds (base seed {int(cfg.seed)}) = {budget.runs} runs, "
        f"{budget.total_env_steps:,} environment steps; selection by the mean make-span of {eval_episodes} "
        "evaluation episodes per seed\n"
        f"- test: published and chosen settings retrained on {num_test_seeds} fresh seeds (base seed {test_seed}), "
        f"{eval_episodes} fresh evaluation episodes per seed; make-span ± 95 % CI over the test seeds\n"
        f"- evaluation mode: {modes}\n\n"
    )


def _table(rows: list[dict[str, Any]], reference: dict[str, Any] | None = None) -> str:
    gap = f" gap to {reference['name']} (95 % CI) |" if reference else ""
    lines = [f"| method | setting | make-span (s) | failure rate |{gap} validation make-span (s) | hyper-parameters |",
             "|---|---|---|---|" + ("---|" if reference else "") + "---|---|"]  # fmt: skip
    for row in rows:
        for setting in ("published", "tuned"):
            tested = row[setting]
            name = f"{row['label']} (`{row['name']}`)" if setting == "published" else ""
            which = setting
            if setting == "tuned":
                which = f"tuned (setting {row['chosen_index']})" if row["chosen_index"] else "tuned (= published)"
            gap_cell = ""
            if reference:
                point, low, high = tested["gap_to_reference_pct"]
                gap_cell = f" {point:+.2f} % [{low:+.2f}, {high:+.2f}] |"
            lines.append(f"| {name} | {which} | {fmt_mean_ci(tested['make_span'])} | "
                         f"{tested['failure_rate'][0]:.4f} |{gap_cell} {row['validation_make_span'][setting]:.4f} | "
                         f"{_format_setting(tested['hyper_parameters'])} |")  # fmt: skip
    if reference:
        lines.append(f"| {reference['name']} (reference) | {reference['eval_mode']} | "
                     f"{fmt_mean_ci(reference['make_span'])} | {reference['failure_rate'][0]:.4f} | | | |")  # fmt: skip
    return "\n".join(lines) + "\n"


def tuned_comparisons(rows: list[dict[str, Any]], headline: str, claims: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The headline method's make-span change vs every other method, each side published or
    tuned (once where tuning kept the published setting), with 95 % bootstrap intervals over
    the test seeds (the same seeds and evaluation episodes for every method); `claims`:
    baseline -> the published claim (%)."""
    by_name = {row["name"]: row for row in rows}
    if headline not in by_name:
        return []
    ours = by_name[headline]
    changes = []
    for name, other in by_name.items():
        if name == headline:
            continue
        for our_setting in _distinct_settings(ours):
            for their_setting in _distinct_settings(other):
                point, low, high = relative_difference(ours[our_setting]["per_seed_make_span"],
                                                       other[their_setting]["per_seed_make_span"])  # fmt: skip
                claim = claims.get(name)
                changes.append({"method": headline, "setting": our_setting, "baseline": name,
                                "baseline_setting": their_setting, "relative_pct": point, "ci95_low": low,
                                "ci95_high": high, "seed_paper_pct": math.nan if claim is None else float(claim)})  # fmt: skip
    return changes


def _distinct_settings(row: dict[str, Any]) -> tuple[str, ...]:
    """("published", "tuned"), or ("published",) where tuning chose the published setting."""
    return ("published", "tuned") if row["chosen_index"] else ("published",)


def comparisons_table(changes: list[dict[str, Any]]) -> str:
    """Markdown: the headline method's change vs each baseline, published and tuned."""
    if not changes:
        return ""
    lines = ["", f"## Make-span change of {changes[0]['method']} (95 % bootstrap interval over the test seeds)", "",
             "| ours | vs | measured | published claim |", "|---|---|---|---|"]  # fmt: skip
    for change in changes:
        claim = f"{change['seed_paper_pct']:+.2f} %" if math.isfinite(change["seed_paper_pct"]) else "–"
        lines.append(f"| {change['method']} ({change['setting']}) | {change['baseline']} ({change['baseline_setting']}) | "
                     f"{change['relative_pct']:+.2f} % [{change['ci95_low']:+.2f}, {change['ci95_high']:+.2f}] | {claim} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def tuned_overrides(method_key: str, values: Mapping[str, Any]) -> list[str]:
    """Command-line overrides that give `methods.<method_key>` the tuned `values`. `++` adds a key
    the method's config leaves to the agent's defaults (LAD-TS's learning rates) and overrides one
    it lists; a plain `methods.x.k=v` fails on the former."""
    return [f"++methods.{method_key}.{field}={value}" for field, value in values.items()]


def _write_tuned(path: pathlib.Path, plan: MethodPlan, row: dict[str, Any], cfg: DictConfig, view: str) -> None:
    """The chosen setting as an algo config: conf/algo/<method>.yaml's values with these overrides."""
    budget = plan.budget
    chosen = plan.settings[row["chosen_index"]]
    values = {k: (float(v) if isinstance(v, float) else v) for k, v in chosen.items()}
    lines = [
        f"# {plan.label}: the setting chosen by `python -m ddrl.run +experiment={cfg.experiment_name}` "
        "(ddrl/experiments/tuning.py):",
        f"# setting {row['chosen_index']} of {budget.settings} drawn from tune.spaces.{plan.key} (draw seed "
        f"{int(cfg.tune.draw_seed)}; setting 0 = published),",
        f"# lowest mean make-span over {budget.validation_seeds} validation seeds (base seed {int(cfg.seed)}) at "
        f"≈ {budget.episodes:g} episodes ({budget.env_steps:,} env steps) per run on the {view} view.",
        f"# Validation make-span {row['validation_make_span']['tuned']:.4f} s (published "
        f"{row['validation_make_span']['published']:.4f} s). Overrides of methods.{plan.key}:",
        f"#   python -m ddrl.run +experiment={cfg.tunes} {' '.join(tuned_overrides(plan.key, values))}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n" + OmegaConf.to_yaml(OmegaConf.create(values)))
