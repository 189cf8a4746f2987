"""Diffusion schedule, denoiser and reverse-chain sampler."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl.nets import MLP, Denoiser, conditioned_denoiser, make_schedule, sample
from ddrl.nets.diffusion import cosine_betas, linear_betas, vp_betas
from ddrl.nets.mlp import PartedDense, mish, orthogonal, small_fan_in_product


def test_vp_schedule_matches_formula():
    T, beta_min, beta_max = 5, 0.1, 10.0
    expected_alphas = [
        np.exp(-beta_min / T - 0.5 * (beta_max - beta_min) * (2 * t - 1) / T**2) for t in range(1, T + 1)
    ]
    np.testing.assert_allclose(1.0 - vp_betas(T), expected_alphas, rtol=1e-12)
    schedule = make_schedule("vp", T)
    np.testing.assert_allclose(schedule.alphas_cumprod, np.cumprod(expected_alphas), rtol=1e-6)
    assert schedule.num_steps == T
    # the last reverse step (t = 1) puts all weight on x̂_0
    np.testing.assert_allclose(schedule.posterior_mean_coef_x0[0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(schedule.posterior_mean_coef_xt[0], 0.0, atol=1e-7)


@pytest.mark.parametrize("betas", [vp_betas(5), linear_betas(10), cosine_betas(10)])
def test_schedules_are_valid(betas):
    assert np.all((betas > 0) & (betas < 1))
    assert np.all(np.diff(np.cumprod(1 - betas)) < 0)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="unknown beta schedule"):
        make_schedule("sigmoid", 5)


def test_mish_matches_reference():
    x = jnp.linspace(-30.0, 30.0, 2001)
    np.testing.assert_allclose(mish(x), jax.nn.mish(x), atol=1e-5)


def test_mish_derivative_matches_reference_in_both_modes():
    """Its own derivative formula (one exponential) is mish's derivative, by jvp and by grad."""
    x = jnp.linspace(-30.0, 30.0, 2001)
    reference = jax.vmap(jax.grad(jax.nn.mish))(x)
    np.testing.assert_allclose(jax.vmap(jax.grad(mish))(x), reference, atol=1e-5)
    _, tangent = jax.jvp(mish, (x,), (jnp.full_like(x, 2.0),))
    np.testing.assert_allclose(tangent, 2.0 * reference, atol=2e-5)
    assert np.all(np.isfinite(jax.vmap(jax.grad(mish))(jnp.array([-1e4, -88.0, 0.0, 88.0, 1e4]))))


def _denoiser_and_params(n_actions=3, obs_dim=4):
    denoiser = Denoiser(n_actions, hidden=(16, 16))
    params = jax.jit(denoiser.init)(
        jax.random.PRNGKey(0), jnp.zeros((1, n_actions)), jnp.zeros((1,), jnp.int32), jnp.zeros((1, obs_dim))
    )
    return denoiser, params


def test_sampler_shapes_finite_and_clipped():
    denoiser, params = _denoiser_and_params()
    schedule = make_schedule("vp", 5)
    obs = jax.random.normal(jax.random.PRNGKey(1), (7, 4))
    key = jax.random.PRNGKey(2)
    start = jnp.ones((2, 7, 3))

    @jax.jit  # one compilation for all variants: compiling is the slow part on CPU
    def variants(obs):
        pair = jnp.stack([obs, obs])
        eps_fn = conditioned_denoiser(denoiser, params, obs, 5)
        eps_pair = conditioned_denoiser(denoiser, params, pair, 5)
        return (
            sample(eps_fn, schedule, (7, 3), key),
            sample(eps_fn, schedule, (7, 3), key, clip_x0=0.5),
            sample(eps_pair, schedule, (2, 7, 3), key, x_start=start),  # given start vector (LAD-TS)
            sample(eps_pair, schedule, (2, 7, 3), key, x_start=-start),
        )

    x0, clipped, from_start, from_other_start = variants(obs)
    assert x0.shape == (7, 3) and bool(jnp.all(jnp.isfinite(x0)))
    assert float(jnp.max(jnp.abs(clipped))) <= 0.5 + 1e-6  # the last step returns x̂_0 itself
    assert from_start.shape == (2, 7, 3)
    assert not np.allclose(from_start, from_other_start)


def test_soft_clip_bounds_x0_and_keeps_a_gradient_where_the_hard_clip_has_none():
    """An x̂_0 far past the bound: the hard clip returns the bound with zero gradient (nothing can
    pull it back), the soft clip stays strictly inside with a gradient of the right sign."""
    schedule = make_schedule("vp", 3)

    def x0(shift, soft):
        eps_fn = lambda x_t, t: jnp.zeros_like(x_t) - shift  # noqa: E731 (x̂_0 grows with shift)
        return sample(eps_fn, schedule, (4,), jax.random.PRNGKey(0), clip_x0=1.0, noise_free=True, soft_clip=soft)

    for soft in (False, True):
        value, grad = jax.value_and_grad(lambda s: jnp.sum(x0(s, soft)))(0.2)  # unclipped x̂_0 ≈ 3
        if soft:
            assert 0.0 < float(value) < 4.0 and float(grad) > 0.0  # 4 entries in (0, 1)
        else:
            assert float(value) == 4.0 and float(grad) == 0.0


