"""One typed validation pass over a composed config, before anything runs or compiles.

`check(cfg)` walks the resolved config against the schema below and raises `ConfigError`
naming the first wrong field, its value and what is allowed. The schema covers every field
the runners read: types (a string where a number is meant is named as such), finiteness,
integer-ness where a count is meant (`1.5` and `1e9` are not counts; write `1000000000`),
ranges (with upper limits far above any real run, so that a typo such as `num_tasks=10**9`
stops here instead of exhausting memory), empty selections (`only=[]`, `views=[]`) and
unknown keys (a misspelt `+env.arrivl_prob=0.9` is refused as strictly as one without `+`).

Method configs (`method`, `methods.<key>`) are checked against their agent's `Config`
dataclass: every hyper-parameter's type comes from its annotation, its range from its name
(`*_lr > 0`, `gamma` in [0, 1], counts >= 1, ...). Cross-field checks that need the
environment (`build_mec`) stay in `ddrl.run.validate` and the experiment modules.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from ddrl.envs.mec import OBSERVATIONS
from ddrl.envs.scenarios import ENV_COPIES, PRESETS, SCENARIOS, TRACE_DEFAULTS, ConfigError

UNBOUNDED = math.inf


@dataclass(frozen=True)
class Spec:
    """What one field may hold."""

    kind: str  # int | float | bool | str | choice | list | map | any
    low: float = -UNBOUNDED
    high: float = UNBOUNDED
    low_open: bool = False  # low itself excluded
    high_open: bool = False
    nullable: bool = False
    finite: bool = True  # floats: inf / nan refused (nan always is)
    choices: tuple[Any, ...] = ()  # choice: the allowed values; float: extra allowed strings
    item: "Spec | None" = None  # list: each item; map: each value of a free-keyed map
    fields: Mapping[str, "Spec"] | None = None  # map: the known keys (None: any key, `item` values)
    length: int | None = None  # list: exact length
    nonempty: bool = False  # list: at least one item


def Int(low: float = 0, high: float = 10**12, nullable: bool = False, also: tuple[str, ...] = ()) -> Spec:
    return Spec("int", low, high, nullable=nullable, choices=also)


def Float(low: float = -UNBOUNDED, high: float = UNBOUNDED, *, low_open: bool = False,
          high_open: bool = False, nullable: bool = False, finite: bool = True,
          also: tuple[str, ...] = ()) -> Spec:  # fmt: skip
    return Spec("float", low, high, low_open, high_open, nullable, finite, also)


def Choice(*choices: Any, nullable: bool = False) -> Spec:
    return Spec("choice", choices=tuple(choices), nullable=nullable)


def List(item: Spec, *, nullable: bool = False, length: int | None = None, nonempty: bool = False) -> Spec:
    return Spec("list", item=item, nullable=nullable, length=length, nonempty=nonempty)


def Map(fields: Mapping[str, Spec] | None = None, *, item: Spec | None = None, nullable: bool = False) -> Spec:
    return Spec("map", fields=fields, item=item, nullable=nullable)


BOOL = Spec("bool")
STR = Spec("str")
ANY = Spec("any")
OPT_STR = Spec("str", nullable=True)
COUNT = Int(1)
MAX_SEEDS = 10_000  # seeds are vmapped in one program: beyond this nothing fits in memory

# ----------------------------------------------------------------------------- schema

BUDGET = Map({
    "name": STR,
    "seeds": Int(1, MAX_SEEDS),
    "eval_episodes": Int(1, 1_000_000),
    "episodes": Int(1, 10**8, nullable=True),
    "train_steps": Int(1, 10**12, nullable=True),
    "learning_starts": Int(0, 10**12, nullable=True),
    "num_chunks": Int(1, 100_000, nullable=True),
})  # fmt: skip

LOGGERS = {
    "none": Map({"kind": Choice("none", "wandb")}),
    "wandb": Map({
        "kind": Choice("none", "wandb"), "mode": Choice("offline", "online", "disabled"),
        "project": STR, "entity": OPT_STR, "group": OPT_STR, "tags": List(STR), "verbose": BOOL,
    }),
}  # fmt: skip

ACTION_SPACES = ("single", "pair", "topk", "subset", "mask")
_QUIRKS = ("per_index_task_profile", "make_span_over_selected", "tx_cap", "tx_reset_each_slot",
           "tx_counts_local_part", "local_waits_for_tx", "local_pays_transfer", "wait_cap")  # fmt: skip
_POSITIVE = Float(0, low_open=True)
_PAIR = List(_POSITIVE, nullable=True, length=2)

TRACE = Map({
    "utilisation": Float(0, 100, low_open=True),
    "workload": Choice("steps", "exec"),
    "assignment": Choice("random", "round_robin", "group"),
    "start_day": Float(0),
    "end_day": Float(0, low_open=True, nullable=True),
    "keep_failed": BOOL,
    "seed": Int(0, 2**32 - 1),
}, nullable=True)  # fmt: skip
assert set(TRACE.fields) == set(TRACE_DEFAULTS)

MEC_ENV = Map({
    "name": STR,
    "kind": Choice("mec", "gymnax"),
    "scenario": Choice(*SCENARIOS),
    "preset": Choice(*PRESETS),
    "env_copy": Choice(*ENV_COPIES),
    "action_space": Choice(*ACTION_SPACES, nullable=True),
    "topk": Int(1, 4096, nullable=True),
    "allocation": Choice("cwa", "cwa_published", "hecwa", nullable=True),
    "observation": Choice(*OBSERVATIONS),
    "num_tasks": Int(1, 4096, nullable=True),
    "capacity": List(_POSITIVE, nullable=True, nonempty=True),
    "rate": List(_POSITIVE, nullable=True, nonempty=True),
    "num_servers": Int(1, 4096, nullable=True),
    "capacity_max": Float(0, low_open=True, nullable=True),
    "slot_length": Float(0, low_open=True, nullable=True),
    "num_slots": Int(1, 10**6, nullable=True),
    "arrival_prob": Float(0, 1, low_open=True, nullable=True),
    "data_size": _PAIR,
    "density": _PAIR,
    "steps": List(Int(1, 10**6), nullable=True, length=2),
    "step_cost": _PAIR,
    "result_size": _PAIR,
    "deadline": Float(0, low_open=True, nullable=True, finite=False, also=("none",)),
    "failure_penalty": Float(0, nullable=True),
    "capacity_noise": Float(0, 10, nullable=True),
    "capacity_noise_corr": Float(0, 1, high_open=True, nullable=True),
    "capacity_floor": Float(0, 1, low_open=True, nullable=True),
    "quirks": Map({name: Spec("bool", nullable=True) for name in _QUIRKS}, nullable=True),
    "trace": TRACE,
})  # fmt: skip

GYMNAX_ENV = Map({"name": STR, "kind": Choice("mec", "gymnax"), "id": STR})

# Non-learning method configs (`kind: scheduler`).
SCHEDULER_FIELDS = {"name": STR, "kind": STR, "label": OPT_STR,
                    "action_space": Choice(*ACTION_SPACES, nullable=True)}  # fmt: skip
# Keys of a learner's method config that the trainer reads (ddrl.training.METHOD_KEYS), not the agent.
TRAINER_FIELDS = {
    "per_bs": BOOL,
    "group_acting": Choice("auto", "grouped", "gather", "dense"),
    "uniform_explore": Float(0, 1, high_open=True),  # off-policy learners only (checked when the trainer is built)
    "action_space": Choice(*ACTION_SPACES, nullable=True),
    "label": OPT_STR,
    "views": List(STR, nullable=True, nonempty=True),
    "decisions_per_slot": Float(0, low_open=True, nullable=True),
    "train_view": OPT_STR,  # train only in this view; evaluate its weights in the others (zero-shot)
}

# Hyper-parameter ranges by name (types come from the agent's Config annotations).
_UNIT = ("gamma", "gae_lambda", "eps_start", "eps_end", "exploration_fraction", "target_entropy_ratio")
_RATE = ("tau",)
_POSITIVE_FLOATS = ("actor_lr", "critic_lr", "alpha_lr", "learning_rate", "clip_eps", "max_grad_norm")
_ZERO_OK_COUNTS = ("learning_starts", "exploration_start", "exploration_steps")


def _hyper_spec(name: str, annotation: Any) -> Spec:
    """The Spec of hyper-parameter `name` with type `annotation`."""
    nullable = type(None) in typing.get_args(annotation)
    base = [a for a in typing.get_args(annotation) if a is not type(None)] if nullable else [annotation]
    kind = base[0] if base else annotation
    if typing.get_origin(kind) is tuple:
        return List(Int(1, 10**6), nullable=nullable)
    if kind is bool:
        return Spec("bool", nullable=nullable)
    if kind is str:
        return Spec("str", nullable=nullable)
    if kind is int:
        if name == "diffusion_steps":
            return Int(1, 1000, nullable)
        return Int(0 if name in _ZERO_OK_COUNTS else 1, 10**12, nullable)
    if name in _UNIT:
        return Float(0, 1, nullable=nullable)
    if name in _RATE:
        return Float(0, 1, low_open=True, nullable=nullable)
    if name in _POSITIVE_FLOATS:
        return Float(0, low_open=True, nullable=nullable)
    if name == "clip_x0":  # a bound on x̂_0; null or inf: none
        return Float(0, low_open=True, nullable=nullable, finite=False)
    if name in ("target_entropy",):
        return Float(nullable=nullable)
    return Float(0, nullable=nullable)  # weights, coefficients: >= 0


def agent_fields(agent_name: str) -> dict[str, Spec]:
    """The Specs of an agent's method config: name, kind, trainer keys and its hyper-parameters."""
    from ddrl import agents

    config_cls = agents.get(agent_name).Config
    hints = typing.get_type_hints(config_cls)
    fields = {"name": STR, "kind": STR, **TRAINER_FIELDS}
    for field in dataclasses.fields(config_cls):
        if field.name != "total_steps":  # set by the runner from the budget
            fields[field.name] = _hyper_spec(field.name, hints[field.name])
    return fields


