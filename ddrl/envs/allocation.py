"""Workload split of one task over a chosen set of edge servers (MEC_MODEL.md §4).

Every rule takes, per edge server i (arrays of shape (B,)):
  wait[i]     time before part i can start (transmitter busy + processing queue),
  cost[i]     time to send and process the *whole* task on i,
  selected[i] whether i is in the chosen set S,
and returns fractions x (shape (B,)), x >= 0, sum over S = 1, zero outside S.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

ALLOCATIONS = ("cwa", "cwa_published", "hecwa")
# Up to this many servers, reductions over servers are unrolled into elementwise ops: under
# vmap on CPU, XLA runs a size-5 minor-axis reduction several times slower than 5 adds.
UNROLL_LIMIT = 16


def _unrolled(op, x: jax.Array, reduce) -> jax.Array:
    if x.shape[-1] > UNROLL_LIMIT:
        return reduce(x, axis=-1)
    return functools.reduce(op, [x[..., i] for i in range(x.shape[-1])])


def server_sum(x: jax.Array) -> jax.Array:
    """Sum over the last (server) axis."""
    return _unrolled(jnp.add, x, jnp.sum)


def server_max(x: jax.Array) -> jax.Array:
    """Max over the last (server) axis."""
    return _unrolled(jnp.maximum, x, jnp.max)


def server_min(x: jax.Array) -> jax.Array:
    """Min over the last (server) axis."""
    return _unrolled(jnp.minimum, x, jnp.min)


def cwa_exact(wait: jax.Array, cost: jax.Array, selected: jax.Array) -> jax.Array:
    """Optimal min-max split over `selected` by water-filling (all used parts end together).

    Along servers sorted by wait, the common finish time of the first k servers
    T_k = (1 + Σ w/c) / Σ 1/c is a weighted mean of T_{k-1} and w_k, so it falls while
    w_k < T_{k-1} and rises afterwards: the optimum is T* = min_k T_k. The prefix that
    ends at server j is {i in S: w_i <= w_j}, so no sort is needed (O(B²), unrolled).
    """
    inv_cost = jnp.where(selected, 1.0 / cost, 0.0)
    wait_over_cost = jnp.where(selected, wait / cost, 0.0)
    in_prefix = selected[None, :] & (wait[None, :] <= wait[:, None])  # [j, i]: i in prefix j
    prefix_finish = (1.0 + server_sum(jnp.where(in_prefix, wait_over_cost, 0.0))) / server_sum(
        jnp.where(in_prefix, inv_cost, 0.0)
    )
    finish_time = server_min(jnp.where(selected, prefix_finish, jnp.inf))
    fractions = jnp.where(selected, jnp.maximum(finish_time - wait, 0.0) / cost, 0.0)
    return fractions / server_sum(fractions)


def cwa_published(wait: jax.Array, cost: jax.Array, selected: jax.Array) -> jax.Array:
    """The authors' CWA: equal finish over *all* of S, negative parts set to 0, renormalised."""
    inv_cost = jnp.where(selected, 1.0 / cost, 0.0)
    finish_time = (1.0 + server_sum(jnp.where(selected, wait / cost, 0.0))) / server_sum(inv_cost)
    fractions = jnp.where(selected, jnp.maximum((finish_time - wait) / cost, 0.0), 0.0)
    return fractions / server_sum(fractions)


def hecwa(wait: jax.Array, cost: jax.Array, selected: jax.Array) -> jax.Array:
    """The authors' HECWA: x_i proportional to 1/c_i, waiting times ignored."""
    del wait
    inv_cost = jnp.where(selected, 1.0 / cost, 0.0)
    return inv_cost / server_sum(inv_cost)


def allocate(rule: str, wait: jax.Array, cost: jax.Array, selected: jax.Array) -> jax.Array:
    """Dispatch on the (static) rule name."""
    if rule == "cwa":
        return cwa_exact(wait, cost, selected)
    if rule == "cwa_published":
        return cwa_published(wait, cost, selected)
    if rule == "hecwa":
        return hecwa(wait, cost, selected)
    raise ValueError(f"unknown allocation {rule!r}; expected one of {ALLOCATIONS}")


def make_span(
    wait: jax.Array,
    cost: jax.Array,
    fractions: jax.Array,
    selected: jax.Array,
    over_all_selected: bool = False,
) -> jax.Array:
    """Finish time of the last part: max over used servers of wait + x·cost.

    `over_all_selected` is the authors' quirk: a selected server that got x = 0 still
    counts with its waiting time.
    """
    counted = selected if over_all_selected else selected & (fractions > 0)
    return server_max(jnp.where(counted, wait + fractions * cost, -jnp.inf))
