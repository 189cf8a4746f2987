"""Named scenarios (MEC_MODEL.md §7), presets and the published environment copies.

`build_mec(env_cfg)` turns an `env` config (conf/env/mec_*.yaml) into `(MEC, MECParams)`,
checking every field first and raising `ConfigError` naming the field that is wrong.

The `trace` and `prototype` scenarios replay the real GenAI request trace (MEC_MODEL.md §8,
ddrl/envs/trace.py); their `env.trace` block sets the load and how requests map to BSs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import jax.numpy as jnp

from ddrl.envs.actions import ActionSpace
from ddrl.envs import trace as genai
from ddrl.envs.mec import MEC, OBSERVATIONS, MECParams, Quirks


class ConfigError(ValueError):
    """A config field that cannot describe a runnable experiment."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name
        self.message = message

    def __reduce__(self):  # picklable, so a training worker's error reaches the parent intact
        return type(self), (self.field_name, self.message)


@dataclass(frozen=True)
class Scenario:
    """Static shape and model choices plus the numeric defaults of one scenario."""

    num_tasks: int
    arrivals: str
    workload: str
    action_space: str
    topk: int
    params: dict[str, Any] = field(default_factory=dict)


# Relative speed of one denoising step on each prototype machine (Quadro RTX 4000 = 1), an
# assumption from peak FP16 throughput: Xavier NX's 384-core Volta GPU about 1.7 TFLOPS vs the
# RTX 4000's about 14 TFLOPS (0.12); a 2.2 GHz Core i7 running the model on its CPU cores
# about 0.5 TFLOPS FP32 at lower efficiency (0.04).
PROTOTYPE_SPEEDS = {"jetson_xavier_nx": 0.12, "core_i7_2.2ghz": 0.04, "quadro_rtx_4000": 1.0}
PROTOTYPE_MACHINES = ("jetson_xavier_nx",) * 3 + ("core_i7_2.2ghz", "quadro_rtx_4000")
PROTOTYPE_TOTAL_GHZ = 150.0
_PROTOTYPE_RELATIVE = [PROTOTYPE_SPEEDS[m] for m in PROTOTYPE_MACHINES]
PROTOTYPE_CAPACITY = [PROTOTYPE_TOTAL_GHZ * s / sum(_PROTOTYPE_RELATIVE) for s in _PROTOTYPE_RELATIVE]