def check_method(path: str, method: Any) -> None:
    """A method config (`method` or `methods.<key>`): a known agent or scheduler, typed fields."""
    from ddrl import agents
    from ddrl.schedulers import SCHEDULERS

    if not isinstance(method, Mapping):
        raise ConfigError(path, f"must be a method config (a mapping with name and kind), got {method!r}")
    kind, name = method.get("kind"), method.get("name")
    if kind == "scheduler":
        if name not in SCHEDULERS:
            raise ConfigError(f"{path}.name", f"unknown scheduler {name!r}; expected one of {list(SCHEDULERS)}")
        fields = {**SCHEDULER_FIELDS, "views": TRAINER_FIELDS["views"]}
    elif kind == "agent":
        if name not in agents.REGISTRY:
            raise ConfigError(f"{path}.name", f"unknown agent {name!r}; expected one of {sorted(agents.REGISTRY)}")
        fields = agent_fields(name)
    else:
        raise ConfigError(f"{path}.kind", f"must be agent or scheduler, got {kind!r}")
    check_value(path, method, Map(fields))
    if kind == "agent" and method.get("group_acting") == "grouped" and not agents.acts_grouped(name):
        raise ConfigError(f"{path}.group_acting", f"{name} cannot act grouped (only the diffusion actor d2sac "
                                                  "can); use auto, dense or gather")  # fmt: skip


