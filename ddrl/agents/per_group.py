"""PerGroup: N stacked agents, one per base station, that look like one agent to the loop.

The authors run an independent agent per BS (own networks, optimisers and replay). Here the
N agents' states are stacked on a leading axis and every method of the protocol maps onto
them without a Python loop:

* acting: each environment's task is decided by its deciding BS's agent (`ctx.group`).
  `acting="dense"` runs every group's agent on the whole batch (the weights of one group
  shared by all environments, so each layer is a matrix product) and selects; `"grouped"`
  (agents with `acts_grouped`: the diffusion actor) multiplies each layer's input by every
  group's weights in one product and keeps each environment's own row, so the rest (biases,
  activations, the reverse chain's arithmetic, which dense acting ran N times) runs once per
  environment; `"gather"` gathers each environment's own agent state and runs it on that
  environment alone (matrix-vector products, but 1/N of the work). All give the same actions
  for the same keys; which is fastest depends on N, the network and the batch (`python -m
  ddrl.bench amsa` measures it). `"auto"` (the default) gathers where the batch holds fewer
  environments than there are groups (one evaluation episode at a time, or B = 20 BSs over
  16 environments on ladts, where the other modes would do N times the products), else acts
  grouped where the agent can and densely otherwise (the DQNs' 20-wide networks: grouped
  measured slower there). What acting changes in a state (`record`) is written densely with
  the other groups' decisions masked out, whichever way the actions were computed;
* replay: one buffer per group; a transition goes only to the deciding BS's buffer;
* learning: every group makes one update on a batch from its own buffer (vmapped).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ddrl.agents import common
from ddrl.agents.base import ActContext, AgentSpec, OffPolicyBase

ACTING = ("auto", "grouped", "dense", "gather")


@dataclasses.dataclass(frozen=True)
class PerGroup(OffPolicyBase):
    """`num_groups` copies of the off-policy agent `inner`, indexed by `ctx.group`."""

    inner: Any
    num_groups: int
    acting: str = "auto"

    def __post_init__(self):
        if self.acting not in ACTING:
            raise ValueError(f"acting: {self.acting!r} is not one of {ACTING}")
        if self.inner.kind != "off_policy":
            raise ValueError(f"per-BS agents must be off-policy, not {self.inner.kind}")
        if self.acting == "grouped" and not self.inner.acts_grouped:
            raise ValueError(f"group_acting: {self.inner.name} cannot act grouped (only the diffusion actor "
                             "d2sac can); use auto, dense or gather")

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def config(self) -> Any:
        return self.inner.config

    @property
    def num_actions(self) -> int:
        return self.inner.num_actions

    @property
    def trains_sampled_policy(self) -> bool:
        return self.inner.trains_sampled_policy

    def check_hparams(self, hparams: dict | None) -> None:
        self.inner.check_hparams(hparams)

    def init(self, key: jax.Array, spec: AgentSpec, hparams: dict | None = None) -> Any:
        """One inner state per group, stacked; the same hyper-parameters for all."""
        if spec.num_groups != self.num_groups:
            raise ValueError(f"per-BS: the environment has {spec.num_groups} base stations, "
                             f"the agent {self.num_groups}")
        own = dataclasses.replace(spec, num_groups=1)
        keys = jax.random.split(key, self.num_groups)
        return jax.vmap(lambda k: self.inner.init(k, own, hparams))(keys)

    def acting_for(self, batch: int) -> str:
        """How a batch of `batch` environments is acted for: `acting`, or for "auto" gather
        where the batch holds fewer environments than there are groups, else grouped where the
        inner agent can, else dense."""
        if self.acting != "auto":
            return self.acting
        if batch < self.num_groups:
            return "gather"
        return "grouped" if self.inner.acts_grouped else "dense"

    def _group_contexts(self, ctx: ActContext) -> ActContext:
        """Per group (leading axis): the context its agent sees (its own decisions active)."""
        groups = jnp.arange(self.num_groups)[:, None]
        return ActContext(
            env_steps=jnp.broadcast_to(ctx.env_steps, (self.num_groups,)),
            group=jnp.zeros((self.num_groups,) + ctx.group.shape, jnp.int32),
            cell=jnp.broadcast_to(ctx.cell, (self.num_groups,) + ctx.cell.shape),
            active=ctx.active[None] & (ctx.group[None] == groups),
        )

    def _select(self, per_group: Any, group: jax.Array) -> Any:
        """From leaves with axes (groups, batch, ...), each environment's own group's entry."""
        batch = jnp.arange(group.shape[0])
        return jax.tree.map(lambda leaf: leaf[group, batch], per_group)

    def observe(self, state: Any, obs: jax.Array, ctx: ActContext) -> jax.Array:
        """Each environment's observation as its own group's agent stores it."""
        views = jax.vmap(lambda own, c: self.inner.observe(own, obs, c))(state, self._group_contexts(ctx))
        return self._select(views, ctx.group)

    def act_observed(self, state: Any, observed: jax.Array, ctx: ActContext, keys: jax.Array,
                     explore: bool | jax.Array) -> tuple[jax.Array, Any]:
        """Act from each environment's observation as its own group observes it. Gathering
        acts through the inner agent's `act_observed`, so only the state acting reads is
        gathered per environment (LAD-TS's latent table, read by `observe`, is not: gathering
        it made LAD-TS's collection on ladts about 6x slower). Densely, a group's actions for the other
        groups' environments are computed from those groups' views and then dropped."""
        acting = self.acting_for(observed.shape[0])
        if acting == "grouped":
            return self.inner.act_grouped(state, observed, ctx, keys, explore)
        if acting == "gather":
            def one(group, single_obs, key, cell, active):
                own = jax.tree.map(lambda leaf: leaf[group], state)
                single_ctx = ActContext(ctx.env_steps, jnp.zeros((1,), jnp.int32), cell[None], active[None])
                action, aux = self.inner.act_observed(own, single_obs[None], single_ctx, key[None], explore)
                return jax.tree.map(lambda x: x[0], (action, aux))

            return jax.vmap(one)(ctx.group, observed, keys, ctx.cell, ctx.active)
        per_group = jax.vmap(lambda own, c: self.inner.act_observed(own, observed, c, keys, explore))(
            state, self._group_contexts(ctx)
        )
        return self._select(per_group, ctx.group)

    def record(self, state: Any, ctx: ActContext, aux: Any) -> Any:
        return jax.vmap(lambda own, c: self.inner.record(own, c, aux))(state, self._group_contexts(ctx))

    def random_action(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return self.inner.random_action(key, shape)

    def env_action(self, action: jax.Array) -> jax.Array:
        return self.inner.env_action(action)

    def init_buffer(self, example: common.Transition, capacity: int, num_envs: int) -> common.ReplayBuffer:
        """One buffer per group, each of `capacity` transitions (the authors' per-BS replay)."""
        buffer = self.inner.init_buffer(example, capacity, num_envs)
        return jax.tree.map(lambda x: jnp.stack([x] * self.num_groups), buffer)

    def store(self, buffer: common.ReplayBuffer, transition: common.Transition,
              ctx: ActContext) -> common.ReplayBuffer:
        """Each transition into its deciding BS's buffer only."""
        contexts = self._group_contexts(ctx)
        return jax.vmap(lambda b, c: self.inner.store(b, transition, c))(buffer, contexts)

    def learn(self, state: Any, buffer: common.ReplayBuffer, key: jax.Array) -> tuple[Any, dict]:
        """One update of every group's agent on a batch from its own buffer."""
        keys = jax.random.split(key, self.num_groups)
        return jax.vmap(self.inner.learn)(state, buffer, keys)

    def update(self, state: Any, batch: Any, key: jax.Array) -> tuple[Any, dict]:
        keys = jax.random.split(key, self.num_groups)
        return jax.vmap(self.inner.update)(state, batch, keys)