SCENARIOS: dict[str, Scenario] = {
    # AMCoEdge / DDRL-AMSA: ChangfuXu/AMCoEdge defaults
    "amcoedge": Scenario(
        num_tasks=50, arrivals="bernoulli", workload="density", action_space="subset", topk=3,
        params=dict(
            capacity=[10.0, 20, 30, 40, 50], rate=[400.0, 425, 450, 475, 500],
            slot_length=1.0, num_slots=60, arrival_prob=0.3,
            data_size_min=2.0, data_size_max=5.0,
            density_min=1.024e-3 * 100, density_max=1.024e-3 * 300,
            deadline=1.0, failure_penalty=10.0,
        ),
    ),
    # SMCoEdge: ChangfuXu/SMCoEdge defaults
    "smcoedge": Scenario(
        num_tasks=50, arrivals="bernoulli", workload="density", action_space="topk", topk=3,
        params=dict(
            capacity=[10.0, 20, 30, 40, 50], rate=[500.0, 425, 450, 400, 475],
            slot_length=0.1, num_slots=100, arrival_prob=0.3,
            data_size_min=10.0, data_size_max=40.0,
            density_min=3e-5 * 100, density_max=3e-5 * 300,
            deadline=1.0, failure_penalty=2.0,
        ),
    ),
    # LAD-TS / DDRL-ATS: ChangfuXu/DEdgeAI defaults (AIGC tasks, no deadline)
    "ladts": Scenario(
        num_tasks=50, arrivals="uniform_count", workload="diffusion_steps", action_space="single", topk=1,
        params=dict(
            capacity=[50.0, 25, 18, 32, 28, 21, 50, 17, 44, 41, 21, 31, 41, 36, 30, 47, 49, 13, 48, 14],
            rate=[499.0, 478, 461, 416, 473, 408, 500, 462, 427, 430, 480, 407, 476, 415, 453, 480, 427, 444, 477, 475],
            slot_length=1.0, num_slots=59,
            data_size_min=2.0, data_size_max=5.0,
            steps_min=1, steps_max=14, step_cost_min=0.1024, step_cost_max=0.3072,
            result_size_min=0.6, result_size_max=1.0,
            deadline=math.inf, failure_penalty=0.0,
        ),
    ),
    # The real GenAI request trace on AMCoEdge's cluster: arrivals and workloads replayed
    # (`env.trace`). Assumed, not from a paper: a 2 s deadline (an interactive AIGC user's
    # patience; 8-image prompts, 15 % of requests, need about 0.33 s on all 150 GHz and 1 s on
    # the fastest ES alone) with AMCoEdge's κ = 10. N = 64 holds all but the rarest bursts.
    "trace": Scenario(
        num_tasks=64, arrivals="trace", workload="trace", action_space="subset", topk=3,
        params=dict(
            capacity=[10.0, 20, 30, 40, 50], rate=[400.0, 425, 450, 475, 500],
            slot_length=1.0, num_slots=60, deadline=2.0, failure_penalty=10.0,
        ),
    ),
    # The seed paper's testbed: 3 Jetson Xavier NX, a Core i7 2.2 GHz computer, a Core i5 with a
    # Quadro RTX 4000 (ES 0-2, 3, 4), replaying the trace. Relative Stable Diffusion speeds are
    # assumptions (PROTOTYPE_SPEEDS), scaled so that the cluster totals AMCoEdge's 150 GHz: the
    # load (`env.trace.utilisation`) then means the same as on `trace`; only heterogeneity differs.
    "prototype": Scenario(
        num_tasks=64, arrivals="trace", workload="trace", action_space="subset", topk=3,
        params=dict(
            capacity=PROTOTYPE_CAPACITY, rate=[400.0, 425, 450, 475, 500],
            slot_length=1.0, num_slots=60, deadline=2.0, failure_penalty=10.0,
        ),
    ),
}


# `env.trace` defaults (conf/env/mec_trace.yaml documents each field).
TRACE_DEFAULTS = dict(
    utilisation=0.6, workload="steps", assignment="random", start_day=4.0, end_day=None,
    keep_failed=True, seed=0,
)  # fmt: skip

PRESETS = ("fidelity", "clean")

# Quirks of the authors' simulators (MEC_MODEL.md §2, §4); `clean` has none of them.
_FIDELITY = Quirks(
    per_index_task_profile=True,
    make_span_over_selected=True,
    tx_reset_each_slot=True,
)
# Each published method ran on its own copy of the environment (MEC_MODEL.md §4 table).
ENV_COPIES: dict[str, dict[str, Any]] = {
    "own": dict(quirks=dict(tx_cap=True)),
    "randcoedge": dict(quirks=dict(tx_counts_local_part=True, wait_cap=True)),
    "smcoedge": dict(quirks=dict(tx_counts_local_part=True, wait_cap=True), failure_penalty=2.0),
    "drlcoedge": dict(
        quirks=dict(
            tx_counts_local_part=True, local_waits_for_tx=True, local_pays_transfer=True, wait_cap=True
        ),
        failure_penalty=2.0,
    ),
}

_RANGES = {  # config field -> (min field, max field) of MECParams
    "data_size": ("data_size_min", "data_size_max"),
    "density": ("density_min", "density_max"),
    "steps": ("steps_min", "steps_max"),
    "step_cost": ("step_cost_min", "step_cost_max"),
    "result_size": ("result_size_min", "result_size_max"),
}
_SCALARS = (
    "slot_length", "num_slots", "arrival_prob", "deadline", "failure_penalty",
    "capacity_noise", "capacity_noise_corr", "capacity_floor",
)