# Experiment runners: the root keys each adds (beside seed, env, method, logger, budget).
COMMON_EXPERIMENT = {
    "experiment_runner": STR,
    "experiment_name": STR,
    "methods": Map(item=ANY),  # each checked by check_method
    "resume": BOOL,
    "only": List(STR, nullable=True, nonempty=True),
}
SCHEDULING = {
    **COMMON_EXPERIMENT,
    "yardstick": OPT_STR,
    "headline": STR,
    "compare_to": Map(item=Float(nullable=True), nullable=True),
    "compared_by": Map(item=STR, nullable=True),  # baseline -> our method set against it (default: headline)
    "claim": OPT_STR,
    "reference_view": OPT_STR,
    "reference": Map(item=Float(0, low_open=True), nullable=True),
    "views": List(STR, nonempty=True),
    "published_env": Map(item=Choice(*ENV_COPIES), nullable=True),
    "scenario_views": Map(item=Map({"title": OPT_STR, "preset": Choice("clean", "fidelity", nullable=True),
                                    "env": Map(item=ANY, nullable=True), "x": Float(nullable=True)}),
                          nullable=True),
    "x_axis": Map({"label": STR}, nullable=True),  # the views' `x` is this (scale.md, scale.png)
    "delay_percentiles": BOOL,
    "skip_unbuildable": BOOL,
    "fallbacks": Map(item=STR, nullable=True),
    "decision_time": BOOL,
    "default_episodes": Int(1, 10**8),
    "paper_episodes": Int(1, 10**8),
    "eval_episodes": Int(1, 1_000_000),
    "eval_modes": List(Choice("sample", "greedy"), nonempty=True),
    "headline_mode": Choice("trained", "sample", "greedy"),
    "milp": Map({"slots": Int(1, 100_000), "tasks": Int(1, 64), "time_limit_s": Float(0, low_open=True)},
                nullable=True),
}  # fmt: skip
CARTPOLE = {**COMMON_EXPERIMENT, "default_train_steps": Int(1, 10**12)}
# `+experiment=tune_amsa` (ddrl/experiments/tuning.py): a scheduling experiment with its own
# tune section (the methods tuned, settings drawn, validation seeds, spaces, evaluation modes);
# the spaces' syntax and names are checked by the runner's validate.
TUNING = {
    **SCHEDULING,
    "tunes": STR,  # the experiment whose method configs are tuned (amsa, ats)
    "tune": Map({
        "methods": List(STR, nonempty=True), "settings": Int(1, 100_000), "validation_seeds": Int(1, MAX_SEEDS),
        "test_seed_offset": Int(1, 2**30), "draw_seed": Int(0, 2**31 - 1), "reference": OPT_STR,
        "spaces": Map(item=Map(item=ANY, nullable=True)), "eval_mode": Map(item=Choice("greedy", "sample")),
    }),
}  # fmt: skip
EXPERIMENTS = {"scheduling": SCHEDULING, "cartpole": CARTPOLE, "tuning": TUNING}

