"""Schedulers that need no learning (MEC_MODEL.md §9).

A scheduler is `act(key, obs, state, params) -> action` for a `MEC` environment: it may read
the true environment state (the myopic optimum does), and it is evaluated by the same
`ddrl.evaluate` code as learned agents.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ddrl.envs.mec import MEC, Quirks

Policy = Callable[..., jax.Array]

SCHEDULERS = ("random", "randcoedge", "local", "optimal_myopic", "optimal_myopic_cwa")


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
    if name == "optimal_myopic_cwa":
        return make_optimal_myopic_cwa(env)
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


def make_optimal_myopic_cwa(env: MEC) -> Policy:
    """optimal_myopic's choice without enumeration, for exact cwa and no quirks (clean preset).

    Under exact cwa the best make-span over a set S is the water-filling optimum over S,
    which cannot grow when S grows (an added ES may get x = 0, and with no quirk an unused
    ES adds nothing). So all ESs reach the smallest make-span of every set, and the ESs they
    actually use (x > 0: a prefix of the ESs sorted by waiting time) reach it alone: that
    set is the myopic optimum. O(B²) per task instead of 2^B - 1 trials, so it serves any B
    (subset or mask space). Checked against the enumeration in tests/test_sweep_scenarios.py.
    """
    if env.allocation != "cwa" or env.quirks != Quirks():
        raise ValueError("optimal_myopic_cwa is exact only with the exact cwa and no quirks (the clean "
                         f"preset); got allocation {env.allocation} and {env.quirks}")
    if env.actions.kind not in ("subset", "mask"):
        raise ValueError(f"optimal_myopic_cwa chooses any set of ESs: it needs the subset or mask "
                         f"action space, not {env.actions.kind}")

    def act(key, obs, state, params):
        everything = jnp.ones(env.num_servers, bool)
        used = env.evaluate_mask(state, everything, params).fractions > 0
        return env.actions.from_mask(used, env.deciding_bs(state))

    return act
