"""Diffusion soft actor-critic for discrete actions (D2SAC; the seed paper's "DSAC").

The actor is a denoising diffusion model over a vector of action logits: starting from
noise, `T` DDPM reverse steps conditioned on the state produce x_0 and π(·|s) =
softmax(x_0). The actor is trained by back-propagating the soft actor-critic objective
through the whole reverse chain (the published code uses no denoising loss). The critic
is a twin Q-network with Polyak targets; the critic target uses a Polyak target actor.

`Config()` defaults are the project's variant; `PUBLISHED` is the faithful preset of the
AGOD/D2SAC code (Du et al., TMC 2024) — see conf/algo/d2sac*.yaml.
"""
import functools
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from ddrl.agents import common
from ddrl.agents.common import static
from ddrl.nets import Denoiser, DiffusionSchedule, TwinQ, conditioned_denoiser, make_schedule, sample

KIND = "off_policy"
SAMPLED_POLICY = True  # soft actor-critic optimises the sampled policy (its headline evaluation)


@flax.struct.dataclass
class Config:
    """Diffusion SAC hyper-parameters (the project's variant). Unmarked fields are traced, so
    `train(key, hparams)` can vmap them (learning rates via the optimiser state, α as the
    initial log α); `static` ones (widths, batch size, diffusion steps T, flags) set shapes
    or Python branches."""

    actor_lr: float = 1e-4  # denoiser Adam step size
    critic_lr: float = 1e-3  # critic Adam step size
    alpha_lr: float = 3e-4  # log α Adam step size (learned α only)
    weight_decay: float = 1e-4  # L2 added to the gradients (torch Adam style)
    gamma: float = 0.95  # discount
    tau: float = 0.005  # Polyak rate of the target actor and critic
    alpha: float = 0.05  # entropy weight (initial value when learned)
    learn_alpha: bool = static(True)  # tune α towards the target entropy
    target_entropy_ratio: float = 0.7  # target entropy as a share of log|A|
    target_entropy: float | None = None  # absolute target entropy (nats); overrides the ratio
    soft_target: bool = static(True)  # add α·H(π(·|s')) to the critic target
    clip_x0: float | None = 3.0  # clip the predicted x̂_0 to ±clip_x0 (None or inf: off; traced, so searchable)
    soft_clip: bool = static(False)  # clip smoothly, clip_x0·tanh(x̂_0/clip_x0): a gradient beyond the bound
    normalize_q: bool = static(False)  # actor sees Q(s,·) standardised over the actions
    diffusion_steps: int = static(5)  # reverse steps T
    beta_schedule: str = static("vp")  # vp | linear | cosine
    denoiser_hidden: tuple[int, ...] = static((256, 256))  # denoiser widths
    denoiser_output: str = static("tanh")  # output activation of the denoiser (tanh | softmax | none)
    critic_hidden: tuple[int, ...] = static((256, 256))  # critic widths
    activation: str = static("mish")  # hidden activation of denoiser and critic
    buffer_size: int = static(1_000_000)  # replay capacity (transitions)
    batch_size: int = static(512)  # minibatch size
    n_step: int = static(3)  # steps of the bootstrapped return
    learning_starts: int = static(1_000)  # env steps before the first update
    train_every: int = static(1)  # env steps (over all envs) per training round
    updates_per_train: int = static(1)  # gradient steps per training round
    greedy_chains: int = static(8)  # greedy action: argmax of π averaged over this many chain runs (0: one noise-free chain)
    actor_reads_target_critic: bool = static(False)  # the actor step reads the Polyak-averaged target critic, not
    # the online one: its per-action values jitter less from update to update (the MEC sets differ by a few ms)
    chain_noise_scale: float = 1.0  # scale of every chain's noise (acting, training; x_T's and each step's): 1 the DDPM
    # chain; 0 its noise-free mean path, so π(·|s) is a function of s alone and the entropy α is tuned on is that of the
    # actions taken (with noise, the actions spread over the chain's start noise as well, which no entropy term sees)


PUBLISHED = Config(
    learn_alpha=False,
    soft_target=False,
    clip_x0=None,
)


@flax.struct.dataclass
class AgentState:
    """Diffusion actor and twin critic, their targets, log α, config and counters.

    Also the agents built on d2sac's chain (d2sac_factored, lad_ts, d2sac_set) hold this:
    their `denoiser` and `cfg` are their own."""

    actor: TrainState
    actor_target: dict
    critic: TrainState
    critic_target: dict
    log_alpha: TrainState
    schedule: DiffusionSchedule
    cfg: Config  # traced fields as arrays, `target_entropy` resolved
    env_steps: jax.Array
    update_count: jax.Array
    n_actions: int = static()  # values the reverse chain produces per state
    denoiser: Any = static()  # the ε_θ module (a flax Module)


