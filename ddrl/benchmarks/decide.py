"""Decision latency: wall time of one scheduling decision on this machine, after compilation.

What is timed is the policy call only — `scheduler.act(key, obs, state, params)` or
`agent.act(agent_state, obs, key, explore=False)` — given the observation and environment
state of a real mid-episode task (the environment is first stepped with random actions for
`--warmup-slots` slots' worth of tasks; the observation itself is not part of the time).
Each timed call is one jitted call followed by `block_until_ready`; the figures are the
50th and 99th percentiles over the repeated calls, in microseconds per task.

Two modes:
  one   one task per jitted call: the latency a scheduler would see for one task;
  slot  `--slot-tasks` (75: one slot of amcoedge, 5 BS x 50 x 0.3) consecutive tasks of the
        same rollout vmapped in one call; the call time is divided by the number of tasks.

Two sections (`what`):
  amcoedge  the amcoedge scenario (conf/env/mec_amcoedge.yaml, B = 5 edge servers): the
            schedulers random, local and optimal_myopic (subset space) and randcoedge (pair
            space); learned policies with freshly initialised weights (the time does not
            depend on training): dqn with hidden [20, 20, 20] over the subset space (the
            authors' DRL-AMSA network), d2sac with denoiser [64, 64] over the subset space
            (DDRL-AMSA) and over the single space (DDRL-ATS); and `noop`, a jitted function
            returning obs[0], the dispatch floor every other figure includes.
  scaling   B edge servers (capacities and rates spread evenly over the amcoedge ranges,
            N = 50 tasks per BS): the exact `cwa` split of a task over all B servers,
            optimal_myopic over the single space (B candidates), d2sac over the single space
            (B outputs), over the subset space (2^B - 1 outputs, only for
            B <= --max-subset-servers; above it the line says "skipped") and with the
            factored set action (d2sac_factored: 2B outputs, any B), and the set-structured
            actor (d2sac_set: per-server tokens, weights independent of B), followed by one
            `scaling_fit` line per mode: the exponent k of p50 ∝ B^k fitted by least squares
            on log-log over the timed B from 10 to 200.

Learned policies get their network weights as the call's argument (the rest of the agent
state — optimiser moments, schedules — is fixed at trace time); the environment parameters
are fixed at trace time for every scheduler.

    python -m ddrl.bench decide [--quick] [--only cwa d2sac d2sac_set] [--what scaling] [--modes one]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddrl import agents
from ddrl.envs import allocation
from ddrl.envs.actions import MAX_SUBSET_SERVERS
from ddrl.envs.mec import MEC, MECParams
from ddrl.envs.scenarios import SCENARIOS, build_mec
from ddrl.schedulers import make_scheduler
from ddrl.timing import PerTask, Settings, rollout_tasks, time_calls

ENV_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "env" / "mec_amcoedge.yaml"
SECTIONS = ("amcoedge", "scaling")
MODES = ("one", "slot")
# Scheduler -> action space it is timed in (amcoedge section).
SCHEDULER_SPACES = {"random": "subset", "randcoedge": "pair", "local": "subset", "optimal_myopic": "subset"}
# Agent module -> field of its state holding the acting network's TrainState.
NETWORK_FIELD = {"dqn": "q", "d2sac": "actor", "d2sac_factored": "actor", "d2sac_set": "actor"}


@dataclass(frozen=True)
class Learned:
    """A learned policy: agent module name, action space and network widths."""

    method: str  # the published method it stands for
    agent: str
    space: str
    hidden: tuple[int, ...]
    explore: bool = False  # False: the greedy action (8 chain runs for a diffusion actor); True: a draw from π
    greedy_chains: int | None = None  # a diffusion actor's greedy chain runs (0: one noise-free chain); None: its default

    @property
    def overrides(self) -> dict[str, Any]:
        width_field = {"dqn": "hidden", "d2sac": "denoiser_hidden", "d2sac_factored": "denoiser_hidden",
                       "d2sac_set": "denoiser_hidden"}[self.agent]
        chains = {} if self.greedy_chains is None else {"greedy_chains": self.greedy_chains}
        return {"name": self.agent, width_field: list(self.hidden), **chains}

    @property
    def policy(self) -> str:
        """sample | greedy (K chain runs averaged) | greedy_noise_free (one noise-free chain)."""
        if self.explore:
            return "sample"
        return "greedy_noise_free" if self.greedy_chains == 0 else "greedy"


AMCOEDGE_LEARNED = (
    Learned("DRL-AMSA", "dqn", "subset", (20, 20, 20)),
    Learned("DDRL-AMSA", "d2sac", "subset", (64, 64)),
    Learned("DDRL-ATS", "d2sac", "single", (64, 64)),
)
SCALING_D2SAC_HIDDEN = (64, 64)
NAMES = ("noop", *SCHEDULER_SPACES, "dqn", "d2sac", "d2sac_set", "cwa")  # what --only can pick
FIT_SERVERS = (10, 200)  # B range of the fitted scaling exponent


def load_env_config(**overrides: Any) -> DictConfig:
    """conf/env/mec_amcoedge.yaml with `overrides` merged in."""
    cfg = OmegaConf.merge(OmegaConf.load(ENV_CONFIG), overrides)
    assert isinstance(cfg, DictConfig)
    return cfg


def spread_servers(num_servers: int) -> dict[str, list[float]]:
    """Capacities and rates of `num_servers` ESs, evenly over the amcoedge ranges."""
    params = SCENARIOS["amcoedge"].params
    return {
        name: np.linspace(min(params[name]), max(params[name]), num_servers).round(3).tolist()
        for name in ("capacity", "rate")
    }


def scheduler_per_task(name: str, env: MEC, params: MECParams) -> PerTask:
    """`make_scheduler(name, env)` on one task (key, obs, state); no shared argument."""
    act = make_scheduler(name, env)

    def per_task(shared: None, task: tuple[jax.Array, jax.Array, Any]) -> jax.Array:
        key, obs, state = task
        return act(key, obs, state, params)

    return per_task


def learned_per_task(learned: Learned, env: MEC, obs_shape: tuple[int, ...]) -> tuple[PerTask, Any]:
    """`agent.act` on one task (key, obs), greedy or sampled (`learned.explore`), and the network
    weights it takes as `shared`."""
    module: ModuleType = agents.get(learned.agent)
    cfg = agents.make_config(learned.agent, learned.overrides)
    agent_state = module.init(jax.random.PRNGKey(0), obs_shape, env.actions.num_actions, cfg)
    field = NETWORK_FIELD[learned.agent]
    network = getattr(agent_state, field)

    def per_task(weights: Any, task: tuple[jax.Array, jax.Array]) -> jax.Array:
        key, obs = task
        state = agent_state.replace(**{field: network.replace(params=weights)})
        return module.act(state, obs, key, learned.explore)

    return per_task, network.params


def noop_per_task(shared: None, task: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Returns obs[0]: the cost of a jitted call with a task's inputs, and nothing else."""
    return task[1][0]


