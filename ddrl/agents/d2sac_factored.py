"""Diffusion SAC with a factored set action: DDRL-AMSA for many edge servers.

A subset head needs 2^B − 1 outputs, which stops being possible beyond B ≈ 10 (none of the
published codes goes past B = 5). Here the diffusion actor produces 2B logits instead: B
per-server scores and B count logits. The policy is factored into
  π_count(c | s) = softmax(count logits),   c ∈ {1..B}, and
  π_es(· | s)    = softmax(scores), a Plackett-Luce ranking of the servers,
and the action is the set of the c best-ranked servers (exploring: c sampled, the ranking
sampled with Gumbel noise; greedy: the most likely count and the top scores). The split of
the task over the set is still the environment's `cwa` (MEC `mask` action space).

The twin critic has the matching 2B outputs, per-server values q_es and per-count values
q_count, and values a set S of c servers as Q(s, S) = mean_{i∈S} q_es(s, i) + q_count(s, c).
The soft value and the actor objective use the factored expectation
  V(s) = Σ_i π_es(i)·q_es(s, i) + Σ_c π_count(c)·q_count(s, c) (+ α·(H(π_es) + H(π_count))),
so everything is linear in B. The rest (reverse chain, targets, α, optimisers) is `d2sac`'s;
the target entropy ratio applies to the largest factored entropy 2·log B.
"""
import dataclasses

import jax
import jax.numpy as jnp

from ddrl.agents import common, d2sac
from ddrl.agents.base import ModuleAgent
from ddrl.agents.d2sac import AgentState

KIND = "off_policy"
SAMPLED_POLICY = True
Config = d2sac.Config  # the agent's settings are d2sac's


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Actor and critics with 2·`n_actions` outputs for `n_actions` servers (the largest
    factored entropy 2·log B)."""
    return d2sac.init(key, obs_shape, 2 * n_actions, cfg, largest_entropy=2.0 * jnp.log(float(n_actions)))


def num_servers(state: AgentState) -> int:
    return state.n_actions // 2


def policy(state: AgentState, actor_params: dict, obs: jax.Array, key: jax.Array,
           noise_free: bool = False) -> jax.Array:
    """[π_es, π_count] (each a distribution over B), from one run of the reverse chain."""

    x_0 = d2sac.reverse_chain(state, actor_params, obs, key, noise_free=noise_free)
    servers = num_servers(state)
    return jnp.concatenate(
        [jax.nn.softmax(x_0[..., :servers], axis=-1), jax.nn.softmax(x_0[..., servers:], axis=-1)],
        axis=-1,
    )


def set_of(scores: jax.Array, count: jax.Array) -> jax.Array:
    """The `count` servers with the highest scores, as a boolean mask."""
    rank = jnp.argsort(jnp.argsort(-scores, axis=-1), axis=-1)
    return rank < count[..., None]


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """A set of servers (bool mask): sampled count and ranking, or the most likely ones
    (greedy: of the chain-averaged π, as `d2sac.greedy_probs`)."""
    key_chain, key_count, key_rank = jax.random.split(key, 3)
    probs = d2sac.acting_probs(policy, state, obs, key_chain, explore)
    servers = num_servers(state)
    log_es = jnp.log(jnp.clip(probs[..., :servers], 1e-8, 1.0))
    log_count = jnp.log(jnp.clip(probs[..., servers:], 1e-8, 1.0))
    count = jnp.where(explore, jax.random.categorical(key_count, log_count),
                      jnp.argmax(log_count, axis=-1)) + 1  # fmt: skip
    gumbel = jax.random.gumbel(key_rank, log_es.shape)
    return set_of(jnp.where(explore, log_es + gumbel, log_es), count)


@dataclasses.dataclass(frozen=True)
class FactoredAgent(ModuleAgent):
    """Actions are boolean masks over the `num_actions` servers."""

    def random_action(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """A uniformly drawn count, then that many servers uniformly (warm-up)."""
        key_count, key_rank = jax.random.split(key)
        count = jax.random.randint(key_count, tuple(shape), 1, self.num_actions + 1)
        return set_of(jax.random.uniform(key_rank, tuple(shape) + (self.num_actions,)), count)


def set_value(q: jax.Array, mask: jax.Array) -> jax.Array:
    """Q(s, S) = mean of the chosen servers' values + the value of their count."""
    servers = mask.shape[-1]
    count = jnp.sum(mask, axis=-1)
    per_server = jnp.sum(jnp.where(mask, q[..., :servers], 0.0), axis=-1) / jnp.maximum(count, 1)
    per_count = jnp.take_along_axis(q[..., servers:], (count - 1)[..., None], axis=-1)[..., 0]
    return per_server + per_count


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """d2sac's soft actor-critic step with the factored policy and set value."""
    return d2sac.soft_update(state, batch, key, policy, lambda obs: obs, set_value)
