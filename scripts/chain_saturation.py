"""How much of a trained diffusion actor's chain output sits at the x̂_0 clip, per view and method.

    python scripts/chain_saturation.py RUN_DIR --view clean --method ddrl_amsa [--states 512]

Restores the final agents of a finished scheduling run (`scheduling.restore_trained`),
takes up to `--states` observations from each seed's and BS's own replay buffer, runs one
reverse chain per observation with that BS's actor, and prints one JSON line: the share of
logits x_0 within 1e-3 of ±clip_x0, how many actions per state share the top logit (within
1e-3), and π's entropy and largest probability. A hard clip has zero gradient beyond the
bound, so logits parked there cannot be moved apart by the actor's loss.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from ddrl.agents import common, d2sac
from ddrl.experiments import scheduling


def main() -> None:
    parser = scheduling.restore_arguments(__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=512)
    args = parser.parse_args()

    restored = scheduling.restore_or_exit(args)
    if restored.setup.method.name != "d2sac":
        raise SystemExit(f"{args.method} is {restored.setup.method.name}, not d2sac's diffusion actor (DDRL-AMSA, DDRL-ATS)")
    agents, buffers = restored.final.agent, restored.final.buffer
    if agents.update_count.ndim == 1:  # one agent for all BSs: a group axis of 1
        agents, buffers = jax.tree.map(lambda leaf: leaf[:, None], (agents, buffers))
    num_seeds, num_groups = agents.update_count.shape[:2]
    # clip_x0 is traced: one bound per seed and BS agent (all equal within a run); inf: off (a state holds
    # a configured None as inf)
    bounds = np.broadcast_to(np.asarray(agents.cfg.clip_x0, np.float32), (num_seeds, num_groups))
    if not np.isfinite(bounds).all():
        raise SystemExit(f"{args.method}: clip_x0 is off, nothing to saturate")
    key = jax.random.PRNGKey(0)
    at_bound, top_ties, entropy, top_prob = [], [], [], []
    for seed in range(num_seeds):
        for group in range(num_groups):
            agent = jax.tree.map(lambda leaf: leaf[seed, group], agents)
            obs = np.asarray(buffers.storage.obs[seed, group])  # (rows, num_envs, obs_dim)
            written = np.arange(obs.shape[0])[:, None] < np.asarray(buffers.size[seed, group])[None, :]
            obs = obs[written][-args.states:]  # each environment's column holds `size` rows
            if len(obs) == 0:
                continue  # this BS stored nothing yet
            key, chain_key = jax.random.split(key)
            x_0 = np.asarray(d2sac.reverse_chain(agent, agent.actor.params, jnp.asarray(obs), chain_key))
            probs = np.asarray(jax.nn.softmax(x_0, axis=-1))
            at_bound.append(np.mean(np.abs(np.abs(x_0) - float(bounds[seed, group])) < 1e-3))
            top_ties.append(np.mean(np.sum(x_0 >= x_0.max(-1, keepdims=True) - 1e-3, axis=-1)))
            entropy.append(np.mean(np.asarray(common.categorical_entropy(probs))))
            top_prob.append(np.mean(probs.max(-1)))
    print(json.dumps({"view": args.view, "method": args.method, "clip_x0": float(bounds.max()),
                      "soft_clip": bool(agents.cfg.soft_clip), "share_at_bound": round(float(np.mean(at_bound)), 4),
                      "actions_tied_at_top": round(float(np.mean(top_ties)), 2),
                      "entropy": round(float(np.mean(entropy)), 3), "largest_prob": round(float(np.mean(top_prob)), 3),
                      "seeds": int(num_seeds), "groups": int(num_groups)}))  # fmt: skip


if __name__ == "__main__":
    main()
