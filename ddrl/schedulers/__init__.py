"""Schedulers that need no learning (MEC_MODEL.md §9).

A scheduler is `act(key, obs, state, params) -> action` for a `MEC` environment: it may read
the true environment state (the myopic optimum does), and it is evaluated by the same
`ddrl.evaluate` code as learned agents.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ddrl.envs.mec import MEC

Policy = Callable[..., jax.Array]

SCHEDULERS = ("random", "randcoedge", "local", "optimal_myopic")


def make_scheduler(name: str, env: MEC) -> Policy:
    """The scheduler `name` acting in `env`'s action space."""
    if name == "random":
        return lambda key, obs, state, params: env.actions.sample(key)
    if name == "randcoedge":
        if env.actions.kind != "pair":
            raise ValueError("randcoedge chooses a partner ES: it needs the pair action space")
        return lambda key, obs, state, params: env.actions.sample(key)
    if name == "local":
        def local(key, obs, state, params):
            bs = env.deciding_bs(state)
            return env.actions.from_mask(jnp.arange(env.num_servers) == bs, bs)
        return local
    if name == "optimal_myopic":
        return make_optimal_myopic(env)
    raise ValueError(f"unknown scheduler {name!r}; expected one of {SCHEDULERS}")


def make_optimal_myopic(env: MEC) -> Policy:
    """Try every action of a discrete space on the true state; keep the smallest make-span."""
    if not env.actions.is_discrete:
        raise ValueError(f"optimal_myopic enumerates actions: {env.actions.kind} is not discrete")

    def act(key, obs, state, params):
        masks = env.actions.all_masks(env.deciding_bs(state))
        outcomes = jax.vmap(lambda mask: env.evaluate_mask(state, mask, params))(masks)
        return jnp.argmin(outcomes.raw_delay).astype(jnp.int32)

    return act
