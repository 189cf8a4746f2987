"""How far a trained set scheduler's decisions are from the myopic optimum, decision by decision.

    python scripts/myopic_regret.py RUN_DIR --method ddrl_amsa --mode sample [--view clean_rich] [--decisions 3000]

Restores the final agents of a finished scheduling run (`scheduling.restore_trained`) and runs
each seed's agents on one fresh episode (key 7) for `--decisions` decisions in `--mode`, along
their own trajectory. At every decision it also tries every non-empty set of ESs on the true
state, as `optimal_myopic` does in the subset space (`MEC.evaluate_mask`), whatever space the
learner chooses in (single ES, pair, top-k, subset), and prints one JSON line:

- `agreement`: share of decisions where the learner's set is as fast for the task as the best set;
- `regret_ms`: mean extra delay of the learner's choice over that optimum for this task
  (milliseconds; 0 where it agreed), and `regret_over_1ms`: share of decisions where it exceeds 1 ms;
- `rank`: mean rank of the learner's set among all sets by this task's delay (1 = best);
- `margin_ms`: mean gap between the best and the second-best set — how close the choice is;
- `uniform_regret_ms`: the regret of a uniformly random set on the same states.

`--mode critic` (the diffusion learners, d2sac) follows the actor's greedy policy and scores,
on the same states, the set the deciding BS's own critic would pick (argmax of min(Q1, Q2)):
whether the critic ranks the sets as the true state does, apart from how the actor follows it.

This measures each choice against the best choice *for that task*; a set that costs this task a
little and leaves more room for the next ones is counted as regret here, so the figures say how
myopic a policy is, not how good it is (that is the run's make-span).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from ddrl.envs.actions import ActionSpace
from ddrl.experiments import scheduling


def main() -> None:
    parser = scheduling.restore_arguments(__doc__.splitlines()[0], view="clean")
    parser.add_argument("--mode", choices=("greedy", "sample", "critic"), default="greedy")
    parser.add_argument("--decisions", type=int, default=3000)
    args = parser.parse_args()

    restored = scheduling.restore_or_exit(args)
    env, params = restored.setup.env, restored.setup.params
    if env.num_servers > 16:
        raise SystemExit(f"{env.num_servers} ESs: too many sets to try every one")
    every_set = ActionSpace("subset", env.num_servers).all_masks(0)  # every non-empty set, in subset order

    critic = args.mode == "critic"
    if critic and restored.setup.method.name != "d2sac":
        raise SystemExit(f"--mode critic reads d2sac's twin critic; {args.method} is {restored.setup.method.name}")

    def critic_choice(agent, obs, state):
        """The argmax of the deciding BS's own min(Q1, Q2) (a shared agent: its only one)."""
        return jnp.argmax(scheduling.deciding_critic(agent, obs, env.deciding_bs(state))).astype(jnp.int32)

    def record(agent, obs, state, action):
        scored = critic_choice(agent, obs, state) if critic else action
        delays = jax.vmap(lambda mask: env.evaluate_mask(state, mask, params))(every_set).raw_delay
        chosen = env.evaluate_mask(state, env.actions.to_mask(scored, env.deciding_bs(state)), params).raw_delay
        ordered = jnp.sort(delays)
        return (chosen - ordered[0], jnp.sum(delays < chosen) + 1, ordered[1] - ordered[0],
                jnp.mean(delays) - ordered[0], state.slot < params.num_slots)  # fmt: skip

    acting = "greedy" if critic else args.mode  # the critic is scored on the states the actor visits
    regret, rank, margin, uniform, real = scheduling.play_restored(restored, acting, args.decisions, record)
    num_seeds = regret.shape[0]
    regret, rank, margin, uniform = regret[real], rank[real], margin[real], uniform[real]
    print(json.dumps({"view": args.view, "method": args.method, "mode": args.mode, "seeds": int(num_seeds),
                      "decisions": int(real.sum()), "agreement": round(float(np.mean(regret <= 0.0)), 3),
                      "regret_ms": round(1e3 * float(regret.mean()), 3),
                      "regret_over_1ms": round(float(np.mean(regret > 1e-3)), 3),
                      "rank": round(float(rank.mean()), 2), "margin_ms": round(1e3 * float(margin.mean()), 3),
                      "uniform_regret_ms": round(1e3 * float(uniform.mean()), 3),
                      "sets": int(every_set.shape[0])}))  # fmt: skip


if __name__ == "__main__":
    main()