# The hyper-parameter search's section (conf/tune/; ddrl.tune checks the sampler and space).
TUNE = Map({
    "method": OPT_STR, "view": STR, "direction": Choice("minimize", "maximize"), "study_name": STR,
    "storage": STR, "load_if_exists": BOOL, "n_trials": Int(1, 1_000_000), "batch": Int(1, 100_000),
    "worker": Int(0, 1_000_000), "sampler": Map(item=ANY),
    "objective": Map({"metric": STR, "chunks": Choice("all", "last")}), "params": Map(item=ANY),
})  # fmt: skip

# conf/trainer/: how a learner trains (ddrl.training.make_trainer, run_training).
TRAINER = Map({
    "num_envs": Int(1, 65_536, nullable=True),
    "num_chunks": Int(1, 100_000),
    "checkpoint_every_s": Float(0),
})

ROOT = {
    "seed": Int(0, 2**31 - 1),
    "trainer": TRAINER,
    "jobs": Int(1, 64, also=("auto",)),  # learners trained at once, one process each (scheduling runner)
    "tune": TUNE,
    "experiment_runner": OPT_STR,
    "experiment_name": STR,
    "env": Map(item=ANY),  # by kind: MEC_ENV or GYMNAX_ENV
    "method": Map(item=ANY),
    "logger": Map(item=ANY),
    "budget": BUDGET,
}


# ----------------------------------------------------------------------------- checking