def init(key: jax.Array, obs_shape: tuple[int, ...], n_actions: int, cfg=None,
         largest_entropy: jax.Array | None = None) -> AgentState:
    """Fresh diffusion actor and critics for observations of `obs_shape` and `n_actions`
    logits. The target entropy ratio is a share of `largest_entropy` (default log n_actions)."""
    cfg = common.config_from(Config, cfg)
    key_actor, key_critic = jax.random.split(key)
    dummy_obs = jnp.zeros((1,) + tuple(obs_shape))
    denoiser = Denoiser(n_actions, cfg.denoiser_hidden, cfg.activation, denoiser_output(cfg))
    actor_params = denoiser.init(
        key_actor, jnp.zeros((1, n_actions)), jnp.zeros((1,), jnp.int32), dummy_obs
    )
    critic_net = TwinQ(n_actions, cfg.critic_hidden, cfg.activation)
    critic_params = critic_net.init(key_critic, dummy_obs)
    if largest_entropy is None:
        largest_entropy = jnp.log(float(n_actions))
    return new_state(cfg, denoiser, actor_params, critic_net.apply, critic_params, n_actions, largest_entropy)


def denoiser_output(cfg: Config) -> str | None:
    """The denoiser's output activation (None for "none")."""
    return None if cfg.denoiser_output == "none" else cfg.denoiser_output


def new_state(cfg: Config, denoiser: Any, actor_params: dict, critic_apply: Any, critic_params: dict,
              n_actions: int, largest_entropy: jax.Array) -> AgentState:
    """The state around freshly initialised actor and critic weights: their optimisers and
    targets, log α, the noise schedule, and `cfg` as arrays with its target entropy resolved
    (the target entropy ratio a share of `largest_entropy`)."""
    return AgentState(
        actor=common.create_train_state(
            denoiser.apply, actor_params, cfg.actor_lr, cfg.weight_decay
        ),
        actor_target=actor_params,
        critic=common.create_train_state(
            critic_apply, critic_params, cfg.critic_lr, cfg.weight_decay
        ),
        critic_target=critic_params,
        log_alpha=common.create_log_alpha(cfg.alpha, cfg.alpha_lr),
        schedule=make_schedule(cfg.beta_schedule, cfg.diffusion_steps),
        cfg=common.as_arrays(common.with_target_entropy(_no_clip_as_inf(cfg), largest_entropy)),
        env_steps=jnp.zeros((), jnp.int32),
        update_count=jnp.zeros((), jnp.int32),
        n_actions=int(n_actions),
        denoiser=denoiser,
    )


def _no_clip_as_inf(cfg: Config) -> Config:
    """A traced `clip_x0` of None (no clip) as ∞: clipping to ±∞ leaves every finite x̂_0 as it
    is, and the field becomes a number that can be vmapped (a tuning space may search
    `choice(3.0, inf)`). Subclasses that keep `clip_x0` static keep their None."""
    if cfg.clip_x0 is None and "clip_x0" in common.traced_fields(type(cfg)):
        return cfg.replace(clip_x0=math.inf)
    return cfg


def reverse_chain(state: AgentState, actor_params: dict, obs: jax.Array, key: jax.Array,
                  x_start: jax.Array | None = None, noise_free: bool = False,
                  group: jax.Array | None = None) -> jax.Array:
    """x_0 of one run of the reverse chain conditioned on `obs` (from `x_start`, else noise;
    `noise_free`: the deterministic mean path; `cfg.chain_noise_scale` scales the noise; `group`:
    `actor_params` are stacked and row i runs network `group[i]`, see `conditioned_denoiser`)."""
    eps_fn = conditioned_denoiser(state.denoiser, actor_params, obs, state.schedule.num_steps, group)
    shape = obs.shape[:-1] + (state.n_actions,)
    clip_x0 = per_row(state.cfg.clip_x0, group)  # traced: stacked agents hold one bound each, row i uses group[i]'s
    noise_scale = per_row(state.cfg.chain_noise_scale, group)
    return sample(eps_fn, state.schedule, shape, key, x_start=x_start, clip_x0=clip_x0, noise_free=noise_free,
                  soft_clip=state.cfg.soft_clip, noise_scale=noise_scale)  # fmt: skip


def per_row(setting: jax.Array | None, group: jax.Array | None) -> jax.Array | None:
    """A traced setting as the chain applies it: one value, or, for a stack of agents (one value
    each) acting grouped, row i's agent's value `setting[group[i]]` as a column."""
    if group is not None and setting is not None and jnp.ndim(setting) > 0:
        return setting[group][..., None]
    return setting


def policy(state: AgentState, actor_params: dict, obs: jax.Array, key: jax.Array,
           noise_free: bool = False, group: jax.Array | None = None) -> jax.Array:
    """π(·|s) = softmax(x_0) with x_0 from one run of the reverse chain."""
    return jax.nn.softmax(reverse_chain(state, actor_params, obs, key, noise_free=noise_free, group=group), axis=-1)


