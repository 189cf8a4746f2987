"""DQN with a hard-copied target network and linearly decaying ε-greedy exploration.

Defaults are CleanRL's `dqn.py` / `dqn_jax.py` CartPole settings.
"""
import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from ddrl.agents import common
from ddrl.agents.common import static
from ddrl.nets import MLP

KIND = "off_policy"
SAMPLED_POLICY = False  # ε-greedy on Q: the greedy policy is the one trained


@flax.struct.dataclass
class Config:
    """DQN hyper-parameters (CleanRL defaults). Unmarked fields are traced (vmappable in
    `train(key, hparams)`); `static` ones set shapes or Python branches."""

    learning_rate: float = 2.5e-4  # Adam step size
    weight_decay: float = 0.0  # L2 added to the gradient
    gamma: float = 0.99  # discount
    hidden: tuple[int, ...] = static((120, 84))  # Q-network widths
    activation: str = static("relu")  # Q-network activation
    buffer_size: int = static(10_000)  # replay capacity (transitions)
    batch_size: int = static(128)  # minibatch size
    n_step: int = static(1)  # steps of the bootstrapped return
    learning_starts: int = static(10_000)  # env steps before the first update
    train_every: int = static(10)  # env steps (over all envs) per training round
    updates_per_train: int = static(1)  # gradient steps per training round
    target_update_every: int = static(50)  # gradient steps between target copies (500 env steps)
    tau: float = 1.0  # target ← τ·online + (1−τ)·target at each copy
    eps_start: float = 1.0  # initial exploration probability
    eps_end: float = 0.05  # final exploration probability
    exploration_fraction: float = 0.5  # share of the run over which ε decays
    exploration_steps: int = 0  # if > 0: env steps over which ε decays (replaces the fraction)
    exploration_start: int = 0  # env step at which the decay begins (ε = eps_start before)
    total_steps: int = static(500_000)  # env steps of the run (the training loop sets it)


@flax.struct.dataclass
class AgentState:
    """Q-network with its optimiser, target parameters, config and counters."""

    q: TrainState
    target_params: dict
    cfg: Config  # traced fields as arrays; `exploration_steps` resolved (`decay_steps`)
    env_steps: jax.Array  # set by the training loop; drives the ε schedule
    update_count: jax.Array


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Fresh Q-network and target for observations of `obs_shape` and `n_actions` actions."""
    cfg = common.config_from(Config, cfg)
    network = MLP(cfg.hidden, n_actions, cfg.activation)
    params = network.init(key, jnp.zeros(obs_shape))
    return AgentState(
        q=common.create_train_state(network.apply, params, cfg.learning_rate, cfg.weight_decay),
        target_params=params,
        cfg=common.as_arrays(cfg.replace(exploration_steps=decay_steps(cfg))),
        env_steps=jnp.zeros((), jnp.int32),
        update_count=jnp.zeros((), jnp.int32),
    )


def decay_steps(cfg: Config) -> jax.Array:
    """Env steps over which ε decays: `exploration_steps` if > 0, else a share of the run
    (a `where`, not an `if`, so that both may be traced)."""
    steps = common.as_float(cfg.exploration_steps)
    return jnp.where(steps > 0, steps, common.as_float(cfg.exploration_fraction * cfg.total_steps))


def epsilon(state: AgentState) -> jax.Array:
    """Exploration probability: eps_start until `exploration_start`, then linear to eps_end
    over the (resolved) `exploration_steps`."""
    cfg = state.cfg
    elapsed = state.env_steps - cfg.exploration_start
    progress = jnp.clip(elapsed / jnp.maximum(cfg.exploration_steps, 1.0), 0.0, 1.0)
    return cfg.eps_start + progress * (cfg.eps_end - cfg.eps_start)


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """ε-greedy action when exploring, greedy otherwise (`obs` may carry batch axes)."""
    q = state.q.apply_fn(state.q.params, obs)
    key_coin, key_action = jax.random.split(key)
    greedy = common.last_axis_argmax(q)
    random_action = jax.random.randint(key_action, greedy.shape, 0, q.shape[-1])
    use_random = explore & (jax.random.uniform(key_coin, greedy.shape) < epsilon(state))
    return jnp.where(use_random, random_action, greedy).astype(jnp.int32)


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """One TD step on `batch` (squared error), then the periodic target copy."""
    del key
    reward, bootstrap = common.nstep_target(batch, state.cfg.gamma)
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
    copy = update_count % state.cfg.target_update_every == 0
    target_params = common.hard_update(
        state.target_params,
        common.polyak_update(state.target_params, q.params, state.cfg.tau),
        copy,
    )
    metrics["epsilon"] = epsilon(state)
    return state.replace(q=q, target_params=target_params, update_count=update_count), metrics
