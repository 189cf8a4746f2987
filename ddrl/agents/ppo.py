"""PPO with a clipped surrogate, GAE and separate actor and critic MLPs.

Defaults are PureJaxRL's CartPole settings. On-policy contract (used by `ddrl.training`):
`act_and_value` during rollouts and `update(state, rollout, key)` on a whole rollout.
"""
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from ddrl.agents import common
from ddrl.agents.common import static
from ddrl.nets import MLP

KIND = "on_policy"
SAMPLED_POLICY = True  # the sampled policy is the one trained (and the headline evaluation)


@flax.struct.dataclass
class Config:
    """PPO hyper-parameters (PureJaxRL CartPole defaults). Unmarked fields are traced
    (vmappable in `train(key, hparams)`); `static` ones set shapes or Python branches."""

    learning_rate: float = 2.5e-4  # Adam step size (annealed linearly to 0 if anneal_lr)
    anneal_lr: bool = static(True)  # linear learning-rate decay over the run
    num_envs: int = static(4)  # parallel environments per rollout
    num_steps: int = static(128)  # rollout length per environment
    update_epochs: int = static(4)  # passes over each rollout
    num_minibatches: int = static(4)  # minibatches per pass
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE λ
    clip_eps: float = 0.2  # surrogate clipping range
    ent_coef: float = 0.01  # entropy bonus weight
    vf_coef: float = 0.5  # value loss weight
    max_grad_norm: float = static(0.5)  # global gradient-norm clip
    hidden: tuple[int, ...] = static((64, 64))  # actor and critic widths
    activation: str = static("tanh")  # hidden activation
    total_steps: int = static(500_000)  # env steps of the run (the training loop sets it)


@flax.struct.dataclass
class Rollout:
    """`num_steps` steps of `num_envs` environments, time-major."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    next_value: jax.Array  # V of the true successor (before auto-reset)
    terminated: jax.Array
    done: jax.Array  # terminated or truncated: the advantage recursion stops here


@flax.struct.dataclass
class AgentState:
    """Actor-critic parameters with optimiser, config and counters."""

    network: TrainState
    cfg: Config  # traced fields as arrays
    num_updates: jax.Array  # rollouts in the run (`total_steps` over one rollout), for the annealing
    env_steps: jax.Array
    update_count: jax.Array


class ActorCritic(nn.Module):
    """Separate policy and value MLPs with orthogonal initialisation."""

    n_actions: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = MLP(self.hidden, self.n_actions, self.activation, init_scale=np.sqrt(2), out_scale=0.01)(obs)
        value = MLP(self.hidden, 1, self.activation, init_scale=np.sqrt(2), out_scale=1.0)(obs)
        return logits, value[..., 0]


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Fresh actor-critic for observations of `obs_shape` and `n_actions` actions."""
    cfg = common.config_from(Config, cfg)
    network = ActorCritic(n_actions, tuple(cfg.hidden), cfg.activation)
    params = network.init(key, jnp.zeros(obs_shape))
    return AgentState(
        network=common.create_train_state(
            network.apply, params, cfg.learning_rate, max_grad_norm=cfg.max_grad_norm, eps=1e-5
        ),
        cfg=common.as_arrays(cfg),
        num_updates=common.as_float(max(cfg.total_steps // (cfg.num_envs * cfg.num_steps), 1)),
        env_steps=jnp.zeros((), jnp.int32),
        update_count=jnp.zeros((), jnp.int32),
    )


def act_and_value(state: AgentState, obs: jax.Array, key: jax.Array):
    """Sampled action, its log-probability and V(s)."""
    logits, value = state.network.apply_fn(state.network.params, obs)
    action = jax.random.categorical(key, logits)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]
    return action.astype(jnp.int32), log_prob, value


def value(state: AgentState, obs: jax.Array) -> jax.Array:
    """State value V(s)."""
    return state.network.apply_fn(state.network.params, obs)[1]


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """Sample from π when exploring, argmax otherwise."""
    logits, _ = state.network.apply_fn(state.network.params, obs)
    return common.select_action(jax.nn.softmax(logits), key, explore)


def gae(rollout: Rollout, gamma: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets, computed backwards in time."""
    deltas = (
        rollout.reward
        + gamma * rollout.next_value * (1.0 - rollout.terminated.astype(jnp.float32))
        - rollout.value
    )
    continues = 1.0 - rollout.done.astype(jnp.float32)

    def backward(advantage, step):
        delta, cont = step
        advantage = delta + gamma * lam * cont * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, continues), reverse=True
    )
    return advantages, advantages + rollout.value


def update(state: AgentState, rollout: Rollout, key: jax.Array) -> tuple[AgentState, dict]:
    """`update_epochs` passes of minibatch clipped-surrogate steps over one rollout."""
    cfg = state.cfg
    advantages, returns = gae(rollout, cfg.gamma, cfg.gae_lambda)
    flat = jax.tree.map(
        lambda x: x.reshape((-1,) + x.shape[2:]),
        (rollout.obs, rollout.action, rollout.log_prob, rollout.value, advantages, returns),
    )
    num_samples = flat[0].shape[0]
    network = state.network
    if cfg.anneal_lr:
        frac = 1.0 - state.update_count / state.num_updates
        network = common.set_hyperparams(network, learning_rate=cfg.learning_rate * frac)

    def loss_fn(params, minibatch):
        obs, action, old_log_prob, old_value, advantage, target = minibatch
        logits, value_pred = network.apply_fn(params, obs)
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, action[:, None], axis=-1)[:, 0]
        value_clipped = old_value + jnp.clip(value_pred - old_value, -cfg.clip_eps, cfg.clip_eps)
        value_loss = 0.5 * jnp.mean(
            jnp.maximum((value_pred - target) ** 2, (value_clipped - target) ** 2)
        )
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        ratio = jnp.exp(log_prob - old_log_prob)
        surrogate = jnp.minimum(
            ratio * advantage, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * advantage
        )
        entropy = jnp.mean(common.categorical_entropy(jnp.exp(log_probs)))
        loss = -jnp.mean(surrogate) + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        return loss, {"loss": loss, "value_loss": value_loss, "entropy": entropy}

    def minibatch_step(network, minibatch):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(network.params, minibatch)
        return network.apply_gradients(grads=grads), metrics

    def epoch(network, epoch_key):
        order = jax.random.permutation(epoch_key, num_samples)
        minibatches = jax.tree.map(
            lambda x: x[order].reshape((cfg.num_minibatches, -1) + x.shape[1:]), flat
        )
        return jax.lax.scan(minibatch_step, network, minibatches)

    network, metrics = jax.lax.scan(epoch, network, jax.random.split(key, cfg.update_epochs))
    metrics = jax.tree.map(jnp.mean, metrics)
    return state.replace(network=network, update_count=state.update_count + 1), metrics
