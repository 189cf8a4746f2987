"""Training loops: `make_train(...) -> train(key)`, pure and jittable, plus a host runner.

One compiled program trains one seed; `jax.jit(jax.vmap(train))(keys)` trains many. The
run is a `lax.scan` over chunks, each a `lax.scan` over iterations:

* off-policy (dqn, sac, d2sac): an iteration steps the vectorised environment
  `train_every` times into the replay buffer, then makes `updates_per_train` gradient
  steps (skipped until `learning_starts` environment steps have been taken; before that
  actions are uniform);
* on-policy (ppo): an iteration collects a rollout of `num_steps` steps and updates on it.

Metrics are reduced inside each chunk (mean completed-episode return, mean losses, and
optionally a greedy evaluation at the end of the chunk) so nothing is stored per step.
`run_training` runs the compiled chunk repeatedly on the host with a progress bar,
loggers, orbax checkpoints, resume, and a NaN/inf guard on the losses.
"""
import dataclasses
import logging
import pathlib
import time
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
    """Running returns of the current episodes and totals of the episodes completed."""

    current_return: jax.Array  # (num_envs,)
    completed_return_sum: jax.Array
    completed_count: jax.Array


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

    @property
    def total_steps(self) -> int:
        """Environment steps of the whole run."""
        return self.num_chunks * self.steps_per_chunk