def greedy_probs(policy_fn, state: AgentState, obs: jax.Array, key: jax.Array) -> jax.Array:
    """What the greedy action is the argmax of: π averaged over `cfg.greedy_chains` runs of
    the chain (its start noise makes one run random), or π of the noise-free chain (0).

    `policy_fn(state, actor_params, obs, key, noise_free=...)` is the agent's π (d2sac's,
    LAD-TS's). The same key gives the same average.
    """
    params = state.actor.params
    if state.cfg.greedy_chains == 0:
        return policy_fn(state, params, obs, key, noise_free=True)
    keys = jax.random.split(key, state.cfg.greedy_chains)
    return jnp.mean(jax.vmap(lambda k: policy_fn(state, params, obs, k))(keys), axis=0)


def acting_probs(policy_fn, state: AgentState, obs: jax.Array, key: jax.Array,
                 explore: bool | jax.Array) -> jax.Array:
    """What an action is chosen from: one chain's π when exploring (to be sampled), else
    `greedy_probs` (to take the argmax of). A Python bool `explore` builds only its branch."""
    if explore is True:
        return policy_fn(state, state.actor.params, obs, key)
    mean = greedy_probs(policy_fn, state, obs, key)
    if explore is False:
        return mean
    return jnp.where(explore, policy_fn(state, state.actor.params, obs, key), mean)


def act_probs(policy_fn, state: AgentState, obs: jax.Array, key: jax.Array,
              explore: bool | jax.Array) -> tuple[jax.Array, jax.Array]:
    """(action, the π it came from): a draw from one chain's π when exploring, else the
    argmax of `greedy_probs`."""
    key_chain, key_action = jax.random.split(key)
    probs = acting_probs(policy_fn, state, obs, key_chain, explore)
    return common.select_action(probs, key_action, explore), probs


def act(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array) -> jax.Array:
    """Sample from π when exploring, argmax of the chain-averaged π otherwise."""
    return act_probs(policy, state, obs, key, explore)[0]


def act_grouped(state: AgentState, obs: jax.Array, key: jax.Array, explore: bool | jax.Array,
                group: jax.Array) -> jax.Array:
    """`act` of a stack of agents (leading axis of `state`: group), row i of `obs` decided by
    agent `group[i]`: the same actions as each row's own agent's `act`, with the chain run
    once per row instead of once per row and agent. The stack shares its static settings and
    its noise schedule (both come from the one configuration of all groups)."""
    shared = state.replace(schedule=jax.tree.map(lambda leaf: leaf[0], state.schedule))
    return act_probs(functools.partial(policy, group=group), shared, obs, key, explore)[0]


def update(state: AgentState, batch: common.Batch, key: jax.Array) -> tuple[AgentState, dict]:
    """Critic step, actor step through the chain, α step (if learned), Polyak targets."""
    return soft_update(state, batch, key, policy, lambda obs: obs)


def soft_update(state: AgentState, batch: common.Batch, key: jax.Array, policy_fn, critic_input,
                action_value=common.taken_value):
    """`update` with the policy `policy_fn(state, actor_params, obs, key) -> probs` and the
    critic reading `critic_input(obs)` (LAD-TS: its observations carry a latent start vector
    that only the actor reads) and valuing taken actions with `action_value(q, action)`
    (factored actions)."""
    key_target, key_actor = jax.random.split(key)
    alpha = common.current_alpha(state.log_alpha)
    reward, bootstrap = common.nstep_target(batch, state.cfg.gamma)
    next_probs = policy_fn(state, state.actor_target, batch.next_obs, key_target)
    next_critic_obs = critic_input(batch.next_obs)
    next_q = jnp.minimum(*state.critic.apply_fn(state.critic_target, next_critic_obs))
    next_value = common.soft_state_value(next_probs, next_q, alpha, state.cfg.soft_target)
    target = jax.lax.stop_gradient(reward + bootstrap * next_value)
    critic_batch = batch.replace(obs=critic_input(batch.obs))
    critic, metrics = common.critic_step(state.critic, critic_batch, target, action_value)

    read_critic = critic.replace(params=state.critic_target) if state.cfg.actor_reads_target_critic else critic
    actor, log_alpha, actor_metrics = common.actor_and_alpha_step(
        state.actor, state.log_alpha, read_critic, critic_batch.obs,
        lambda params: policy_fn(state, params, batch.obs, key_actor), state.cfg.target_entropy,
        state.cfg.learn_alpha, state.cfg.normalize_q,
    )  # fmt: skip
    metrics.update(actor_metrics)
    return after_update(state, actor, critic, log_alpha), metrics


def after_update(state: AgentState, actor: TrainState, critic: TrainState, log_alpha: TrainState) -> AgentState:
    """`state` after one actor-critic step: the stepped networks and log α, Polyak targets
    and one more update counted."""
    tau = state.cfg.tau
    return state.replace(
        actor=actor,
        actor_target=common.polyak_update(state.actor_target, actor.params, tau),
        critic=critic,
        critic_target=common.polyak_update(state.critic_target, critic.params, tau),
        log_alpha=log_alpha,
        update_count=state.update_count + 1,
    )
