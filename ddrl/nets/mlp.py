"""A multilayer perceptron with configurable widths and activation."""
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# A layer with at most this many inputs is computed as a sum of broadcast products (PartedDense).
SMALL_FAN_IN = 16


@jax.custom_jvp
def mish(x: jax.Array) -> jax.Array:
    """Mish x·tanh(softplus(x)) with one exponential: tanh(log(1+eˣ)) = n/(n+2), n = eˣ(eˣ+2).

    About twice as fast as `jax.nn.mish` on CPU; exact up to float rounding (for x > 20
    the factor is 1 to float32 precision, so the exponential is clipped there).
    """
    e = jnp.exp(jnp.minimum(x, 20.0))
    n = e * (e + 2.0)
    return x * n / (n + 2.0)


@mish.defjvp
def _mish_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """mish'(x) = t + x·(1 − t²)·σ(x), t = tanh(softplus(x)) = n/(n+2), σ(x) = e/(1+e), from
    the same exponential."""
    (x,), (dx,) = primals, tangents
    e = jnp.exp(jnp.minimum(x, 20.0))
    n = e * (e + 2.0)
    t = n / (n + 2.0)
    slope = t + x * (1.0 - t * t) * (e / (1.0 + e))
    return x * t, slope * dx


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "mish": mish,
    "elu": nn.elu,
    "silu": nn.silu,
    "gelu": nn.gelu,
    "softmax": nn.softmax,
    "identity": lambda x: x,
}


