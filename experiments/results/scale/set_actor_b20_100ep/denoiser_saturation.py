"""Where the set actor's 3.81-nat entropy floor comes from: its denoiser's tanh output.

    python experiments/results/scale/set_actor_b20_100ep/denoiser_saturation.py RUN_DIR --method ddrl_amsa_set [--view B20] [--states 512]

An analysis record of this folder's run (not part of the package, not a test). Restores the
final set actor (`ddrl_amsa_set`, one agent for all BSs) of a finished scale run, takes the last
`--states` observations of each seed's replay buffer, runs one reverse chain per observation
step by step (`jax.disable_jit`, so every step's ε can be read) and prints one JSON line per seed:
the set entropy, the logits' quantiles, the mean per-server probability and expected set size,
and per reverse step the share of ε outputs with |ε| > 0.999 (the tanh saturated) and ε's mean.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from ddrl.agents import d2sac_set
from ddrl.experiments import scheduling
from ddrl.nets import diffusion


def main() -> None:
    parser = scheduling.restore_arguments(__doc__.splitlines()[0], view="B20")
    parser.add_argument("--states", type=int, default=512)
    args = parser.parse_args()
    restored = scheduling.restore_or_exit(args)
    agents, buffers = restored.final.agent, restored.final.buffer
    for seed in range(agents.update_count.shape[0]):
        agent = jax.tree.map(lambda leaf: leaf[seed], agents)
        stored = np.asarray(buffers.storage.obs[seed])
        obs = jnp.asarray(stored.reshape(-1, stored.shape[-1])[-args.states:])
        tokens = d2sac_set.token_layout(agent).tokens(obs)
        params = agent.actor.params
        condition = agent.denoiser.apply(params, tokens, method=d2sac_set.SetDenoiser.condition)
        eps_per_step = []

        def eps_fn(x_t, t):
            eps = agent.denoiser.apply(params, condition, x_t, t, method=d2sac_set.SetDenoiser.eps)
            eps_per_step.append(np.asarray(eps))
            return eps

        with jax.disable_jit():  # the chain's scan runs step by step on concrete arrays
            logits = np.asarray(diffusion.sample(eps_fn, agent.schedule, tokens.shape[:-1], jax.random.PRNGKey(seed),
                                                 clip_x0=agent.cfg.clip_x0, soft_clip=agent.cfg.soft_clip))  # fmt: skip
        probs = 1.0 / (1.0 + np.exp(-logits))
        print(json.dumps({
            "seed": seed, "states": int(obs.shape[0]),
            "entropy": round(float(np.mean(np.asarray(d2sac_set.set_entropy(jnp.asarray(logits))))), 3),
            "logit_quantiles_1_10_50_90_99": np.percentile(logits, [1, 10, 50, 90, 99]).round(3).tolist(),
            "mean_p": round(float(probs.mean()), 4), "expected_set_size": round(float(probs.sum(-1).mean()), 2),
            "share_eps_saturated_per_step": [round(float(np.mean(np.abs(e) > 0.999)), 4) for e in eps_per_step],
            "mean_eps_per_step": [round(float(e.mean()), 4) for e in eps_per_step],
        }))


if __name__ == "__main__":
    main()
