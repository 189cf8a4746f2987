"""Does a trained per-BS soft actor-critic's critic rank the sets right on average? Its Q against the true make-spans.

    python scripts/critic_ranking.py RUN_DIR --method KEY [--view fidelity] [--critic online|target]
        [--decisions 20000] [--episodes 20] [--mode sample]

Restores method KEY of a finished `+experiment=amsa` run (its final checkpoint; nothing is
retrained) and lets each seed's agents play `--decisions` decisions in `--mode`, from the start of
`--episodes` fresh episodes (as many decisions from each; on the fidelity preset each episode its
own per-index task profile, which the authors' simulator keeps through resets, so the figures
average over profiles as the evaluation does). At every decision
it records, beside the action taken, the deciding BS's critic min(Q1, Q2)(s, ·) over every set
(`--critic target`: its Polyak-averaged target critic, what `actor_reads_target_critic` reads) and
the true reward every set would have earned on the true state (minus the task's make-span: what
`optimal_myopic` enumerates). With γ = 0 the critic's target is exactly that reward, so its Q
should approach the reward's expectation given the observation; with γ > 0 it adds a bootstrap.

Per BS (averaged over seeds) it reports, in ms of make-span:
- `policy`: the mean make-span of the sets the agents chose;
- `best_mean_set` / `critic_mean_set`: the set with the smallest mean make-span over the BS's
  decisions (the best response to everyone's current behaviour, one set per BS) and the one the
  critic's mean Q ranks first, with the true mean make-span of each (`critic_set_regret`: how much
  worse the critic's favourite is) and the rank correlation of mean Q and mean reward over the sets;
- among the sets the agents take often (≥ 5 % of the BS's decisions; `often_sets` of them): the
  spread of their true mean make-spans (`often_true_spread`), the spread of the critic's error on
  them (`often_critic_error_spread`: mean Q against mean reward; a common offset is no error) and
  how much worse the one of them the critic ranks first is than the best of them
  (`often_critic_set_regret`) — whether the critic can tell apart what the actor chooses between.

(`scripts/myopic_regret.py --mode critic` scores argmax Q decision by decision against each
task's own best set; under the authors' observation a per-BS learner cannot see what makes one
task's best differ from the next one's, so the per-BS means are what its critic can get right.)

Then four policies on the table's evaluation episodes (those of `+experiment=amsa`'s learner
seed s), beside the agents themselves and `optimal_myopic`: `critic_greedy` (argmax of the deciding
BS's Q, per decision) and three deterministic tables, each BS always one set: `best_mean` (its
`best_mean_set`), `critic_mean` (its `critic_mean_set`) and `often_critic` (of the sets it takes
often, the one its critic ranks first: the agents' own policy sharpened on their critic).
One JSON line; a table on stderr.
"""
from __future__ import annotations

import json
import sys

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ddrl.evaluate import evaluate, evaluate_per_seed
from ddrl.experiments import scheduling
from ddrl.schedulers import make_scheduler
from ddrl.stats import mean_ci


@flax.struct.dataclass
class Seen:
    """What one decision shows: who decided, what, whether the task was real, every set's true
    reward on the true state and the decider's critic value of every set."""

    bs: jax.Array
    action: jax.Array
    real: jax.Array
    true_reward: jax.Array
    critic: jax.Array


def per_bs_figures(seen: Seen, num_bs: int) -> tuple[dict, dict[str, np.ndarray]]:
    """The per-BS comparison of critic and truth (means over seeds) and the deterministic tables
    (name → set per (seed, BS)): the set of smallest mean make-span, the one the critic's mean Q
    ranks first, and the one it ranks first among the sets the agents take often."""
    num_seeds = seen.bs.shape[0]
    tables = {name: np.zeros((num_seeds, num_bs), np.int32) for name in ("best_mean", "critic_mean", "often_critic")}
    rows: dict[str, np.ndarray] = {}
    for seed in range(num_seeds):
        for bs in range(num_bs):
            mine = seen.real[seed] & (seen.bs[seed] == bs)
            if not mine.any():
                raise SystemExit(f"seed {seed}: BS {bs} decided no task in the recorded play; record more --decisions")
            delay = -1000.0 * seen.true_reward[seed][mine]  # (decisions, sets), ms
            action = seen.action[seed][mine]
            mean_delay, mean_q = delay.mean(0), seen.critic[seed][mine].mean(0)
            often = np.bincount(action, minlength=delay.shape[1]) >= 0.05 * len(action)  # the sets it mostly takes
            best, favourite = mean_delay.argmin(), mean_q.argmax()
            often_best = np.where(often, mean_delay, np.inf).argmin()
            often_favourite = np.where(often, mean_q, -np.inf).argmax()
            tables["best_mean"][seed, bs], tables["critic_mean"][seed, bs] = best, favourite
            tables["often_critic"][seed, bs] = often_favourite
            values = {
                "policy_ms": delay[np.arange(len(delay)), action].mean(),
                "best_mean_set_ms": mean_delay[best],
                "critic_mean_set_ms": mean_delay[favourite],
                "critic_set_regret_ms": mean_delay[favourite] - mean_delay[best],
                "rank_correlation": stats.spearmanr(-mean_delay, mean_q).statistic,
                "often_sets": often.sum(),
                "often_true_spread_ms": np.std(mean_delay[often]),
                "often_critic_error_spread_ms": np.std(-1000.0 * mean_q[often] - mean_delay[often]),
                "often_critic_set_regret_ms": mean_delay[often_favourite] - mean_delay[often_best],
            }
            for name, value in values.items():
                rows.setdefault(name, np.zeros((num_seeds, num_bs)))[seed, bs] = value
    return {name: np.round(values.mean(0), 3).tolist() for name, values in rows.items()}, tables


