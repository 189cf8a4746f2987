"""Pieces shared by the agents: config pytrees, replay buffer, n-step returns, target updates,
optimiser.

Everything is a pure function over `flax.struct` pytrees, so it jits and vmaps over seeds.
"""
import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState


# ----------------------------------------------------------------------------- config


def static(default: Any = dataclasses.MISSING) -> Any:
    """A `flax.struct.dataclass` field that is static: part of the pytree's structure, not a
    leaf. In an agent's `Config` it marks what sets a shape or Python control flow (widths,
    batch size, diffusion steps T, flags, names): one compiled program per value. The other
    fields of a `Config` are traced: numbers that reach the program only as arrays
    (learning rates, α, γ, ...), which is how hyper-parameters get vmapped."""
    return flax.struct.field(pytree_node=False, default=default)


def traced_fields(config_cls: type) -> tuple[str, ...]:
    """The fields of `config_cls` that may be traced and vmapped (those not marked `static`)."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("pytree_node", True))


def as_arrays(cfg: Any) -> Any:
    """`cfg` with every traced field a float32 array, so that a config built from numbers and
    one with traced overrides have the same pytree structure (what an agent state holds)."""
    return cfg.replace(**{name: as_float(getattr(cfg, name)) for name in traced_fields(type(cfg))})


def config_from(config_cls: type, cfg: Any) -> Any:
    """Build an agent's `Config` pytree from a mapping (dict or OmegaConf node).

    The keys `name` and `kind` (used by Hydra to pick the algorithm) are ignored; any other
    unknown key is an error, so a misspelt hyper-parameter is never silently dropped.
    Traced fields may be JAX arrays, which is how hyper-parameters get vmapped; an array
    in a static field is an error.
    """
    if cfg is None:
        return config_cls()
    if not isinstance(cfg, config_cls):
        if not isinstance(cfg, Mapping):  # OmegaConf DictConfig
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(cfg, resolve=True)
        known = {f.name for f in dataclasses.fields(config_cls)}
        values = {k: v for k, v in cfg.items() if k not in ("name", "kind")}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{config_cls.__module__}: unknown hyper-parameters {unknown}")
        cfg = config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    _check_static_fields(cfg)
    return cfg


def _check_static_fields(config: Any) -> None:
    """A ValueError if a static field of `config` holds an array (a traced value, say)."""
    vmappable = traced_fields(type(config))
    for field in dataclasses.fields(config):
        if field.name not in vmappable and isinstance(getattr(config, field.name), (jax.Array, np.ndarray)):
            raise _not_vmappable(type(config).__module__, field.name, vmappable)


def _not_vmappable(owner: str, name: str, vmappable: tuple[str, ...]) -> ValueError:
    return ValueError(
        f"{owner}: hyper-parameter {name!r} sets a shape or Python control flow and "
        f"cannot be vmapped; set it in the algo config (one compiled program per value, "
        f"e.g. a Hydra multirun). Vmappable ones: {sorted(vmappable)}"
    )


def check_hparams(agent_name: str, config_cls: type, hparams: Any) -> None:
    """Raise a clear `ValueError` unless `hparams` can be traced into a `config_cls`.

    `hparams` maps hyper-parameter names to numbers or numeric arrays (possibly traced).
    Every name must be one of the config's `traced_fields` (the numeric ones that reach
    the program only as arrays: learning rates, α, γ, ...). Static fields (network widths,
    batch size, diffusion steps T, flags) cannot be traced: they belong in the algo config,
    one compiled program per value. Checks names and dtypes only, so it runs on tracers
    too, before anything is compiled.
    """
    if hparams is None:
        return
    if not isinstance(hparams, Mapping):
        raise ValueError(
            f"{agent_name}: hyper-parameters must be a dict, got {type(hparams).__name__}"
        )
    known = {f.name for f in dataclasses.fields(config_cls)}
    vmappable = traced_fields(config_cls)
    for name, value in hparams.items():
        if name not in known:
            raise ValueError(
                f"{agent_name}: unknown hyper-parameter {name!r}; "
                f"vmappable ones: {sorted(vmappable)}"
            )
        if name not in vmappable:
            raise _not_vmappable(agent_name, name, vmappable)
        if not _is_numeric(value):
            raise ValueError(
                f"{agent_name}: hyper-parameter {name!r} must be a number or a numeric array, "
                f"got {value!r}"
            )


def _is_numeric(value: Any) -> bool:
    """A real number or an array of real numbers (not bool, not a string)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and (
        jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
    )


