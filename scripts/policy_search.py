"""What the authors' observation allows: a table of set probabilities per BS, searched or learnt.

    python scripts/policy_search.py [--view fidelity] [--bins 1] [--optimiser es|pg_task|pg_slot] [--seeds 10] [OVERRIDES ...]
    python scripts/policy_search.py --from-run RUN_DIR --method ddrl_amsa_tuned --view fidelity

On the amcoedge scenario the authors' observation `[D, Q_1(t) … Q_5(t)]` carries no backlog at
p = 0.3 (every Q_i is 0), so a per-BS learner on it — DDRL-AMSA, AMCoEdge — can at best learn a
mixture of sets per BS and task size D. This script fits that policy class directly: one
table of logits over the 31 sets per BS and per D bin (`--bins` equal bins of [D_min, D_max];
1: one mixture per BS, whatever the task), the action drawn from its softmax. Fitted by

- `es` (default): an evolution strategy (antithetic Gaussian perturbations, rank-shaped, Adam)
  on the quantity the tables report — the episode's mean make-span, counting what each task's
  choice costs the tasks decided after it — with common random episodes for every candidate of a
  generation. A yardstick of the policy class: its budget (`search_episodes_per_seed`, 153,600
  episodes at the defaults) is far beyond a learner's 500 episodes.
- `pg_task` / `pg_slot`: REINFORCE, each update playing `--pg-envs` fresh episodes of
  `--pg-steps` decisions; a decision is credited with its own task's make-span (`pg_task`: what a
  per-task reward with γ = 0 teaches) or with the make-spans of every task from it to the end of
  its slot (`pg_slot`), less the mean at its position in the slot. The defaults (500 updates of
  one 4,500-decision episode) are the tables' budget: 2.25 M environment steps per seed.

`--from-run RUN_DIR --method KEY` first plays each seed of a finished scheduling run's learner
(`--mode`, `--decisions` per seed) and reads its action frequencies per BS and D bin as a table:
that table is evaluated (`started_from.as_table`: the learner's policy without whatever else it
reads) and each search seed starts from its learner seed's table.

Each seed s is evaluated like learner seed s of `+experiment=amsa`'s table: on the same
evaluation episodes (`fold_in(PRNGKey(seed), 10_000)`, `eval_episodes` per seed), beside
`optimal_myopic` and the uniform table (the random subset) on those episodes. One JSON line:
make-span ± 95 % CI over seeds, the gap to `optimal_myopic` with a bootstrap interval, per-ES
utilisation, each BS's table entropy and mean set size, the episodes and decisions used.
`--out FILE.npz` keeps the logits and the per-update make-spans.

OVERRIDES are the experiment's Hydra overrides (`+experiment=amsa` is implied), e.g.
`env.arrival_prob=0.5`.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import OmegaConf

from ddrl.envs.mec import MEC, MECParams
from ddrl.evaluate import evaluate, evaluate_per_seed, run_episode
from ddrl.experiments import scheduling
from ddrl.schedulers import make_scheduler
from ddrl.stats import mean_ci


@dataclass(frozen=True)
class SearchSettings:
    """The evolution strategy: `population` antithetic pairs per generation, each candidate
    played on `episodes` episodes (the same ones for the whole generation)."""

    generations: int = 300
    population: int = 32
    episodes: int = 8
    sigma: float = 0.3
    learning_rate: float = 0.05


def d_bin(env: MEC, obs: jax.Array, params: MECParams, bins: int) -> jax.Array:
    """Which of `bins` equal bins of [D_min, D_max] the task's input size D (obs[0]) falls in."""
    if env.observation != "authors" or env.workload_model != "density":
        raise ValueError("the table policy reads D as obs[0] of the authors' observation on a density workload")
    low, high = params.data_size_min, params.data_size_max
    return jnp.clip(jnp.floor((obs[0] - low) / (high - low) * bins), 0, bins - 1).astype(jnp.int32)


def table_policy(env: MEC, logits: jax.Array):
    """`policy(key, obs, state, params)` drawing a set from softmax(logits[deciding BS, D bin])."""
    bins = logits.shape[1]

    def policy(key, obs, state, params):
        row = logits[env.deciding_bs(state), d_bin(env, obs, params, bins)]
        return jax.random.categorical(key, row).astype(jnp.int32)

    return policy


