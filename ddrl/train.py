"""Training loops: `make_train(...) -> train(key)`, pure and jittable, plus a host runner.

One compiled program trains one seed; `jax.jit(jax.vmap(train))(keys)` trains many. The
run is a `lax.scan` over chunks, each a `lax.scan` over iterations:

* off-policy (dqn, sac, d2sac): an iteration steps the vectorised environment
  `train_every` times into the replay buffer, then makes `updates_per_train` gradient
  steps (skipped until `learning_starts` environment steps have been taken; before that
  actions are uniform);
* on-policy (ppo): an iteration collects a rollout of `num_steps` steps and updates on it.

Per-BS agents (`per_bs: true` in the algo config, for environments with `deciding_bs`):
one agent per base station, their parameters, optimisers and replay buffers stacked on a
leading axis. Each step gathers the deciding BS's parameters per environment; each update
round updates every BS's agent on a batch from its own buffer (vmapped, no Python loop).

Metrics are reduced inside each chunk (mean completed-episode return, mean losses, and
optionally a greedy evaluation at the end of the chunk) so nothing is stored per step.
`run_training` runs the compiled chunk repeatedly on the host with a progress bar,
loggers, orbax checkpoints, resume, and a NaN/inf guard on the losses.
"""
import dataclasses
import logging
import pathlib
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddrl import agents
from ddrl.agents import common


@flax.struct.dataclass
class EpisodeStats:
    """Running returns of the current episodes and totals of the episodes completed.

    `info_sums` adds up, over completed episodes, the environment's own per-episode
    metrics (`info["episode_*"]` at the step that ends an episode, e.g. the MEC make-span).
    `step_sums` adds up the per-step metrics the environment names in `step_metrics`
    (e.g. each task's make-span), over the steps with `info["real_task"]`, counted in
    `step_count`: their chunk means are smooth learning curves even when episodes are long.
    """

    current_return: jax.Array  # (num_envs,)
    completed_return_sum: jax.Array
    completed_count: jax.Array
    info_sums: dict
    step_sums: dict
    step_count: jax.Array


@flax.struct.dataclass
class RunnerState:
    """Everything one seed's training carries from chunk to chunk."""

    agent: Any
    buffer: common.ReplayBuffer | None
    env_state: Any
    obs: jax.Array
    stats: EpisodeStats
    key: jax.Array
    env_steps: jax.Array
    latent: jax.Array | None = None  # LAD-TS's latent action table (cells, actions)


class Trainer(NamedTuple):
    """The pieces of a compiled training run (all pure functions of one seed)."""

    init: Callable[..., RunnerState]  # (key, hparams=None) -> RunnerState
    run_chunk: Callable[[RunnerState, jax.Array], tuple[RunnerState, dict]]  # (runner, chunk index)
    train: Callable[..., tuple[RunnerState, dict]]  # (key, hparams=None)
    agent: Any  # the agent module
    config: Any  # the agent's resolved Config
    num_chunks: int
    steps_per_chunk: int  # environment steps per chunk (all envs)
    batched_init: Callable  # jit(vmap(init)), built once so repeated runs reuse the compilation
    batched_run_chunk: Callable  # jit(vmap(run_chunk)), the chunk index shared by all seeds
    policy_inputs: Callable  # (runner) -> what greedy_policy needs (agent state, latent table)
    greedy_policy: Callable  # (policy inputs of one seed) -> policy(key, obs, env_state, env_params)
    per_bs: bool  # one agent per base station (stacked on a leading axis)

    @property
    def total_steps(self) -> int:
        """Environment steps of the whole run."""
        return self.num_chunks * self.steps_per_chunk


def make_train(algo_cfg, env, env_params, train_steps: int, num_envs: int | None = None, **kwargs):
    """`train(key, hparams=None) -> (final RunnerState, per-chunk metrics)`; see `make_trainer`."""
    return make_trainer(algo_cfg, env, env_params, train_steps, num_envs, **kwargs).train


# Algo-config keys that are not agent hyper-parameters: read by the training loop
# (per_bs) or by the experiment that builds the environment and tables.
TRAINER_KEYS = ("per_bs", "action_space", "label", "views", "decisions_per_slot")


