"""Diffusion SAC with a set-structured actor and critic: DDRL-AMSA whose weights do not depend on B.

`d2sac_factored` still reads the observation as one flat vector and has 2B outputs, so its
first and last layers grow with the number of edge servers B and a policy trained at one B
cannot run at another. Here the observation is read as B server *tokens* and every network
is a function of one token at a time plus permutation-invariant pools over the tokens, so
the same parameters serve any B and permuting the servers permutes the decision.

Tokens (`TokenLayout`, from the MEC observation of `ddrl.envs.mec.MEC.get_obs`): token i is
[per-server features of ES i, the task's global features], the global part broadcast to
every token:
  authors obs [D, Q_1..Q_B]          token_i = [Q_i, D]
  authors obs [D, W, Q_1..Q_B]       token_i = [Q_i, D, W]       (non-density workloads)
  rich obs [D, W, Q, L, TX_b, e_b, t/T, u]
                                     token_i = [Q_i, L_i, u_i, 1{i = b}, D, W, TX_b, t/T]
  servers obs [rich, f / mean f, r / mean r]
                                     token_i = [Q_i, L_i, u_i, 1{i = b}, f_i, r_i, D, W, TX_b, t/T]
(Q queue, L slot load, u capacity factor, e_b one-hot of the deciding BS b, TX_b its
transmitter backlog, t/T slot progress). The layout is told apart by the observation's size
(1 + B, 2 + B, 4B + 4, 6B + 4 are distinct for B >= 1), or named in `Config.observation_layout`.

Encoder (actor and critic, each its own weights): h_i = φ(token_i), a shared MLP, then one
permutation-equivariant mixing layer e_i = ψ([h_i, mean_j h_j, max_j h_j]) and the set
context c = [mean_j e_j, max_j e_j]. Mean and max pooling rather than self-attention: it
costs O(B) per layer instead of O(B²) (the scaling benchmark goes to B = 200, over K chains
of T denoising steps and 75 tasks a slot), and mean (the average load) and max (the least
or most loaded server) are the summaries a make-span depends on.

Actor: a DDPM reverse chain (`ddrl.nets.diffusion.sample`, T steps) over the B per-server
scores x ∈ R^B; the noise predictor is per token,
  ε_i = g([e_i, c] , [x_i, mean_j x_j, max_j x_j], emb(t)),
with e_i and c computed once per chain. The scores x_0 are Bernoulli logits, bounded at every
step by the soft clip clip_x0·tanh(x̂_0/clip_x0) (`soft_clip`; a hard clip has zero gradient
beyond the bound, and a trained agent's logits sat there: its entropy froze and α kept
growing).

Set distribution: independent Bernoulli, p_i = sigmoid(x_0,i), sampled as
1{x_0,i + L_i > 0} with logistic noise L_i. The empty set is replaced (no resampling) by
{i*}, i* = argmax_i p_i, so that
  π(S) = Π_i p_i^{s_i} (1 − p_i)^{1 − s_i}                 for S ≠ ∅, {i*}
  π({i*}) = Bern({i*}) + P0,   P0 = Π_i (1 − p_i),          π(∅) = 0,
  H(π) = H_Bern(p) + P0 log P0 + P1 log P1 − (P0 + P1) log(P0 + P1),  P1 = Bern({i*}) = P0·e^{x_0,i*},
all O(B) (`set_log_prob`, `set_entropy`). Chosen over top-k with a learned count because the
log-probability and entropy are exact and cheap, every set is reachable, and a
straight-through relaxation exists; the price is that servers are chosen independently given
the scores (the chain and the pooled context are where they interact).

Actor objective: minimise E_s[ −E_{S∼π}[min Q(s, S)] − α·H(π(·|s)) ], H exact, the inner
expectation by one straight-through Gumbel-sigmoid sample: the forward value is Q at the
hard sampled set (the same set `act` would draw with that key), the backward pass the
gradient of Q at the relaxed set sigmoid((x_0 + L)/τ) (`relaxed_set`), averaged over
`value_samples` such sets per state. Lower variance than the score function, and the set
critic takes fractional memberships. With `normalize_q` the sampled Q is divided by how much
Q varies over uniformly drawn sets of one state, averaged over the batch (`set_spread`), the set
analogue of d2sac standardising Q over all its actions.

Critic: twin Q(s, S) = ρ([Σ_i s_i z_i / |S|, max_i z_i, c, |S|/B]) with z_i = χ([e_i, s_i]),
s_i ∈ {0, 1} the membership of server i (fractional in the actor's relaxation). Soft target
V(s') = mean over `value_samples` sets S' ∼ π_target(·|s') of min Q_target(s', S') + α·H(π_target).

Greedy action: S = {i : p̄_i > 0.5} (never empty: {argmax p̄} if none), p̄ the mean of p over
`greedy_chains` chain runs (0: the noise-free chain), as `d2sac.greedy_probs`. The target
entropy ratio applies to the largest entropy B·log 2. The split of the task over the set is
the environment's `cwa` (MEC `mask` action space). Limitation: the authors' observation
carries no server capacity or rate, so to these networks the servers differ only by their
queues (a flat MLP tells them apart by position); the rich observation adds the deciding-BS
flag and the capacity factors, and the `servers` observation (env.observation=servers) each
ES's capacity and rate, which is what one shared agent serving every BS at any B needs
(`+experiment=scale`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from ddrl.agents import common, d2sac, d2sac_factored
from ddrl.agents.common import static
from ddrl.agents.d2sac import AgentState
from ddrl.nets import MLP, SMALL_FAN_IN, PartedDense, activation_fn, sample, sinusoidal_embedding

KIND = "off_policy"
SAMPLED_POLICY = True
LAYOUTS = ("auto", "authors", "authors_workload", "rich", "servers")


@flax.struct.dataclass
class Config(d2sac.Config):
    """d2sac's settings (denoiser_hidden: the per-token noise predictor's widths;
    critic_hidden: the critic's χ and ρ widths) and the set actor's own, traced or static
    as in d2sac's."""

    clip_x0: float | None = static(5.0)  # scores are Bernoulli logits: ±5 lets p reach 0.007 / 0.993
    soft_clip: bool = static(True)  # clip x̂_0 by clip_x0·tanh(x̂_0/clip_x0): a hard clip's zero gradient froze saturated p
    token_hidden: tuple[int, ...] = static((64,))  # widths of the per-token encoder φ and mixing ψ
    embed_dim: int = static(32)  # width of a token embedding e_i
    relax_temperature: float = 1.0  # τ of the straight-through Gumbel-sigmoid (actor gradient)
    value_samples: int = static(4)  # sets S ∼ π per state: in the soft critic target and the actor's loss (≥ 2 with normalize_q)
    observation_layout: str = static("auto")  # auto | authors | authors_workload | rich (see TokenLayout)


