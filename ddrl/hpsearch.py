"""In-process hyper-parameter search: settings × seeds trained in one compiled program.

`grid_search` trains every combination of a grid of hyper-parameters for `num_seeds`
seeds. The traced fields of an agent's `Config` (learning rates, α, γ, τ, ...;
`ddrl.agents.common.traced_fields`) are vmapped together with the seeds: settings × seeds
runs form one batch axis of one `jax.jit(jax.vmap(train))` program, compiled once. Seed i
of every setting uses the same key (`seed_keys(seed, num_seeds)[i]`), so settings are
compared on common random numbers, and each run equals `train(key, setting)` run alone (up to the last bits
of float32: batched and unbatched XLA programs may round differently).

Static fields, which set a shape or a Python branch, cannot be vmapped: the diffusion steps
T (`diffusion_steps`: the noise schedule and the reverse chain have T entries), network
widths, batch size, flags. Such a field may still be in the grid: the settings are
grouped by its values and each group is its own compiled program (the same thing a Hydra
multirun does, without starting a process per value). With several local devices the
batch axis of each program is sharded over them when it divides evenly.

    python -m ddrl.hpsearch --algo d2sac --steps 2000 --seeds 5 \\
        --grid actor_lr=1e-4,3e-4 alpha=0.02,0.05 --set batch_size=64
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ddrl import agents
from ddrl.agents import common
from ddrl.training import METHOD_KEYS, batch_sharding, config_items, make_trainer, seed_keys, shard


@dataclasses.dataclass
class SearchResult:
    """Per-setting, per-seed metrics of a grid search and what it cost."""

    settings: list[dict[str, Any]]  # one dict per setting, in the order given (a grid: last name fastest)
    metrics: dict[str, np.ndarray]  # per-chunk metrics, shape (settings, seeds, chunks)
    compile_s: float  # tracing and compiling, all programs
    run_s: float  # running the compiled programs
    programs: int  # compiled programs (one per value of the non-vmappable fields)
    agents: list[Any] | None = None  # keep_agents: per setting, its final agent states (seed axis first)
    trainers: list[Any] | None = None  # keep_agents: per setting, the Trainer that trained it (its policies)

    def final(self, metric: str = "episode_return") -> np.ndarray:
        """`metric` at the last chunk, shape (settings, seeds)."""
        return self.metrics[metric][..., -1]

    def table(self, metric: str = "episode_return") -> str:
        """Markdown table: each setting's final `metric`, mean ± 95 % CI over seeds."""
        from ddrl.stats import mean_ci

        names = list(self.settings[0]) if self.settings else []
        final = self.final(metric)
        lines = ["| " + " | ".join(names + [metric]) + " |", "|" + "---|" * (len(names) + 1)]
        for setting, values in zip(self.settings, final, strict=True):
            mean, ci = mean_ci(values)
            cells = [str(setting[n]) for n in names] + [f"{mean:.2f} ± {ci:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def split_grid(algo_cfg: Any, grid: Mapping[str, Sequence[Any]]) -> tuple[list[str], list[str]]:
    """Check `grid` against the agent of `algo_cfg`, before anything is compiled.

    Returns (vmapped names, static names): traced fields of the agent's `Config` are
    vmapped and must have numeric values; its static fields get one program per value.
    An unknown name, an empty list or a non-numeric vmapped value is a
    `ValueError`.
    """
    algo = dict(config_items(algo_cfg))
    name = algo.get("name")
    agent = agents.get(name)
    config = agents.make_config(name, {k: v for k, v in algo.items() if k not in METHOD_KEYS})
    vmappable = common.traced_fields(agent.Config)
    fields = {f.name for f in dataclasses.fields(config)}
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid: give a non-empty dict {hyper-parameter: [values]}")
    vmapped, static = [], []
    for key, values in grid.items():
        if key not in fields:
            raise ValueError(
                f"{name}: unknown hyper-parameter {key!r} in the grid; vmappable ones: "
                f"{sorted(vmappable)}"
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(
                f"{name}: grid[{key!r}] must be a non-empty list of values, got {values!r}"
            )
        if key in vmappable:
            for value in values:
                common.check_hparams(name, agent.Config, {key: value})
            vmapped.append(key)
        else:
            static.append(key)
    return vmapped, static


def grid_search(
    algo_cfg: Any,
    env: Any,
    env_params: Any,
    grid: Mapping[str, Sequence[Any]],
    num_seeds: int,
    train_steps: int,
    *,
    seed: int = 0,
    num_chunks: int = 4,
    eval_episodes: int = 0,
    sharded: bool = True,
) -> SearchResult:
    """Train every setting of `grid` (a cartesian product) for `num_seeds` seeds.

    `algo_cfg` is the base algo config (as for `make_trainer`); `grid` maps hyper-parameter
    names to lists of values. Vmappable names (traced fields of the agent's `Config`) share
    one compiled program; each combination of values of the other names (e.g.
    `diffusion_steps`) gets its own. Returns per-setting, per-seed, per-chunk metrics (`SearchResult`).
    """
    split_grid(algo_cfg, grid)
    names = list(grid)
    settings = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return search_settings(
        algo_cfg, env, env_params, settings, num_seeds, train_steps, seed=seed,
        num_chunks=num_chunks, eval_episodes=eval_episodes, sharded=sharded,
    )  # fmt: skip


def search_settings(
    algo_cfg: Any,
    env: Any,
    env_params: Any,
    settings: Sequence[Mapping[str, Any]],
    num_seeds: int,
    train_steps: int,
    *,
    seed: int = 0,
    num_chunks: int = 4,
    eval_episodes: int = 0,
    num_envs: int | None = None,
    sharded: bool = True,
    keep_agents: bool = False,
) -> SearchResult:
    """Train an arbitrary list of settings (e.g. the trials of an Optuna batch) for `num_seeds` seeds.

    Every setting names the same hyper-parameters. The settings are grouped by their values
    of the non-vmappable names (one compiled program per group); within a group the
    vmappable values are batched with the seeds. Seed i of every setting uses the key
    `seed_keys(seed, num_seeds)[i]`, so a setting's runs do not depend on which other
    settings share its program. `num_envs` is passed to `make_trainer`. Checked like a grid
    (`split_grid`) before anything is compiled. With `keep_agents` the result also holds each
    setting's trained agent states and its trainer, to evaluate them (`ddrl.experiments.tuning`).
    """
    if not settings:
        raise ValueError("settings: give a non-empty list of {hyper-parameter: value} dicts")
    names = list(settings[0])
    for setting in settings:
        if list(setting) != names:
            raise ValueError(f"every setting must name the same hyper-parameters {names}, got {list(setting)}")
    vmapped, static = split_grid(algo_cfg, {n: [s[n] for s in settings] for n in names})
    settings = [dict(s) for s in settings]
    base = dict(config_items(algo_cfg))
    groups: dict[str, list[int]] = {}
    for index, setting in enumerate(settings):
        groups.setdefault(repr([setting[n] for n in static]), []).append(index)

    keys_one = seed_keys(seed, num_seeds)
    metrics: dict[str, np.ndarray] = {}
    kept_agents: list[Any] = [None] * len(settings)
    kept_trainers: list[Any] = [None] * len(settings)
    compile_s = run_s = 0.0
    for indices in groups.values():
        static_values = {n: settings[indices[0]][n] for n in static}
        trainer = make_trainer(
            {**base, **static_values}, env, env_params, train_steps, num_envs=num_envs,
            num_chunks=num_chunks, eval_episodes=eval_episodes,
        )  # fmt: skip
        runs = len(indices) * num_seeds
        sharding = batch_sharding(runs) if sharded else None
        keys = shard(jnp.tile(keys_one, (len(indices), 1)), sharding)
        # run r of the group: setting indices[r // num_seeds], seed r % num_seeds
        values = {n: np.asarray([settings[i][n] for i in indices], np.float32) for n in vmapped}
        hparams = {n: jnp.asarray(np.repeat(v, num_seeds)) for n, v in values.items()}
        hparams = shard(hparams, sharding)
        started = time.perf_counter()
        program = jax.jit(jax.vmap(trainer.train)).lower(keys, hparams).compile()
        compile_s += time.perf_counter() - started
        started = time.perf_counter()
        final, group_metrics = jax.block_until_ready(program(keys, hparams))
        run_s += time.perf_counter() - started
        if keep_agents:
            for position, index in enumerate(indices):
                rows = slice(position * num_seeds, (position + 1) * num_seeds)
                kept_agents[index] = jax.tree.map(lambda leaf, rows=rows: leaf[rows], final.agent)
                kept_trainers[index] = trainer
        for key, value in group_metrics.items():
            value = np.asarray(value).reshape((len(indices), num_seeds) + value.shape[1:])
            if key not in metrics:
                metrics[key] = np.zeros((len(settings),) + value.shape[1:], value.dtype)
            metrics[key][indices] = value
    if not keep_agents:
        return SearchResult(settings, metrics, compile_s, run_s, len(groups))
    return SearchResult(settings, metrics, compile_s, run_s, len(groups), kept_agents, kept_trainers)


def parse_assignments(items: Sequence[str], as_list: bool) -> dict[str, Any]:
    """`name=value` strings → dict; with `as_list`, `name=v1,v2` → {name: [v1, v2]}."""
    parsed = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"expected name=value, got {item!r}")
        try:
            value = ast.literal_eval(f"[{text}]" if as_list else text)
        except (ValueError, SyntaxError):  # some values are bare strings (e.g. an activation)
            value = [_literal(v) for v in text.split(",")] if as_list else text
        parsed[name] = value
    return parsed


def _literal(text: str) -> Any:
    """A Python literal, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ddrl.hpsearch", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--algo", default="d2sac", help="agent name (ddrl.agents.REGISTRY)")
    parser.add_argument("--env", default="CartPole-v1", help="gymnax environment id")
    parser.add_argument("--grid", nargs="+", required=True, help="name=v1,v2,... (one per field)")
    parser.add_argument("--set", nargs="*", default=[], help="fixed overrides name=value")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2000, help="env steps per run")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--eval-episodes", type=int, default=0)
    parser.add_argument("--metric", default=None, help="default: eval_return if evaluated")
    args = parser.parse_args(argv)

    import gymnax

    try:
        algo_cfg = {"name": args.algo, **parse_assignments(args.set, as_list=False)}
        grid = parse_assignments(args.grid, as_list=True)
        split_grid(algo_cfg, grid)
    except (ValueError, KeyError) as error:
        parser.exit(2, f"error: {error}\n")
    env, env_params = gymnax.make(args.env)
    result = grid_search(
        algo_cfg, env, env_params, grid, args.seeds, args.steps, seed=args.seed,
        num_chunks=args.chunks, eval_episodes=args.eval_episodes,
    )  # fmt: skip
    metric = args.metric or ("eval_return" if args.eval_episodes > 0 else "episode_return")
    print(result.table(metric))
    print(json.dumps({
        "settings": len(result.settings), "seeds": args.seeds, "programs": result.programs,
        "compile_s": round(result.compile_s, 2), "run_s": round(result.run_s, 2),
        "devices": len(jax.local_devices()), "backend": jax.default_backend(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
