"""Diffusion policy pieces: noise schedules, the denoiser ε_θ and the reverse-chain sampler.

Index convention: step `t = 0 … T−1` in code is step `t + 1` of the papers, so the chain
runs `t = T−1, …, 0` and the last step (`t = 0`) adds no noise.
"""
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddrl.nets.mlp import MLP, activation_fn, grouped_dense


def vp_betas(num_steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> np.ndarray:
    """Variance-preserving schedule: α_t = exp(−β_min/T − ½(β_max−β_min)(2t−1)/T²), t = 1…T."""
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    alphas = np.exp(
        -beta_min / num_steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / num_steps**2
    )
    return 1.0 - alphas


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> np.ndarray:
    """Betas evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020)."""
    return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


def cosine_betas(num_steps: int, offset: float = 0.008) -> np.ndarray:
    """Cosine schedule of Nichol & Dhariwal (2021), betas capped at 0.999."""
    x = np.linspace(0, num_steps, num_steps + 1, dtype=np.float64)
    alphas_cumprod = np.cos(((x / num_steps) + offset) / (1 + offset) * np.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return np.clip(betas, 0.0, 0.999)


_BETAS = {"vp": vp_betas, "linear": linear_betas, "cosine": cosine_betas}


@flax.struct.dataclass
class DiffusionSchedule:
    """Constants of the DDPM forward process and its Gaussian posterior q(x_{t−1} | x_t, x_0)."""

    betas: jax.Array
    alphas_cumprod: jax.Array
    sqrt_recip_alphas_cumprod: jax.Array  # 1/√ᾱ_t, maps (x_t, ε) to x̂_0
    sqrt_recipm1_alphas_cumprod: jax.Array  # √(1/ᾱ_t − 1)
    posterior_mean_coef_x0: jax.Array  # weight of x̂_0 in the posterior mean
    posterior_mean_coef_xt: jax.Array  # weight of x_t in the posterior mean
    posterior_log_variance: jax.Array  # log of the posterior variance, floored at 1e-20

    @property
    def num_steps(self) -> int:
        """Number of diffusion steps T (static: taken from the array shape)."""
        return self.betas.shape[0]


def make_schedule(kind: str = "vp", num_steps: int = 5, **kwargs) -> DiffusionSchedule:
    """Build a schedule of `kind` in {vp, linear, cosine} with `num_steps` steps."""
    if kind not in _BETAS:
        raise ValueError(f"unknown beta schedule {kind!r}; choose from {sorted(_BETAS)}")
    betas = _BETAS[kind](num_steps, **kwargs)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
    return DiffusionSchedule(
        betas=f32(betas),
        alphas_cumprod=f32(alphas_cumprod),
        sqrt_recip_alphas_cumprod=f32(np.sqrt(1.0 / alphas_cumprod)),
        sqrt_recipm1_alphas_cumprod=f32(np.sqrt(1.0 / alphas_cumprod - 1.0)),
        posterior_mean_coef_x0=f32(betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)),
        posterior_mean_coef_xt=f32(
            (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod)
        ),
        posterior_log_variance=f32(np.log(np.maximum(posterior_variance, 1e-20))),
    )


def sinusoidal_embedding(t: jax.Array, dim: int = 16) -> jax.Array:
    """Transformer-style sin/cos features of the step index, shape `t.shape + (dim,)`."""
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half) * -(jnp.log(10000.0) / (half - 1)))
    angles = jnp.asarray(t, jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Denoiser(nn.Module):
    """Noise predictor ε_θ([x_t, emb(t), s]) over a vector of `action_dim` logits."""

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "mish"
    out_activation: str | None = "tanh"
    time_dim: int = 16
    time_mlp: bool = True  # pass the sinusoidal features through Dense(2d)–Mish–Dense(d)

    @nn.compact
    def __call__(self, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        emb = sinusoidal_embedding(t, self.time_dim)
        if self.time_mlp:
            emb = MLP((2 * self.time_dim,), self.time_dim, activation="mish")(emb)
        inputs = jnp.concatenate([x_t, emb, cond], axis=-1)
        return MLP(self.hidden, self.action_dim, self.activation, self.out_activation)(inputs)


def conditioned_denoiser(module: Denoiser, params: Any, cond: jax.Array, num_steps: int,
                         group: jax.Array | None = None) -> "EpsFn":
    """ε_θ(x_t, t) of `module` for a fixed `cond`, exactly `module.apply(params, x_t, t, cond)`,
    with everything that does not depend on x_t computed once per chain instead of once per
    step and sample: the time features of the `num_steps` steps through the time MLP, and
    the first layer's time and condition terms (its kernel split by input block).

    `group` (batch,): `params` are a stack of networks (leading axis: group) and row `i` of the
    batch runs network `group[i]`. Each layer then multiplies the rows by every network's
    kernel in one product and keeps each row's own, so everything after the products (biases,
    activations, the chain's arithmetic) runs once per row, not once per row and network.
    """
    variables = params["params"]
    main = variables["MLP_1" if module.time_mlp else "MLP_0"]
    emb = sinusoidal_embedding(jnp.arange(num_steps), module.time_dim)
    if module.time_mlp:
        time_mlp = MLP((2 * module.time_dim,), module.time_dim, activation="mish")
        apply_time = lambda p: time_mlp.apply({"params": p}, emb)  # noqa: E731
        emb = apply_time(variables["MLP_0"]) if group is None else jax.vmap(apply_time)(variables["MLP_0"])
    first = main["Dense_0"]
    kernel_x = first["kernel"][..., : module.action_dim, :]
    kernel_t = first["kernel"][..., module.action_dim : module.action_dim + module.time_dim, :]
    kernel_s = first["kernel"][..., module.action_dim + module.time_dim :, :]
    time_term = emb @ kernel_t  # (steps, width), or (groups, steps, width)
    hidden_act = activation_fn(module.activation)
    layers = len(module.hidden)

    if group is None:
        def dense(x, layer):
            return x @ layer["kernel"] + layer["bias"]

        cond_term = cond @ kernel_s + first["bias"]  # (batch, width)
        step_term = lambda t: time_term[t]  # noqa: E731
    else:
        def own(x, kernel):  # each row times its own network's kernel
            return grouped_dense(x, kernel, group)

        def dense(x, layer):
            return own(x, layer["kernel"]) + layer["bias"][group]

        cond_term = own(cond, kernel_s) + first["bias"][group]
        step_term = lambda t: time_term[group, t]  # noqa: E731

    def eps_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
        h = hidden_act((x_t @ kernel_x if group is None else own(x_t, kernel_x)) + cond_term + step_term(t))
        for i in range(1, layers):
            h = hidden_act(dense(h, main[f"Dense_{i}"]))
        return activation_fn(module.out_activation)(dense(h, main[f"Dense_{layers}"]))

    return eps_fn


EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


def sample(
    eps_fn: EpsFn,
    schedule: DiffusionSchedule,
    shape: tuple[int, ...],
    key: jax.Array,
    x_start: jax.Array | None = None,
    clip_x0: float | None = None,
    noise_free: bool = False,
    soft_clip: bool = False,
    noise_scale: float | jax.Array = 1.0,
) -> jax.Array:
    """Run the DDPM reverse chain from x_T to x_0, differentiably; returns x_0 of `shape`.

    `eps_fn(x_t, t)` predicts the noise at step index `t` (a scalar), typically a
    `conditioned_denoiser`; `shape` is `batch + (action_dim,)`. The chain starts from
    `x_start` when given (LAD-TS keeps it from the previous decision), otherwise from
    N(0, I). The noise of the T − 1 noisy steps is drawn up front; the final step adds
    none. `clip_x0` clips the predicted x̂_0 to [−clip_x0, clip_x0] at every step (None or ∞: no
    clipping; it may be traced); with `soft_clip`, smoothly: clip_x0 · tanh(x̂_0 / clip_x0), whose gradient never
    vanishes (a hard clip's is zero beyond the bound, so an output pushed past it cannot be
    pulled back by any loss, the entropy bonus included). `noise_free`: the chain's mean path,
    deterministic — x_T = 0 (or `x_start`) and no noise added at any step (`key` is then unused).
    `noise_scale` (may be traced) multiplies the noise drawn, x_T's and every step's: 1 the DDPM
    chain, 0 its mean path (as `noise_free`, with the draws made), between: a cooler chain.
    """
    num_steps = schedule.num_steps
    key_start, key_noise = jax.random.split(key)
    draw = jnp.zeros if noise_free else (lambda shape: noise_scale * jax.random.normal(key_noise, shape))
    if x_start is None:
        x_t = jnp.zeros(shape) if noise_free else noise_scale * jax.random.normal(key_start, shape)
    else:
        x_t = x_start
    noise = draw((num_steps - 1,) + tuple(shape))
    noise = jnp.concatenate([noise, jnp.zeros((1,) + tuple(shape))])  # the last step (t = 0) adds none

    def reverse_step(x, step_input):
        t, z = step_input
        eps = eps_fn(x, t)
        x0_hat = (
            schedule.sqrt_recip_alphas_cumprod[t] * x
            - schedule.sqrt_recipm1_alphas_cumprod[t] * eps
        )
        if clip_x0 is not None and soft_clip:  # a bound of ∞ (no clip) would give ∞·0 = nan, and nan gradients
            unbounded = jnp.isinf(clip_x0)
            bound = jnp.where(unbounded, 1.0, clip_x0)
            x0_hat = jnp.where(unbounded, x0_hat, bound * jnp.tanh(x0_hat / bound))
        elif clip_x0 is not None:
            x0_hat = jnp.clip(x0_hat, -clip_x0, clip_x0)
        mean = schedule.posterior_mean_coef_x0[t] * x0_hat + schedule.posterior_mean_coef_xt[t] * x
        std = jnp.where(t > 0, jnp.exp(0.5 * schedule.posterior_log_variance[t]), 0.0)
        return mean + std * z, None

    steps = jnp.arange(num_steps - 1, -1, -1)
    x_0, _ = jax.lax.scan(reverse_step, x_t, (steps, noise), unroll=True)
    return x_0