def make_trainer(
    algo_cfg: Any,
    env: Any,
    env_params: Any,
    train_steps: int,
    num_envs: int | None = None,
    num_chunks: int = 20,
    eval_episodes: int = 0,
) -> Trainer:
    """Build the training program for agent `algo_cfg.name` on a gymnax environment.

    `algo_cfg` is a mapping with `name` (a key of `ddrl.agents.REGISTRY`), any
    hyper-parameter overrides and optionally `per_bs` (one agent per base station; needs
    an environment with `deciding_bs` and `num_servers`). `num_envs` defaults to the
    agent's `num_envs` (PPO) or 1. The run takes `train_steps` environment steps (rounded
    down to whole iterations of every chunk). `eval_episodes > 0` adds a greedy
    evaluation at the end of each chunk. `train(key, hparams)` accepts a dict of numeric
    hyper-parameter overrides (arrays, so that they can be vmapped, e.g. learning rates):
    only the agent's `HPARAMS` (learning rates, α, γ, τ, ...); any other name, or a value
    that is not numeric, is a `ValueError` when the program is traced, before compiling.
    The diffusion steps T, widths and batch sizes set shapes: they are not vmappable
    (`ddrl.hpsearch.grid_search` compiles one program per value of such a field).
    """
    name = algo_cfg["name"]
    agent = agents.get(name)
    per_bs = bool(algo_cfg.get("per_bs", False)) if hasattr(algo_cfg, "get") else False
    agent_overrides = {k: v for k, v in _items(algo_cfg) if k not in TRAINER_KEYS}
    config = agents.make_config(name, agent_overrides)
    if num_envs is None:
        num_envs = getattr(config, "num_envs", 1)
    if hasattr(config, "total_steps"):
        config = dataclasses.replace(config, total_steps=int(train_steps))
    obs_shape = env.observation_space(env_params).shape
    n_actions = _num_actions(env, env_params)
    on_policy = agent.KIND == "on_policy"
    if per_bs and not hasattr(env, "deciding_bs"):
        raise ValueError(f"per_bs: {type(env).__name__} has no base stations (no deciding_bs)")
    if per_bs and on_policy:
        raise ValueError(f"per_bs: only off-policy agents support per-BS stacking, not {name}")
    num_groups = int(env.num_servers) if per_bs else 1
    vec_steps = config.num_steps if on_policy else max(config.train_every // num_envs, 1)
    steps_per_iteration = vec_steps * num_envs
    num_chunks = max(1, min(num_chunks, int(train_steps) // steps_per_iteration))
    iterations = max(int(train_steps) // (num_chunks * steps_per_iteration), 1)
    steps_per_chunk = iterations * steps_per_iteration
    agent_random_action = getattr(agent, "random_action", None)

    def random_action(key: jax.Array, n: int, shape: tuple[int, ...]) -> jax.Array:
        """Uniform actions (warm-up): the agent's own sampler, else an index in [0, n)."""
        if agent_random_action is not None:
            return agent_random_action(key, n, shape, config)
        return jax.random.randint(key, shape, 0, n)

    to_env_action = getattr(agent, "env_action", None) or (lambda action, n: action)
    uses_latent = bool(getattr(agent, "USES_LATENT", False))
    if uses_latent and not hasattr(env, "task_cell"):
        raise ValueError(f"{name}: latent actions need an environment with task cells (MEC)")
    num_cells = env.num_task_cells(env_params) if uses_latent else 0
    agent_obs_shape = (obs_shape[0] + n_actions,) if uses_latent else obs_shape

    def groups_of(env_state) -> jax.Array:
        """Index of the agent acting in each environment (its deciding BS, or 0)."""
        if not per_bs:
            return jnp.zeros(jax.tree.leaves(env_state)[0].shape[:1], jnp.int32)
        return jax.vmap(env.deciding_bs)(env_state).astype(jnp.int32)

    def agent_observation(obs, env_state, latent):
        """What the agent sees: the observation, plus its cell's latent action (LAD-TS)."""
        if not uses_latent:
            return obs
        cells = jax.vmap(lambda state: env.task_cell(state, env_params))(env_state)
        return jnp.concatenate([obs, latent[cells]], axis=-1)

    def act_one(agent_state, obs, key, explore):
        """(action, π(·|s) or None) of one agent for a batch of observations."""
        if uses_latent:
            return agent.act_latent(agent_state, obs, key, explore)
        return agent.act(agent_state, obs, key, explore), None

    def decide(agent_state, latent, obs, env_state, key, explore):
        """Every environment's action, each by the agent of its deciding BS.

        Returns (action, the agent's observation, the latent table after the decisions).
        """
        agent_obs = agent_observation(obs, env_state, latent)
        if not per_bs:
            action, probs = act_one(agent_state, agent_obs, key, explore)
        else:

            def one(group, single_obs, single_key):
                own = jax.tree.map(lambda leaf: leaf[group], agent_state)
                action, probs = act_one(own, single_obs[None], single_key, explore)
                return action[0], None if probs is None else probs[0]

            action, probs = jax.vmap(one)(
                groups_of(env_state), agent_obs, jax.random.split(key, obs.shape[0])
            )
        if uses_latent:
            cells = jax.vmap(lambda state: env.task_cell(state, env_params))(env_state)
            latent = latent.at[cells].set(probs)
        return action, agent_obs, latent

    def policy_inputs(runner: RunnerState):
        """What the greedy policy of a trained run needs: agent state and latent table."""
        return runner.agent, runner.latent

    def greedy_policy(inputs):
        """`policy(key, obs, env_state, env_params)` for `ddrl.evaluate` (one env, greedy).

        `inputs` = `policy_inputs(runner)` of one seed. LAD-TS reads its latent table as it
        was at the end of training (the evaluation does not write to it).
        """
        agent_state, latent = inputs

        def policy(key, obs, env_state, env_params):
            del env_params
            batch_state = jax.tree.map(lambda leaf: leaf[None], env_state)
            action, _, _ = decide(agent_state, latent, obs[None], batch_state, key, False)
            return to_env_action(action[0], n_actions)

        return policy

    vmappable = tuple(getattr(agent, "HPARAMS", ()))

    def init(key: jax.Array, hparams: dict | None = None) -> RunnerState:
        common.check_hparams(name, config, vmappable, hparams)  # at trace time, before compiling
        cfg = dataclasses.replace(config, **(hparams or {}))
        key_agent, key_reset, key_run = jax.random.split(key, 3)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(key_reset, num_envs), env_params
        )
        if per_bs:
            agent_state = jax.vmap(lambda k: agent.init(k, agent_obs_shape, n_actions, cfg))(
                jax.random.split(key_agent, num_groups)
            )
        else:
            agent_state = agent.init(key_agent, agent_obs_shape, n_actions, cfg)
        latent = None
        if uses_latent:  # LAD-TS's table, initialised N(0, 1), kept across episodes
            latent = jax.random.normal(jax.random.fold_in(key_agent, 1), (num_cells, n_actions))
        agent_obs = agent_observation(obs, env_state, latent)
        buffer = None
        if not on_policy:
            action_example = jax.eval_shape(
                lambda: random_action(jax.random.PRNGKey(0), n_actions, (num_envs,))
            )
            example = common.Transition(
                obs=agent_obs[0], action=jnp.zeros(action_example.shape[1:], action_example.dtype),
                reward=jnp.zeros(()), next_obs=agent_obs[0], terminated=jnp.zeros((), bool),
                truncated=jnp.zeros((), bool),
            )  # fmt: skip
            capacity = min(cfg.buffer_size, train_steps)
            buffer = common.buffer_init(example, capacity, num_envs)
            if per_bs:  # one buffer per BS, each `buffer_size` transitions as the authors'
                buffer = jax.tree.map(lambda x: jnp.stack([x] * num_groups), buffer)
        _, probe_info = jax.eval_shape(
            lambda: jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(key_reset, num_envs), env_state,
                to_env_action(random_action(key_reset, n_actions, (num_envs,)), n_actions),
                env_params,
            )[-2:]
        )  # fmt: skip
        info_sums = {k: jnp.zeros(()) for k in _episode_info_keys(probe_info)}
        step_sums = {f"step_{k}": jnp.zeros(()) for k in getattr(env, "step_metrics", ())}
        stats = EpisodeStats(
            jnp.zeros(num_envs), jnp.zeros(()), jnp.zeros((), jnp.int32), info_sums,
            step_sums, jnp.zeros(()),
        )  # fmt: skip
        return RunnerState(
            agent=agent_state,
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            stats=stats,
            key=key_run,
            env_steps=jnp.zeros((), jnp.int32),
            latent=latent,
        )

    def env_step(runner: RunnerState, action: jax.Array, key: jax.Array, agent_obs: jax.Array):
        """Step every environment; returns the new runner and the stored transition
        (observations as the agent sees them)."""
        obs, env_state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(key, num_envs), runner.env_state, to_env_action(action, n_actions),
          env_params)  # fmt: skip
        true_next_obs = info.get("final_observation", obs)
        done = terminated | truncated
        episode_return = runner.stats.current_return + reward
        info_sums = {
            k: total + jnp.sum(jnp.where(done, info[k], 0.0))
            for k, total in runner.stats.info_sums.items()
        }
        counted = info.get("real_task", jnp.ones_like(reward, bool)).astype(jnp.float32)
        step_sums = {
            k: total + jnp.sum(counted * info[k.removeprefix("step_")].astype(jnp.float32))
            for k, total in runner.stats.step_sums.items()
        }
        stats = EpisodeStats(
            current_return=jnp.where(done, 0.0, episode_return),
            completed_return_sum=runner.stats.completed_return_sum
            + jnp.sum(jnp.where(done, episode_return, 0.0)),
            completed_count=runner.stats.completed_count + jnp.sum(done),
            info_sums=info_sums,
            step_sums=step_sums,
            step_count=runner.stats.step_count + jnp.sum(counted),
        )
        next_agent_obs = agent_observation(true_next_obs, env_state, runner.latent)
        transition = common.Transition(
            agent_obs, action, reward.astype(jnp.float32), next_agent_obs, terminated, truncated
        )
        runner = runner.replace(
            env_state=env_state, obs=obs, stats=stats, env_steps=runner.env_steps + num_envs
        )
        return runner, transition

    def store(buffer: common.ReplayBuffer, transition: common.Transition, groups: jax.Array):
        """Append the step to the replay buffer (of the deciding BS's agent when per-BS)."""
        if not per_bs:
            return common.buffer_add(buffer, transition)
        write = groups[None, :] == jnp.arange(num_groups)[:, None]  # (groups, envs)
        return jax.vmap(common.buffer_add, in_axes=(0, None, 0))(buffer, transition, write)

    def one_update(buffer: common.ReplayBuffer, agent_state, update_key: jax.Array):
        """One gradient step of the agent (of every BS's agent, each on its own buffer)."""

        def single(buffer, agent_state, update_key):
            key_sample, key_agent = jax.random.split(update_key)
            batch = common.buffer_sample(buffer, key_sample, config.batch_size, config.n_step)
            return agent.update(agent_state, batch, key_agent)

        if not per_bs:
            return single(buffer, agent_state, update_key)
        return jax.vmap(single)(buffer, agent_state, jax.random.split(update_key, num_groups))

    def off_policy_iteration(runner: RunnerState, iteration_index: jax.Array):
        def collect(runner, _):
            key, key_act, key_random, key_env = jax.random.split(runner.key, 4)
            runner = runner.replace(key=key)
            groups = groups_of(runner.env_state)
            policy_action, agent_obs, latent = decide(
                runner.agent, runner.latent, runner.obs, runner.env_state, key_act, True
            )
            warmup = runner.env_steps < config.learning_starts
            action = jnp.where(
                warmup, random_action(key_random, n_actions, policy_action.shape[:1]), policy_action
            )
            runner, transition = env_step(runner.replace(latent=latent), action, key_env, agent_obs)
            return runner.replace(buffer=store(runner.buffer, transition, groups)), None

        runner, _ = jax.lax.scan(collect, runner, None, vec_steps)
        key, key_update = jax.random.split(runner.key)
        env_steps = runner.env_steps
        if per_bs:
            env_steps = jnp.broadcast_to(env_steps, (num_groups,))
        agent_state = runner.agent.replace(env_steps=env_steps)

        def learn(agent_state):
            agent_state, metrics = jax.lax.scan(
                lambda state, k: one_update(runner.buffer, state, k),
                agent_state,
                jax.random.split(key_update, config.updates_per_train),
            )
            return agent_state, jax.tree.map(jnp.mean, metrics)

        metric_shapes = jax.eval_shape(learn, agent_state)[1]
        # From the iteration index, not runner.env_steps: it is the same for every seed, so
        # under vmap the cond stays a branch and the warm-up really skips the updates.
        ready = (iteration_index + 1) * steps_per_iteration >= config.learning_starts
        agent_state, metrics = jax.lax.cond(
            ready,
            learn,
            lambda a: (a, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)),
            agent_state,
        )
        return runner.replace(agent=agent_state, key=key), (metrics, ready)

    def on_policy_iteration(runner: RunnerState, iteration_index: jax.Array):
        del iteration_index
        def collect(runner, _):
            key, key_act, key_env = jax.random.split(runner.key, 3)
            runner = runner.replace(key=key)
            obs = runner.obs
            action, log_prob, value = agent.act_and_value(runner.agent, obs, key_act)
            runner, transition = env_step(runner, action, key_env, obs)
            step = agent.Rollout(
                obs=obs, action=action, log_prob=log_prob, value=value,
                reward=transition.reward,
                next_value=agent.value(runner.agent, transition.next_obs),
                terminated=transition.terminated,
                done=transition.terminated | transition.truncated,
            )  # fmt: skip
            return runner, step

        runner, rollout = jax.lax.scan(collect, runner, None, vec_steps)
        key, key_update = jax.random.split(runner.key)
        agent_state = runner.agent.replace(env_steps=runner.env_steps)
        agent_state, metrics = agent.update(agent_state, rollout, key_update)
        return runner.replace(agent=agent_state, key=key), (metrics, jnp.ones((), bool))

    iteration = on_policy_iteration if on_policy else off_policy_iteration

    def evaluate(agent_state, latent, key: jax.Array) -> jax.Array:
        """Mean return of `eval_episodes` greedy episodes (first episode of each env)."""
        key_reset, key_run = jax.random.split(key)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(key_reset, eval_episodes), env_params
        )
        max_steps = int(getattr(env_params, "max_steps_in_episode", 1000))

        def step(carry, key):
            obs, env_state, total, running = carry
            key_act, key_env = jax.random.split(key)
            action, _, _ = decide(agent_state, latent, obs, env_state, key_act, False)
            action = to_env_action(action, n_actions)
            obs, env_state, reward, terminated, truncated, _ = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(key_env, eval_episodes), env_state, action, env_params)
            total = total + running * reward
            running = running * (1.0 - (terminated | truncated).astype(jnp.float32))
            return (obs, env_state, total, running), None

        init_carry = (obs, env_state, jnp.zeros(eval_episodes), jnp.ones(eval_episodes))
        (_, _, total, _), _ = jax.lax.scan(step, init_carry, jax.random.split(key_run, max_steps))
        return jnp.mean(total)

    def run_chunk(runner: RunnerState, chunk: jax.Array) -> tuple[RunnerState, dict]:
        iteration_indices = chunk * iterations + jnp.arange(iterations)
        runner, (update_metrics, performed) = jax.lax.scan(iteration, runner, iteration_indices)
        weight = performed.astype(jnp.float32)
        num_updates = jnp.sum(weight)
        metrics = {
            k: jnp.sum(v * weight) / jnp.maximum(num_updates, 1.0)
            for k, v in update_metrics.items()
        }
        stats = runner.stats
        metrics["episode_return"] = jnp.where(
            stats.completed_count > 0,
            stats.completed_return_sum / jnp.maximum(stats.completed_count, 1),
            jnp.nan,
        )
        for k, total in stats.info_sums.items():
            metrics[k] = jnp.where(
                stats.completed_count > 0, total / jnp.maximum(stats.completed_count, 1), jnp.nan
            )
        for k, total in stats.step_sums.items():
            metrics[k] = total / jnp.maximum(stats.step_count, 1.0)
        metrics["episodes"] = stats.completed_count
        metrics["env_steps"] = runner.env_steps
        if eval_episodes > 0:
            key, key_eval = jax.random.split(runner.key)
            metrics["eval_return"] = evaluate(runner.agent, runner.latent, key_eval)
            runner = runner.replace(key=key)
        stats = stats.replace(
            completed_return_sum=jnp.zeros_like(stats.completed_return_sum),
            completed_count=jnp.zeros_like(stats.completed_count),
            info_sums=jax.tree.map(jnp.zeros_like, stats.info_sums),
            step_sums=jax.tree.map(jnp.zeros_like, stats.step_sums),
            step_count=jnp.zeros_like(stats.step_count),
        )
        return runner.replace(stats=stats), metrics

    def train(key: jax.Array, hparams: dict | None = None) -> tuple[RunnerState, dict]:
        runner = init(key, hparams)
        return jax.lax.scan(run_chunk, runner, jnp.arange(num_chunks))

    return Trainer(
        init, run_chunk, train, agent, config, num_chunks, steps_per_chunk,
        jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run_chunk, in_axes=(0, None))),
        policy_inputs, greedy_policy, per_bs,
    )  # fmt: skip


