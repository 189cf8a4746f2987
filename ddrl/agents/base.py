"""The agent protocols the training loops and the evaluation speak to.

An agent is a small frozen object (its hyper-parameters plus what the environment told it
at construction) with pure methods over an explicit state pytree. The loops never probe an
agent with `getattr`: every ability is a method of the protocol, with a default in
`OffPolicyBase` / `OnPolicyBase`.

  init(key, spec, hparams)            -> state      (hparams: traced numeric overrides)
  observe(state, obs, ctx)            -> what the agent stores and learns from
  act(state, obs, ctx, keys, explore) -> (action, aux)   (a batch of envs, one key each)
  act_observed(state, observed, ...)  -> the same from what `observe` returned (`act` is it on `observe`)
  record(state, ctx, aux)             -> state      (what acting changes: LAD-TS's latents)
  update(state, batch, key)           -> (state, metrics)
  random_action(key, shape)           -> uniform actions (off-policy warm-up)
  env_action(action)                  -> what the environment's `step` takes
  trains_sampled_policy               -> True for soft actor-critics and PPO (evaluated by
                                         sampling π); False for the DQN family (argmax Q)

`explore=True` draws from the policy (ε-greedy for the DQN family); `explore=False` is the
deterministic action (a diffusion actor: the argmax of π averaged over `greedy_chains`
runs of its chain, or of its noise-free chain).

Off-policy agents also own their replay layout (`init_buffer`, `store`, `learn`), so that a
wrapper such as `PerGroup` (one agent per base station) can keep one buffer per group
without a branch in the loop. The context `ActContext` is what an agent may read of the
environment besides the observation: the deciding base station and the task's cell
(LAD-TS keeps a latent action per cell in its own state).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import flax.struct
import jax
import jax.numpy as jnp

from ddrl.agents import common


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """What an agent is built for: observation shape, head size, and the env's cells."""

    obs_shape: tuple[int, ...]
    num_actions: int  # outputs of the agent's head (discrete actions, or per-server scores)
    num_groups: int = 1  # base stations whose tasks the agent may decide (cells are per group)
    cells_per_group: int = 0  # task cells (slot, task index) of one group; 0: the env has none


@flax.struct.dataclass
class ActContext:
    """What an agent may read besides the observation, one entry per environment."""

    env_steps: jax.Array  # () environment steps taken so far in training (ε schedules)
    group: jax.Array  # (batch,) int32 deciding base station (0 for environments without)
    cell: jax.Array  # (batch,) int32 task cell within its group (0 for environments without)
    active: jax.Array  # (batch,) bool: decisions that count (a wrapper may mask the others)

    @classmethod
    def empty(cls, batch: int, env_steps: jax.Array | int = 0) -> "ActContext":
        """A context for environments without base stations or cells."""
        zeros = jnp.zeros((batch,), jnp.int32)
        return cls(jnp.asarray(env_steps, jnp.int32), zeros, zeros, jnp.ones((batch,), bool))


@runtime_checkable
class Agent(Protocol):
    """Methods every agent provides (see the module docstring)."""

    kind: str  # "off_policy" | "on_policy"
    trains_sampled_policy: bool  # the policy it optimises is π sampled (evaluated so), not argmax

    def init(self, key: jax.Array, spec: AgentSpec, hparams: dict | None = None) -> Any: ...

    def observe(self, state: Any, obs: jax.Array, ctx: ActContext) -> jax.Array: ...

    def act(self, state: Any, obs: jax.Array, ctx: ActContext, keys: jax.Array,
            explore: bool | jax.Array) -> tuple[jax.Array, Any]: ...

    def act_observed(self, state: Any, observed: jax.Array, ctx: ActContext, keys: jax.Array,
                     explore: bool | jax.Array) -> tuple[jax.Array, Any]: ...

    def record(self, state: Any, ctx: ActContext, aux: Any) -> Any: ...

    def update(self, state: Any, batch: Any, key: jax.Array) -> tuple[Any, dict]: ...

    def env_action(self, action: jax.Array) -> jax.Array: ...


class AgentDefaults:
    """Defaults every agent shares: it stores what it observes, acting changes nothing but
    its step count, and the environment takes its actions as they are."""

    def observe(self, state: Any, obs: jax.Array, ctx: ActContext) -> jax.Array:
        """What is stored in replay: the observation itself."""
        del state, ctx
        return obs

    def act(self, state: Any, obs: jax.Array, ctx: ActContext, keys: jax.Array,
            explore: bool | jax.Array) -> tuple[jax.Array, Any]:
        """The actions (and what `record` takes) for the environments' observations: the
        agent's `act_observed` on what `observe` makes of them. Agents implement
        `act_observed`, so a wrapper that has already observed (`PerGroup`) acts without
        reading the state `observe` reads (LAD-TS's latent table) again."""
        return self.act_observed(state, self.observe(state, obs, ctx), ctx, keys, explore)

    acts_grouped = False  # whether `act_grouped` is implemented

    def act_grouped(self, stacked: Any, observed: jax.Array, ctx: ActContext, keys: jax.Array,
                    explore: bool | jax.Array) -> tuple[jax.Array, Any]:
        """`act_observed` for a stack of this agent's states (leading axis: group, as
        `PerGroup` keeps them), row i decided by agent `ctx.group[i]`: the same actions, the
        networks run on each row's own weights. Only agents with `acts_grouped`."""
        raise NotImplementedError(f"{type(self).__name__} does not act for a stack of agents")

    def record(self, state: Any, ctx: ActContext, aux: Any) -> Any:
        """The state after the batch of decisions `aux` (the training step count)."""
        del aux
        return state.replace(env_steps=ctx.env_steps)

    def env_action(self, action: jax.Array) -> jax.Array:
        """The action as the environment takes it (the same by default)."""
        return action


