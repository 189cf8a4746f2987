"""The workload splits of `ddrl.envs.allocation` against brute force and the authors' procedure."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from ddrl.envs import allocation as alloc
from ddrl.envs.reference import cwa_linear_system, cwa_water_filling

NUM_SERVERS = 6
NUM_INSTANCES = 200
RULES = {"cwa": alloc.cwa_exact, "cwa_published": alloc.cwa_published, "hecwa": alloc.hecwa}

# one compiled function per rule, batched over instances; shapes never change
_batched = {name: jax.jit(jax.vmap(rule)) for name, rule in RULES.items()}
_batched_make_span = jax.jit(jax.vmap(alloc.make_span, in_axes=(0, 0, 0, 0, None)), static_argnums=4)


def random_instances(seed: int, count: int = NUM_INSTANCES):
    """Waits, costs and non-empty masks, with ties, zero waits and very uneven waits mixed in."""
    rng = np.random.default_rng(seed)
    wait = rng.uniform(0.0, 2.0, (count, NUM_SERVERS))
    wait *= rng.random((count, NUM_SERVERS)) < 0.8  # some servers idle (w = 0, ties)
    wait[: count // 4] **= 3  # very uneven waits: water-filling must drop servers
    wait[count // 4 : count // 3, 1] = wait[count // 4 : count // 3, 0]  # exact ties
    cost = rng.uniform(0.01, 2.0, (count, NUM_SERVERS))
    selected = rng.random((count, NUM_SERVERS)) < 0.5
    selected[np.arange(count), rng.integers(0, NUM_SERVERS, count)] = True
    selected[:2] = True  # a few with every server
    return wait.astype(np.float32), cost.astype(np.float32), selected


def lp_min_make_span(wait, cost, selected) -> float:
    """min T s.t. w_i + x_i c_i <= T (i in S), Σ x = 1, x >= 0, x = 0 outside S.

    Every server of S is constrained, also one that gets x_i = 0, so this is the optimum
    of the make-span taken over all of S (the authors' `make_span_over_selected`).
    """
    B = len(wait)
    objective = np.zeros(B + 1)
    objective[B] = 1.0
    rows = [i for i in range(B) if selected[i]]
    A_ub = np.zeros((len(rows), B + 1))
    b_ub = np.zeros(len(rows))
    for k, i in enumerate(rows):
        A_ub[k, i] = cost[i]
        A_ub[k, B] = -1.0
        b_ub[k] = -wait[i]
    A_eq = np.concatenate([np.ones(B), [0.0]])[None]
    bounds = [(0, None) if selected[i] else (0, 0) for i in range(B)] + [(None, None)]
    result = linprog(objective, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
    assert result.status == 0, result.message
    return result.fun


def brute_force_make_span(wait, cost, selected) -> float:
    """min over x of max_{i in S, x_i > 0} (w_i + x_i c_i), the spec's make-span.

    A server with x_i = 0 does not count, so the constraint set depends on the support:
    enumerate every non-empty support U within S and solve the LP restricted to U.
    """
    members = [i for i in range(len(wait)) if selected[i]]
    best = np.inf
    for bits in range(1, 2 ** len(members)):
        support = np.zeros(len(wait), bool)
        support[[i for k, i in enumerate(members) if bits >> k & 1]] = True
        best = min(best, lp_min_make_span(wait, cost, support))
    return best


@pytest.fixture(scope="module")
def instances():
    return random_instances(seed=0)


@pytest.fixture(scope="module")
def lp_optima(instances):
    """The LP over all of S (also servers without work constrained), per instance."""
    wait, cost, selected = instances
    return np.array([lp_min_make_span(w, c, s) for w, c, s in zip(wait.astype(float), cost.astype(float), selected)])


NUM_BRUTE_FORCE = 25  # support enumeration: up to 63 LPs per instance


@pytest.fixture(scope="module")
def brute_force_optima(instances):
    """The spec's optimum (servers without work not counted), for the first instances."""
    wait, cost, selected = (a[:NUM_BRUTE_FORCE] for a in instances)
    return np.array([brute_force_make_span(w, c, s) for w, c, s in zip(wait.astype(float), cost.astype(float), selected)])


def test_cwa_exact_matches_brute_force_optimum(instances, brute_force_optima):
    wait, cost, selected = (a[:NUM_BRUTE_FORCE] for a in instances)
    fractions = _batched["cwa"](wait, cost, selected)
    make_span = np.asarray(_batched_make_span(wait, cost, fractions, selected, False))
    np.testing.assert_allclose(make_span, brute_force_optima, rtol=1e-4, atol=1e-6)


def test_cwa_exact_matches_linear_program_over_all_selected(instances, lp_optima):
    """Water-filling also solves the LP over all of S: its T* is the min-max, and the LP
    optimum is max(T*, max_S w), which is the make-span counted over all of S."""
    wait, cost, selected = instances
    fractions = _batched["cwa"](wait, cost, selected)
    make_span = np.asarray(_batched_make_span(wait, cost, fractions, selected, True))
    np.testing.assert_allclose(make_span, lp_optima, rtol=1e-4, atol=1e-6)


def test_cwa_exact_every_used_part_ends_together(instances):
    wait, cost, selected = instances
    fractions = np.asarray(_batched["cwa"](wait, cost, selected))
    finish = wait + fractions * cost
    make_span = np.where(selected & (fractions > 0), finish, -np.inf).max(axis=1, keepdims=True)
    used = selected & (fractions > 1e-6)
    np.testing.assert_allclose(np.where(used, finish, make_span), np.broadcast_to(make_span, finish.shape), rtol=1e-4)
    # an unused selected server could not have helped: it would start no earlier than T*
    unused = selected & (fractions == 0)
    assert np.all(np.where(unused, wait >= make_span * (1 - 1e-5), True))


def test_reference_water_filling_matches_brute_force(instances, brute_force_optima):
    """The test oracle itself: sort + grow U is the optimal min-max split."""
    wait, cost, selected = (a[:NUM_BRUTE_FORCE].astype(float) if a.dtype != bool else a for a in instances)
    for w, c, s, optimum in zip(wait, cost, selected, brute_force_optima):
        x = cwa_water_filling(w, c, s)
        np.testing.assert_allclose(x.sum(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(np.max(np.where(s & (x > 0), w + x * c, -np.inf)), optimum, rtol=1e-7, atol=1e-9)


def test_cwa_exact_matches_reference_fractions(instances):
    wait, cost, selected = instances
    fractions = np.asarray(_batched["cwa"](wait, cost, selected))
    for w, c, s, x in zip(wait.astype(float), cost.astype(float), selected, fractions):
        np.testing.assert_allclose(x, cwa_water_filling(w, c, s), rtol=1e-4, atol=2e-6)


def test_cwa_published_is_linear_system_then_clip(instances):
    wait, cost, selected = instances
    fractions = np.asarray(_batched["cwa_published"](wait, cost, selected))
    for w, c, s, x in zip(wait.astype(float), cost.astype(float), selected, fractions):
        np.testing.assert_allclose(x, cwa_linear_system(w, c, s), rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("rule", ["cwa_published", "hecwa"])
def test_other_rules_are_never_better_than_exact(rule, instances, brute_force_optima):
    wait, cost, selected = (a[:NUM_BRUTE_FORCE] for a in instances)
    fractions = _batched[rule](wait, cost, selected)
    make_span = np.asarray(_batched_make_span(wait, cost, fractions, selected, False))
    assert np.all(make_span >= brute_force_optima * (1 - 1e-4) - 1e-6)


def test_cwa_published_and_exact_agree_when_no_part_is_negative():
    """With equal waits every server is used, so the two rules coincide: x_i ∝ 1/c_i."""
    wait = np.full((4, NUM_SERVERS), 0.3, np.float32)
    cost = np.random.default_rng(1).uniform(0.1, 1.0, (4, NUM_SERVERS)).astype(np.float32)
    selected = np.ones((4, NUM_SERVERS), bool)
    expected = (1 / cost) / (1 / cost).sum(axis=1, keepdims=True)
    for rule in ("cwa", "cwa_published", "hecwa"):
        np.testing.assert_allclose(_batched[rule](wait, cost, selected), expected, rtol=1e-5)


def test_hecwa_is_inverse_cost(instances):
    wait, cost, selected = instances
    fractions = np.asarray(_batched["hecwa"](wait, cost, selected))
    inverse = np.where(selected, 1.0 / cost, 0.0)
    np.testing.assert_allclose(fractions, inverse / inverse.sum(axis=1, keepdims=True), rtol=1e-5)
    # waits are ignored
    np.testing.assert_allclose(_batched["hecwa"](wait * 0 + 5.0, cost, selected), fractions, rtol=1e-6)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_fractions_are_a_distribution_over_the_chosen_set(rule, instances):
    wait, cost, selected = instances
    fractions = np.asarray(_batched[rule](wait, cost, selected))
    assert np.all(np.isfinite(fractions))
    assert np.all(fractions >= 0)
    assert np.all(fractions[~selected] == 0)
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-5)


def test_single_server_takes_everything():
    wait = np.array([[0.5, 0.1, 2.0, 0.0, 1.0, 0.3]], np.float32)
    cost = np.array([[0.2, 0.4, 0.1, 0.3, 0.2, 0.5]], np.float32)
    for b in range(NUM_SERVERS):
        selected = np.eye(NUM_SERVERS, dtype=bool)[b][None]
        for rule in RULES:
            np.testing.assert_array_equal(_batched[rule](wait, cost, selected), selected.astype(np.float32))
        np.testing.assert_allclose(
            _batched_make_span(wait, cost, selected.astype(np.float32), selected, False), wait[0, b] + cost[0, b]
        )


def test_make_span_quirk_counts_selected_servers_without_work():
    wait = np.array([0.1, 0.15, 1.05, 0, 0, 0], np.float32)
    cost = np.array([0.4, 0.3, 0.2, 1, 1, 1], np.float32)
    selected = np.array([True, True, True, False, False, False])
    x = _batched["cwa"](wait[None], cost[None], selected[None])[0]
    # water-filling: U = {0, 1}, T* = (1 + 0.1/0.4 + 0.15/0.3) / (1/0.4 + 1/0.3) = 1.75 / (35/6) = 0.3
    np.testing.assert_allclose(x, [0.5, 0.5, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(_batched_make_span(wait[None], cost[None], x[None], selected[None], False), [0.3], rtol=1e-6)
    np.testing.assert_allclose(_batched_make_span(wait[None], cost[None], x[None], selected[None], True), [1.05], rtol=1e-6)


finite = st.floats(0.0, 3.0, allow_nan=False, width=32)
positive = st.floats(0.015625, 3.0, allow_nan=False, width=32)


@settings(max_examples=30, deadline=None)
@given(
    wait=st.lists(finite, min_size=NUM_SERVERS, max_size=NUM_SERVERS),
    cost=st.lists(positive, min_size=NUM_SERVERS, max_size=NUM_SERVERS),
    bits=st.integers(1, 2**NUM_SERVERS - 1),
)
def test_allocation_properties(wait, cost, bits):
    selected = (bits >> np.arange(NUM_SERVERS)) & 1 == 1
    w, c = np.array([wait], np.float32), np.array([cost], np.float32)
    s = selected[None]
    optimum = brute_force_make_span(w[0].astype(float), c[0].astype(float), selected)
    for rule in RULES:
        x = np.asarray(_batched[rule](w, c, s))[0]
        assert np.all(x >= 0) and np.all(x[~selected] == 0)
        np.testing.assert_allclose(x.sum(), 1.0, rtol=1e-5)
        span = float(_batched_make_span(w, c, x[None], s, False)[0])
        assert span >= optimum * (1 - 1e-4) - 1e-6
        if rule == "cwa":
            np.testing.assert_allclose(span, optimum, rtol=1e-4, atol=1e-6)