# ----------------------------------------------------------------------------- tokens


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Where the per-server and the task's global features sit in the MEC observation."""

    kind: str  # authors | authors_workload | rich
    num_servers: int

    @staticmethod
    def obs_sizes(num_servers: int) -> dict[str, int]:
        """Observation size of each layout (`MEC.obs_size`)."""
        return {"authors": 1 + num_servers, "authors_workload": 2 + num_servers, "rich": 4 * num_servers + 4,
                "servers": 6 * num_servers + 4}

    @classmethod
    def of(cls, obs_size: int, num_servers: int, kind: str = "auto") -> "TokenLayout":
        """The layout of an observation of `obs_size` over `num_servers` ESs (`kind` "auto":
        the one whose size matches)."""
        sizes = cls.obs_sizes(num_servers)
        if kind not in LAYOUTS:
            raise ValueError(f"observation_layout: unknown {kind!r}; expected one of {LAYOUTS}")
        if kind == "auto":
            matches = [name for name, size in sizes.items() if size == obs_size]
            if not matches:
                raise ValueError(f"d2sac_set: an observation of {obs_size} values is no MEC observation over "
                                 f"{num_servers} servers (sizes {sizes})")  # fmt: skip
            kind = matches[0]
        elif sizes[kind] != obs_size:
            raise ValueError(f"observation_layout {kind!r} over {num_servers} servers has {sizes[kind]} values, "
                             f"the observation {obs_size}")  # fmt: skip
        return cls(kind, int(num_servers))

    @property
    def token_size(self) -> int:
        """Features per token (per-server + global)."""
        return {"authors": 2, "authors_workload": 3, "rich": 8, "servers": 10}[self.kind]

    def tokens(self, obs: jax.Array) -> jax.Array:
        """(..., obs_size) -> (..., B, token_size): [per-server features, global features]."""
        B = self.num_servers
        if self.kind in ("rich", "servers"):
            block = lambda start: obs[..., start : start + B]  # noqa: E731
            per_server = [block(2), block(2 + B), block(4 + 3 * B), block(3 + 2 * B)]  # Q, L, u, 1{i = b}
            if self.kind == "servers":
                per_server += [block(4 + 4 * B), block(4 + 5 * B)]  # f_i / mean f, r_i / mean r
            task = jnp.concatenate([obs[..., :2], obs[..., 2 + 2 * B : 3 + 2 * B], obs[..., 3 + 3 * B : 4 + 3 * B]],
                                   axis=-1)  # D, W, TX_b, t/T  # fmt: skip
        else:
            width = 1 if self.kind == "authors" else 2
            per_server, task = [obs[..., width : width + B]], obs[..., :width]
        per_server = jnp.stack(per_server, axis=-1)
        task = jnp.broadcast_to(task[..., None, :], per_server.shape[:-1] + task.shape[-1:])
        return jnp.concatenate([per_server, task], axis=-1)