def _get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def build_mec(env_cfg: Mapping[str, Any], action_space: str | None = None) -> tuple[MEC, MECParams]:
    """Environment and parameters for an `env` config; `action_space` overrides the config's."""
    scenario_name = _get(env_cfg, "scenario")
    if scenario_name not in SCENARIOS:
        raise ConfigError("env.scenario", f"unknown {scenario_name!r}; expected one of {sorted(SCENARIOS)}")
    scenario = SCENARIOS[scenario_name]
    preset = _get(env_cfg, "preset", "clean")
    if preset not in PRESETS:
        raise ConfigError("env.preset", f"unknown {preset!r}; expected one of {PRESETS}")
    env_copy = _get(env_cfg, "env_copy", "own")
    if env_copy not in ENV_COPIES:
        raise ConfigError("env.env_copy", f"unknown {env_copy!r}; expected one of {sorted(ENV_COPIES)}")
    if preset == "clean" and env_copy != "own":
        raise ConfigError("env.env_copy", "the published environment copies exist only in the fidelity preset")

    values = dict(scenario.params)
    for name in ("capacity", "rate"):
        if _get(env_cfg, name) is not None:
            values[name] = [float(v) for v in _get(env_cfg, name)]
    _resize_servers(values, _get(env_cfg, "num_servers"), _get(env_cfg, "capacity_max"))
    for name, (low_field, high_field) in _RANGES.items():
        bounds = _get(env_cfg, name)
        if bounds is not None:
            if len(bounds) != 2:
                raise ConfigError(f"env.{name}", f"expected [min, max], got {list(bounds)}")
            values[low_field], values[high_field] = bounds
    for name in _SCALARS:
        if _get(env_cfg, name) is not None:
            values[name] = _get(env_cfg, name)
    copy = ENV_COPIES[env_copy] if preset == "fidelity" else {}
    if "failure_penalty" in copy and _get(env_cfg, "failure_penalty") is None:
        values["failure_penalty"] = copy["failure_penalty"]
    if values.get("deadline") is None or values["deadline"] == "none":
        values["deadline"] = math.inf
    num_tasks = int(_get(env_cfg, "num_tasks", scenario.num_tasks))
    _check_values(values, num_tasks)

    quirk_values = dataclasses.asdict(_FIDELITY if preset == "fidelity" else Quirks())
    quirk_values.update(copy.get("quirks", {}))
    for name, value in dict(_get(env_cfg, "quirks", {})).items():
        if name not in quirk_values:
            raise ConfigError(f"env.quirks.{name}", f"unknown quirk; expected one of {sorted(quirk_values)}")
        if value is not None:
            quirk_values[name] = bool(value)

    allocation = _get(env_cfg, "allocation", "cwa_published" if preset == "fidelity" else "cwa")
    if allocation not in ("cwa", "cwa_published", "hecwa"):
        raise ConfigError("env.allocation", f"unknown {allocation!r}; expected cwa, cwa_published or hecwa")
    observation = _get(env_cfg, "observation", "authors")
    if observation not in OBSERVATIONS:
        raise ConfigError("env.observation", f"unknown {observation!r}; expected one of {list(OBSERVATIONS)}")
    space = action_space or _get(env_cfg, "action_space", scenario.action_space)
    num_servers = len(values["capacity"])
    trace_tables = None
    if scenario.arrivals == "trace":
        trace_tables = build_trace_tables(_get(env_cfg, "trace", {}), values, num_servers, num_tasks)
    elif _get(env_cfg, "trace") is not None:
        raise ConfigError("env.trace", f"only the trace-driven scenarios (trace, prototype) read it, not {scenario_name}")
    topk = int(_get(env_cfg, "topk", scenario.topk))
    try:
        ActionSpace(space, num_servers, topk)
    except ValueError as error:
        raise ConfigError("env.action_space", str(error).split(": ", 1)[-1]) from None

    params = MECParams(
        capacity=jnp.asarray(values.pop("capacity"), jnp.float32),
        rate=jnp.asarray(values.pop("rate"), jnp.float32),
        **{k: v for k, v in values.items()},
    )
    env = MEC(
        num_servers=num_servers,
        max_tasks=num_tasks,
        arrivals=scenario.arrivals,
        workload=scenario.workload,
        action_space=space,
        topk=topk,
        allocation=allocation,
        quirks=Quirks(**quirk_values),
        observation=observation,
        uncertain_capacity=float(values.get("capacity_noise", 0.0)) > 0,
        default_params=params,
        trace=trace_tables,
    )
    return env, params


