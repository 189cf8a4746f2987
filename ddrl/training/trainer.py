"""`make_trainer(...)`: one seed's training as pure functions, chunked for the host runner.

The run is a `lax.scan` over chunks, each a `lax.scan` over iterations of the agent's loop
(`off_policy` or `on_policy`); `train(key, hparams)` is the whole run, pure and jittable,
so `jax.jit(jax.vmap(train))(keys)` trains many seeds (and numeric hyper-parameters) at
once. Metrics are reduced inside each chunk (mean completed-episode return, per-episode and
per-step environment metrics, mean losses, optionally a greedy evaluation at the end of the
chunk), so nothing is stored per step. The loop knows nothing of base stations or latent
tables: those are the agent's (`ddrl.agents.PerGroup`, LAD-TS's `LatentAgent`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from ddrl import agents
from ddrl.agents import common
from ddrl.training import metrics as episode_metrics
from ddrl.training import off_policy, on_policy
from ddrl.training.vec_env import VecEnv


@flax.struct.dataclass
class RunnerState:
    """Everything one seed's training carries from chunk to chunk."""

    agent: Any
    buffer: common.ReplayBuffer | None
    env_state: Any
    obs: jax.Array
    stats: episode_metrics.EpisodeStats
    key: jax.Array
    env_steps: jax.Array


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """How a method is trained, beside its hyper-parameters (the method wrapper of a config)."""

    name: str  # a key of ddrl.agents.REGISTRY
    per_bs: bool = False  # one agent per base station
    group_acting: str = "auto"  # how per-BS agents act on a batch: auto | grouped | dense | gather
    uniform_explore: float = 0.0  # off-policy: share of training actions after warm-up drawn as in warm-up (uniformly)


# Method-config keys that are not agent hyper-parameters: read by the trainer (per_bs,
# group_acting, uniform_explore) or by the experiment that builds the environment and tables.
EVAL_MODES = ("greedy", "sample")

METHOD_KEYS = ("per_bs", "group_acting", "uniform_explore", "action_space", "label", "views", "decisions_per_slot",
               "train_view")


class Trainer(NamedTuple):
    """The pieces of a compiled training run (all pure functions of one seed)."""

    init: Callable[..., RunnerState]  # (key, hparams=None) -> RunnerState
    run_chunk: Callable[[RunnerState, jax.Array], tuple[RunnerState, dict]]  # (runner, chunk index)
    train: Callable[..., tuple[RunnerState, dict]]  # (key, hparams=None)
    agent: Any  # the agent object (protocol of ddrl.agents.base)
    config: Any  # the agent's resolved Config
    num_chunks: int
    steps_per_chunk: int  # environment steps per chunk (all envs)
    batched_init: Callable  # jit(vmap(init)), built once so repeated runs reuse the compilation
    batched_run_chunk: Callable  # jit(vmap(run_chunk)), the chunk index shared by all seeds
    policy: Callable  # (agent state of one seed, mode) -> policy(key, obs, env_state, env_params)
    per_bs: bool  # one agent per base station (stacked on a leading axis)
    init_agent: Callable  # (key, hparams=None) -> a fresh agent state of one seed (no env, no replay)

    def greedy_policy(self, agent_state: Any) -> Callable:
        """The deterministic policy (argmax Q; argmax of the chain-averaged π)."""
        return self.policy(agent_state, "greedy")

    def eval_modes(self) -> tuple[str, ...]:
        """The evaluation modes this agent has, its headline (the policy it trains) first:
        ("sample", "greedy") for soft actor-critics and PPO, ("greedy",) for the DQN family."""
        return ("sample", "greedy") if self.agent.trains_sampled_policy else ("greedy",)

    @property
    def total_steps(self) -> int:
        """Environment steps of the whole run."""
        return self.num_chunks * self.steps_per_chunk

    def check_hparams(self, hparams: dict | None) -> None:
        """A clear ValueError unless `hparams` can be vmapped into the agent."""
        self.agent.check_hparams(hparams)