# ----------------------------------------------------------------------------- networks


def pool(h: jax.Array) -> jax.Array:
    """[mean_i h_i, max_i h_i] over the server axis (−2)."""
    return jnp.concatenate([jnp.mean(h, axis=-2), jnp.max(h, axis=-2)], axis=-1)


class SetEncoder(nn.Module):
    """e_i = ψ([φ(token_i), pool_j φ(token_j)]) and the context c = pool_j e_j."""

    hidden: Sequence[int]
    embed_dim: int
    activation: str = "mish"

    @nn.compact
    def __call__(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden, self.embed_dim, self.activation, small_fan_in=SMALL_FAN_IN, name="token")(tokens)
        e = MLP(self.hidden, self.embed_dim, self.activation, name="mix")(h, pool(h)[..., None, :])  # [h_i, pool h]
        return e, pool(e)


class SetDenoiser(nn.Module):
    """Per-token noise predictor ε_i = g([e_i, c], [x_i, mean x, max x], emb(t)) over B scores.

    `condition(tokens)` is what does not depend on x_t (the encoder and the first layer's
    condition term: once per chain); `eps(condition, x_t, t)` one denoising call."""

    token_hidden: Sequence[int]
    embed_dim: int
    hidden: Sequence[int]
    activation: str = "mish"
    out_activation: str | None = "tanh"
    time_dim: int = 16

    def setup(self):
        self.encoder = SetEncoder(self.token_hidden, self.embed_dim, self.activation)
        self.condition_in = PartedDense(self.hidden[0])
        self.score_in = nn.Dense(self.hidden[0], use_bias=False)
        self.time_mlp = MLP((2 * self.time_dim,), self.time_dim, activation="mish")
        self.time_in = nn.Dense(self.hidden[0], use_bias=False)
        self.body = MLP(tuple(self.hidden[1:]), 1, self.activation, self.out_activation)

    def condition(self, tokens: jax.Array) -> jax.Array:
        """(..., B, F) -> (..., B, hidden[0]): the first layer's term of [e_i, c]."""
        e, context = self.encoder(tokens)
        return self.condition_in(e, context[..., None, :])  # [e_i, c]

    def eps(self, condition: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
        """ε(x_t, t) of shape (..., B); `t` a step index (scalar, or one per leading row)."""
        scores = jnp.stack([x_t, *(jnp.broadcast_to(f(x_t, axis=-1, keepdims=True), x_t.shape)
                                   for f in (jnp.mean, jnp.max))], axis=-1)  # fmt: skip
        time = self.time_in(self.time_mlp(sinusoidal_embedding(t, self.time_dim)))
        h = activation_fn(self.activation)(condition + self.score_in(scores) + jnp.expand_dims(time, -2))
        return self.body(h)[..., 0]

    def __call__(self, x_t: jax.Array, t: jax.Array, tokens: jax.Array) -> jax.Array:
        return self.eps(self.condition(tokens), x_t, t)


class SetQ(nn.Module):
    """Q(s, S) = ρ([Σ_i s_i z_i / |S|, max_i z_i, c, |S|/B]), z_i = χ([e_i, s_i])."""

    token_hidden: Sequence[int]
    embed_dim: int
    hidden: Sequence[int]
    activation: str = "mish"

    @nn.compact
    def __call__(self, tokens: jax.Array, chosen: jax.Array) -> jax.Array:
        """`tokens` (..., B, F), `chosen` (..., B) memberships in [0, 1] (leading axes broadcast)."""
        e, context = SetEncoder(self.token_hidden, self.embed_dim, self.activation)(tokens)
        context = jnp.broadcast_to(context, chosen.shape[:-1] + context.shape[-1:])
        member = chosen[..., None]
        z = MLP(self.hidden, self.embed_dim, self.activation, name="member")(e, member)  # [e_i, s_i], e_i once per state
        count = jnp.sum(chosen, axis=-1, keepdims=True)
        chosen_mean = jnp.sum(member * z, axis=-2) / jnp.maximum(count, 1.0)
        features = jnp.concatenate([chosen_mean, jnp.max(z, axis=-2), context, count / chosen.shape[-1]], axis=-1)
        return MLP(self.hidden, 1, self.activation, name="rho")(features)[..., 0]


class TwinSetQ(nn.Module):
    """Two independent set critics (clipped double Q)."""

    token_hidden: Sequence[int]
    embed_dim: int
    hidden: Sequence[int]
    activation: str = "mish"

    @nn.compact
    def __call__(self, tokens: jax.Array, chosen: jax.Array) -> tuple[jax.Array, jax.Array]:
        make = lambda name: SetQ(self.token_hidden, self.embed_dim, self.hidden, self.activation, name=name)  # noqa: E731
        return make("q1")(tokens, chosen), make("q2")(tokens, chosen)


# ----------------------------------------------------------------------------- the set distribution


def with_fallback(chosen: jax.Array, logits: jax.Array) -> jax.Array:
    """`chosen`, or {argmax_i logits_i} where it is empty."""
    single = jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=bool)
    return jnp.where(jnp.any(chosen, axis=-1, keepdims=True), chosen, single)