def fit(update, logits: jax.Array, optimiser, keys: jax.Array, updates: int, report_every: int,
        progress=None) -> tuple[jax.Array, np.ndarray]:  # fmt: skip
    """`update((logits, optimiser_state), key) -> (carry, make_span)` run `updates` times from
    `logits` (seeds, ...), one run per key of `keys`, `report_every` updates per jitted call
    (a `lax.scan`, vmapped over the seeds); the fitted logits and each update's make-span
    (seeds, updates). `progress(updates_done, mean_make_span)` after each call."""
    if updates < 1 or report_every < 1 or updates % report_every:
        raise ValueError(f"{updates} updates: a positive multiple of report_every {report_every}")

    def block(carry, block_key):
        return jax.lax.scan(update, carry, jax.random.split(block_key, report_every))

    blocks = jax.jit(jax.vmap(block))
    carry, history = (logits, jax.vmap(optimiser.init)(logits)), []
    for index in range(updates // report_every):
        carry, spans = blocks(carry, jax.vmap(lambda k: jax.random.fold_in(k, index))(keys))
        history.append(np.asarray(spans))
        if progress is not None:
            progress((index + 1) * report_every, float(history[-1][:, -1].mean()))
    return carry[0], np.concatenate(history, axis=1)


def uniform_tables(env: MEC, params: MECParams, seeds: int, bins: int) -> jax.Array:
    """Logits (seeds, num_bs, bins, actions) of the uniform table: every set equally likely."""
    return jnp.zeros((seeds, int(params.capacity.shape[0]), bins, env.num_actions))


def search(env: MEC, params: MECParams, keys: jax.Array, bins: int, settings: SearchSettings, report_every: int,
           progress=None, initial: jax.Array | None = None) -> tuple[jax.Array, np.ndarray]:  # fmt: skip
    """One search per key of `keys` (seeds,), all in one vmapped program, each from the uniform
    table or from `initial` (seeds, num_bs, bins, actions): the searched logits (same shape) and
    each generation's mean candidate make-span (seeds, generations), see `fit`."""
    optimiser = optax.adam(settings.learning_rate)
    pairs, sigma = settings.population, settings.sigma

    def make_span(logits, episode_keys):
        play = jax.vmap(lambda k: run_episode(env, params, table_policy(env, logits), k))
        return play(episode_keys).make_span.mean()

    def generation(carry, generation_key):
        logits, optimiser_state = carry
        noise_key, episode_key = jax.random.split(generation_key)
        noise = jax.random.normal(noise_key, (pairs, *logits.shape))
        candidates = jnp.concatenate([logits + sigma * noise, logits - sigma * noise])
        episode_keys = jax.random.split(episode_key, settings.episodes)
        spans = jax.vmap(lambda c: make_span(c, episode_keys))(candidates)
        ranks = jnp.argsort(jnp.argsort(spans)).astype(jnp.float32) / (2 * pairs - 1) - 0.5
        gradient = jnp.tensordot(ranks[:pairs] - ranks[pairs:], noise, axes=1) / (pairs * sigma)
        updates, optimiser_state = optimiser.update(gradient, optimiser_state, logits)  # descends the make-span
        return (optax.apply_updates(logits, updates), optimiser_state), spans.mean()

    start = uniform_tables(env, params, keys.shape[0], bins) if initial is None else jnp.asarray(initial)
    return fit(generation, start, optimiser, keys, settings.generations, report_every, progress)


@dataclass(frozen=True)
class GradientSettings:
    """The policy-gradient learner of `--optimiser pg_task|pg_slot`: each update plays `envs`
    fresh episodes for `steps` decisions (about one episode) with the table and ascends the
    score-function gradient of the chosen credit, less its mean at the task's position in the slot."""

    updates: int = 500
    envs: int = 1
    steps: int = 4500  # amcoedge's expected episode: 5 BS × 50 × 0.3 tasks × 60 slots
    learning_rate: float = 0.05


def slot_rest(rewards: jax.Array, same_slot_as_next: jax.Array) -> jax.Array:
    """Each step's reward plus those of the steps after it in the same slot (axis 0 is time)."""

    def backwards(following, step):
        reward, continues = step
        total = reward + jnp.where(continues, following, 0.0)
        return total, total

    return jax.lax.scan(backwards, jnp.zeros(rewards.shape[1:]), (rewards, same_slot_as_next), reverse=True)[1]


def policy_gradient(env: MEC, params: MECParams, keys: jax.Array, bins: int, settings: GradientSettings,
                    credit: str, report_every: int, progress=None) -> tuple[jax.Array, np.ndarray]:  # fmt: skip
    """Tables learnt by REINFORCE from the uniform one, one per key, in one vmapped program.

    `credit="task"` credits each decision with its own task's make-span (what a per-task reward
    with γ = 0 teaches); `credit="slot"` with the make-spans of its task and of every task
    decided after it in the same slot — all the tasks it can delay when, as here, no backlog
    crosses a slot boundary. Returns the logits and each update's mean make-span (seeds, updates),
    see `fit`."""
    if credit not in ("task", "slot"):
        raise ValueError(f"credit {credit!r}: task or slot")
    positions = int(params.capacity.shape[0]) * env.max_tasks  # (BS, task index) cells of a slot
    optimiser = optax.adam(settings.learning_rate)

    def play(logits, key):
        reset_key, steps_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)

        def step(carry, step_key):
            obs, state = carry
            act_key, env_key = jax.random.split(step_key)
            action = table_policy(env, logits)(act_key, obs, state, params)
            cell = (env.deciding_bs(state), d_bin(env, obs, params, bins), state.position)
            obs, state, _, _, done, info = env.step(env_key, state, action, params)
            return (obs, state), (*cell, action, info["make_span"], info["slot"], done, info["real_task"])

        return jax.lax.scan(step, (obs, state), jax.random.split(steps_key, settings.steps))[1]

    def update(carry, update_key):
        logits, optimiser_state = carry
        bs, cell, position, action, make_span, slot, done, real = jax.vmap(lambda k: play(logits, k), out_axes=1)(
            jax.random.split(update_key, settings.envs))  # (steps, envs)
        cost = jnp.where(real, make_span, 0.0)
        if credit == "slot":
            same_slot = jnp.concatenate([(slot[1:] == slot[:-1]) & ~done[:-1], jnp.zeros_like(done[:1])])
            cost = slot_rest(cost, same_slot)
        weight = real.astype(jnp.float32)
        by_position = jax.ops.segment_sum((cost * weight).ravel(), position.ravel(), positions)
        count = jax.ops.segment_sum(weight.ravel(), position.ravel(), positions)
        advantage = jax.lax.stop_gradient((cost - (by_position / jnp.maximum(count, 1.0))[position]) * weight)

        def surrogate(table):  # its gradient: E[advantage · ∇ log π(action)], descended (cost)
            log_pi = jax.nn.log_softmax(table[bs, cell], axis=-1)
            chosen = jnp.take_along_axis(log_pi, action[..., None], axis=-1)[..., 0]
            return jnp.sum(advantage * chosen) / jnp.maximum(weight.sum(), 1.0)

        updates, optimiser_state = optimiser.update(jax.grad(surrogate)(logits), optimiser_state, logits)
        return (optax.apply_updates(logits, updates), optimiser_state), jnp.sum(make_span * weight) / weight.sum()

    return fit(update, uniform_tables(env, params, keys.shape[0], bins), optimiser, keys, settings.updates,
               report_every, progress)  # fmt: skip