def check(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Check every field of `cfg` (resolved); return the plain resolved config."""
    if isinstance(cfg, DictConfig):
        try:
            config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except Exception as error:  # an interpolation that does not resolve, a missing value
            raise ConfigError(_error_key(error), " ".join(str(error).split())) from None
    else:
        config = dict(cfg)
    config.pop("hydra", None)
    runner = config.get("experiment_runner")
    if runner is not None and not isinstance(runner, str):
        raise ConfigError("experiment_runner", f"must be a string, got {runner!r}")
    root = dict(ROOT)
    if runner is not None:
        if runner not in EXPERIMENTS:
            raise ConfigError("experiment_runner", f"unknown {runner!r}; expected one of {sorted(EXPERIMENTS)}")
        root.update(EXPERIMENTS[runner])
    check_value("", config, Map(root))
    env = config["env"]
    env_kind = env.get("kind")
    check_value("env", env, GYMNAX_ENV if env_kind == "gymnax" else MEC_ENV)
    logger_kind = config["logger"].get("kind")
    if logger_kind not in LOGGERS:
        raise ConfigError("logger.kind", f"unknown {logger_kind!r}; expected one of {sorted(LOGGERS)}")
    check_value("logger", config["logger"], LOGGERS[logger_kind])
    if runner is None:
        check_method("method", config["method"])
        if config["method"].get("kind") != "scheduler":
            raise ConfigError("method", f"{config['method'].get('name')} is a learning agent; run it through an +experiment")
    else:
        for key, method in config["methods"].items():
            check_method(f"methods.{key}", method)
        _check_selection(config, runner)
    return config


def _check_selection(config: dict[str, Any], runner: str) -> None:
    """Names that must refer to methods or views; options a view would ignore."""
    methods = list(config["methods"])
    for key in config.get("only") or []:
        if key not in methods:
            raise ConfigError("only", f"{key!r} is not one of the methods {methods}")
    if runner not in ("scheduling", "tuning"):
        return
    views = ["clean", "fidelity", "published", *(config.get("scenario_views") or {})]
    for view in config["views"]:
        if view not in views:
            raise ConfigError("views", f"unknown view {view!r}; expected some of {views}")
    for key, method in config["methods"].items():
        for view in method.get("views") or []:
            if view not in views:
                raise ConfigError(f"methods.{key}.views", f"unknown view {view!r}; expected some of {views}")
        train_view = method.get("train_view")
        if train_view is not None and train_view not in views:
            raise ConfigError(f"methods.{key}.train_view", f"unknown view {train_view!r}; expected one of {views}")
    for name in ("headline", "yardstick"):
        value = config.get(name)
        if value is not None and value not in methods:
            raise ConfigError(name, f"{value!r} is not one of the methods {methods}")
    for name in ("compare_to", "compared_by", "reference", "published_env", "fallbacks"):
        for key in config.get(name) or {}:
            if key not in methods:
                raise ConfigError(f"{name}.{key}", f"{key!r} is not one of the methods {methods}")
    for key, ours in (config.get("compared_by") or {}).items():
        if ours not in methods:
            raise ConfigError(f"compared_by.{key}", f"{ours!r} is not one of the methods {methods}")
    reference_view = config.get("reference_view")
    if reference_view is not None and reference_view not in views:
        raise ConfigError("reference_view", f"unknown view {reference_view!r}; expected one of {views} or null")
    env = config["env"]  # every view sets its own preset and copy: a different one would be ignored
    if env.get("preset") != "clean":
        raise ConfigError("env.preset", f"{env.get('preset')!r} would be ignored: each view of this experiment "
                          "sets its own preset (clean, fidelity, published copies); choose them with views=[...]")
    if env.get("env_copy") != "own":
        raise ConfigError("env.env_copy", f"{env.get('env_copy')!r} would be ignored: the published view runs "
                          "each baseline on its own copy (published_env); choose views=[published]")


def check_value(path: str, value: Any, spec: Spec) -> None:
    """Raise ConfigError unless `value` (at `path`) satisfies `spec`."""
    if value is None:
        if spec.nullable or spec.kind == "any":
            return
        raise ConfigError(path, f"must be {_describe(spec)}, got null")
    checker = _CHECKERS[spec.kind]
    checker(path, value, spec)


def _check_int(path: str, value: Any, spec: Spec) -> None:
    if isinstance(value, str) and value in spec.choices:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be {_describe(spec)}, got {_shown(value)}")
    if not spec.low <= value <= spec.high:
        raise ConfigError(path, f"must be {_describe(spec)}, got {value}")


def _check_float(path: str, value: Any, spec: Spec) -> None:
    if isinstance(value, str) and value in spec.choices:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"must be {_describe(spec)}, got {_shown(value)}")
    number = float(value)
    if math.isnan(number) or (spec.finite and math.isinf(number)):
        raise ConfigError(path, f"must be {_describe(spec)}, got {value}")
    too_low = number <= spec.low if spec.low_open else number < spec.low
    too_high = number >= spec.high if spec.high_open else number > spec.high
    if too_low or too_high:
        raise ConfigError(path, f"must be {_describe(spec)}, got {value}")


def _check_bool(path: str, value: Any, spec: Spec) -> None:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_shown(value)}")


def _check_str(path: str, value: Any, spec: Spec) -> None:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_shown(value)}")


def _check_choice(path: str, value: Any, spec: Spec) -> None:
    if isinstance(value, bool) or value not in spec.choices:
        raise ConfigError(path, f"unknown {value!r}; expected {_describe(spec)}")


def _check_list(path: str, value: Any, spec: Spec) -> None:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, f"must be {_describe(spec)}, got {_shown(value)}")
    if spec.length is not None and len(value) != spec.length:
        raise ConfigError(path, f"must be {_describe(spec)}, got {list(value)}")
    if spec.nonempty and not value:
        hint = " (to select all, leave it null)" if spec.nullable and spec.item.kind == "str" else ""
        raise ConfigError(path, f"must be {_describe(spec)}, got []{hint}")
    for index, item in enumerate(value):
        try:
            check_value(path, item, spec.item)
        except ConfigError as error:
            detail = str(error).split(": ", 1)[-1]
            raise ConfigError(path, f"item {index} {detail} (in {list(value)})") from None


def _check_map(path: str, value: Any, spec: Spec) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping, got {_shown(value)}")
    for key, item in value.items():
        child = f"{path}.{key}" if path else str(key)
        if spec.fields is not None:
            if key not in spec.fields:
                raise ConfigError(child, f"unknown key; expected one of {sorted(spec.fields)}")
            check_value(child, item, spec.fields[key])
        elif spec.item is not None:
            check_value(child, item, spec.item)


_CHECKERS: dict[str, Callable[[str, Any, Spec], None]] = {
    "int": _check_int, "float": _check_float, "bool": _check_bool, "str": _check_str,
    "choice": _check_choice, "list": _check_list, "map": _check_map, "any": lambda *_: None,
}  # fmt: skip


def _describe(spec: Spec) -> str:
    """What `spec` allows, in words."""
    if spec.kind == "int":
        text = f"an integer in [{spec.low:.0f}, {spec.high:.0f}]" if spec.high < 10**12 else f"an integer >= {spec.low:.0f}"
        if spec.choices:
            text += " or " + " or ".join(repr(c) for c in spec.choices)
    elif spec.kind == "float":
        finite = "a finite number" if spec.finite else "a number"
        if spec.low > -UNBOUNDED and spec.high < UNBOUNDED:
            text = (f"{finite} in {'(' if spec.low_open else '['}{spec.low:g}, {spec.high:g}"
                    f"{')' if spec.high_open else ']'}")  # fmt: skip
        elif spec.low > -UNBOUNDED:
            text = f"{finite} {'>' if spec.low_open else '>='} {spec.low:g}"
        else:
            text = finite
        if spec.choices:
            text += " or " + " or ".join(repr(c) for c in spec.choices)
    elif spec.kind == "bool":
        text = "true or false"
    elif spec.kind == "str":
        text = "a string"
    elif spec.kind == "choice":
        text = f"one of {list(spec.choices)}"
    elif spec.kind == "list":
        if spec.length is not None:
            text = f"a list of {spec.length} items, each {_describe(spec.item)}"
        else:
            text = f"a {'non-empty ' if spec.nonempty else ''}list, each item {_describe(spec.item)}"
    else:
        text = spec.kind
    return text + (" (or null)" if spec.nullable else "")


def _shown(value: Any) -> str:
    kind = {str: "a string", float: "a float", int: "an integer", bool: "a boolean",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)  # fmt: skip
    return f"{value!r} ({kind})"


def _error_key(error: Exception) -> str:
    key = getattr(error, "full_key", None)
    return str(key) if key else "config"
