"""DQN with a hard-copied target network and linearly decaying ε-greedy exploration.

Defaults are CleanRL's `dqn.py` / `dqn_jax.py` CartPole settings.
"""
import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from ddrl.agents import common
from ddrl.nets import MLP

KIND = "off_policy"
SAMPLED_POLICY = False  # ε-greedy on Q: the greedy policy is the one trained
# Numeric hyper-parameters that reach the program only as arrays (vmappable in
# `train(key, hparams)`); the other fields set shapes or Python branches.
HPARAMS = (
    "learning_rate", "weight_decay", "gamma", "tau", "eps_start", "eps_end",
    "exploration_fraction", "exploration_steps", "exploration_start",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """DQN hyper-parameters (CleanRL defaults)."""

    learning_rate: float = 2.5e-4  # Adam step size
    weight_decay: float = 0.0  # L2 added to the gradient
    gamma: float = 0.99  # discount
    hidden: tuple[int, ...] = (120, 84)  # Q-network widths
    activation: str = "relu"  # Q-network activation
    buffer_size: int = 10_000  # replay capacity (transitions)
    batch_size: int = 128  # minibatch size
    n_step: int = 1  # steps of the bootstrapped return
    learning_starts: int = 10_000  # env steps before the first update
    train_every: int = 10  # env steps (over all envs) per training round
    updates_per_train: int = 1  # gradient steps per training round
    target_update_every: int = 50  # gradient steps between target copies (500 env steps)
    tau: float = 1.0  # target ← τ·online + (1−τ)·target at each copy
    eps_start: float = 1.0  # initial exploration probability
    eps_end: float = 0.05  # final exploration probability
    exploration_fraction: float = 0.5  # share of the run over which ε decays
    exploration_steps: int = 0  # if > 0: env steps over which ε decays (replaces the fraction)
    exploration_start: int = 0  # env step at which the decay begins (ε = eps_start before)
    total_steps: int = 500_000  # env steps of the run (the training loop sets it)


@flax.struct.dataclass
class Hyper:
    """Numeric hyper-parameters as arrays (vmappable)."""

    gamma: jax.Array
    tau: jax.Array
    eps_start: jax.Array
    eps_end: jax.Array
    eps_decay_steps: jax.Array
    eps_decay_start: jax.Array


@flax.struct.dataclass
class AgentState:
    """Q-network with its optimiser, target parameters and counters."""

    q: TrainState
    target_params: dict
    hyper: Hyper
    env_steps: jax.Array  # set by the training loop; drives the ε schedule
    update_count: jax.Array
    target_update_every: int = flax.struct.field(pytree_node=False, default=50)
    num_chosen: int = flax.struct.field(pytree_node=False, default=1)  # k of top-k DQN


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Fresh Q-network and target for observations of `obs_shape` and `n_actions` actions."""
    cfg = common.config_from(Config, cfg)
    network = MLP(cfg.hidden, n_actions, cfg.activation)
    params = network.init(key, jnp.zeros(obs_shape))
    q = common.create_train_state(network.apply, params, cfg.learning_rate, cfg.weight_decay)
    hyper = Hyper(
        gamma=common.as_float(cfg.gamma),
        tau=common.as_float(cfg.tau),
        eps_start=common.as_float(cfg.eps_start),
        eps_end=common.as_float(cfg.eps_end),
        eps_decay_steps=common.as_float(decay_steps(cfg)),
        eps_decay_start=common.as_float(cfg.exploration_start),
    )
    return AgentState(
        q=q,
        target_params=params,
        hyper=hyper,
        env_steps=jnp.zeros((), jnp.int32),
        update_count=jnp.zeros((), jnp.int32),
        target_update_every=int(cfg.target_update_every),
        num_chosen=int(getattr(cfg, "k", 1)),
    )


def decay_steps(cfg: Config) -> jax.Array:
    """Env steps over which ε decays: `exploration_steps` if > 0, else a share of the run
    (a `where`, not an `if`, so that both may be traced)."""
    steps = common.as_float(cfg.exploration_steps)
    return jnp.where(steps > 0, steps, common.as_float(cfg.exploration_fraction * cfg.total_steps))


def epsilon(state: AgentState) -> jax.Array:
    """Exploration probability: eps_start until `exploration_start`, then linear to eps_end."""
    hyper = state.hyper
    elapsed = state.env_steps - hyper.eps_decay_start
    progress = jnp.clip(elapsed / jnp.maximum(hyper.eps_decay_steps, 1.0), 0.0, 1.0)
    return hyper.eps_start + progress * (hyper.eps_end - hyper.eps_start)


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """ε-greedy action when exploring, greedy otherwise (`obs` may carry batch axes)."""
    q = state.q.apply_fn(state.q.params, obs)
    key_coin, key_action = jax.random.split(key)
    greedy = jnp.argmax(q, axis=-1)
    random_action = jax.random.randint(key_action, greedy.shape, 0, q.shape[-1])
    use_random = explore & (jax.random.uniform(key_coin, greedy.shape) < epsilon(state))
    return jnp.where(use_random, random_action, greedy).astype(jnp.int32)


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """One TD step on `batch` (squared error), then the periodic target copy."""
    del key
    reward, bootstrap = common.nstep_target(batch, state.hyper.gamma)
    next_q = state.q.apply_fn(state.target_params, batch.next_obs)
    target = jax.lax.stop_gradient(reward + bootstrap * jnp.max(next_q, axis=-1))

    def loss_fn(params):
        q = state.q.apply_fn(params, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
        loss = jnp.mean((q_taken - target) ** 2)
        return loss, {"td_loss": loss, "q_mean": jnp.mean(q_taken)}

    return apply_td_step(state, loss_fn)


def apply_td_step(state: AgentState, loss_fn) -> tuple[AgentState, dict]:
    """Gradient step on `loss_fn(params) -> (loss, metrics)`, then the periodic target copy."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.q.params)
    q = state.q.apply_gradients(grads=grads)
    update_count = state.update_count + 1
    copy = update_count % state.target_update_every == 0
    target_params = common.hard_update(
        state.target_params,
        common.polyak_update(state.target_params, q.params, state.hyper.tau),
        copy,
    )
    metrics["epsilon"] = epsilon(state)
    return state.replace(q=q, target_params=target_params, update_count=update_count), metrics
