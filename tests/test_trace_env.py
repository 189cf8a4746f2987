"""The MEC environment replaying the GenAI trace (`arrivals: trace`) and its scenarios."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddrl.envs import trace as genai
from ddrl.envs.mec import MEC, MECParams
from ddrl.envs.scenarios import PROTOTYPE_SPEEDS, ConfigError, build_mec


def _tiny_tables() -> genai.TraceTables:
    """2 BSs, 6 slots: slot 0 one task at BS 0; slot 2 two at BS 0, one at BS 1; slot 5 three at BS 1."""
    counts = np.array([[1, 0], [0, 0], [2, 1], [0, 0], [0, 0], [0, 3]], np.int32)
    first = np.concatenate([[0], np.cumsum(counts.reshape(-1))[:-1]]).reshape(counts.shape)
    tasks = counts.sum()
    return genai.TraceTables(
        counts=jnp.asarray(counts), first_request=jnp.asarray(first, jnp.int32),
        workload=jnp.arange(1.0, tasks + 1)[jnp.array([2, 0, 1, 3, 4, 5, 6])],  # 3, 1, 2, 4, 5, 6, 7
        input_mbit=jnp.zeros(tasks), result_mbit=jnp.zeros(tasks), steps=jnp.ones(tasks, jnp.int32),
        images=jnp.ones(tasks, jnp.int32), type_code=jnp.zeros(tasks, jnp.int32),
        failed=jnp.zeros(tasks, bool), request_id=jnp.arange(tasks, dtype=jnp.int32),
        slot_length_s=1.0, compression=1.0, max_tasks_per_bs=3, num_clipped=0,
    )  # fmt: skip


def _tiny_env() -> tuple[MEC, MECParams]:
    params = MECParams(capacity=jnp.array([1.0, 2.0]), rate=jnp.array([1e9, 1e9]), slot_length=1.0,
                       num_slots=6, deadline=math.inf, failure_penalty=0.0)  # fmt: skip
    env = MEC(num_servers=2, max_tasks=3, arrivals="trace", workload="trace", action_space="single",
              trace=_tiny_tables(), default_params=params)  # fmt: skip
    return env, params


def test_hand_computed_episode_replays_the_trace_and_skips_empty_slots():
    env, params = _tiny_env()
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    # Every task to ES 0 (1 GHz). Queue of ES 0: 3 Gcycles booked in slot 0, 2 left after it,
    # 1 after the empty slot 1; slot 2 books 1 + 2 + 4, so 1 + 7 - 3 = 5 remain at slot 5.
    expected = [  # (slot, BS, W, queue of ES 0 when the slot began, delay = wait + W / 1 GHz)
        (0, 0, 3.0, 0.0, 3.0), (2, 0, 1.0, 1.0, 2.0), (2, 0, 2.0, 1.0, 4.0), (2, 1, 4.0, 1.0, 8.0),
        (5, 1, 5.0, 5.0, 10.0), (5, 1, 6.0, 5.0, 16.0), (5, 1, 7.0, 5.0, 23.0),
    ]  # fmt: skip
    for index, (slot, bs, workload, queue, delay) in enumerate(expected):
        assert int(state.slot) == slot and int(env.deciding_bs(state)) == bs
        np.testing.assert_allclose(obs, [0.0, workload, queue, 0.0], atol=1e-6)
        obs, state, reward, terminated, truncated, info = step(jax.random.PRNGKey(index + 1), state, 0, params)
        np.testing.assert_allclose(-reward, delay, rtol=1e-5)
        assert bool(truncated) == (index == len(expected) - 1) and not bool(terminated)
    np.testing.assert_allclose(info["episode_make_span"], np.mean([e[-1] for e in expected]), rtol=1e-5)
    assert int(info["episode_tasks"]) == len(expected)
    assert int(state.slot) == 0 and float(obs[1]) == 3.0  # the reset starts the window again


def _replay(env: MEC, params: MECParams, steps: int, key: jax.Array) -> dict[str, np.ndarray]:
    """Random subset actions for `steps` steps; what each step decided."""

    def one(carry, key):
        state = carry
        action_key, step_key = jax.random.split(key)
        action = jax.random.randint(action_key, (), 0, env.num_actions)
        record = {"offset": state.trace_offset, "workload": state.workload, "slot": state.slot}
        _, state, _, _, truncated, _ = env.step(step_key, state, action, params)
        return state, {**record, "truncated": truncated}

    _, state = env.reset(jax.random.PRNGKey(1), params)
    return jax.device_get(jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, steps)))(state, key)[1])


def test_episodes_replay_their_trace_window_exactly():
    env, params = build_mec({"scenario": "trace", "num_slots": 20, "trace": {"utilisation": 0.6}})
    record = _replay(env, params, 3000, jax.random.PRNGKey(2))
    index = genai.cell_index(env.trace)
    workload = np.asarray(env.trace.workload)
    first = np.asarray(index.first)
    B, T = env.num_servers, int(params.num_slots)
    ends = np.flatnonzero(record["truncated"])
    assert ends.size >= 5
    offsets = []
    for start, end in zip(ends[:-1] + 1, ends[1:]):  # whole episodes only
        offset = int(record["offset"][start])
        offsets.append(offset)
        assert np.all(record["offset"][start : end + 1] == offset)
        assert 0 <= offset <= env.trace.num_slots - T
        window = workload[first[offset * B] : first[(offset + T) * B]]
        real = record["slot"][start : end + 1] < T  # a window without requests costs one empty step
        np.testing.assert_allclose(record["workload"][start : end + 1][real], window)
        assert real.all() or (real.sum() == 0 and end == start)
        assert np.all(np.diff(record["slot"][start : end + 1]) >= 0)
    assert len(set(offsets)) > 1  # each episode starts somewhere else in the trace


def test_mean_offered_load_matches_the_requested_utilisation():
    for utilisation in (0.3, 0.9):
        env, params = build_mec({"scenario": "trace", "trace": {"utilisation": utilisation}})
        tables = env.trace
        load = float(np.asarray(tables.workload).sum()) / (tables.num_slots * tables.slot_length_s)
        assert tables.num_clipped == 0
        # exact up to the last, partial slot of the window
        assert load / float(np.asarray(params.capacity).sum()) == pytest.approx(utilisation, rel=0.01)


def test_failed_requests_are_kept_unless_asked_and_prototype_speeds_hold():
    kept, _ = build_mec({"scenario": "trace"})
    dropped, _ = build_mec({"scenario": "trace", "trace": {"keep_failed": False}})
    window = genai.trace_window(genai.load_genai_trace(), 4 * 86_400, math.inf)
    assert kept.trace.workload.shape[0] == window.num_requests
    assert bool(np.asarray(kept.trace.failed).any())
    assert dropped.trace.workload.shape[0] == int((window.status_code == genai.STATUS_SUCCEED).sum())
    assert not bool(np.asarray(dropped.trace.failed).any())
    _, params = build_mec({"scenario": "prototype"})
    capacity = np.asarray(params.capacity)
    assert capacity.sum() == pytest.approx(150.0, rel=1e-5)
    speeds = [PROTOTYPE_SPEEDS[m] for m in ("jetson_xavier_nx",) * 3 + ("core_i7_2.2ghz", "quadro_rtx_4000")]
    np.testing.assert_allclose(capacity / capacity[-1], np.asarray(speeds) / speeds[-1], rtol=1e-5)


@pytest.mark.parametrize(
    "env_cfg, field",
    [
        ({"scenario": "trace", "trace": {"utilisation": 0.0}}, "env.trace.utilisation"),
        ({"scenario": "trace", "trace": {"utilisaton": 0.5}}, "env.trace.utilisaton"),
        ({"scenario": "trace", "trace": {"workload": "flops"}}, "env.trace.workload"),
        ({"scenario": "trace", "trace": {"start_day": 30}}, "env.trace.start_day"),
        ({"scenario": "trace", "num_slots": 100_000}, "env.num_slots"),
        ({"scenario": "amcoedge", "trace": {"utilisation": 0.5}}, "env.trace"),
    ],
)
def test_impossible_trace_configs_name_the_field(env_cfg, field):
    with pytest.raises(ConfigError) as error:
        build_mec(env_cfg)
    assert error.value.field_name == field