# ----------------------------------------------------------------------------- replay


@flax.struct.dataclass
class Transition:
    """One environment step as stored in the replay buffer."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array  # the true successor, before any auto-reset
    terminated: jax.Array  # true end of the episode: no bootstrap past it
    truncated: jax.Array  # time limit: the episode stops but the value does not


@flax.struct.dataclass
class Batch:
    """A sampled minibatch of n-step transitions.

    `rewards[:, i]` is the reward i steps after `obs` (zero past the episode's end or past
    the newest stored step); `next_obs` is the observation after the last included step,
    `num_steps` how many steps were included and `terminated` whether that last step ended
    the episode. `nstep_target` turns these into a discounted return and bootstrap weight.
    """

    obs: jax.Array
    action: jax.Array
    rewards: jax.Array
    next_obs: jax.Array
    num_steps: jax.Array
    terminated: jax.Array


@flax.struct.dataclass
class ReplayBuffer:
    """Ring buffer of transitions: arrays of shape (rows, num_envs, ...), one stream per env.

    Each environment's column is its own ring (own write position and size), so a writer
    may skip some environments on a step: per-BS agents store only the decisions of their
    own base station (`buffer_add(..., write=...)`).
    """

    storage: Transition
    position: jax.Array  # (num_envs,) next row to write in each env's column
    size: jax.Array  # (num_envs,) rows written so far in each column, at most `capacity_rows`

    @property
    def capacity_rows(self) -> int:
        """Rows the buffer holds (each row is one step of every environment)."""
        return self.storage.reward.shape[0]

    @property
    def num_envs(self) -> int:
        """Environments writing one transition per row."""
        return self.storage.reward.shape[1]


def buffer_init(example: Transition, capacity: int, num_envs: int) -> ReplayBuffer:
    """An empty buffer holding about `capacity` transitions, shaped like `example` (one env)."""
    rows = max(int(capacity) // int(num_envs), 1)
    storage = jax.tree.map(
        lambda x: jnp.zeros((rows, num_envs) + jnp.shape(x), jnp.asarray(x).dtype), example
    )
    zeros = jnp.zeros((num_envs,), jnp.int32)
    return ReplayBuffer(storage, zeros, zeros)


def buffer_add(
    buffer: ReplayBuffer, transitions: Transition, write: jax.Array | None = None
) -> ReplayBuffer:
    """Append one transition per environment (leading axis `num_envs`) to its column.

    `write` (bool, shape (num_envs,)) limits the append to some environments; the others
    keep their column unchanged.
    """
    envs = jnp.arange(buffer.num_envs)
    if write is None:
        write = jnp.ones((buffer.num_envs,), bool)

    def put(store, x):
        old = store[buffer.position, envs]
        return store.at[buffer.position, envs].set(jnp.where(_expand(write, x), x, old))

    storage = jax.tree.map(put, buffer.storage, transitions)
    step = write.astype(jnp.int32)
    return ReplayBuffer(
        storage,
        (buffer.position + step) % buffer.capacity_rows,
        jnp.minimum(buffer.size + step, buffer.capacity_rows),
    )


def buffer_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int, n_step: int = 1) -> Batch:
    """Sample `batch_size` transitions, each extended to an n-step window.

    An environment column is drawn uniformly, then a stored row of it uniformly (uniform
    over all transitions when the columns are equally full). A window follows the same
    column, stops early at the end of an episode (terminated or truncated) and at the
    newest stored row, so it never reads a step that has not happened yet.
    """
    key_row, key_env = jax.random.split(key)
    envs = jax.random.randint(key_env, (batch_size,), 0, buffer.num_envs)
    rows = jax.random.randint(key_row, (batch_size,), 0, jnp.maximum(buffer.size[envs], 1))
    capacity = buffer.capacity_rows
    rows_ahead = (buffer.position[envs] - 1 - rows) % capacity  # newer rows stored after `rows`
    store = buffer.storage
    first = jax.tree.map(lambda x: x[rows, envs], store)

    rewards = []
    next_obs, terminated = first.next_obs, first.terminated
    num_steps = jnp.zeros((batch_size,), jnp.int32)
    open_window = jnp.ones((batch_size,), bool)
    for k in range(n_step):
        step = jax.tree.map(lambda x: x[(rows + k) % capacity, envs], store)
        use = open_window & (k <= rows_ahead)
        rewards.append(jnp.where(use, step.reward, 0.0))
        next_obs = jnp.where(_expand(use, next_obs), step.next_obs, next_obs)
        terminated = jnp.where(use, step.terminated, terminated)
        num_steps = num_steps + use.astype(jnp.int32)
        open_window = use & ~(step.terminated | step.truncated)
    return Batch(
        obs=first.obs,
        action=first.action,
        rewards=jnp.stack(rewards, axis=1).astype(jnp.float32),
        next_obs=next_obs,
        num_steps=num_steps,
        terminated=terminated,
    )


def _expand(mask: jax.Array, like: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def nstep_target(batch: Batch, gamma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Discounted n-step reward Σ γ^i r_i and bootstrap weight γ^k·(1 − terminated)."""
    powers = gamma ** jnp.arange(batch.rewards.shape[1], dtype=jnp.float32)
    reward = batch.rewards @ powers
    bootstrap = gamma**batch.num_steps * (1.0 - batch.terminated.astype(jnp.float32))
    return reward, bootstrap