def logistic_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """L = log u − log(1 − u): x + L > 0 with probability sigmoid(x)."""
    return jax.random.logistic(key, shape)


def sample_set(logits: jax.Array, key: jax.Array) -> jax.Array:
    """S ∼ π: each server with p_i = sigmoid(logits_i), the empty set replaced by {i*}."""
    return with_fallback(logits + logistic_noise(key, logits.shape) > 0, logits)


def relaxed_set(logits: jax.Array, key: jax.Array, temperature: jax.Array) -> jax.Array:
    """Straight-through Gumbel-sigmoid: the value of `sample_set(logits, key)` (as floats),
    the gradient of sigmoid((logits + L)/τ)."""
    noisy = logits + logistic_noise(key, logits.shape)
    soft = jax.nn.sigmoid(noisy / temperature)
    hard = with_fallback(noisy > 0, logits).astype(soft.dtype)
    return hard + (soft - jax.lax.stop_gradient(soft))  # exactly `hard` forward


def _empty_and_fallback_log_mass(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """log P0 = Σ_i log(1 − p_i) and log P1 = log Bern({i*}) = log P0 + logits_{i*}."""
    log_empty = jnp.sum(jax.nn.log_sigmoid(-logits), axis=-1)
    return log_empty, log_empty + jnp.max(logits, axis=-1)


def set_log_prob(logits: jax.Array, chosen: jax.Array) -> jax.Array:
    """log π(S) of boolean sets `chosen` (the empty set's mass moved to {i*}; log π(∅) = −inf)."""
    logits = jnp.broadcast_to(logits, jnp.broadcast_shapes(logits.shape, chosen.shape))
    bernoulli = jnp.sum(jnp.where(chosen, jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)), axis=-1)
    log_empty, log_single = _empty_and_fallback_log_mass(logits)
    count = jnp.sum(chosen, axis=-1)
    is_fallback = (count == 1) & jnp.take_along_axis(chosen, jnp.argmax(logits, axis=-1)[..., None], axis=-1)[..., 0]
    merged = jnp.logaddexp(bernoulli, log_empty)
    return jnp.where(is_fallback, merged, jnp.where(count == 0, -jnp.inf, bernoulli))