def activation_fn(name: str | None) -> Callable[[jax.Array], jax.Array]:
    """Look up an activation by name (None means identity)."""
    if name is None:
        return _ACTIVATIONS["identity"]
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense layers `hidden` wide with `activation`, then a linear layer of `out_dim`.

    `init_scale` switches to orthogonal initialisation (PPO-style) with that gain on the
    hidden layers and `out_scale` on the output layer; None keeps flax's LeCun default.

    Called with several inputs, `MLP(...)(a, b, ...)` is `MLP(...)(concatenate([a, b, ...]))`
    with the inputs' leading axes broadcast against each other, and the same parameters; the
    first layer is then a `PartedDense`, which multiplies each input by its rows of the kernel
    before broadcasting (a per-set summary beside per-token features costs one product per
    set, not one per token). So is a first layer of at most `small_fan_in` inputs (0: never).
    """

    hidden: Sequence[int]
    out_dim: int
    activation: str = "relu"
    out_activation: str | None = None
    init_scale: float | None = None
    out_scale: float = 1.0
    small_fan_in: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *more: jax.Array) -> jax.Array:
        act = activation_fn(self.activation)
        inits = [self._kernel_init(self.init_scale)] * len(self.hidden)
        inits.append(self._kernel_init(None if self.init_scale is None else self.out_scale))
        for i, (width, init) in enumerate(zip([*self.hidden, self.out_dim], inits)):
            name = f"Dense_{i}"  # flax's own names for unnamed layers: the parameters do not depend on the path taken
            if i == 0 and (more or x.shape[-1] <= self.small_fan_in):
                x = PartedDense(width, kernel_init=init, name=name)(x, *more)
            else:
                x = nn.Dense(width, kernel_init=init, name=name)(x)
            if i < len(self.hidden):
                x = act(x)
        return activation_fn(self.out_activation)(x)

    @staticmethod
    def _kernel_init(scale: float | None):
        if scale is None:
            return nn.initializers.lecun_normal()
        return orthogonal(scale)


class PartedDense(nn.Module):
    """`nn.Dense` of the concatenation of `parts` along the last axis (their leading axes
    broadcast), with `nn.Dense`'s parameters (kernel of Σ sizes × features, bias), computed
    part by part: each part times its own rows of the kernel, then the products summed with
    broadcasting. A part with fewer leading entries than the result (a per-set summary beside
    B per-token features, one state's embedding beside M sampled sets) is multiplied once,
    not once per broadcast copy; a part of at most `SMALL_FAN_IN` features is a sum of
    broadcast products, which XLA fuses with what follows (on the CPU a matrix product whose
    kernel has 2 or 3 rows ran 1.6–4.7× slower than that sum, bias and mish included, for
    7,500 × 64 outputs). The same values as `nn.Dense` up to float rounding (sums grouped
    differently)."""

    features: int
    use_bias: bool = True
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, *parts: jax.Array) -> jax.Array:
        sizes = [part.shape[-1] for part in parts]
        kernel = self.param("kernel", self.kernel_init, (sum(sizes), self.features), jnp.float32)
        out, start = None, 0
        for part, size in zip(parts, sizes):
            rows = kernel[start : start + size]
            start += size
            product = small_fan_in_product(part, rows) if size <= SMALL_FAN_IN else part @ rows
            out = product if out is None else out + product
        if self.use_bias:
            out = out + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return out


@jax.custom_vjp
def small_fan_in_product(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x @ kernel as Σ_k x[..., k] · kernel[k]: elementwise, so XLA fuses it with its
    consumers. Its derivatives are matrix products, as those of `x @ kernel` (differentiated
    elementwise they are reductions over the output axis, which ran several times slower)."""
    out = x[..., 0, None] * kernel[0]
    for k in range(1, x.shape[-1]):
        out = out + x[..., k, None] * kernel[k]
    return out


def _small_fan_in_forward(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return small_fan_in_product(x, kernel), (x, kernel)


def _small_fan_in_backward(saved: tuple[jax.Array, jax.Array], grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = saved
    return grad @ kernel.T, jnp.einsum("...i,...o->io", x, grad)


small_fan_in_product.defvjp(_small_fan_in_forward, _small_fan_in_backward)


def orthogonal(scale: float = 1.0) -> Callable[..., jax.Array]:
    """Orthogonal kernel initialiser, the matrices of `flax.linen.initializers.orthogonal` without LAPACK.

    Draws the same normal matrix from the same key as `jax.random.orthogonal` and returns the
    same Q (the QR factor whose R has a positive diagonal, i.e. the Haar-distributed semi-
    orthogonal matrix), computed by Gram–Schmidt with re-orthogonalisation in plain XLA
    operations; it agrees with flax's to float32 rounding (tests/test_nets.py).

    Why not flax's: jaxlib 0.10's CPU QR (`lapack_sgeqrf_ffi`) splits a batch of matrices over
    XLA's intra-op thread pool and blocks its pool thread until the pieces finish. When the
    program runs as many such calls at once as the pool has threads (a vmapped PPO init has
    two, actor and critic, and a 2-core machine has two pool threads), every thread waits for
    work queued behind it and the run hangs forever with the CPU idle — the "wedged XLA CPU
    run" of the README's troubleshooting, caught with gdb in every one of five hung CartPole
    smoke runs (both pool threads in `jax::ParallelBatchMap` under `QrFactorization`).
    """

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        if len(shape) != 2:
            raise ValueError(f"orthogonal initialiser needs a 2-D kernel shape, got {tuple(shape)}")
        n_rows, n_cols = shape
        tall = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
        q = _orthonormal_columns(tall)
        q = q.T if n_rows < n_cols else q
        return jnp.asarray(scale, dtype) * q

    return init


def _orthonormal_columns(a: jax.Array) -> jax.Array:
    """Q of a = QR with diag(R) > 0 (a tall, full column rank): classical Gram–Schmidt applied
    twice per column ("CGS2"), which keeps Q orthonormal to working precision."""
    rows, cols = a.shape

    def add_column(j, q):
        v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        for _ in range(2):  # earlier columns only: columns j.. of q are still zero
            v = v - q @ (q.T @ v)
        v = v / jnp.linalg.norm(v)
        return jax.lax.dynamic_update_index_in_dim(q, v, j, axis=1)

    return jax.lax.fori_loop(0, cols, add_column, jnp.zeros((rows, cols), a.dtype))


def grouped_dense(x: jax.Array, kernel: jax.Array, group: jax.Array) -> jax.Array:
    """Row i of `x` times `kernel[group[i]]` (`kernel`: a stack, leading axis group): one
    matrix product with every kernel of the stack, then each row's own result kept, so that
    what follows the product runs once per row and not once per row and kernel."""
    every = jnp.einsum("bi,gio->bgo", x, kernel)
    return jnp.take_along_axis(every, group[:, None, None], axis=1)[:, 0]


class TwinQ(nn.Module):
    """Two independent Q-networks s → R^|A| (clipped double Q)."""

    n_actions: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "mish"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        q1 = MLP(self.hidden, self.n_actions, self.activation, name="q1")(obs)
        q2 = MLP(self.hidden, self.n_actions, self.activation, name="q2")(obs)
        return q1, q2
