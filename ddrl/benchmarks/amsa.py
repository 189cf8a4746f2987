"""Training and evaluation speed of every method of `+experiment=amsa` (or `--experiment ats`), at its settings.

For each learner: its method config as the experiment builds it (the clean view, the paper
budget's schedules), `--seeds` vmapped seeds × the experiment's environments per seed.
Prints one JSON line per method: compile time of one training chunk, steady-state training
speed in seed-episodes per second (the fastest of `--repeats` chunks of `--episodes` episodes
per seed, timed after a first chunk has run; updates from the first step, so warm-up does not
flatter it), and the wall time of the greedy evaluation as the experiment runs it (the
experiment's episodes per seed, tracing and compiling included). Schedulers get the
evaluation figures only.

    python -m ddrl.bench amsa [--methods ddrl_amsa amcoedge] [--episodes 4] [--seeds 10]
    python -m ddrl.bench amsa --experiment ats --episodes 0.5 --eval-episodes 5
    python -m ddrl.bench amsa --experiment scale --view B20 --methods ddrl_amsa_set --seeds 3
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from omegaconf import OmegaConf

from ddrl.envs.scenarios import build_mec
from ddrl.evaluate import evaluate, evaluate_per_seed
from ddrl.experiments import scheduling
from ddrl.schedulers import make_scheduler
from ddrl.training import make_trainer, seed_keys, split_method


def compose_experiment(overrides: list[str], experiment: str = "amsa") -> Any:
    """The `+experiment=<experiment>` config, as `python -m ddrl.run` composes it."""
    from hydra import compose, initialize_config_dir

    from ddrl.run import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=[f"+experiment={experiment}", "logger=none", *overrides])


def timed(fn, *args) -> tuple[Any, float]:
    started = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - started


class SteadyRun(NamedTuple):
    """A learner built for steady-state timing (`steady_trainer`)."""

    trainer: Any
    runner: Any  # the initial runner state of every seed (batched)
    env: Any
    params: Any
    decisions_per_episode: float  # expected decisions of one environment's episode
    config: Any  # the method config it trains with (learning_starts 0)


def steady_trainer(cfg, key: str, episodes: float, num_seeds: int, repeats: int, view: str = "clean") -> SteadyRun:
    """The method `key` of experiment `cfg` as the experiment trains it in `view` (the paper
    budget's schedules), with updates from the first step, in `repeats + 1` chunks of
    `episodes` episodes per seed."""
    method = cfg.methods[key]
    env, params = build_mec(view_config(cfg, view, key), action_space=method.get("action_space"))
    per_episode = scheduling.expected_decisions_per_episode(env, params)
    paper = scheduling._method_config(cfg, method, float(cfg.paper_episodes), per_episode / int(params.num_slots))
    steady = OmegaConf.merge(paper, {"learning_starts": 0})
    trainer = make_trainer(steady, env, params, int((repeats + 1) * episodes * per_episode),
                           num_envs=cfg.trainer.num_envs, num_chunks=repeats + 1)  # fmt: skip
    runner = jax.block_until_ready(trainer.batched_init(seed_keys(0, num_seeds)))
    return SteadyRun(trainer, runner, env, params, per_episode, steady)


def view_config(cfg, view: str, key: str):
    """The env config of method `key` in `view`, one of the experiment's `views`; a one-line
    error otherwise (the method runs in fewer views, or the experiment has no such view)."""
    env_cfg = scheduling.view_env_config(cfg, view, key) if view in cfg.views else None
    if env_cfg is None:
        raise SystemExit(f"bench: method {key!r} of experiment {cfg.experiment_name!r} has no view {view!r} "
                         f"(the experiment's views: {list(cfg.views)})")  # fmt: skip
    return env_cfg


def measure_learner(cfg, key: str, episodes: float, num_seeds: int, eval_episodes: int,
                    repeats: int = 3, view: str = "clean") -> dict[str, Any]:
    """Compile and steady-state speed of one learner's training and greedy evaluation."""
    method = cfg.methods[key]
    trainer, runner, env, params, per_episode, steady = steady_trainer(cfg, key, episodes, num_seeds, repeats, view)
    started = time.perf_counter()
    run_chunk = trainer.batched_run_chunk.lower(runner, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - started
    (runner, _), _ = timed(run_chunk, runner, jnp.int32(0))
    run_s = float("inf")
    for chunk in range(1, repeats + 1):  # the fastest of `repeats` timed chunks
        (runner, _), seconds = timed(run_chunk, runner, jnp.int32(chunk))
        run_s = min(run_s, seconds)
    chunk_episodes = trainer.steps_per_chunk / per_episode
    eval_key = jax.random.PRNGKey(1)
    play = lambda: evaluate_per_seed(env, params, trainer.greedy_policy, runner.agent, eval_key, eval_episodes)  # noqa: E731
    _, eval_s = timed(play)  # as the experiment runs it: traced, compiled and run once
    return {
        "bench": "amsa", "experiment": str(cfg.experiment_name), "view": view, "method": key, "agent": str(method.name), "per_bs": bool(method.get("per_bs", False)),
        "group_acting": split_method(steady)[0].group_acting, "acting_in_training": acting_in_training(trainer, cfg),
        "seeds": num_seeds,
        "envs_per_seed": cfg.trainer.num_envs, "chunk_episodes_per_seed": round(chunk_episodes, 3),
        "train_compile_s": round(compile_s, 2), "train_run_s": round(run_s, 3),
        "train_seed_episodes_per_s": round(chunk_episodes * num_seeds / run_s, 2),
        "train_s_per_episode_of_all_seeds": round(run_s / chunk_episodes, 4),
        "eval_wall_s": round(eval_s, 2),
        "backend": jax.default_backend(),
    }  # fmt: skip


def acting_in_training(trainer, cfg) -> str | None:
    """How a per-BS learner acts on its training batch (what `group_acting: auto` resolved to)."""
    from ddrl.agents import PerGroup

    agent = trainer.agent
    return agent.acting_for(int(cfg.trainer.num_envs)) if isinstance(agent, PerGroup) else None


def measure_scheduler(cfg, key: str, num_seeds: int, eval_episodes: int, view: str = "clean") -> dict[str, Any]:
    """Compile and run speed of a scheduler's evaluation."""
    method = cfg.methods[key]
    env, params = build_mec(view_config(cfg, view, key), action_space=method.get("action_space"))
    policy = make_scheduler(method.name, env)
    play = lambda: evaluate(env, params, policy, jax.random.PRNGKey(1), num_seeds, eval_episodes)  # noqa: E731
    _, eval_s = timed(play)
    return {"bench": "amsa", "experiment": str(cfg.experiment_name), "view": view, "method": key, "scheduler": str(method.name), "seeds": num_seeds,
            "eval_wall_s": round(eval_s, 2),
            "backend": jax.default_backend()}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="amsa", help="a scheduling experiment: amsa, ats or scale")
    parser.add_argument("--view", default="clean", help="the view the methods are built in (scale: B5 ... B100)")
    parser.add_argument("--methods", nargs="+", default=None, help="keys of the experiment's methods (default: all)")
    parser.add_argument("--episodes", type=float, default=4.0, help="training episodes per seed per timed chunk")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=10, help="greedy evaluation episodes per seed")
    parser.add_argument("--repeats", type=int, default=3, help="timed training chunks; the fastest is kept")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the experiment, e.g. num_envs=64")
    args = parser.parse_args(argv)
    cfg = compose_experiment(args.overrides, args.experiment)
    for key in args.methods or list(cfg.methods):
        if cfg.methods[key].get("kind") == "scheduler":
            line = measure_scheduler(cfg, key, args.seeds, args.eval_episodes, args.view)
        else:
            line = measure_learner(cfg, key, args.episodes, args.seeds, args.eval_episodes, args.repeats, args.view)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