# ----------------------------------------------------------------------------- targets


def polyak_update(target: Any, online: Any, tau: jax.Array) -> Any:
    """Soft target update: target ← τ·online + (1 − τ)·target."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


def hard_update(target: Any, online: Any, copy: jax.Array) -> Any:
    """Copy `online` into `target` where `copy` is true (a traced boolean; no branching)."""
    return jax.tree.map(lambda t, o: jnp.where(copy, o, t), target, online)


# ----------------------------------------------------------------------------- optimiser


def _adam_l2(learning_rate: float, weight_decay: float, eps: float) -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate, eps=eps))


def make_optimizer(
    max_grad_norm: float | None = None, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam with L2 weight decay added to the gradient, as torch's `Adam(weight_decay=…)`.

    Learning rate and weight decay live in the optimiser state (`inject_hyperparams`), so
    they are arrays that can be vmapped; set them with `create_train_state`.
    """
    tx = optax.inject_hyperparams(_adam_l2, static_args=("eps",))(
        learning_rate=0.0, weight_decay=0.0, eps=eps
    )
    if max_grad_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    return tx


def create_train_state(
    apply_fn: Any,
    params: Any,
    learning_rate: Any,
    weight_decay: Any = 0.0,
    max_grad_norm: float | None = None,
    eps: float = 1e-8,
) -> TrainState:
    """A flax `TrainState` whose optimiser carries `learning_rate` and `weight_decay` as arrays."""
    state = TrainState.create(apply_fn=apply_fn, params=params, tx=make_optimizer(max_grad_norm, eps))
    return set_hyperparams(state, learning_rate=learning_rate, weight_decay=weight_decay)