@functools.lru_cache(maxsize=1)
def _packaged_trace() -> genai.GenaiTrace:
    return genai.load_genai_trace()


def build_trace_tables(trace_cfg: Mapping[str, Any], values: dict[str, Any], num_servers: int,
                       num_tasks: int) -> genai.TraceTables:
    """The trace window, compressed so that its mean offered load is `utilisation` × Σf."""
    unknown = set(dict(trace_cfg)) - set(TRACE_DEFAULTS)
    if unknown:
        raise ConfigError(f"env.trace.{sorted(unknown)[0]}", f"unknown key; expected some of {sorted(TRACE_DEFAULTS)}")
    cfg = {**TRACE_DEFAULTS, **{k: v for k, v in dict(trace_cfg).items() if v is not None}}
    if not (isinstance(cfg["utilisation"], (int, float)) and cfg["utilisation"] > 0):
        raise ConfigError("env.trace.utilisation", f"must be > 0 (mean offered load / total capacity), got {cfg['utilisation']}")
    if cfg["workload"] not in ("steps", "exec"):
        raise ConfigError("env.trace.workload", f"unknown {cfg['workload']!r}; expected steps or exec")
    if cfg["assignment"] not in ("random", "round_robin", "group"):
        raise ConfigError("env.trace.assignment", f"unknown {cfg['assignment']!r}; expected random, round_robin or group")
    trace = _packaged_trace()
    days = trace.duration_s / 86_400
    start, end = float(cfg["start_day"]), days if cfg["end_day"] is None else float(cfg["end_day"])
    if not 0 <= start < min(end, days):
        raise ConfigError("env.trace.start_day", f"need 0 <= start_day < end_day <= {days:.2f} (the trace's days), got [{start}, {end}]")
    window = genai.trace_window(trace, start * 86_400, end * 86_400)
    if not cfg["keep_failed"]:  # only requests that succeeded in production
        window = genai.select_requests(window, window.status_code == genai.STATUS_SUCCEED)
    compression = genai.compression_for_utilisation(
        window, float(sum(values["capacity"])), float(cfg["utilisation"]), cfg["workload"]
    )
    tables = genai.make_trace_tables(
        window, float(values["slot_length"]), compression, num_servers, num_tasks,
        workload=cfg["workload"], assignment=cfg["assignment"], seed=int(cfg["seed"]),
    )  # fmt: skip
    if tables.num_slots < int(values["num_slots"]):
        raise ConfigError("env.num_slots", f"an episode of {values['num_slots']} slots is longer than the "
                          f"compressed trace window ({tables.num_slots} slots); lower it or the utilisation")
    return tables


