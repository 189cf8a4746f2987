"""A gymnax-API probe environment with known optimal values (for agent tests).

Each episode draws one of four probes and a sign x ∈ {−1, +1}; the observation is
[one-hot probe (4), x, phase]. Two actions. With discount γ the optimal values are:

* CONSTANT: one step, reward 1.                        Q(s, a) = 1
* OBSERVATION: one step, reward x.                     Q(s, a) = x
* DISCOUNT: two steps, rewards 0 then 1.               Q(phase 0) = γ, Q(phase 1) = 1
* ACTION: one step, reward 1 if a == (x > 0) else 0.   Q(s, right) = 1, Q(s, wrong) = 0
"""
import flax.struct
import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

CONSTANT, OBSERVATION, DISCOUNT, ACTION = range(4)


@flax.struct.dataclass
class ProbeState(environment.EnvState):
    probe: jax.Array
    sign: jax.Array
    phase: jax.Array


@flax.struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 2


def probe_obs(probe: int, sign: float, phase: int) -> jax.Array:
    """The observation of a probe state."""
    return jnp.concatenate([jax.nn.one_hot(probe, 4), jnp.array([sign, phase], jnp.float32)])


class ProbeEnv(environment.Environment):
    """Four probes in one environment, so one compiled agent is tested on all of them."""

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams()

    def reset_env(self, key, params):
        key_probe, key_sign = jax.random.split(key)
        probe = jax.random.randint(key_probe, (), 0, 4)
        sign = jnp.where(jax.random.bernoulli(key_sign), 1.0, -1.0)
        state = ProbeState(time=0, probe=probe, sign=sign, phase=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        right = action == (state.sign > 0).astype(jnp.int32)
        reward = jnp.select(
            [state.probe == CONSTANT, state.probe == OBSERVATION, state.probe == DISCOUNT],
            [1.0, state.sign, state.phase.astype(jnp.float32)],
            right.astype(jnp.float32),
        )
        terminated = (state.probe != DISCOUNT) | (state.phase == 1)
        state = state.replace(time=state.time + 1, phase=state.phase + 1)
        return self.get_obs(state), state, reward, terminated, {}

    def get_obs(self, state, params=None, key=None):
        return probe_obs(state.probe, state.sign, state.phase)

    def is_terminal(self, state, params):
        return (state.probe != DISCOUNT) | (state.phase >= 2)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (6,), jnp.float32)


@flax.struct.dataclass
class BanditState(environment.EnvState):
    pass


class SoftBanditEnv(environment.Environment):
    """One step, a constant observation, reward `rewards[a]`: under entropy regularisation
    with a fixed temperature α the optimal policy is stochastic, π*(a) = softmax(r / α)(a)
    (the maximiser of E_π[r] + α·H(π)), and its argmax is argmax r."""

    def __init__(self, rewards=(1.0, 0.8, 0.0)):
        super().__init__()
        self.rewards = jnp.asarray(rewards, jnp.float32)

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=1)

    def soft_optimal_policy(self, alpha: float) -> jax.Array:
        return jax.nn.softmax(self.rewards / alpha)

    def reset_env(self, key, params):
        state = BanditState(time=0)
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, self.rewards[action], jnp.ones((), bool), {}

    def get_obs(self, state, params=None, key=None):
        return jnp.ones((1,), jnp.float32)

    def is_terminal(self, state, params):
        return state.time >= 1

    def action_space(self, params=None):
        return spaces.Discrete(int(self.rewards.shape[0]))

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (1,), jnp.float32)
