"""LAD-TS: latent action diffusion SAC (the authors' successor of DDRL-ATS, ChangfuXu/DEdgeAI).

The diffusion actor is `d2sac`'s, but its reverse chain starts from a *latent action*: the
probability vector last produced for the same (slot, BS, task index) cell, kept in a table
that persists across episodes (initialised N(0, 1)). The table is part of this agent's
state (`LatentState`); the environment only says which cell a task is in (`ActContext`).
Every decision writes its π(·|s) into the table (`record`), and what the agent stores and
learns from is `[s, latent]` (`observe`): the actor reads both (chain conditioned on s,
started from latent), the twin critic reads s only. Replayed transitions carry the latent
they were decided from and the next cell's latent, as the published code stores them.

Published settings (`Config()` defaults; ALGORITHMS.md): denoiser 20-20 ReLU with a softmax
output used as ε̂, T = 5, twin Q 20-20, soft target with entropy, learned α (init 0.05,
lr 3e-4, target entropy −1), actor lr 1e-4, critic lr 1e-3, γ 0.95, τ 0.005, replay 1000
per BS, start after 300 samples, batch 64, no x̂_0 clipping, no weight decay.
"""
import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from ddrl.agents import common, d2sac
from ddrl.agents.base import ActContext, AgentSpec, ModuleAgent
from ddrl.agents.common import static
from ddrl.agents.d2sac import AgentState

KIND = "off_policy"
SAMPLED_POLICY = True


@flax.struct.dataclass
class Config(d2sac.Config):
    """LAD-TS hyper-parameters (the published ones); traced and static as in d2sac's."""

    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    alpha_lr: float = 3e-4
    weight_decay: float = 0.0
    gamma: float = 0.95
    tau: float = 0.005
    alpha: float = 0.05
    learn_alpha: bool = static(True)
    target_entropy: float | None = -1.0
    soft_target: bool = static(True)
    clip_x0: float | None = static(None)
    diffusion_steps: int = static(5)
    denoiser_hidden: tuple[int, ...] = static((20, 20))
    denoiser_output: str = static("softmax")
    critic_hidden: tuple[int, ...] = static((20, 20))
    activation: str = static("relu")
    buffer_size: int = static(1000)
    batch_size: int = static(64)
    n_step: int = static(1)
    learning_starts: int = static(300)
    train_every: int = static(1)
    updates_per_train: int = static(1)
    greedy_chains: int = static(8)


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Actor and critics for observations `[s, latent]` of shape `obs_shape`."""
    cfg = common.config_from(Config, cfg)
    state_shape = (obs_shape[-1] - n_actions,)
    return d2sac.init(key, state_shape, n_actions, cfg)


def split(state: AgentState, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(s, latent) from an observation `[s, latent]`."""
    return obs[..., : -state.n_actions], obs[..., -state.n_actions :]


def policy(state: AgentState, actor_params: dict, obs: jax.Array, key: jax.Array,
           noise_free: bool = False) -> jax.Array:
    """π(·|s) = softmax(x_0), the reverse chain started from the cell's latent action."""
    env_obs, latent = split(state, obs)

    x_0 = d2sac.reverse_chain(state, actor_params, env_obs, key, x_start=latent, noise_free=noise_free)
    return jax.nn.softmax(x_0, axis=-1)


def act_latent(state: AgentState, obs: jax.Array, key: jax.Array, explore) -> tuple[jax.Array, jax.Array]:
    """The action and π(·|s), which becomes the cell's next latent action (greedy: the
    chain-averaged π, as `d2sac.greedy_probs`)."""
    return d2sac.act_probs(policy, state, obs, key, explore)


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore) -> jax.Array:
    """Sample from π when exploring, argmax of π otherwise."""
    return act_latent(state, obs, key, explore)[0]


@flax.struct.dataclass
class LatentState:
    """The diffusion actor-critic and its latent action table, one row per task cell."""

    agent: AgentState
    latent: jax.Array  # (groups × cells per group, actions)

    @property
    def env_steps(self) -> jax.Array:
        return self.agent.env_steps


@dataclasses.dataclass(frozen=True)
class LatentAgent(ModuleAgent):
    """LAD-TS: the table of latent actions lives in the agent's state."""

    cells_per_group: int = 0  # rows of one group's part of the table (the env's task cells)

    def init(self, key: jax.Array, spec: AgentSpec, hparams: dict | None = None) -> LatentState:
        if spec.cells_per_group != self.cells_per_group or spec.cells_per_group < 1:
            raise ValueError(f"{self.name}: latent actions need an environment with task cells (MEC)")
        key_agent, key_latent = jax.random.split(key)
        obs_shape = (spec.obs_shape[-1] + spec.num_actions,)
        agent = super().init(key_agent, dataclasses.replace(spec, obs_shape=obs_shape), hparams)
        rows = spec.num_groups * spec.cells_per_group
        return LatentState(agent, jax.random.normal(key_latent, (rows, spec.num_actions)))

    def _rows(self, ctx: ActContext) -> jax.Array:
        return ctx.group * self.cells_per_group + ctx.cell

    def observe(self, state: LatentState, obs: jax.Array, ctx: ActContext) -> jax.Array:
        """`[s, latent]`: the observation and its cell's latent action."""
        return jnp.concatenate([obs, state.latent[self._rows(ctx)]], axis=-1)

    def act_observed(self, state: LatentState, agent_obs: jax.Array, ctx: ActContext, keys: jax.Array,
                     explore: bool | jax.Array) -> tuple[jax.Array, jax.Array]:
        """The action and π(·|s) from `[s, latent]`; reads the networks, not the table."""
        inner = state.agent.replace(env_steps=ctx.env_steps)
        action, probs = jax.vmap(lambda o, k: act_latent(inner, o[None], k, explore))(agent_obs, keys)
        return action[:, 0], probs[:, 0]

    def record(self, state: LatentState, ctx: ActContext, aux: jax.Array) -> LatentState:
        """Each active decision's π(·|s) becomes its cell's latent action."""
        rows = jnp.where(ctx.active, self._rows(ctx), state.latent.shape[0])  # others dropped
        return LatentState(state.agent.replace(env_steps=ctx.env_steps),
                           state.latent.at[rows].set(aux, mode="drop"))

    def update(self, state: LatentState, batch: common.Batch, key: jax.Array) -> tuple[LatentState, dict]:
        agent, metrics = update(state.agent, batch, key)
        return state.replace(agent=agent), metrics


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """d2sac's soft actor-critic step; the critic sees s, the actor [s, latent]."""
    return d2sac.soft_update(state, batch, key, policy, lambda obs: split(state, obs)[0])
