"""Discrete soft actor-critic (Christodoulou 2019) with a categorical MLP actor.

Twin Q-networks s → R^|A|, the expected-value actor loss (no reparameterisation needed
for discrete actions), a soft target V(s') = Σ π(a|s')[min Q̄(s',a)] + α·H(π(·|s')), and
either a fixed α or one learned towards `target_entropy_ratio · log|A|`.
"""
import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from ddrl.agents import common
from ddrl.agents.common import static
from ddrl.nets import MLP, TwinQ

KIND = "off_policy"
SAMPLED_POLICY = True  # the sampled policy is the one trained (and the headline evaluation)


@flax.struct.dataclass
class Config:
    """Discrete SAC hyper-parameters. Unmarked fields are traced, so `train(key, hparams)` can
    vmap them (learning rates via the optimiser state, α as the initial log α); `static`
    ones (widths, batch size, flags) set shapes or Python branches."""

    actor_lr: float = 3e-4  # actor Adam step size
    critic_lr: float = 3e-4  # critic Adam step size
    alpha_lr: float = 3e-4  # log α Adam step size (learned α only)
    weight_decay: float = 0.0  # L2 added to the gradients
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak rate of the target critic
    alpha: float = 0.05  # entropy weight (initial value when learned)
    learn_alpha: bool = static(False)  # tune α towards the target entropy
    target_entropy_ratio: float = 0.7  # target entropy as a share of log|A|
    target_entropy: float | None = None  # absolute target entropy (nats); overrides the ratio
    hidden: tuple[int, ...] = static((256, 256))  # actor and critic widths
    activation: str = static("relu")  # actor and critic activation
    buffer_size: int = static(100_000)  # replay capacity (transitions)
    batch_size: int = static(256)  # minibatch size
    n_step: int = static(1)  # steps of the bootstrapped return
    learning_starts: int = static(1_000)  # env steps before the first update
    train_every: int = static(1)  # env steps (over all envs) per training round
    updates_per_train: int = static(1)  # gradient steps per training round


@flax.struct.dataclass
class AgentState:
    """Actor, twin critic with target, log α, config and counters."""

    actor: TrainState
    critic: TrainState
    critic_target: dict
    log_alpha: TrainState
    cfg: Config  # traced fields as arrays, `target_entropy` resolved
    env_steps: jax.Array
    update_count: jax.Array


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None) -> AgentState:
    """Fresh actor and critics for observations of `obs_shape` and `n_actions` actions."""
    cfg = common.config_from(Config, cfg)
    key_actor, key_critic = jax.random.split(key)
    dummy_obs = jnp.zeros(obs_shape)
    actor_net = MLP(cfg.hidden, n_actions, cfg.activation)
    critic_net = TwinQ(n_actions, cfg.hidden, cfg.activation)
    critic_params = critic_net.init(key_critic, dummy_obs)
    return AgentState(
        actor=common.create_train_state(
            actor_net.apply, actor_net.init(key_actor, dummy_obs), cfg.actor_lr, cfg.weight_decay
        ),
        critic=common.create_train_state(
            critic_net.apply, critic_params, cfg.critic_lr, cfg.weight_decay
        ),
        critic_target=critic_params,
        log_alpha=common.create_log_alpha(cfg.alpha, cfg.alpha_lr),
        cfg=common.as_arrays(common.with_target_entropy(cfg, jnp.log(float(n_actions)))),
        env_steps=jnp.zeros((), jnp.int32),
        update_count=jnp.zeros((), jnp.int32),
    )


def policy(state: AgentState, actor_params: dict, obs: jax.Array) -> jax.Array:
    """Action probabilities π(·|s)."""
    return jax.nn.softmax(state.actor.apply_fn(actor_params, obs), axis=-1)


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """Sample from π when exploring, argmax otherwise."""
    return common.select_action(policy(state, state.actor.params, obs), key, explore)


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """One critic step, one actor step, α step (if learned) and the Polyak target update."""
    del key
    alpha = common.current_alpha(state.log_alpha)
    reward, bootstrap = common.nstep_target(batch, state.cfg.gamma)
    next_q = jnp.minimum(*state.critic.apply_fn(state.critic_target, batch.next_obs))
    next_value = common.soft_state_value(
        policy(state, state.actor.params, batch.next_obs), next_q, alpha, with_entropy=True
    )
    target = jax.lax.stop_gradient(reward + bootstrap * next_value)
    critic, metrics = common.critic_step(state.critic, batch, target)

    actor, log_alpha, actor_metrics = common.actor_and_alpha_step(
        state.actor, state.log_alpha, critic, batch.obs,
        lambda params: policy(state, params, batch.obs), state.cfg.target_entropy, state.cfg.learn_alpha,
    )  # fmt: skip
    metrics.update(actor_metrics)
    return state.replace(
        actor=actor,
        critic=critic,
        critic_target=common.polyak_update(state.critic_target, critic.params, state.cfg.tau),
        log_alpha=log_alpha,
        update_count=state.update_count + 1,
    ), metrics