def _check_values(values: dict[str, Any], num_tasks: int) -> None:
    """Reject numbers no experiment can run with, naming the field."""
    capacity, rate = values["capacity"], values["rate"]
    if len(capacity) == 0 or any(not (c > 0 and math.isfinite(c)) for c in capacity):
        raise ConfigError("env.capacity", f"every ES capacity must be a positive number (GHz), got {capacity}")
    if len(rate) != len(capacity):
        raise ConfigError("env.rate", f"needs one rate per ES ({len(capacity)}), got {len(rate)}")
    if any(not (r > 0 and math.isfinite(r)) for r in rate):
        raise ConfigError("env.rate", f"every rate must be a positive number (Mbit/s), got {rate}")
    p = values.get("arrival_prob", 0.3)
    if not 0 < p <= 1:
        raise ConfigError("env.arrival_prob", f"must be in (0, 1] (p = 0 has no task to decide), got {p}")
    if num_tasks < 1:
        raise ConfigError("env.num_tasks", f"must be >= 1, got {num_tasks}")
    if int(values["num_slots"]) < 1 or int(values["num_slots"]) != values["num_slots"]:
        raise ConfigError("env.num_slots", f"must be a positive integer, got {values['num_slots']}")
    if not values["slot_length"] > 0:
        raise ConfigError("env.slot_length", f"must be > 0, got {values['slot_length']}")
    if not values["deadline"] > 0:
        raise ConfigError("env.deadline", f"must be > 0 (or null for none), got {values['deadline']}")
    if values.get("failure_penalty", 0) < 0:
        raise ConfigError("env.failure_penalty", f"must be >= 0, got {values['failure_penalty']}")
    for name, (low_field, high_field) in _RANGES.items():
        if low_field in values:
            low, high = values[low_field], values[high_field]
            if not 0 < low <= high:
                raise ConfigError(f"env.{name}", f"needs 0 < min <= max, got [{low}, {high}]")
    if values.get("capacity_noise", 0.0) < 0:
        raise ConfigError("env.capacity_noise", f"must be >= 0, got {values['capacity_noise']}")
    if not 0 < values.get("capacity_floor", 0.5) <= 1:
        raise ConfigError("env.capacity_floor", f"must be in (0, 1], got {values['capacity_floor']}")
    if not 0 <= values.get("capacity_noise_corr", 0.9) < 1:
        raise ConfigError("env.capacity_noise_corr", f"must be in [0, 1), got {values['capacity_noise_corr']}")


def _resize_servers(values: dict[str, Any], num_servers: Any, capacity_max: Any) -> None:
    """The sweep knobs `env.num_servers` and `env.capacity_max` (scenario sweeps, issue 5).

    num_servers B: server i takes the capacity and rate of the scenario's server i mod B0
      (its lists tiled, or cut to the first B), so the mix of servers and the offered load per
      server stay the scenario's (every BS brings its N tasks); B = B0 changes nothing.
    capacity_max: capacities = linspace(min of the capacities, capacity_max, B), ascending
      (applied after num_servers); amcoedge's [10, …, 50] is capacity_max = 50.
    """
    if num_servers is not None:
        try:
            count = int(num_servers) if float(num_servers).is_integer() and not isinstance(num_servers, bool) else 0
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise ConfigError("env.num_servers", f"must be a positive integer (ESs), got {num_servers!r}")
        if len(values["capacity"]) != len(values["rate"]):
            raise ConfigError("env.rate", f"needs one rate per ES ({len(values['capacity'])}), got {len(values['rate'])}")
        for name in ("capacity", "rate"):
            base = list(values[name])
            values[name] = [base[i % len(base)] for i in range(count)] if base else base
    if capacity_max is not None:
        try:
            top = float(capacity_max)
        except (TypeError, ValueError):
            raise ConfigError("env.capacity_max", f"must be a number (GHz), got {capacity_max!r}") from None
        capacity = values["capacity"]
        low = min(capacity) if capacity else math.nan
        if not (math.isfinite(top) and top > 0 and top >= low):
            raise ConfigError("env.capacity_max",
                              f"must be a finite number >= the smallest capacity ({low:g} GHz), got {capacity_max!r}")
        count = len(capacity)
        values["capacity"] = [low + (top - low) * i / (count - 1) if count > 1 else top for i in range(count)]