def main() -> None:
    parser = scheduling.restore_arguments(__doc__.splitlines()[0], view="fidelity")
    parser.add_argument("--critic", default="online", choices=("online", "target"), help="which critic is read")
    parser.add_argument("--mode", default="sample", choices=("sample", "greedy"), help="how it acts while recorded")
    parser.add_argument("--decisions", type=int, default=20_000, help="decisions recorded per seed")
    parser.add_argument("--episodes", type=int, default=20, help="fresh episodes the decisions are split over")
    args = parser.parse_args()
    try:
        scheduling.decisions_per_episode(args.decisions, args.episodes)
    except ValueError:
        raise SystemExit(f"--decisions {args.decisions}: a multiple of --episodes {args.episodes}") from None
    restored = scheduling.restore_or_exit(args)
    env, params = restored.setup.env, restored.setup.params
    if not hasattr(restored.final.agent, "critic_target") or not env.actions.is_discrete:
        raise SystemExit(f"{args.method}: not an agent with a critic over a discrete action space")
    num_bs, target = int(params.capacity.shape[0]), args.critic == "target"

    def record(agent, obs, state, action):
        bs = env.deciding_bs(state)
        true_reward = jax.vmap(lambda mask: env.evaluate_mask(state, mask, params).reward)(env.actions.all_masks(bs))
        critic = scheduling.deciding_critic(agent, obs, bs, target)
        return Seen(bs, action, state.slot < params.num_slots, true_reward, critic)

    seen = scheduling.play_restored(restored, args.mode, args.decisions, record, episodes=args.episodes)
    per_bs, tables = per_bs_figures(seen, num_bs)

    def critic_greedy(agent):
        def act(key, obs, state, p):
            return scheduling.deciding_critic(agent, obs, env.deciding_bs(state), target).argmax().astype(jnp.int32)

        return act

    def fixed_sets(sets):
        return lambda key, obs, state, p: sets[env.deciding_bs(state)]

    eval_key, eval_episodes = scheduling.shared_evaluation(restored.cfg)
    agents = restored.final.agent
    num_seeds = seen.bs.shape[0]
    played = {
        "agents": evaluate_per_seed(env, params, lambda a: restored.trainer.policy(a, args.mode), agents,
                                    eval_key, eval_episodes),
        "critic_greedy": evaluate_per_seed(env, params, critic_greedy, agents, eval_key, eval_episodes),
        **{f"{name}_table": evaluate_per_seed(env, params, fixed_sets, jnp.asarray(sets), eval_key, eval_episodes)
           for name, sets in tables.items()},
    }  # fmt: skip
    myopic = evaluate(env, params, make_scheduler("optimal_myopic", env), eval_key, num_seeds, eval_episodes)
    myopic_per_seed = np.asarray(myopic.make_span, np.float64).mean(axis=1)
    policies = {"optimal_myopic": {"make_span": [round(x, 5) for x in mean_ci(myopic_per_seed)]}}
    for name, metrics in played.items():
        policies[name] = scheduling.against_reference(metrics, myopic_per_seed)
    row = {"run": str(args.run_dir), "method": args.method, "view": args.view, "critic": args.critic, "mode": args.mode,
           "gamma": float(restored.setup.method.get("gamma", float("nan"))), "seeds": num_seeds,
           "decisions_per_seed": args.decisions, "episodes": args.episodes, "real_decisions": int(seen.real.sum()),
           "eval_episodes_per_seed": eval_episodes, "per_bs": per_bs,
           "tables": {name: sets.tolist() for name, sets in tables.items()}, "policies": policies}  # fmt: skip
    for name, values in per_bs.items():
        print(f"{name:30s} " + " ".join(f"{v:8.3f}" for v in values), file=sys.stderr)
    for name, policy in policies.items():
        print(f"{name:30s} {policy['make_span'][0]:.4f} ± {policy['make_span'][1]:.4f}  "
              f"{policy.get('gap_to_optimal_myopic_pct', '')}", file=sys.stderr)
    print(json.dumps(row))


if __name__ == "__main__":
    sys.exit(main())