class OffPolicyBase(AgentDefaults):
    """Defaults of an off-policy agent: one replay buffer, uniform warm-up over
    `num_actions` discrete actions."""

    kind = "off_policy"
    batch_size: int
    n_step: int
    num_actions: int

    def random_action(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Uniform discrete actions."""
        return jax.random.randint(key, shape, 0, self.num_actions)

    def init_buffer(self, example: common.Transition, capacity: int, num_envs: int) -> common.ReplayBuffer:
        """An empty replay buffer of about `capacity` transitions."""
        return common.buffer_init(example, capacity, num_envs)

    def store(self, buffer: common.ReplayBuffer, transition: common.Transition,
              ctx: ActContext) -> common.ReplayBuffer:
        """Append one transition per environment (those with `ctx.active`)."""
        return common.buffer_add(buffer, transition, ctx.active)

    def learn(self, state: Any, buffer: common.ReplayBuffer, key: jax.Array) -> tuple[Any, dict]:
        """One gradient step on a minibatch sampled from `buffer`."""
        key_sample, key_update = jax.random.split(key)
        batch = common.buffer_sample(buffer, key_sample, self.batch_size, self.n_step)
        return self.update(state, batch, key_update)


class OnPolicyBase(AgentDefaults):
    """Defaults of an on-policy agent."""

    kind = "on_policy"


@dataclasses.dataclass(frozen=True)
class ModuleBacked:
    """An agent over a module of pure functions and its `Config` (what both kinds share)."""

    name: str
    module: Any  # the agent's module (ddrl.agents.dqn, ...)
    config: Any  # its Config pytree (numbers in the traced fields, the run's static settings)
    num_actions: int

    @property
    def trains_sampled_policy(self) -> bool:
        """Whether the policy it optimises is stochastic (soft actor-critic, PPO), so that
        it is evaluated by sampling it; the DQN family trains the greedy one."""
        return bool(self.module.SAMPLED_POLICY)

    @property
    def vmappable(self) -> tuple[str, ...]:
        """Hyper-parameters that `init` accepts as traced arrays (learning rates, α, γ, ...):
        the traced fields of the module's `Config`."""
        return common.traced_fields(self.module.Config)

    def check_hparams(self, hparams: dict | None) -> None:
        """A clear ValueError unless `hparams` can be traced into this agent (before compiling)."""
        common.check_hparams(self.name, self.module.Config, hparams)

    def init(self, key: jax.Array, spec: AgentSpec, hparams: dict | None = None) -> Any:
        self.check_hparams(hparams)
        config = self.config.replace(**(hparams or {}))
        return self.module.init(key, spec.obs_shape, spec.num_actions, config)

    def act_observed(self, state: Any, observed: jax.Array, ctx: ActContext, keys: jax.Array,
                     explore: bool | jax.Array) -> tuple[jax.Array, Any]:
        """The module's `act` on each environment's observation with its own key (vmapped over
        the batch with the weights shared, so the networks still run as matrix products)."""
        state = state.replace(env_steps=ctx.env_steps)
        return jax.vmap(lambda o, k: self.module.act(state, o[None], k, explore)[0])(observed, keys), None

    @classmethod
    def can_act_grouped(cls, module: Any) -> bool:
        """Whether this class over `module` acts for a stack of agents: the module has
        `act_grouped(state, obs, key, explore, group)` and the class acts through the module's
        own `act` (a class with acting of its own, LAD-TS's, would bypass it)."""
        return hasattr(module, "act_grouped") and cls.act_observed is ModuleBacked.act_observed

    @property
    def acts_grouped(self) -> bool:
        return self.can_act_grouped(self.module)

    def act_grouped(self, stacked: Any, observed: jax.Array, ctx: ActContext, keys: jax.Array,
                    explore: bool | jax.Array) -> tuple[jax.Array, Any]:
        """The module's `act_grouped` on each environment's observation with its own key and group."""
        if not self.acts_grouped:
            return super().act_grouped(stacked, observed, ctx, keys, explore)
        # As in `act_observed`: the module contract lets `act` read the step count (d2sac's does not).
        stacked = stacked.replace(env_steps=jnp.broadcast_to(ctx.env_steps, stacked.env_steps.shape))

        def one(o, k, g):
            return self.module.act_grouped(stacked, o[None], k, explore, g[None])[0]

        return jax.vmap(one)(observed, keys, ctx.group), None


@dataclasses.dataclass(frozen=True)
class ModuleAgent(ModuleBacked, OffPolicyBase):
    """An off-policy agent over a module with `init`, `act`, `update` and its `Config`."""

    @property
    def batch_size(self) -> int:
        return int(self.config.batch_size)

    @property
    def n_step(self) -> int:
        return int(self.config.n_step)

    def update(self, state: Any, batch: common.Batch, key: jax.Array) -> tuple[Any, dict]:
        return self.module.update(state, batch, key)


@dataclasses.dataclass(frozen=True)
class OnPolicyModuleAgent(ModuleBacked, OnPolicyBase):
    """An on-policy agent over a module with `init`, `act_and_value`, `value`, `update`."""

    def act_and_value(self, state: Any, obs: jax.Array, key: jax.Array):
        """Sampled action, its log-probability and V(s) for a rollout step."""
        return self.module.act_and_value(state, obs, key)

    def value(self, state: Any, obs: jax.Array) -> jax.Array:
        return self.module.value(state, obs)

    def rollout_step(self, **fields: jax.Array) -> Any:
        """One time step of the module's rollout record."""
        return self.module.Rollout(**fields)

    def update(self, state: Any, rollout: Any, key: jax.Array) -> tuple[Any, dict]:
        return self.module.update(state, rollout, key)
