"""Action spaces: how an agent's action becomes the set S of edge servers (MEC_MODEL.md §3).

| name     | action                          | set S                                |
|----------|---------------------------------|--------------------------------------|
| single   | int in [0, B)                   | {a}                                  |
| pair     | int in [0, B)                   | {b, a} (a = b: local only)           |
| topk     | float scores, shape (B,)        | the k servers with the highest score |
| subset   | int in [0, 2^B - 1)             | the bits of a + 1                    |
| mask     | bool, shape (B,)                | the mask itself (empty: local only)  |

Reductions over servers go through `allocation.server_sum` (unrolled; fast under vmap).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from ddrl.envs.allocation import server_sum

ACTION_SPACES = ("single", "pair", "topk", "subset", "mask")
MAX_SUBSET_SERVERS = 16  # 2^16 - 1 outputs; beyond that a subset head is not practical


@dataclass(frozen=True)
class ActionSpace:
    """Static description of an action space over `num_servers` edge servers."""

    kind: str
    num_servers: int
    k: int = 1  # only for topk

    def __post_init__(self):
        if self.kind not in ACTION_SPACES:
            raise ValueError(f"action_space: unknown {self.kind!r}; expected one of {ACTION_SPACES}")
        if self.kind == "subset" and self.num_servers > MAX_SUBSET_SERVERS:
            raise ValueError(
                f"action_space: subset needs 2^B - 1 actions; B = {self.num_servers} > "
                f"{MAX_SUBSET_SERVERS} is not servable (use topk or mask)"
            )
        if self.kind == "topk" and not 1 <= self.k <= self.num_servers:
            raise ValueError(f"action_space.k: topk needs 1 <= k <= B = {self.num_servers}, got {self.k}")

    @property
    def is_discrete(self) -> bool:
        return self.kind in ("single", "pair", "subset")

    @property
    def num_actions(self) -> int:
        """Number of discrete actions (for topk / mask: the number of per-server outputs)."""
        if self.kind == "subset":
            return 2**self.num_servers - 1
        return self.num_servers

    def gymnax_space(self) -> spaces.Space:
        if self.is_discrete:
            return spaces.Discrete(self.num_actions)
        if self.kind == "topk":
            return spaces.Box(-jnp.inf, jnp.inf, (self.num_servers,), jnp.float32)
        return spaces.Box(0, 1, (self.num_servers,), jnp.bool_)

    def to_mask(self, action: jax.Array, bs: jax.Array) -> jax.Array:
        """Set S chosen by `action` for a task arriving at base station `bs`."""
        servers = jnp.arange(self.num_servers)
        if self.kind == "single":
            return servers == action
        if self.kind == "pair":
            return (servers == action) | (servers == bs)
        if self.kind == "subset":
            return ((jnp.asarray(action, jnp.int32) + 1) >> servers) & 1 == 1
        if self.kind == "topk":
            _, chosen = jax.lax.top_k(action, self.k)
            return jnp.zeros(self.num_servers, bool).at[chosen].set(True)
        mask = jnp.asarray(action, bool)
        return jnp.where(jnp.any(mask), mask, servers == bs)

    def from_mask(self, mask: jax.Array, bs: jax.Array) -> jax.Array:
        """An action whose set is `mask` (exact where the space can express it)."""
        servers = jnp.arange(self.num_servers)
        if self.kind == "single":
            return jnp.argmax(mask).astype(jnp.int32)
        if self.kind == "pair":
            remote = mask & (servers != bs)
            return jnp.where(jnp.any(remote), jnp.argmax(remote), bs).astype(jnp.int32)
        if self.kind == "subset":
            return (server_sum(jnp.where(mask, 1 << servers, 0)) - 1).astype(jnp.int32)
        if self.kind == "topk":
            return mask.astype(jnp.float32)
        return mask

    def all_masks(self, bs: jax.Array) -> jax.Array:
        """Every set a discrete space can choose, shape (num_actions, B), in action order."""
        if not self.is_discrete:
            raise ValueError(f"{self.kind} has no finite list of actions")
        return jax.vmap(lambda a: self.to_mask(a, bs))(jnp.arange(self.num_actions))

    def sample(self, key: jax.Array, batch: tuple[int, ...] = ()) -> jax.Array:
        """Uniform random action; with `batch`, that many independent ones from one key."""
        batch = tuple(batch)
        if self.is_discrete:
            return jax.random.randint(key, batch, 0, self.num_actions)
        if self.kind == "topk":
            return jax.random.uniform(key, batch + (self.num_servers,))
        # each server in with probability 1/2 (an empty mask means local only)
        return jax.random.bernoulli(key, 0.5, batch + (self.num_servers,))