def set_hyperparams(state: TrainState, **values: Any) -> TrainState:
    """Replace optimiser hyper-parameters (e.g. an annealed learning rate) in `state`."""
    clipped = isinstance(state.opt_state, tuple) and not hasattr(state.opt_state, "hyperparams")
    inject_state = state.opt_state[-1] if clipped else state.opt_state
    hyperparams = dict(inject_state.hyperparams)
    hyperparams.update({k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
    inject_state = inject_state._replace(hyperparams=hyperparams)
    opt_state = state.opt_state[:-1] + (inject_state,) if clipped else inject_state
    return state.replace(opt_state=opt_state)


def as_float(value: Any) -> jax.Array:
    """A hyper-parameter as a float32 array (keeps traced values traced)."""
    return jnp.asarray(value, jnp.float32)


# ----------------------------------------------------------------------------- policies


def categorical_entropy(probs: jax.Array) -> jax.Array:
    """Entropy of categorical distributions along the last axis."""
    return -jnp.sum(probs * jnp.log(jnp.clip(probs, 1e-8, 1.0)), axis=-1)


# Up to this many entries, `last_axis_argmax` compares them one by one in elementwise code.
UNROLLED_ARGMAX_MAX = 64


def last_axis_argmax(x: jax.Array) -> jax.Array:
    """`jnp.argmax(x, axis=-1)`, the same index for every input (the first maximum; the first
    NaN if there is one), as a chain of elementwise compare-and-selects over a short last axis.
    Subnormals aside: XLA's CPU reduction treats them as zero, the compares do not.

    XLA's CPU backend runs an argmax as a variadic (value, index) reduction along the minor
    axis, which it does not vectorise: on the 10 seeds x 5 BSs x 32 environments x 31 subsets
    of a per-BS DQN's acting it took about 110 µs, the chain about 25 µs. Longer axes keep
    `jnp.argmax`.
    """
    size = x.shape[-1]
    if size > UNROLLED_ARGMAX_MAX or size == 0 or not jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.argmax(x, axis=-1)
    best = x[..., 0]
    index = jnp.zeros(best.shape, jnp.int32)
    for k in range(1, size):
        candidate = x[..., k]
        # As lax.argmax orders floats: NaN above everything, and the first of equals wins.
        better = (candidate > best) | (jnp.isnan(candidate) & ~jnp.isnan(best))
        best = jnp.where(better, candidate, best)
        index = jnp.where(better, k, index)
    return index


def select_action(probs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """Sample from `probs` when exploring (inverse CDF: one uniform per row, not one Gumbel
    per action), else take the argmax."""
    cumulative = jnp.cumsum(probs, axis=-1)
    u = jax.random.uniform(key, probs.shape[:-1] + (1,)) * cumulative[..., -1:]
    sampled = jnp.minimum(jnp.sum(cumulative <= u, axis=-1), probs.shape[-1] - 1)
    return jnp.where(explore, sampled, last_axis_argmax(probs)).astype(jnp.int32)


# ----------------------------------------------------------------------------- soft actor-critic


def with_target_entropy(cfg: Any, largest_entropy: jax.Array) -> Any:
    """`cfg` with `target_entropy` (nats) resolved: as given, else `cfg.target_entropy_ratio`
    times the policy's largest entropy (log|A| for a categorical policy over A)."""
    if cfg.target_entropy is not None:
        return cfg
    return cfg.replace(target_entropy=cfg.target_entropy_ratio * largest_entropy)


def soft_state_value(
    probs: jax.Array, q: jax.Array, alpha: jax.Array, with_entropy: bool
) -> jax.Array:
    """V(s) = Σ_a π(a|s)·Q(s,a), plus α·H(π(·|s)) for the soft (maximum-entropy) target."""
    value = jnp.sum(probs * q, axis=-1)
    if with_entropy:
        value = value + alpha * categorical_entropy(probs)
    return value


def taken_value(q: jax.Array, action: jax.Array) -> jax.Array:
    """Q(s, a) of a discrete action index: the head's entry at `action`."""
    return jnp.take_along_axis(q, action[:, None].astype(jnp.int32), axis=-1)[:, 0]


def twin_q_loss(critic_params: Any, critic: TrainState, batch: Batch, target: jax.Array,
                action_value: Any = taken_value):
    """Mean squared TD error of both Q-networks at the taken actions.

    `action_value(q_head, action)` reads Q(s, a) off a critic head (default: the entry of a
    discrete action; a factored action combines several entries)."""
    q1, q2 = critic.apply_fn(critic_params, batch.obs)
    q1_a, q2_a = action_value(q1, batch.action), action_value(q2, batch.action)
    loss = jnp.mean((q1_a - target) ** 2) + jnp.mean((q2_a - target) ** 2)
    return loss, {"critic_loss": loss, "q_mean": jnp.mean(q1_a)}


def critic_step(critic: TrainState, batch: Batch, target: jax.Array,
                action_value: Any = taken_value) -> tuple[TrainState, dict]:
    """One gradient step of the twin critic towards a fixed `target`."""
    grads, metrics = jax.grad(twin_q_loss, has_aux=True)(
        critic.params, critic, batch, target, action_value
    )
    return critic.apply_gradients(grads=grads), metrics


def soft_actor_objective(probs: jax.Array, q_min: jax.Array, alpha: jax.Array) -> jax.Array:
    """Expected-value actor loss E_s[−α·H(π(·|s)) − Σ_a π(a|s)·min Q(s,a)]."""
    return jnp.mean(-alpha * categorical_entropy(probs) - jnp.sum(probs * q_min, axis=-1))


def create_log_alpha(alpha: Any, learning_rate: Any) -> TrainState:
    """Trainable log α (a dict with one scalar, as flax's TrainState expects a pytree)."""
    return create_train_state(None, {"log_alpha": jnp.log(as_float(alpha))}, learning_rate)


def current_alpha(log_alpha: TrainState) -> jax.Array:
    """α = exp(log α)."""
    return jnp.exp(log_alpha.params["log_alpha"])


def alpha_step(
    log_alpha: TrainState, entropy: jax.Array, target_entropy: jax.Array
) -> tuple[TrainState, dict]:
    """Move log α so that the policy entropy approaches `target_entropy`."""
    gap = jax.lax.stop_gradient(jnp.mean(entropy) - target_entropy)
    grads = jax.grad(lambda p: p["log_alpha"] * gap)(log_alpha.params)
    log_alpha = log_alpha.apply_gradients(grads=grads)
    return log_alpha, {"alpha": current_alpha(log_alpha)}


def actor_and_alpha_step(
    actor: TrainState,
    log_alpha: TrainState,
    critic: TrainState,
    obs: jax.Array,
    probs_fn: Any,
    target_entropy: jax.Array,
    learn_alpha: bool,
    normalize_q: bool = False,
) -> tuple[TrainState, TrainState, dict]:
    """The soft actor step shared by discrete SAC and diffusion SAC, then the α step.

    `probs_fn(actor_params)` gives π(·|obs) (a softmax head or a reverse diffusion chain);
    the actor minimises the expected soft objective against the fixed twin-critic minimum;
    with `learn_alpha`, log α then moves towards `target_entropy`.
    `normalize_q` rescales that minimum per state to zero mean and unit spread over the
    actions, so that α weighs entropy against a scale-free advantage (useful when the
    action values differ by little, as the make-spans of MEC decisions do).
    """
    alpha = current_alpha(log_alpha)
    q_min = jax.lax.stop_gradient(jnp.minimum(*critic.apply_fn(critic.params, obs)))
    if normalize_q:
        centred = q_min - jnp.mean(q_min, axis=-1, keepdims=True)
        q_min = centred / (jnp.std(q_min, axis=-1, keepdims=True) + 1e-6)

    def actor_loss(params):
        probs = probs_fn(params)
        return soft_actor_objective(probs, q_min, alpha), categorical_entropy(probs)

    (loss, entropy), grads = jax.value_and_grad(actor_loss, has_aux=True)(actor.params)
    metrics = {"actor_loss": loss, "entropy": jnp.mean(entropy), "alpha": alpha}
    if learn_alpha:
        log_alpha, alpha_metrics = alpha_step(log_alpha, entropy, target_entropy)
        metrics.update(alpha_metrics)
    return actor.apply_gradients(grads=grads), log_alpha, metrics