def learner_table(restored: scheduling.RestoredRun, mode: str, bins: int, decisions: int) -> tuple[np.ndarray, dict]:
    """A restored learner's action frequencies per (seed, BS, D bin) over `decisions` of its own
    play in `mode`, as table logits (log of the frequencies, half a count added to every set so a
    search can move from them), and how many decisions each (BS, bin) cell saw."""
    env, params = restored.setup.env, restored.setup.params

    def record(agent, obs, state, action):
        return env.deciding_bs(state), d_bin(env, obs, params, bins), action, state.slot < params.num_slots

    bs, cell, action, real = scheduling.play_restored(restored, mode, decisions, record)
    num_seeds, num_bs = bs.shape[0], int(params.capacity.shape[0])
    counts = np.zeros((num_seeds, num_bs, bins, env.num_actions))
    for seed in range(num_seeds):
        np.add.at(counts[seed], (bs[seed][real[seed]], cell[seed][real[seed]], action[seed][real[seed]]), 1.0)
    cell_counts = counts.sum(-1)
    logits = np.log(counts + 0.5) - np.log(cell_counts + 0.5 * env.num_actions)[..., None]
    return logits, {"decisions": int(real.sum()), "fewest_in_a_cell": int(cell_counts.min())}


def table_summary(env: MEC, logits: np.ndarray) -> dict[str, list]:
    """Entropy (nats) and expected set size of each BS's table (logits (seeds, BS, bins, sets)),
    averaged over search seeds and D bins."""
    probabilities = jax.nn.softmax(jnp.asarray(logits), axis=-1)
    entropy = -(probabilities * jnp.log(jnp.maximum(probabilities, 1e-30))).sum(-1)
    set_sizes = env.actions.all_masks(0).sum(-1).astype(jnp.float32)
    return {"entropy_nats": np.round(np.asarray(entropy.mean((0, 2)), np.float64), 3).tolist(),
            "mean_set_size": np.round(np.asarray((probabilities @ set_sizes).mean((0, 2)), np.float64), 2).tolist()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view", default="fidelity", help="a view of the experiment (default fidelity)")
    parser.add_argument("--bins", type=int, default=1, help="equal D bins per BS (1: one mixture per BS)")
    parser.add_argument("--seeds", type=int, default=None, help="search seeds (default: the table's budget.seeds)")
    parser.add_argument("--search-key", type=int, default=1, help="base key of the search (seed s: fold_in(key, s))")
    parser.add_argument("--out", default=None, help="write the searched logits here (.npz)")
    parser.add_argument("--from-run", default=None, help="start each search seed from this finished scheduling "
                        "run's learner (seed s from learner seed s): its action frequencies as a table")
    parser.add_argument("--method", default="ddrl_amsa", help="with --from-run: the learner (default ddrl_amsa)")
    parser.add_argument("--mode", default="sample", choices=("sample", "greedy"), help="with --from-run: how it acts")
    parser.add_argument("--decisions", type=int, default=20_000, help="with --from-run: decisions counted per seed")
    parser.add_argument("--optimiser", default="es", choices=("es", "pg_task", "pg_slot"),
                        help="es: the evolution strategy on the episode's make-span; pg_task / pg_slot: REINFORCE "
                        "crediting each decision with its own task's make-span / with its slot's rest (--pg-* flags)")
    parser.add_argument("--report-every", type=int, default=25, help="updates per jitted call and progress line")
    for name, value in vars(SearchSettings()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    for name, value in vars(GradientSettings()).items():
        parser.add_argument("--pg-" + name.replace("_", "-"), type=type(value), default=value)
    args, overrides = parser.parse_known_args()
    if args.bins < 1:
        raise SystemExit("--bins: at least 1")
    updates, flag = (args.generations, "--generations") if args.optimiser == "es" else (args.pg_updates, "--pg-updates")
    if updates < 1 or args.report_every < 1 or updates % args.report_every:
        raise SystemExit(f"{flag} {updates}: a positive multiple of --report-every {args.report_every}")
    if args.optimiser != "es" and args.from_run:
        raise SystemExit(f"--optimiser {args.optimiser} learns from the uniform table; --from-run starts the es search")

    from ddrl.run import precheck

    restored = None
    if args.from_run:
        if overrides:
            raise SystemExit(f"--from-run reads the run's own config; drop the overrides {overrides}")
        try:
            restored = scheduling.restore_trained(pathlib.Path(args.from_run), args.view, args.method)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(str(error)) from None
        cfg = restored.cfg
    else:
        cfg = OmegaConf.create(precheck(["+experiment=amsa", *overrides]))
    env_cfg = scheduling.view_env_config(cfg, args.view, "optimal_myopic")
    if env_cfg is None:
        raise SystemExit(f"--view {args.view}: not a view of the experiment")
    setup = scheduling.setup_method(cfg, cfg.methods.optimal_myopic, env_cfg)
    env, params = setup.env, setup.params
    num_seeds = int(args.seeds or cfg.budget.seeds)
    eval_key, eval_episodes = scheduling.shared_evaluation(cfg)
    play_tables = jax.jit(lambda tables: evaluate_per_seed(env, params, lambda logits: table_policy(env, logits),
                                                           tables, eval_key, eval_episodes))  # fmt: skip
    myopic = evaluate(env, params, make_scheduler("optimal_myopic", env), eval_key, num_seeds, eval_episodes)
    myopic_per_seed = np.asarray(myopic.make_span).mean(axis=1)

    def figures(metrics) -> dict:
        """Make-span ± CI over seeds, its gap to optimal_myopic on the same episodes, per-ES utilisation."""
        return {**scheduling.against_reference(metrics, myopic_per_seed),
                "failure_rate": round(float(np.asarray(metrics.failure_rate).mean()), 5),
                "utilisation": np.round(np.asarray(metrics.utilisation, np.float64).mean((0, 1)), 3).tolist()}  # fmt: skip

    initial, learner = None, None
    if restored is not None:
        if num_seeds != int(cfg.budget.seeds):
            raise SystemExit(f"--seeds {num_seeds}: --from-run searches from each of the run's {cfg.budget.seeds} seeds")
        if restored.setup.env.actions.kind != env.actions.kind:
            raise SystemExit(f"{args.method} chooses in the {restored.setup.env.actions.kind} space; the table "
                             f"holds one probability per {env.actions.kind} action")  # fmt: skip
        initial, seen = learner_table(restored, args.mode, args.bins, args.decisions)
        learner = {"run": args.from_run, "method": args.method, "mode": args.mode, **seen,
                   "as_table": figures(play_tables(jnp.asarray(initial))), "per_bs": table_summary(env, initial)}  # fmt: skip
    settings = SearchSettings(**{name: getattr(args, name) for name in vars(SearchSettings())})
    gradient = GradientSettings(**{name: getattr(args, "pg_" + name) for name in vars(GradientSettings())})

    started = time.perf_counter()
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(args.search_key), s))(jnp.arange(num_seeds))

    def progress(done, mean_span):
        what = "generation {}: candidates'" if args.optimiser == "es" else "update {}: the table's"
        print(f"{what.format(done)} make-span {mean_span:.4f} s "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip

    if args.optimiser == "es":
        searched, history = search(env, params, keys, args.bins, settings, args.report_every, progress, initial)
        episodes = settings.generations * 2 * settings.population * settings.episodes
        used = {**vars(settings), "report_every": args.report_every}
    else:
        searched, history = policy_gradient(env, params, keys, args.bins, gradient, args.optimiser[3:],
                                            args.report_every, progress)  # fmt: skip
        episodes = round(gradient.updates * gradient.envs * gradient.steps / setup.decisions_per_episode)
        used = {**vars(gradient), "report_every": args.report_every}
    search_s = time.perf_counter() - started
    uniform = uniform_tables(env, params, num_seeds, 1)
    row = {
        "view": args.view, "overrides": overrides, "optimiser": args.optimiser, "bins": args.bins,
        "search_seeds": num_seeds, "eval_episodes_per_seed": eval_episodes, "settings": used,
        **figures(play_tables(searched)),
        "per_bs": table_summary(env, np.asarray(searched)),
        "optimal_myopic": {"make_span": [round(x, 5) for x in mean_ci(myopic_per_seed)],
                           "utilisation": np.round(np.asarray(myopic.utilisation, np.float64).mean((0, 1)), 3).tolist()},
        "uniform_table": figures(play_tables(uniform))["make_span"],
        "started_from": learner or "uniform",
        "search_episodes_per_seed": episodes,
        "search_decisions_per_seed": round(setup.decisions_per_episode * episodes),
        "search_wall_s": round(search_s, 1),
        "last_update_make_span": [round(x, 5) for x in mean_ci(history[:, -1])],
    }  # fmt: skip
    if args.out:
        np.savez(args.out, logits=np.asarray(searched), history=history, row=json.dumps(row))
    print(json.dumps(row))


if __name__ == "__main__":
    sys.exit(main())