def _num_actions(env: Any, env_params: Any) -> int:
    """Outputs of the agent's head: `env.num_actions` (e.g. per-server scores of a MEC
    top-k space), else the size of a discrete action space."""
    try:
        return int(env.num_actions)
    except (AttributeError, NotImplementedError):
        return int(env.action_space(env_params).n)


def _items(cfg: Any) -> list[tuple[str, Any]]:
    """(key, value) pairs of a dict or an OmegaConf node."""
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    return list(cfg.items())


def _episode_info_keys(info: dict) -> list[str]:
    """The environment's scalar per-episode metrics in `info` (keys `episode_*`)."""
    return sorted(
        k for k, v in info.items()
        if k.startswith("episode_") and k != "episode_done" and v.ndim == 1
    )  # fmt: skip


# ----------------------------------------------------------------------------- host runner


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def check_hparams(trainer: Trainer, hparams: dict | None) -> None:
    """Raise a clear `ValueError` unless `hparams` can be vmapped into `trainer`'s agent."""
    name = trainer.agent.__name__.rsplit(".", 1)[-1]
    vmappable = tuple(getattr(trainer.agent, "HPARAMS", ()))
    common.check_hparams(name, trainer.config, vmappable, hparams)


def batch_sharding(size: int, axis_name: str = "seeds") -> jax.sharding.NamedSharding | None:
    """A sharding of a leading batch axis of `size` (seeds, or settings × seeds) over all
    local devices, or None: one device, or `size` does not divide evenly over them (then a
    warning says the run stays on one device)."""
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    if size % len(devices):
        warnings.warn(
            f"{size} runs do not divide evenly over {len(devices)} devices: "
            f"not sharding, everything runs on {devices[0]}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices), (axis_name,))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis_name))


def shard(tree: Any, sharding: jax.sharding.NamedSharding | None) -> Any:
    """Place every leaf's leading axis on `sharding` (no-op for None); jit then partitions
    the vmapped program over the devices, each running its share of the batch."""
    return tree if sharding is None else jax.device_put(tree, sharding)


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Keys of the seeds of a run: seed i uses fold_in(PRNGKey(seed), i)."""
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_seeds))


def run_training(
    trainer: Trainer,
    seed: int,
    num_seeds: int,
    *,
    hparams: dict | None = None,
    checkpoint_dir: pathlib.Path | str | None = None,
    resume: bool = False,
    logger: Any = None,
    progress: bool = True,
    desc: str = "",
    max_chunks: int | None = None,
    sharded: bool = True,
) -> tuple[RunnerState, dict[str, np.ndarray]]:
    """Run `trainer` for `num_seeds` vmapped seeds, chunk by chunk, on the host.

    Returns the final state (leading axis: seeds) and the per-chunk metrics as arrays of
    shape (chunks, seeds). With `checkpoint_dir` the state is saved after every chunk;
    `resume=True` continues from the latest checkpoint there and gives the same result
    as an uninterrupted run. `max_chunks` stops early (for tests of resume). A NaN or
    infinite loss raises `NonFiniteLossError` naming the metric and step; the checkpoint
    of the last good chunk stays on disk. `hparams` (arrays with a leading seed axis) are
    checked before anything is compiled. With several local devices (`sharded=True`) the
    seed axis is sharded over them when `num_seeds` divides evenly (else a warning, and
    one device); the results are those of the unsharded run.
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    from ddrl.provenance import CheckpointError

    check_hparams(trainer, hparams)
    sharding = batch_sharding(num_seeds) if sharded else None
    keys = shard(seed_keys(seed, num_seeds), sharding)
    if hparams is not None:
        hparams = shard({k: jnp.asarray(v) for k, v in hparams.items()}, sharding)
    run_chunk = trainer.batched_run_chunk
    runner = shard(trainer.batched_init(keys, hparams), sharding)
    history: dict[str, np.ndarray] = {}
    start_chunk = 0

    manager = None
    if checkpoint_dir is not None:
        logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
        checkpoint_dir = pathlib.Path(checkpoint_dir).absolute()
        manager = ocp.CheckpointManager(
            checkpoint_dir, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        )
        latest = manager.latest_step() if resume else None
        if latest is not None:
            metric_shapes = jax.eval_shape(run_chunk, runner, 0)[1]
            target = {
                "runner": runner,
                "history": {
                    k: np.zeros((trainer.num_chunks,) + v.shape, np.float64)
                    for k, v in metric_shapes.items()
                },
            }
            try:
                restored = manager.restore(latest, args=ocp.args.StandardRestore(target))
            except Exception as error:  # a corrupt or truncated checkpoint: one clear line
                raise CheckpointError(checkpoint_dir / str(latest), error) from error
            runner = shard(restored["runner"], sharding)
            history = {k: np.asarray(v) for k, v in restored["history"].items()}
            start_chunk = latest

    end_chunk = trainer.num_chunks if max_chunks is None else min(trainer.num_chunks, max_chunks)
    bar = tqdm(
        total=trainer.total_steps,
        initial=start_chunk * trainer.steps_per_chunk,
        desc=desc or trainer.agent.__name__.rsplit(".", 1)[-1],
        unit="step",
        unit_scale=True,
        disable=not progress,
    )
    try:
        for chunk in range(start_chunk, end_chunk):
            started = time.perf_counter()
            runner, metrics = run_chunk(runner, jnp.int32(chunk))
            runner = shard(runner, sharding)  # keep the seed axis split (a no-op if it is)
            metrics = jax.tree.map(np.asarray, jax.device_get(metrics))
            elapsed = time.perf_counter() - started
            step = (chunk + 1) * trainer.steps_per_chunk
            _check_finite(metrics, step)
            for k, v in metrics.items():
                if k not in history:
                    history[k] = np.full((trainer.num_chunks,) + v.shape, np.nan)
                history[k][chunk] = v
            if manager is not None:
                manager.save(
                    chunk + 1,
                    args=ocp.args.StandardSave({"runner": runner, "history": history}),
                )
            if logger is not None:
                logger.log(step, {k: v for k, v in metrics.items() if k != "env_steps"})
            bar.update(trainer.steps_per_chunk)
            bar.set_postfix(
                steps_per_s=f"{trainer.steps_per_chunk * num_seeds / elapsed:,.0f}",
                ret=_finite_mean(metrics["episode_return"]),
            )
    finally:
        bar.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    return runner, {k: v[:end_chunk] for k, v in history.items()}


def _finite_mean(values: np.ndarray) -> str:
    finite = np.asarray(values)[np.isfinite(values)]
    return f"{finite.mean():.1f}" if finite.size else "–"


def _check_finite(metrics: dict[str, np.ndarray], step: int) -> None:
    for name, value in metrics.items():
        if "loss" in name and not np.all(np.isfinite(value)):
            bad = np.flatnonzero(~np.isfinite(np.atleast_1d(value)))
            raise NonFiniteLossError(
                f"metric {name!r} is not finite at env step {step} (seeds {bad.tolist()}); "
                "stopping, the last good checkpoint is kept"
            )