def cwa_per_task(shared: None, task: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Exact CWA split of one task over every server."""
    wait, cost = task
    return allocation.allocate("cwa", wait, cost, jnp.ones(wait.shape, bool))


def _line(what: str, scheduler: str, space: str | None, hidden: Sequence[int] | None, num_servers: int,
          **fields: Any) -> dict[str, Any]:
    return {
        "bench": "decide", "what": what, "scheduler": scheduler, "space": space,
        "hidden": None if hidden is None else list(hidden), "B": num_servers, **fields,
        "backend": jax.default_backend(),
    }


def amcoedge_section(settings: Settings) -> Iterator[dict[str, Any]]:
    """Every scheduler and learned policy on amcoedge (B = 5)."""
    if not any(settings.wants(name) for name in NAMES if name != "cwa"):
        return
    cfg = load_env_config()
    env, params = build_mec(cfg)
    tasks = rollout_tasks(env, params, jax.random.PRNGKey(0), settings)
    B = env.num_servers

    if settings.wants("noop"):
        for mode in settings.modes:
            timing = time_calls(noop_per_task, None, (tasks.keys, tasks.obs), mode, settings)
            yield _line("amcoedge", "noop", None, None, B, **timing)
    for name, space in SCHEDULER_SPACES.items():
        if not settings.wants(name):
            continue
        space_env, _ = build_mec(cfg, action_space=space)
        per_task = scheduler_per_task(name, space_env, params)
        for mode in settings.modes:
            timing = time_calls(per_task, None, (tasks.keys, tasks.obs, tasks.states), mode, settings)
            yield _line("amcoedge", name, space, None, B, **timing)
    for learned in AMCOEDGE_LEARNED:
        if not settings.wants(learned.agent):
            continue
        space_env, _ = build_mec(cfg, action_space=learned.space)
        per_task, weights = learned_per_task(learned, space_env, tasks.obs.shape[1:])
        for mode in settings.modes:
            timing = time_calls(per_task, weights, (tasks.keys, tasks.obs), mode, settings)
            yield _line("amcoedge", learned.agent, learned.space, learned.hidden, B,
                        method=learned.method, **timing)


def scaling_section(settings: Settings, server_counts: Sequence[int], max_subset_servers: int
                    ) -> Iterator[dict[str, Any]]:
    """cwa, optimal_myopic (single), d2sac (single, subset, factored) and d2sac_set against the
    number of ESs B, then d2sac_set's fitted exponents (`scaling_fit`)."""
    hidden = SCALING_D2SAC_HIDDEN
    set_times: dict[tuple[str, str], dict[int, float]] = {}  # (mode, policy) -> B -> p50
    for B in server_counts:
        cfg = load_env_config(**spread_servers(B))
        env, params = build_mec(cfg, action_space="single")
        tasks = rollout_tasks(env, params, jax.random.PRNGKey(B), settings)

        if settings.wants("cwa"):
            wait, cost = jax.vmap(env.wait_and_cost, (0, None))(tasks.states, params)
            for mode in settings.modes:
                timing = time_calls(cwa_per_task, None, (wait, cost), mode, settings)
                yield _line("scaling", "cwa", None, None, B, **timing)
        if settings.wants("optimal_myopic"):
            per_task = scheduler_per_task("optimal_myopic", env, params)
            for mode in settings.modes:
                timing = time_calls(per_task, None, (tasks.keys, tasks.obs, tasks.states), mode, settings)
                yield _line("scaling", "optimal_myopic", "single", None, B, **timing)
        for agent, space, method, explore, chains in (
            ("d2sac", "single", "DDRL-ATS", False, None), ("d2sac", "subset", "DDRL-AMSA", False, None),
            ("d2sac_factored", "mask", "DDRL-AMSA (factored)", False, None),
            ("d2sac_set", "mask", "DDRL-AMSA (set)", False, None),  # greedy: 8 chain runs averaged
            ("d2sac_set", "mask", "DDRL-AMSA (set)", False, 0),  # greedy from one noise-free chain
            ("d2sac_set", "mask", "DDRL-AMSA (set)", True, None),  # its headline policy: one chain run, then a draw
        ):  # fmt: skip
            if not settings.wants("d2sac_set" if agent == "d2sac_set" else "d2sac"):
                continue
            if space == "subset" and B > min(max_subset_servers, MAX_SUBSET_SERVERS):
                for mode in settings.modes:
                    yield _line("scaling", agent, space, hidden, B, method=method, mode=mode,
                                skipped="2^B-1 outputs")
                continue
            space_env, _ = build_mec(cfg, action_space=space)
            learned = Learned(method, agent, space, hidden, explore, chains)
            policy = learned.policy
            per_task, weights = learned_per_task(learned, space_env, tasks.obs.shape[1:])
            for mode in settings.modes:
                timing = time_calls(per_task, weights, (tasks.keys, tasks.obs), mode, settings)
                if agent == "d2sac_set":
                    set_times.setdefault((mode, policy), {})[B] = timing["p50_us"]
                yield _line("scaling", agent, space, hidden, B, method=method, policy=policy, **timing)
    for (mode, policy), times in set_times.items():
        fit = scaling_exponent(times)
        if fit is not None:
            yield {"bench": "decide", "what": "scaling_fit", "scheduler": "d2sac_set", "space": "mask",
                   "hidden": list(hidden), "mode": mode, "policy": policy, **fit, "backend": jax.default_backend()}


def scaling_exponent(p50_us: dict[int, float], servers: tuple[int, int] = FIT_SERVERS) -> dict[str, Any] | None:
    """k of time ∝ B^k: least squares of log p50 on log B over the B in `servers` (inclusive);
    None with fewer than two such B."""
    fitted = sorted(B for B in p50_us if servers[0] <= B <= servers[1])
    if len(fitted) < 2:
        return None
    k, _ = np.polyfit(np.log(fitted), np.log([p50_us[B] for B in fitted]), 1)
    return {"k": round(float(k), 3), "fit_B": fitted, "fit_p50_us": [p50_us[B] for B in fitted]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ddrl.bench decide", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="few calls per setting and B in {5, 10} only (for tests)")
    parser.add_argument("--what", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                        help=f"run only these schedulers / agents: {', '.join(NAMES)}")
    parser.add_argument("--servers", nargs="+", type=int, default=None,
                        help="B values of the scaling section (default 5 10 20 50 100 200; --quick: 5 10)")
    parser.add_argument("--max-subset-servers", type=int, default=10,
                        help="largest B at which the subset space (2^B - 1 outputs) is timed")
    parser.add_argument("--calls", type=int, default=None,
                        help="timed calls per setting (default 1000; --quick: 30)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="time budget per setting (default 1.0; --quick: 0.1)")
    parser.add_argument("--slot-tasks", type=int, default=75, help="tasks per call in slot mode")
    parser.add_argument("--warmup-slots", type=int, default=4, help="slots of random actions before timing")
    args = parser.parse_args(argv)

    settings = Settings(
        calls=args.calls or (30 if args.quick else 1000),
        seconds=args.seconds or (0.1 if args.quick else 1.0),
        min_calls=10 if args.quick else 100,
        slot_tasks=args.slot_tasks,
        warmup_slots=args.warmup_slots,
        modes=tuple(args.modes),
        only=None if args.only is None else frozenset(args.only),
    )
    server_counts = args.servers or ([5, 10] if args.quick else [5, 10, 20, 50, 100, 200])
    lines: list[Iterator[dict[str, Any]]] = []
    if "amcoedge" in args.what:
        lines.append(amcoedge_section(settings))
    if "scaling" in args.what:
        lines.append(scaling_section(settings, server_counts, args.max_subset_servers))
    for section in lines:
        for line in section:
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
