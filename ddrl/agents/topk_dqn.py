"""Top-k DQN (SMCoEdge's DRL-SMO): one Q-value per edge server, the k best are chosen.

The Q-network scores each of the `n_actions` servers; the action is the k servers with the
highest Q, in rank order (ε-greedy: k distinct servers at random). The TD target of the
j-th chosen server is `r + γ·(j-th largest Q_target(s', ·))`, so each rank learns the value
of the server it would pick next. Exploration, target copies and optimiser are DQN's
(`ddrl.agents.dqn`). The environment receives a score vector whose top k are the chosen
servers (the MEC `topk` action space).

Note: the SMCoEdge script in ChangfuXu/AMCoEdge (Baselines/SMCoEdge/TopkDQN.py) instead
runs a plain DQN over the C(B, k) subsets of size k; this module is the top-k method as
the SMCoEdge paper describes it (ALGORITHMS.md).
"""
import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from ddrl.agents import common, dqn
from ddrl.agents.base import ModuleAgent
from ddrl.agents.common import static
from ddrl.agents.dqn import AgentState, epsilon

KIND = "off_policy"
SAMPLED_POLICY = False  # ε-greedy on Q: the greedy policy is the one trained


@flax.struct.dataclass
class Config(dqn.Config):
    """DQN hyper-parameters plus the number of chosen servers."""

    k: int = static(3)  # servers chosen per task


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Q-network with one output per server (`n_actions` servers)."""
    cfg = common.config_from(Config, cfg)
    if not 1 <= cfg.k <= n_actions:
        raise ValueError(f"topk_dqn: k = {cfg.k} must be in [1, {n_actions}]")
    return dqn.init(key, obs_shape, n_actions, cfg)


@dataclasses.dataclass(frozen=True)
class TopKAgent(ModuleAgent):
    """Top-k DQN: actions are k server indices; the environment takes a score vector."""

    def random_action(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """k distinct servers drawn uniformly, shape `shape + (k,)`."""
        scores = jax.random.uniform(key, tuple(shape) + (self.num_actions,))
        return jnp.argsort(scores, axis=-1)[..., : self.config.k]

    def env_action(self, action: jax.Array) -> jax.Array:
        """Scores whose top k are the chosen servers (rank j gets k − j, the rest −1)."""
        k = action.shape[-1]
        weights = (k - jnp.arange(k) + 1).astype(jnp.float32)
        return jnp.sum(jax.nn.one_hot(action, self.num_actions) * weights[:, None], axis=-2) - 1.0


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """The k servers of highest Q in rank order; k random ones with probability ε."""
    q = state.q.apply_fn(state.q.params, obs)
    _, greedy = jax.lax.top_k(q, state.cfg.k)
    key_coin, key_action = jax.random.split(key)
    shuffled = jnp.argsort(jax.random.uniform(key_action, q.shape), axis=-1)[..., : state.cfg.k]
    use_random = explore & (jax.random.uniform(key_coin, q.shape[:-1]) < epsilon(state))
    return jnp.where(use_random[..., None], shuffled, greedy).astype(jnp.int32)


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """TD step: the j-th chosen server towards r + γ·(j-th largest target Q at s')."""
    del key
    reward, bootstrap = common.nstep_target(batch, state.cfg.gamma)
    next_q = state.q.apply_fn(state.target_params, batch.next_obs)
    ranked_next, _ = jax.lax.top_k(next_q, state.cfg.k)  # (batch, k), descending
    target = jax.lax.stop_gradient(reward[:, None] + bootstrap[:, None] * ranked_next)

    def loss_fn(params):
        q = state.q.apply_fn(params, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action.astype(jnp.int32), axis=-1)  # (batch, k)
        loss = jnp.mean((q_taken - target) ** 2)
        return loss, {"td_loss": loss, "q_mean": jnp.mean(q_taken)}

    return dqn.apply_td_step(state, loss_fn)