def set_entropy(logits: jax.Array) -> jax.Array:
    """H(π) = H_Bern + P0 log P0 + P1 log P1 − (P0 + P1) log(P0 + P1) (differentiable)."""
    p = jax.nn.sigmoid(logits)
    bernoulli = -jnp.sum(p * jax.nn.log_sigmoid(logits) + (1.0 - p) * jax.nn.log_sigmoid(-logits), axis=-1)
    log_empty, log_single = _empty_and_fallback_log_mass(logits)
    log_merged = jnp.logaddexp(log_empty, log_single)
    p_empty, p_single = jnp.exp(log_empty), jnp.exp(log_single)
    return bernoulli + p_empty * log_empty + p_single * log_single - (p_empty + p_single) * log_merged


def greedy_set(probs: jax.Array) -> jax.Array:
    """{i : p_i > 1/2}, or {argmax p} if that is empty."""
    return with_fallback(probs > 0.5, probs)


# ----------------------------------------------------------------------------- agent state


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Fresh set actor and critics for MEC observations of `obs_shape` over `n_actions` ESs.
    The weights' shapes depend on the observation's layout, never on B. d2sac's state holds
    them, with `n_actions` = B and the layout's kind resolved into `cfg.observation_layout`
    (`token_layout`)."""
    cfg = common.config_from(Config, cfg)
    if cfg.value_samples < 1 or (cfg.normalize_q and cfg.value_samples < 2):
        raise ValueError(f"d2sac_set: value_samples must be at least {2 if cfg.normalize_q else 1} "
                         f"(normalize_q={cfg.normalize_q} measures Q's spread over the sets of a state), "
                         f"got {cfg.value_samples}")  # fmt: skip
    layout = TokenLayout.of(int(obs_shape[-1]), int(n_actions), cfg.observation_layout)
    key_actor, key_critic = jax.random.split(key)
    tokens = jnp.zeros((1, layout.num_servers, layout.token_size))
    denoiser = SetDenoiser(cfg.token_hidden, cfg.embed_dim, cfg.denoiser_hidden, cfg.activation,
                           d2sac.denoiser_output(cfg))  # fmt: skip
    actor_params = denoiser.init(key_actor, jnp.zeros((1, layout.num_servers)), jnp.zeros((), jnp.int32), tokens)
    critic_net = TwinSetQ(cfg.token_hidden, cfg.embed_dim, cfg.critic_hidden, cfg.activation)
    critic_params = critic_net.init(key_critic, tokens, jnp.zeros((1, layout.num_servers)))
    largest_entropy = layout.num_servers * jnp.log(2.0)
    return d2sac.new_state(cfg.replace(observation_layout=layout.kind), denoiser, actor_params, critic_net.apply,
                           critic_params, layout.num_servers, largest_entropy)  # fmt: skip


def token_layout(state: AgentState) -> TokenLayout:
    """How `state`'s networks read an observation as server tokens."""
    return TokenLayout(state.cfg.observation_layout, state.n_actions)