def split_method(algo_cfg: Any) -> tuple[MethodSpec, dict[str, Any]]:
    """(how the method trains, its agent hyper-parameters) from an algo config mapping."""
    items = dict(config_items(algo_cfg))
    method = MethodSpec(name=items["name"], per_bs=bool(items.get("per_bs", False)),
                        group_acting=str(items.get("group_acting", "auto")),
                        uniform_explore=float(items.get("uniform_explore", 0.0)))  # fmt: skip
    if not 0.0 <= method.uniform_explore < 1.0:
        raise ValueError(f"uniform_explore: {method.uniform_explore} is not in [0, 1)")
    return method, {k: v for k, v in items.items() if k not in METHOD_KEYS}


def make_trainer(
    algo_cfg: Any,
    env: Any,
    env_params: Any,
    train_steps: int,
    num_envs: int | None = None,
    num_chunks: int = 20,
    eval_episodes: int = 0,
) -> Trainer:
    """Build the training program for the method `algo_cfg` on a gymnax environment.

    `algo_cfg` is a mapping with `name` (a key of `ddrl.agents.REGISTRY`), hyper-parameter
    overrides and optionally `per_bs` (one agent per base station; needs an environment with
    base stations) and `group_acting`. `num_envs` defaults to the agent's `num_envs` (PPO) or
    1. The run takes `train_steps` environment steps (rounded down to whole iterations of
    every chunk). `eval_episodes > 0` adds a greedy evaluation at the end of each chunk.
    `train(key, hparams)` accepts a dict of numeric hyper-parameter overrides (arrays, so
    that they can be vmapped, e.g. learning rates): only the agent's vmappable ones; any
    other name, or a value that is not numeric, is a `ValueError` before compiling.
    """
    method, hyper = split_method(algo_cfg)
    config = agents.make_config(method.name, hyper)
    if num_envs is None:
        num_envs = getattr(config, "num_envs", 1)
    if hasattr(config, "total_steps"):
        config = dataclasses.replace(config, total_steps=int(train_steps))
    vec = VecEnv(env, env_params, int(num_envs))
    spec = vec.spec()
    if method.per_bs and not vec.has_base_stations:
        raise ValueError(f"per_bs: {type(env).__name__} has no base stations")
    agent = agents.make_agent(method.name, config, spec, method.per_bs, method.group_acting)
    on_policy_agent = agent.kind == "on_policy"
    if on_policy_agent and method.uniform_explore:
        raise ValueError(f"uniform_explore: {method.name} is on-policy; only an off-policy learner can act off its policy")
    vec_steps = config.num_steps if on_policy_agent else max(config.train_every // num_envs, 1)
    steps_per_iteration = vec_steps * num_envs
    num_chunks = max(1, min(num_chunks, int(train_steps) // steps_per_iteration))
    iterations = max(int(train_steps) // (num_chunks * steps_per_iteration), 1)
    steps_per_chunk = iterations * steps_per_iteration
    if on_policy_agent:
        iteration = on_policy.make_iteration(agent, vec, vec_steps)
    else:
        iteration = off_policy.make_iteration(agent, vec, vec_steps, steps_per_iteration,
                                              config.learning_starts, config.updates_per_train,
                                              method.uniform_explore)  # fmt: skip

    def init(key: jax.Array, hparams: dict | None = None) -> RunnerState:
        key_agent, key_reset, key_run = jax.random.split(key, 3)
        agent_state = agent.init(key_agent, spec, hparams)  # checks hparams at trace time
        obs, env_state = vec.reset(key_reset)
        buffer = None
        if not on_policy_agent:
            capacity = min(int(config.buffer_size), int(train_steps))
            buffer = off_policy.init_buffer(agent, vec, obs, env_state, agent_state, capacity)
        example_action = agent.env_action(agent.random_action(key_reset, (vec.num_envs,))) \
            if not on_policy_agent else jnp.zeros((vec.num_envs,), jnp.int32)
        info = vec.probe_info(key_reset, example_action)
        stats = episode_metrics.init_stats(vec.num_envs, info, tuple(getattr(env, "step_metrics", ())))
        return RunnerState(agent_state, buffer, env_state, obs, stats, key_run, jnp.zeros((), jnp.int32))

    def policy_of(agent_state, mode: str = "greedy"):
        """`policy(key, obs, env_state, env_params)` for `ddrl.evaluate` (one env).

        `mode`: "greedy" (the deterministic action) or "sample" (a draw from π, the policy a
        soft actor-critic optimises; not defined for the DQN family). Evaluation does not
        write to the agent (LAD-TS reads its latent table as it was at the end of training).
        """
        if mode not in EVAL_MODES:
            raise ValueError(f"eval mode {mode!r} is not one of {EVAL_MODES}")
        if mode == "sample" and not agent.trains_sampled_policy:
            raise ValueError(f"eval mode 'sample': {agent.name} has no sampled policy (ε-greedy on Q); use 'greedy'")
        explore = mode == "sample"

        def policy(key, obs, env_state, env_params):
            del env_params
            batch_state = jax.tree.map(lambda leaf: leaf[None], env_state)
            ctx = vec.context(batch_state, agent_state_steps(agent_state))
            action, _ = agent.act(agent_state, obs[None], ctx, key[None], explore)
            return agent.env_action(action)[0]

        return policy

    def evaluate(agent_state, key: jax.Array) -> jax.Array:
        """Mean return of `eval_episodes` greedy episodes (first episode of each env)."""
        key_reset, key_run = jax.random.split(key)
        obs, env_state = vec.reset(key_reset, eval_episodes)
        max_steps = int(getattr(env_params, "max_steps_in_episode", 1000))

        def step(carry, key):
            obs, env_state, total, running = carry
            key_act, key_env = jax.random.split(key)
            ctx = vec.context(env_state, agent_state_steps(agent_state))
            action, _ = agent.act(agent_state, obs, ctx, jax.random.split(key_act, eval_episodes), False)
            obs, env_state, reward, terminated, truncated, _ = vec.step(key_env, env_state, agent.env_action(action))
            total = total + running * reward
            running = running * (1.0 - (terminated | truncated).astype(jnp.float32))
            return (obs, env_state, total, running), None

        carry = (obs, env_state, jnp.zeros(eval_episodes), jnp.ones(eval_episodes))
        (_, _, total, _), _ = jax.lax.scan(step, carry, jax.random.split(key_run, max_steps))
        return jnp.mean(total)

    def run_chunk(runner: RunnerState, chunk: jax.Array) -> tuple[RunnerState, dict]:
        iteration_indices = chunk * iterations + jnp.arange(iterations)
        runner, (update_metrics, performed) = jax.lax.scan(iteration, runner, iteration_indices)
        weight = performed.astype(jnp.float32)
        num_updates = jnp.sum(weight)
        metrics = {k: jnp.sum(v * weight) / jnp.maximum(num_updates, 1.0) for k, v in update_metrics.items()}
        metrics.update(episode_metrics.chunk_metrics(runner.stats))
        metrics["env_steps"] = runner.env_steps
        if eval_episodes > 0:
            key, key_eval = jax.random.split(runner.key)
            metrics["eval_return"] = evaluate(runner.agent, key_eval)
            runner = runner.replace(key=key)
        return runner.replace(stats=episode_metrics.reset_totals(runner.stats)), metrics

    def train(key: jax.Array, hparams: dict | None = None) -> tuple[RunnerState, dict]:
        runner = init(key, hparams)
        return jax.lax.scan(run_chunk, runner, jnp.arange(num_chunks))

    return Trainer(
        init, run_chunk, train, agent, config, num_chunks, steps_per_chunk,
        jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run_chunk, in_axes=(0, None))),
        policy_of, method.per_bs, lambda key, hparams=None: agent.init(key, spec, hparams),
    )  # fmt: skip


def agent_state_steps(agent_state: Any) -> jax.Array:
    """The environment steps an agent state has seen (stacked per-BS states: the first)."""
    steps = agent_state.env_steps
    return steps.reshape(-1)[0] if steps.ndim else steps


def config_items(cfg: Any) -> list[tuple[str, Any]]:
    """(key, value) pairs of a dict or an OmegaConf node."""
    if not isinstance(cfg, Mapping):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    return list(cfg.items())