def test_a_traced_bound_of_inf_is_no_clip_for_both_clips():
    """`clip_x0` may be traced (a tuning space searches `choice(3.0, inf)`): ±∞ leaves x̂_0 as the
    unclipped chain has it, and the soft clip's ∞·tanh(x/∞) = nan is avoided, gradient included."""
    schedule = make_schedule("vp", 3)
    eps_fn = lambda x_t, t: 0.3 * x_t - 0.2  # noqa: E731 (|x̂_0| well past a bound of 1)

    @jax.jit
    def x0_and_grad(bound):
        def total(shift, soft, clip):
            shifted = lambda x_t, t: eps_fn(x_t, t) - shift  # noqa: E731
            return jnp.sum(sample(shifted, schedule, (4,), jax.random.PRNGKey(0), clip_x0=clip, soft_clip=soft))
        return {(soft, clip is None): jax.value_and_grad(total)(0.0, soft, clip)
                for soft in (False, True) for clip in (None, bound)}  # fmt: skip

    out = x0_and_grad(jnp.inf)
    unclipped = out[(False, True)]
    for soft in (False, True):
        value, grad = out[(soft, False)]
        assert float(value) == float(unclipped[0]) and float(grad) == float(unclipped[1])
    assert abs(float(x0_and_grad(1.0)[(False, False)][0])) <= 4.0 < abs(float(unclipped[0]))  # a finite bound clips


def test_gradients_reach_every_denoiser_parameter():
    denoiser, params = _denoiser_and_params()
    schedule = make_schedule("vp", 5)
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, 4))

    def objective(p):
        x0 = sample(conditioned_denoiser(denoiser, p, obs, 5), schedule, (8, 3), jax.random.PRNGKey(3))
        return jnp.sum(jax.nn.softmax(x0) * jnp.arange(3.0))

    grads = jax.jit(jax.grad(objective))(params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))), path
        assert float(jnp.max(jnp.abs(leaf))) > 0.0, path


@pytest.mark.parametrize("time_mlp", [True, False])
def test_conditioned_denoiser_is_the_module_with_its_fixed_parts_computed_once(time_mlp):
    """The split first layer and the per-step time terms give the module's own ε_θ."""
    denoiser = Denoiser(3, hidden=(16, 8, 4), activation="mish", out_activation="tanh", time_mlp=time_mlp)
    x = jax.random.normal(jax.random.PRNGKey(4), (6, 3))
    obs = jax.random.normal(jax.random.PRNGKey(5), (6, 4))
    params = denoiser.init(jax.random.PRNGKey(0), x, jnp.zeros((6,), jnp.int32), obs)
    eps_fn = conditioned_denoiser(denoiser, params, obs, 5)
    for t in range(5):
        np.testing.assert_allclose(eps_fn(x, jnp.int32(t)), denoiser.apply(params, x, jnp.full((6,), t), obs),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def test_grouped_conditioned_denoiser_runs_each_row_through_its_own_network():
    """With a stack of parameter sets and a group per row, ε_θ of row i is that of set
    group[i] alone (what per-BS grouped acting relies on)."""
    denoiser = Denoiser(3, hidden=(16, 8), activation="mish", out_activation="tanh")
    x = jax.random.normal(jax.random.PRNGKey(4), (7, 3))
    obs = jax.random.normal(jax.random.PRNGKey(5), (7, 4))
    stacked = jax.vmap(lambda k: denoiser.init(k, x, jnp.zeros((7,), jnp.int32), obs))(jax.random.split(jax.random.PRNGKey(0), 3))
    group = jnp.array([2, 0, 1, 1, 2, 0, 2])

    @jax.jit  # one program for both sides (op by op, the 7 single-row networks took 92 s to dispatch in CI)
    def grouped_and_own(t):
        grouped = conditioned_denoiser(denoiser, stacked, obs, 5, group)(x, t)
        own = [conditioned_denoiser(denoiser, jax.tree.map(lambda leaf: leaf[g], stacked), obs[i : i + 1], 5)(x[i : i + 1], t)
               for i, g in enumerate(group.tolist())]  # fmt: skip
        return grouped, jnp.concatenate(own)

    for t in range(5):
        np.testing.assert_allclose(*grouped_and_own(jnp.int32(t)), rtol=1e-5, atol=1e-6)


def test_mlp_widths_and_activation():
    mlp = MLP((5, 6), 2, activation="tanh", out_activation="softmax")
    params = jax.jit(mlp.init)(jax.random.PRNGKey(0), jnp.zeros(3))
    shapes = [leaf.shape for leaf in jax.tree.leaves(params)]
    assert sorted(shapes) == sorted([(5,), (3, 5), (6,), (5, 6), (2,), (6, 2)])
    np.testing.assert_allclose(jnp.sum(jax.jit(mlp.apply)(params, jnp.ones(3))), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown activation"):
        MLP((4,), 1, activation="swishy").init(jax.random.PRNGKey(0), jnp.zeros(3))


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (1, 5)])
def test_orthogonal_init_is_flax_orthogonal_without_a_lapack_call(shape):
    """The MLP's orthogonal initialiser gives flax's matrices (same key, same Haar sample) to
    float32 rounding, with orthonormal columns (tall) or rows (wide) times the gain, and lowers
    to plain XLA operations: jaxlib 0.10's CPU QR custom call can hang XLA's thread pool
    (`ddrl.nets.mlp.orthogonal`)."""
    key = jax.random.PRNGKey(3)
    ours = np.asarray(orthogonal(np.sqrt(2))(key, shape))
    np.testing.assert_allclose(ours, nn.initializers.orthogonal(np.sqrt(2))(key, shape), atol=1e-5)
    gram = ours.T @ ours if shape[0] >= shape[1] else ours @ ours.T
    np.testing.assert_allclose(gram, 2.0 * np.eye(min(shape)), atol=1e-5)
    assert "custom_call" not in jax.jit(lambda k: orthogonal(1.0)(k, shape)).lower(key).as_text()