# ----------------------------------------------------------------------------- acting


def scores(state: AgentState, actor_params: dict, obs: jax.Array, key: jax.Array,
           noise_free: bool = False) -> jax.Array:
    """x_0 ∈ R^B (Bernoulli logits) of one run of the reverse chain on `obs` (..., obs_size)."""
    tokens = token_layout(state).tokens(obs)
    condition = state.denoiser.apply(actor_params, tokens, method=SetDenoiser.condition)

    def eps_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
        return state.denoiser.apply(actor_params, condition, x_t, t, method=SetDenoiser.eps)

    return sample(eps_fn, state.schedule, tokens.shape[:-1], key, clip_x0=state.cfg.clip_x0,
                  noise_free=noise_free, soft_clip=state.cfg.soft_clip, noise_scale=state.cfg.chain_noise_scale)


def policy(state: AgentState, actor_params: dict, obs: jax.Array, key: jax.Array,
           noise_free: bool = False) -> jax.Array:
    """Per-server probabilities p = sigmoid(x_0) of one chain run (d2sac's `policy_fn`)."""
    return jax.nn.sigmoid(scores(state, actor_params, obs, key, noise_free))


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """A set of servers (bool mask (..., B)): S ∼ π of one chain run when exploring, else the
    greedy set of the chain-averaged p. A Python bool `explore` builds only its branch."""
    key_chain, key_set = jax.random.split(key)
    if explore is True:
        return sample_set(scores(state, state.actor.params, obs, key_chain), key_set)
    greedy = greedy_set(d2sac.greedy_probs(policy, state, obs, key_chain))
    if explore is False:
        return greedy
    sampled = sample_set(scores(state, state.actor.params, obs, key_chain), key_set)
    return jnp.where(explore, sampled, greedy)


@dataclasses.dataclass(frozen=True)
class SetAgent(d2sac_factored.FactoredAgent):
    """Actions are boolean masks over the servers; warm-up draws a uniform count, then that
    many servers uniformly (as the factored agent)."""


# ----------------------------------------------------------------------------- learning


def critic_loss(critic_params: dict, critic: TrainState, tokens: jax.Array, chosen: jax.Array,
                target: jax.Array) -> tuple[jax.Array, dict]:
    """Mean squared TD error of both set critics at the stored sets."""
    q1, q2 = critic.apply_fn(critic_params, tokens, chosen.astype(jnp.float32))
    loss = jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)
    return loss, {"critic_loss": loss, "q_mean": jnp.mean(q1)}