def make_train(algo_cfg, env, env_params, train_steps: int, num_envs: int | None = None, **kwargs):
    """`train(key, hparams=None) -> (final RunnerState, per-chunk metrics)`; see `make_trainer`."""
    return make_trainer(algo_cfg, env, env_params, train_steps, num_envs, **kwargs).train


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

    `algo_cfg` is a mapping with `name` (a key of `ddrl.agents.REGISTRY`) and any
    hyper-parameter overrides. `num_envs` defaults to the agent's `num_envs` (PPO) or 1.
    The run takes `train_steps` environment steps (rounded down to whole iterations of
    every chunk). `eval_episodes > 0` adds a greedy evaluation at the end of each chunk.
    `train(key, hparams)` accepts a dict of numeric hyper-parameter overrides (arrays,
    so that they can be vmapped, e.g. learning rates or α).
    """
    name = algo_cfg["name"]
    agent = agents.get(name)
    config = agents.make_config(name, algo_cfg)
    if num_envs is None:
        num_envs = getattr(config, "num_envs", 1)
    if hasattr(config, "total_steps"):
        config = dataclasses.replace(config, total_steps=int(train_steps))
    obs_shape = env.observation_space(env_params).shape
    n_actions = int(env.action_space(env_params).n)
    on_policy = agent.KIND == "on_policy"
    vec_steps = config.num_steps if on_policy else max(config.train_every // num_envs, 1)
    steps_per_iteration = vec_steps * num_envs
    num_chunks = max(1, min(num_chunks, int(train_steps) // steps_per_iteration))
    iterations = max(int(train_steps) // (num_chunks * steps_per_iteration), 1)
    steps_per_chunk = iterations * steps_per_iteration

    def init(key: jax.Array, hparams: dict | None = None) -> RunnerState:
        cfg = dataclasses.replace(config, **(hparams or {}))
        key_agent, key_reset, key_run = jax.random.split(key, 3)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(key_reset, num_envs), env_params
        )
        buffer = None
        if not on_policy:
            example = common.Transition(
                obs=obs[0], action=jnp.zeros((), jnp.int32), reward=jnp.zeros(()),
                next_obs=obs[0], terminated=jnp.zeros((), bool), truncated=jnp.zeros((), bool),
            )  # fmt: skip
            buffer = common.buffer_init(example, min(cfg.buffer_size, train_steps), num_envs)
        stats = EpisodeStats(jnp.zeros(num_envs), jnp.zeros(()), jnp.zeros((), jnp.int32))
        return RunnerState(
            agent=agent.init(key_agent, obs_shape, n_actions, cfg),
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            stats=stats,
            key=key_run,
            env_steps=jnp.zeros((), jnp.int32),
        )

    def env_step(runner: RunnerState, action: jax.Array, key: jax.Array):
        """Step every environment; returns the new runner and the stored transition."""
        obs, env_state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(key, num_envs), runner.env_state, action, env_params)
        true_next_obs = info.get("final_observation", obs)
        done = terminated | truncated
        episode_return = runner.stats.current_return + reward
        stats = EpisodeStats(
            current_return=jnp.where(done, 0.0, episode_return),
            completed_return_sum=runner.stats.completed_return_sum
            + jnp.sum(jnp.where(done, episode_return, 0.0)),
            completed_count=runner.stats.completed_count + jnp.sum(done),
        )
        transition = common.Transition(
            runner.obs, action, reward.astype(jnp.float32), true_next_obs, terminated, truncated
        )
        runner = runner.replace(
            env_state=env_state, obs=obs, stats=stats, env_steps=runner.env_steps + num_envs
        )
        return runner, transition

    def off_policy_iteration(runner: RunnerState, iteration_index: jax.Array):
        def collect(runner, _):
            key, key_act, key_random, key_env = jax.random.split(runner.key, 4)
            runner = runner.replace(key=key)
            policy_action = agent.act(runner.agent, runner.obs, key_act, True)
            random_action = jax.random.randint(key_random, (num_envs,), 0, n_actions)
            warmup = runner.env_steps < config.learning_starts
            action = jnp.where(warmup, random_action, policy_action)
            runner, transition = env_step(runner, action, key_env)
            return runner.replace(buffer=common.buffer_add(runner.buffer, transition)), None

        runner, _ = jax.lax.scan(collect, runner, None, vec_steps)
        key, key_update = jax.random.split(runner.key)
        agent_state = runner.agent.replace(env_steps=runner.env_steps)

        def learn(agent_state):
            def one_update(agent_state, update_key):
                key_sample, key_agent = jax.random.split(update_key)
                batch = common.buffer_sample(
                    runner.buffer, key_sample, config.batch_size, config.n_step
                )
                return agent.update(agent_state, batch, key_agent)

            agent_state, metrics = jax.lax.scan(
                one_update, agent_state, jax.random.split(key_update, config.updates_per_train)
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
            runner, transition = env_step(runner, action, key_env)
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

    def evaluate(agent_state, key: jax.Array) -> jax.Array:
        """Mean return of `eval_episodes` greedy episodes (first episode of each env)."""
        key_reset, key_run = jax.random.split(key)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(key_reset, eval_episodes), env_params
        )
        max_steps = int(getattr(env_params, "max_steps_in_episode", 1000))

        def step(carry, key):
            obs, env_state, total, running = carry
            key_act, key_env = jax.random.split(key)
            action = agent.act(agent_state, obs, key_act, False)
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
        metrics["episodes"] = stats.completed_count
        metrics["env_steps"] = runner.env_steps
        if eval_episodes > 0:
            key, key_eval = jax.random.split(runner.key)
            metrics["eval_return"] = evaluate(runner.agent, key_eval)
            runner = runner.replace(key=key)
        stats = stats.replace(
            completed_return_sum=jnp.zeros_like(stats.completed_return_sum),
            completed_count=jnp.zeros_like(stats.completed_count),
        )
        return runner.replace(stats=stats), metrics

    def train(key: jax.Array, hparams: dict | None = None) -> tuple[RunnerState, dict]:
        runner = init(key, hparams)
        return jax.lax.scan(run_chunk, runner, jnp.arange(num_chunks))

    return Trainer(
        init, run_chunk, train, agent, config, num_chunks, steps_per_chunk,
        jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run_chunk, in_axes=(0, None))),
    )  # fmt: skip


# ----------------------------------------------------------------------------- host runner


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


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
) -> tuple[RunnerState, dict[str, np.ndarray]]:
    """Run `trainer` for `num_seeds` vmapped seeds, chunk by chunk, on the host.

    Returns the final state (leading axis: seeds) and the per-chunk metrics as arrays of
    shape (chunks, seeds). With `checkpoint_dir` the state is saved after every chunk;
    `resume=True` continues from the latest checkpoint there and gives the same result
    as an uninterrupted run. `max_chunks` stops early (for tests of resume). A NaN or
    infinite loss raises `NonFiniteLossError` naming the metric and step; the checkpoint
    of the last good chunk stays on disk.
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    keys = seed_keys(seed, num_seeds)
    run_chunk = trainer.batched_run_chunk
    runner = trainer.batched_init(keys, hparams)
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
            restored = manager.restore(latest, args=ocp.args.StandardRestore(target))
            runner = restored["runner"]
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
                ret=f"{np.nanmean(metrics['episode_return']):.1f}",
            )
    finally:
        bar.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    return runner, {k: v[:end_chunk] for k, v in history.items()}


def _check_finite(metrics: dict[str, np.ndarray], step: int) -> None:
    for name, value in metrics.items():
        if "loss" in name and not np.all(np.isfinite(value)):
            bad = np.flatnonzero(~np.isfinite(np.atleast_1d(value)))
            raise NonFiniteLossError(
                f"metric {name!r} is not finite at env step {step} (seeds {bad.tolist()}); "
                "stopping, the last good checkpoint is kept"
            )