def _dense_on_concatenation(params, parts):
    """nn.Dense's own output on the concatenated parts (leading axes broadcast first)."""
    lead = jnp.broadcast_shapes(*(part.shape[:-1] for part in parts))
    joined = jnp.concatenate([jnp.broadcast_to(part, lead + part.shape[-1:]) for part in parts], axis=-1)
    return nn.Dense(params["params"]["kernel"].shape[1]).apply(params, joined)


@pytest.mark.parametrize("sizes", [(2,), (3,), (32, 1), (64, 64), (20, 3, 1)])
def test_parted_dense_is_dense_on_the_concatenation(sizes):
    """Same parameters as nn.Dense (same init from the same key), the same output and the same
    gradients to float rounding, with parts whose leading axes broadcast (per-set beside
    per-token features) and parts small enough to be broadcast products."""
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes))
    leads = [(4, 5, 7), (5, 1), (1, 7)]  # per (sample, state, token); per state; per token
    parts = [jax.random.normal(k, leads[i % 3] + (size,)) for i, (k, size) in enumerate(zip(keys, sizes))]
    joined = jnp.zeros((4, 5, 7, sum(sizes)))
    ours = PartedDense(6).init(jax.random.PRNGKey(1), *parts)
    flax_params = nn.Dense(6).init(jax.random.PRNGKey(1), joined)
    assert jax.tree.all(jax.tree.map(np.array_equal, ours, flax_params))
    out = PartedDense(6).apply(ours, *parts)
    assert out.shape == (4, 5, 7, 6)
    np.testing.assert_allclose(out, _dense_on_concatenation(ours, parts), rtol=1e-5, atol=1e-5)

    def loss(params, parts, layer):
        return jnp.sum(jnp.sin(layer(params, parts)))

    ours_grad = jax.grad(loss, argnums=(0, 1))(ours, parts, lambda p, xs: PartedDense(6).apply(p, *xs))
    flax_grad = jax.grad(loss, argnums=(0, 1))(ours, parts, _dense_on_concatenation)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), ours_grad, flax_grad)


def test_small_fan_in_product_and_its_derivatives_are_the_matrix_product():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 4))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    np.testing.assert_allclose(small_fan_in_product(x, kernel), x @ kernel, rtol=1e-5, atol=1e-5)
    weights = jax.random.normal(jax.random.PRNGKey(2), (3, 8, 5))
    grads = jax.grad(lambda a, k: jnp.sum(weights * small_fan_in_product(a, k)), argnums=(0, 1))(x, kernel)
    reference = jax.grad(lambda a, k: jnp.sum(weights * (a @ k)), argnums=(0, 1))(x, kernel)
    for ours, theirs in zip(grads, reference):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_mlp_of_several_inputs_is_the_mlp_of_their_concatenation():
    """`MLP(...)(a, b)` has the parameters of `MLP(...)(concatenate([a, b]))` and its output;
    so does a first layer of small fan-in computed as broadcast products."""
    tokens = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 32))
    pooled = jax.random.normal(jax.random.PRNGKey(1), (5, 1, 64))
    joined = jnp.concatenate([tokens, jnp.broadcast_to(pooled, (5, 7, 64))], axis=-1)
    plain = MLP((16, 16), 3, activation="mish")
    params = plain.init(jax.random.PRNGKey(2), joined)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, plain.init(jax.random.PRNGKey(2), tokens, pooled)))
    np.testing.assert_allclose(plain.apply(params, tokens, pooled), plain.apply(params, joined), rtol=1e-5, atol=1e-5)
    small, dense = MLP((16,), 3, "mish", small_fan_in=16), MLP((16,), 3, "mish")
    tiny = jax.random.normal(jax.random.PRNGKey(3), (9, 2))
    small_params = small.init(jax.random.PRNGKey(4), tiny)
    assert jax.tree.all(jax.tree.map(np.array_equal, small_params, dense.init(jax.random.PRNGKey(4), tiny)))
    np.testing.assert_allclose(small.apply(small_params, tiny), dense.apply(small_params, tiny), rtol=1e-5, atol=1e-5)