def actor_loss(actor_params: dict, state: AgentState, critic_params: dict, obs: jax.Array, key: jax.Array,
               alpha: jax.Array) -> tuple[jax.Array, jax.Array]:
    """E_s[−mean_m min Q(s, S̃_m) − α·H(π(·|s))], S̃_1..S̃_M (M = `value_samples`)
    straight-through relaxed samples; returns (loss, H per state)."""
    key_chain, key_set, key_scale = jax.random.split(key, 3)
    logits = scores(state, actor_params, obs, key_chain)
    set_keys = jax.random.split(key_set, state.cfg.value_samples)
    chosen = jax.vmap(lambda k: relaxed_set(logits, k, state.cfg.relax_temperature))(set_keys)  # (M, N, B)
    tokens = token_layout(state).tokens(obs)
    q = jnp.minimum(*state.critic.apply_fn(critic_params, tokens, chosen))  # (M, N)
    if state.cfg.normalize_q:  # the uniform sets in a call of their own: nothing in it depends on the actor, so
        # no backward pass runs through it (in one call with `chosen`, it ran on zero cotangents)
        uniform = uniform_sets(key_scale, chosen.shape).astype(chosen.dtype)
        q_uniform = jnp.minimum(*state.critic.apply_fn(critic_params, tokens, uniform))
        q = q / (jax.lax.stop_gradient(set_spread(q_uniform)) + 1e-6)
    entropy = set_entropy(logits)
    return jnp.mean(-jnp.mean(q, axis=0) - alpha * entropy), entropy


def uniform_sets(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sets drawn uniformly (each server with probability 1/2, the empty set replaced by one
    random server): the policy-free reference distribution of `set_spread`."""
    key_member, key_single = jax.random.split(key)
    return with_fallback(jax.random.bernoulli(key_member, 0.5, shape), jax.random.uniform(key_single, shape))


def set_spread(q: jax.Array) -> jax.Array:
    """How much Q varies over sets of one state (standard deviation over the sets, axis 0),
    averaged over the states: the scale `normalize_q` divides the actor's Q by, the set analogue
    of d2sac standardising Q(s, ·) over all its actions. The sets are drawn uniformly, not from
    π, so that the scale does not shrink as π sharpens (with π's own sets, B = 20, 30 episodes,
    the policy entropy stayed at 3.8 nats below its 4.2 target while α grew 6x; with uniform sets
    it reached the target in the last chunks, at the same make-span). Not the spread of Q across
    states: that is mostly how good the state is, about 600 times the spread over sets on a
    trained B = 20 agent (0.85–0.98 against 0.0009–0.0015), which left the actor almost no
    signal."""
    return jnp.mean(jnp.std(q, axis=0))


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """Critic step towards the soft target, actor step through the chain, α step, Polyak."""
    cfg, layout = state.cfg, token_layout(state)
    key_next, key_sets, key_actor = jax.random.split(key, 3)
    alpha = common.current_alpha(state.log_alpha)
    reward, bootstrap = common.nstep_target(batch, cfg.gamma)
    next_logits = scores(state, state.actor_target, batch.next_obs, key_next)
    next_sets = jax.vmap(lambda k: sample_set(next_logits, k))(jax.random.split(key_sets, cfg.value_samples))
    next_tokens = layout.tokens(batch.next_obs)
    next_q = jnp.minimum(*state.critic.apply_fn(state.critic_target, next_tokens, next_sets.astype(jnp.float32)))
    next_value = jnp.mean(next_q, axis=0)
    if cfg.soft_target:
        next_value = next_value + alpha * set_entropy(next_logits)
    target = jax.lax.stop_gradient(reward + bootstrap * next_value)

    tokens = layout.tokens(batch.obs)
    grads, metrics = jax.grad(critic_loss, has_aux=True)(state.critic.params, state.critic, tokens, batch.action,
                                                         target)  # fmt: skip
    critic = state.critic.apply_gradients(grads=grads)

    read_critic = state.critic_target if cfg.actor_reads_target_critic else critic.params
    (loss, entropy), grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor.params, state, jax.lax.stop_gradient(read_critic), batch.obs, key_actor, alpha)
    actor = state.actor.apply_gradients(grads=grads)
    metrics.update({"actor_loss": loss, "entropy": jnp.mean(entropy), "alpha": alpha})
    log_alpha = state.log_alpha
    if cfg.learn_alpha:
        log_alpha, alpha_metrics = common.alpha_step(log_alpha, entropy, cfg.target_entropy)
        metrics.update(alpha_metrics)
    return d2sac.after_update(state, actor, critic, log_alpha), metrics
