"""The multi-access edge computing (MEC) environment of MEC_MODEL.md, as a gymnax environment.

One `step` decides one arrived task: the agent picks a set of edge servers (ESs), the task is
split over them (`allocation`), and the reward is minus its make-span. Tasks are decided in
the published order (BS outer, task index inner); absent tasks cost no step, because the
next arrived task is found by jumping ahead (a geometric gap for Bernoulli arrivals, a table
lookup for a replayed request trace). When
a slot's last task is decided the queues advance one slot (§5) inside the same `step`.
An episode is `num_slots` slots; it ends with `truncated = True` (a time limit: the
queues would go on), and the environment resets itself as gymnax environments do.

Static choices (shapes, arrival and workload models, action space, allocation rule and the
authors' quirks) live on the environment object; every number lives in `MECParams`, a
pytree that can be vmapped for sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from ddrl.envs import allocation as alloc
from ddrl.envs.actions import ActionSpace
from ddrl.envs.trace import TraceTables, cell_index

ARRIVAL_MODELS = ("bernoulli", "uniform_count", "trace")
WORKLOAD_MODELS = ("density", "diffusion_steps", "trace")
OBSERVATIONS = ("authors", "rich", "servers")  # servers: rich + each ES's capacity and rate
_UNIFORMS_PER_STEP = 7  # next-task gap, data size, four task-attribute draws, first gap after a reset


@dataclass(frozen=True)
class Quirks:
    """Behaviours of the authors' simulators, each switchable (MEC_MODEL.md §2, §4)."""

    per_index_task_profile: bool = False  # density (or c, q, R) fixed per task index n
    make_span_over_selected: bool = False  # max over all of S, also servers with x = 0
    tx_cap: bool = False  # TX_b capped at the slot length after a multi-ES decision
    tx_reset_each_slot: bool = False  # transmitter backlog dropped at each slot end
    tx_counts_local_part: bool = False  # the local share also occupies BS b's transmitter
    local_waits_for_tx: bool = False  # the local part waits for the transmitter too
    local_pays_transfer: bool = False  # the local part pays D / r_b as if it were sent
    wait_cap: bool = False  # every waiting time capped at the deadline


@struct.dataclass
class MECParams(environment.EnvParams):
    """Every number of a scenario (units: Gcycles, GHz, Mbit, Mbit/s, s)."""

    capacity: jax.Array = field(default_factory=lambda: jnp.array([10.0, 20, 30, 40, 50]))
    rate: jax.Array = field(default_factory=lambda: jnp.array([400.0, 425, 450, 475, 500]))
    slot_length: float = 1.0  # Δ
    num_slots: int = 60  # T slots per episode
    arrival_prob: float = 0.3  # p, per potential task per slot (bernoulli arrivals)
    data_size_min: float = 2.0  # D ~ U[min, max]
    data_size_max: float = 5.0
    density_min: float = 0.1024  # ρ ~ U[min, max] Gcycles/Mbit (density workload)
    density_max: float = 0.3072
    steps_min: int = 1  # q ~ U{min..max} denoising steps (diffusion_steps workload)
    steps_max: int = 14
    step_cost_min: float = 0.1024  # c ~ U[min, max] Gcycles per step
    step_cost_max: float = 0.3072
    result_size_min: float = 0.6  # R ~ U[min, max] Mbit returned
    result_size_max: float = 1.0
    deadline: float = 1.0  # τ; jnp.inf for none
    failure_penalty: float = 10.0  # κ: a failed task's reward is -κ·τ
    capacity_noise: float = 0.0  # σ of the AR(1) capacity factor (0: the authors' model)
    capacity_noise_corr: float = 0.9  # φ of the AR(1) capacity factor
    capacity_floor: float = 0.5  # u_min: the capacity factor stays in [u_min, 1]


@struct.dataclass
class MECState(environment.EnvState):
    """Queues, within-slot accumulators, the task being decided and episode totals."""

    queue: jax.Array  # Q_i(t), Gcycles waiting at ES i when the slot began
    slot_load: jax.Array  # Qb_i, Gcycles assigned to ES i earlier in this slot
    tx_busy: jax.Array  # TX_b, seconds BS b's transmitter is already busy
    capacity_factor: jax.Array  # u_i(t): ES i runs at capacity_i · u_i(t)
    last_capacity_factor: jax.Array  # u_i(t-1), what a scheduler may have observed
    slot: jax.Array  # t
    position: jax.Array  # b·N + n of the task being decided
    bs_task_count: jax.Array  # tasks at the current BS this slot (uniform_count, trace)
    trace_offset: jax.Array  # trace slot at which this episode started (trace arrivals)
    data_size: jax.Array  # D of the task being decided
    workload: jax.Array  # W
    result_size: jax.Array  # R
    task_profile: jax.Array  # (N, 4) per-index [density, step cost, steps, result size]
    total_make_span: jax.Array  # episode sums over decided tasks
    total_raw_delay: jax.Array
    total_lower_bound: jax.Array
    num_failed: jax.Array
    num_decided: jax.Array
    processed: jax.Array  # (B,) Gcycles processed this episode
    offered: jax.Array  # (B,) Gcycles that could have been processed


@struct.dataclass
class Decision:
    """The outcome of sending the current task to a set of servers (no state change)."""

    selected: jax.Array  # (B,) bool
    fractions: jax.Array  # (B,) workload share x_i
    wait: jax.Array  # (B,) w_i
    cost: jax.Array  # (B,) c_i
    raw_delay: jax.Array  # make-span T
    make_span: jax.Array  # T, or τ on failure (the authors' metric)
    failed: jax.Array
    reward: jax.Array


def _lerp(low, high, u):
    return low + (high - low) * u


def _select(pred: jax.Array, if_true: MECState, if_false: MECState) -> MECState:
    """Elementwise choice between two states (the task profile is shared, not selected)."""
    chosen = jax.tree.map(
        lambda a, b: jnp.where(pred, a, b),
        if_true.replace(task_profile=None),
        if_false.replace(task_profile=None),
    )
    return chosen.replace(task_profile=if_false.task_profile)


class MEC(environment.Environment[MECState, MECParams]):
    """Task offloading over `num_servers` collaborating edge servers (MEC_MODEL.md)."""

    step_metrics = ("make_span", "failed")  # per-task info the training loop averages per chunk

    def __init__(
        self,
        num_servers: int = 5,
        max_tasks: int = 50,
        arrivals: str = "bernoulli",
        workload: str = "density",
        action_space: str = "subset",
        topk: int = 3,
        allocation: str = "cwa",
        quirks: Quirks = Quirks(),
        observation: str = "authors",
        uncertain_capacity: bool = False,
        default_params: MECParams | None = None,
        trace: TraceTables | None = None,
    ):
        super().__init__()
        if arrivals not in ARRIVAL_MODELS:
            raise ValueError(f"arrivals: unknown {arrivals!r}; expected one of {ARRIVAL_MODELS}")
        if workload not in WORKLOAD_MODELS:
            raise ValueError(f"workload: unknown {workload!r}; expected one of {WORKLOAD_MODELS}")
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation: unknown {observation!r}; expected one of {OBSERVATIONS}")
        if (arrivals == "trace") != (workload == "trace") or (arrivals == "trace") != (trace is not None):
            raise ValueError("arrivals='trace' needs workload='trace' and trace tables, and vice versa")
        if trace is not None and trace.num_bs != num_servers:
            raise ValueError(f"trace tables split requests over {trace.num_bs} BSs, not {num_servers}")
        if trace is not None and trace.max_tasks_per_bs != max_tasks:
            raise ValueError(f"trace tables hold {trace.max_tasks_per_bs} tasks per BS and slot, not {max_tasks}")
        if allocation not in alloc.ALLOCATIONS:
            raise ValueError(f"allocation: unknown {allocation!r}; expected one of {alloc.ALLOCATIONS}")
        self.num_servers = num_servers
        self.max_tasks = max_tasks
        self.arrivals = arrivals
        self.workload_model = workload
        self.actions = ActionSpace(action_space, num_servers, topk)
        self.allocation = allocation
        self.quirks = quirks
        self.observation = observation
        self.uncertain_capacity = uncertain_capacity
        self._default_params = default_params or MECParams()
        self.trace = trace
        if trace is not None:
            self._cells = cell_index(trace)

    # --- gymnax API -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "MEC"

    @property
    def default_params(self) -> MECParams:
        return self._default_params

    @property
    def num_actions(self) -> int:
        return self.actions.num_actions

    def action_space(self, params: MECParams | None = None) -> spaces.Space:
        return self.actions.gymnax_space()

    def observation_space(self, params: MECParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, jnp.inf, (self.obs_size,), jnp.float32)

    @property
    def obs_size(self) -> int:
        B = self.num_servers
        if self.observation == "rich":
            return 2 + 3 * B + 1 + B + 1
        if self.observation == "servers":
            return 2 + 3 * B + 1 + B + 1 + 2 * B
        return (1 if self.workload_model == "density" else 2) + B

    def reset_env(self, key: jax.Array, params: MECParams) -> tuple[jax.Array, MECState]:
        """A new episode with a newly drawn per-index task profile."""
        profile_key, task_key = jax.random.split(key)
        uniforms = jax.random.uniform(task_key, (_UNIFORMS_PER_STEP,))
        state = self._start_episode(task_key, self._draw_profile(profile_key, params), uniforms[6], params)
        state = self._draw_task(state, uniforms[1:6], params)
        return self.get_obs(state, params), state

    def step(
        self,
        key: jax.Array,
        state: MECState,
        action: Any,
        params: MECParams | None = None,
    ) -> tuple[jax.Array, MECState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """Decide the current task, move to the next arrived task; auto-reset at episode end.

        The per-index task profile survives the reset, as in the authors' simulators, where it
        is drawn once when the environment is built.
        """
        params = self.default_params if params is None else params
        uniforms = jax.random.uniform(key, (_UNIFORMS_PER_STEP,))
        # a step meets no task only after an episode in which nothing arrived at all
        real_task = state.slot < params.num_slots
        decision = self.decide(state, action, params)
        decision = decision.replace(reward=jnp.where(real_task, decision.reward, 0.0))
        decided = self._apply(state, decision, params, real_task)

        advanced = self._advance(key, decided, *self._next_task(decided, uniforms[0], params), params)
        truncated = ~real_task | (advanced.slot >= params.num_slots)
        info = self._info(decided, decision, advanced, truncated, real_task)

        # the reset needs its own draw: whether the episode ended depends on uniforms[0]
        fresh = self._start_episode(key, state.task_profile, uniforms[6], params)
        state = _select(truncated, fresh, advanced)
        state = self._draw_task(state, uniforms[1:6], params)
        info["final_observation"] = self.get_obs(advanced, params)
        terminated = jnp.zeros((), bool)
        return self.get_obs(state, params), state, decision.reward, terminated, truncated, info

    def step_env(self, key, state, action, params):
        """Unused: `step` is overridden so that the reset shares this step's draws."""
        raise NotImplementedError("MEC implements step directly")

    def is_truncated(self, state: MECState, params: MECParams) -> jax.Array:
        return state.slot >= params.num_slots

    def is_terminated(self, state: MECState, params: MECParams) -> jax.Array:
        return jnp.zeros((), bool)

    def get_obs(self, state: MECState, params: MECParams | None = None, key=None) -> jax.Array:
        """Authors' observation [D, (W,) Q_1..Q_B], the rich one (MEC_MODEL.md §6), or
        `servers`: the rich one followed by each ES's capacity f_i / mean(f) and rate
        r_i / mean(r) (static; what a network that does not know the servers by position,
        e.g. `d2sac_set`, needs to tell them apart)."""
        params = self.default_params if params is None else params
        rich = self.observation in ("rich", "servers")
        parts = [state.data_size[None]]
        if rich or self.workload_model != "density":
            parts.append(state.workload[None])
        parts.append(state.queue)
        if rich:
            bs = self.deciding_bs(state)
            parts += [
                state.slot_load,
                state.tx_busy[bs][None],
                jax.nn.one_hot(bs, self.num_servers),
                (state.slot / params.num_slots)[None],
                state.last_capacity_factor,
            ]
        if self.observation == "servers":
            parts += [params.capacity / jnp.mean(params.capacity), params.rate / jnp.mean(params.rate)]
        return jnp.concatenate(parts).astype(jnp.float32)

    # --- the physics --------------------------------------------------------------------

    def deciding_bs(self, state: MECState) -> jax.Array:
        """Base station of the task being decided (for per-BS agents)."""
        return state.position // self.max_tasks

    def task_index(self, state: MECState) -> jax.Array:
        return state.position % self.max_tasks

    def cells_per_bs(self, params: MECParams) -> int:
        """Number of (slot, task index) cells of one BS in an episode (LAD-TS's latent table)."""
        return int(params.num_slots) * self.max_tasks

    def agent_context(self, state: MECState, params: MECParams) -> tuple[jax.Array, jax.Array]:
        """What an agent may read besides the observation: the deciding BS and the task's
        cell (slot, task index) within that BS, as one flat index."""
        slot = jnp.minimum(state.slot, params.num_slots - 1)
        cell = slot * self.max_tasks + self.task_index(state)
        return self.deciding_bs(state).astype(jnp.int32), cell.astype(jnp.int32)

    def wait_and_cost(self, state: MECState, params: MECParams) -> tuple[jax.Array, jax.Array]:
        """Per-ES waiting time w_i and whole-task cost c_i of the current task (§4)."""
        q = self.quirks
        bs = self.deciding_bs(state)
        remote = jnp.arange(self.num_servers) != bs
        capacity = params.capacity * state.capacity_factor
        transmitter_wait = jnp.where(remote | q.local_waits_for_tx, state.tx_busy[bs], 0.0)
        wait = transmitter_wait + (state.queue + state.slot_load) / capacity
        if q.wait_cap:
            wait = jnp.minimum(wait, params.deadline)
        transfer = jnp.where(remote | q.local_pays_transfer, state.data_size / params.rate, 0.0)
        cost = transfer + state.workload / capacity + state.result_size / params.rate
        return wait, cost

    def evaluate_mask(self, state: MECState, selected: jax.Array, params: MECParams) -> Decision:
        """What sending the current task to the servers in `selected` would give."""
        wait, cost = self.wait_and_cost(state, params)
        fractions = alloc.allocate(self.allocation, wait, cost, selected)
        raw_delay = alloc.make_span(
            wait, cost, fractions, selected, self.quirks.make_span_over_selected
        )
        failed = raw_delay > params.deadline
        make_span = jnp.where(failed, params.deadline, raw_delay)
        reward = jnp.where(failed, -params.failure_penalty * params.deadline, -raw_delay)
        return Decision(selected, fractions, wait, cost, raw_delay, make_span, failed, reward)

    def decide(self, state: MECState, action: Any, params: MECParams) -> Decision:
        """Outcome of `action` for the current task."""
        selected = self.actions.to_mask(action, self.deciding_bs(state))
        return self.evaluate_mask(state, selected, params)

    def lower_bound(self, state: MECState, params: MECParams) -> jax.Array:
        """The task alone on empty queues, split over every server with exact cwa."""
        _, cost = self.wait_and_cost(state, params)
        return 1.0 / alloc.server_sum(1.0 / cost)

    def _apply(self, state: MECState, d: Decision, params: MECParams, real_task) -> MECState:
        """Book the decided task: within-slot loads, transmitter, episode totals."""
        q = self.quirks
        bs = self.deciding_bs(state)
        sent = (jnp.arange(self.num_servers) != bs) | q.tx_counts_local_part
        tx = state.tx_busy[bs] + alloc.server_sum(jnp.where(sent, d.fractions * state.data_size / params.rate, 0.0))
        if q.tx_cap:
            tx = jnp.where(alloc.server_sum(d.selected.astype(jnp.int32)) > 1, jnp.minimum(tx, params.slot_length), tx)
        booked = state.replace(
            slot_load=state.slot_load + d.fractions * state.workload,
            tx_busy=state.tx_busy.at[bs].set(tx),
            time=state.time + 1,
            total_make_span=state.total_make_span + d.make_span,
            total_raw_delay=state.total_raw_delay + d.raw_delay,
            total_lower_bound=state.total_lower_bound + self.lower_bound(state, params),
            num_failed=state.num_failed + d.failed,
            num_decided=state.num_decided + 1,
        )
        return jax.tree.map(lambda a, b: jnp.where(real_task, a, b), booked, state)

    def _end_slot(self, key: jax.Array, state: MECState, params: MECParams) -> MECState:
        """Queues advance one slot (§5); transmitters drain; capacity factors move."""
        capacity = params.capacity * state.capacity_factor
        served = capacity * params.slot_length
        backlog = state.queue + state.slot_load
        if self.quirks.tx_reset_each_slot:
            tx_busy = jnp.zeros_like(state.tx_busy)
        else:
            tx_busy = jnp.maximum(state.tx_busy - params.slot_length, 0.0)
        factor = state.capacity_factor
        if self.uncertain_capacity:
            shock = jax.random.normal(jax.random.fold_in(key, state.slot), factor.shape)
            factor = 1.0 + params.capacity_noise_corr * (factor - 1.0) + params.capacity_noise * shock
            factor = jnp.clip(factor, params.capacity_floor, 1.0)
        return state.replace(
            queue=jnp.maximum(backlog - served, 0.0),
            slot_load=jnp.zeros_like(state.slot_load),
            tx_busy=tx_busy,
            last_capacity_factor=state.capacity_factor,
            capacity_factor=factor,
            slot=state.slot + 1,
            processed=state.processed + jnp.minimum(backlog, served),
            offered=state.offered + served,
        )

    def _skip_empty_slots(self, key: jax.Array, state: MECState, count: jax.Array, params: MECParams) -> MECState:
        """`count` slots in which nothing arrives (closed form unless capacity is uncertain)."""
        if self.uncertain_capacity:
            def one_slot(carry):
                state, left = carry
                return self._end_slot(key, state, params), left - 1

            return jax.lax.while_loop(lambda carry: carry[1] > 0, one_slot, (state, count))[0]
        served = params.capacity * state.capacity_factor * params.slot_length * count
        if self.quirks.tx_reset_each_slot:
            tx_busy = jnp.where(count > 0, 0.0, state.tx_busy)
        else:
            tx_busy = jnp.maximum(state.tx_busy - params.slot_length * count, 0.0)
        return state.replace(
            queue=jnp.maximum(state.queue - served, 0.0),
            tx_busy=tx_busy,
            slot=state.slot + count,
            processed=state.processed + jnp.minimum(state.queue, served),
            offered=state.offered + served,
        )

    def _advance(self, key, state: MECState, slot, position, count, params: MECParams) -> MECState:
        """Move to the task at (`slot`, `position`), ending the slots in between."""
        slots_ended = slot - state.slot
        ended = self._end_slot(key, state, params)
        ended = self._skip_empty_slots(key, ended, jnp.maximum(slots_ended - 1, 0), params)
        moved = _select(slots_ended > 0, ended, state)
        return moved.replace(position=position, bs_task_count=count)

    # --- arrivals ---------------------------------------------------------------------

    def _geometric_gap(self, u: jax.Array, params: MECParams) -> jax.Array:
        """Number of absent potential tasks before the next present one (Bernoulli(p))."""
        gap = jnp.floor(jnp.log1p(-u) / jnp.log1p(-params.arrival_prob))
        limit = self.num_servers * self.max_tasks * params.num_slots
        return jnp.clip(gap, 0, limit).astype(jnp.int32)

    def _task_count(self, u: jax.Array) -> jax.Array:
        """Tasks at one BS in one slot, uniform on {1..N} (uniform_count arrivals)."""
        return jnp.minimum(1 + jnp.floor(u * self.max_tasks), self.max_tasks).astype(jnp.int32)

    def _next_task(self, state: MECState, u: jax.Array, params: MECParams):
        """(slot, position, BS task count) of the next arrived task; slot = T: none left.

        Bernoulli arrivals are i.i.d. over the T·B·N potential tasks of an episode, so the
        gap to the next one is geometric and may cross slot boundaries.
        """
        per_slot = self.num_servers * self.max_tasks
        if self.arrivals == "bernoulli":
            following = state.slot * per_slot + state.position + 1 + self._geometric_gap(u, params)
            slot = jnp.minimum(following // per_slot, params.num_slots)
            return slot, following % per_slot, state.bs_task_count
        if self.arrivals == "trace":
            same_bs = self.task_index(state) + 1 < state.bs_task_count
            here = (state.trace_offset + state.slot) * self.num_servers + self.deciding_bs(state)
            following = self._cells.next_nonempty[jnp.minimum(here + 1, self._cells.end)]
            slot = jnp.minimum(following // self.num_servers - state.trace_offset, params.num_slots)
            position = (following % self.num_servers) * self.max_tasks
            return (
                jnp.where(same_bs, state.slot, slot),
                jnp.where(same_bs, state.position + 1, position),
                jnp.where(same_bs, state.bs_task_count, self._cells.counts[following]),
            )
        same_bs = self.task_index(state) + 1 < state.bs_task_count
        next_bs_start = (self.deciding_bs(state) + 1) * self.max_tasks
        same_slot = same_bs | (next_bs_start < per_slot)
        position = jnp.where(same_bs, state.position + 1, jnp.where(same_slot, next_bs_start, 0))
        count = jnp.where(same_bs, state.bs_task_count, self._task_count(u))
        return jnp.where(same_slot, state.slot, state.slot + 1), position, count

    def _start_episode(self, key, task_profile: jax.Array, u: jax.Array, params: MECParams) -> MECState:
        """Empty queues, pointing at the episode's first arrived task."""
        state = self._new_episode(task_profile, params)
        if self.arrivals == "trace":  # a uniform start slot in the trace, then its first request
            last_start = self.trace.num_slots - params.num_slots
            offset = jnp.clip(jnp.floor(u * (last_start + 1)), 0, last_start).astype(jnp.int32)
            first = self._cells.next_nonempty[offset * self.num_servers]
            slot = jnp.minimum(first // self.num_servers - offset, params.num_slots)
            state = self._skip_empty_slots(key, state.replace(trace_offset=offset), slot, params)
            return state.replace(
                position=(first % self.num_servers) * self.max_tasks, bs_task_count=self._cells.counts[first]
            )
        if self.arrivals == "bernoulli":
            first = self._geometric_gap(u, params)
            per_slot = self.num_servers * self.max_tasks
            slot = jnp.minimum(first // per_slot, params.num_slots)
            state = self._skip_empty_slots(key, state, slot, params)
            return state.replace(position=first % per_slot)
        return state.replace(bs_task_count=self._task_count(u))

    # --- tasks ------------------------------------------------------------------------

    def _draw_profile(self, key: jax.Array, params: MECParams) -> jax.Array:
        """Per-index [density, step cost, steps, result size], fixed for the episode run."""
        u = jax.random.uniform(key, (self.max_tasks, 4))
        return self._task_attributes(u, params)

    def _task_attributes(self, u: jax.Array, params: MECParams) -> jax.Array:
        density = _lerp(params.density_min, params.density_max, u[..., 0])
        step_cost = _lerp(params.step_cost_min, params.step_cost_max, u[..., 1])
        steps = jnp.floor(_lerp(params.steps_min, params.steps_max + 1, u[..., 2]))
        steps = jnp.clip(steps, params.steps_min, params.steps_max)
        result_size = _lerp(params.result_size_min, params.result_size_max, u[..., 3])
        return jnp.stack([density, step_cost, steps, result_size], axis=-1)

    def _draw_task(self, state: MECState, u: jax.Array, params: MECParams) -> MECState:
        """Size and workload of the task now being decided (read from the trace if replayed)."""
        if self.workload_model == "trace":  # real requests: the per-index profile quirk does not apply
            cell = (state.trace_offset + state.slot) * self.num_servers + self.deciding_bs(state)
            index = self._cells.first[jnp.minimum(cell, self._cells.end)] + self.task_index(state)
            index = jnp.clip(index, 0, self.trace.workload.shape[0] - 1)
            return state.replace(
                data_size=self.trace.input_mbit[index],
                workload=self.trace.workload[index],
                result_size=self.trace.result_mbit[index],
            )
        data_size = _lerp(params.data_size_min, params.data_size_max, u[0])
        if self.quirks.per_index_task_profile:
            density, step_cost, steps, result_size = state.task_profile[self.task_index(state)]
        else:
            density, step_cost, steps, result_size = self._task_attributes(u[1:5], params)
        if self.workload_model == "density":
            workload, result_size = density * data_size, jnp.zeros(())
        else:
            workload = step_cost * steps
        return state.replace(data_size=data_size, workload=workload, result_size=result_size)

    def _new_episode(self, task_profile: jax.Array, params: MECParams) -> MECState:
        zeros = jnp.zeros(self.num_servers)
        scalar = jnp.zeros(())
        return MECState(
            time=jnp.int32(0),
            queue=zeros,
            slot_load=zeros,
            tx_busy=zeros,
            capacity_factor=jnp.ones(self.num_servers),
            last_capacity_factor=jnp.ones(self.num_servers),
            slot=jnp.int32(0),
            position=jnp.int32(0),
            bs_task_count=jnp.int32(0),
            trace_offset=jnp.int32(0),
            data_size=scalar,
            workload=scalar,
            result_size=scalar,
            task_profile=task_profile,
            total_make_span=scalar,
            total_raw_delay=scalar,
            total_lower_bound=scalar,
            num_failed=jnp.int32(0),
            num_decided=jnp.int32(0),
            processed=zeros,
            offered=zeros,
        )

    def _info(self, decided: MECState, d: Decision, rolled: MECState, episode_done, real_task) -> dict[str, Any]:
        """Per-task outcome, and the episode's metrics (valid where `episode_done`)."""
        decisions = jnp.maximum(decided.num_decided, 1)
        return {
            "make_span": d.make_span,
            "raw_delay": d.raw_delay,
            "failed": d.failed,
            "allocation": d.fractions,
            "selected": d.selected,
            "real_task": real_task,
            "bs": self.deciding_bs(decided),
            "slot": decided.slot,
            "episode_done": episode_done,
            "episode_tasks": decided.num_decided,
            "episode_make_span": decided.total_make_span / decisions,
            "episode_raw_delay": decided.total_raw_delay / decisions,
            "episode_lower_bound": decided.total_lower_bound / decisions,
            "episode_failure_rate": decided.num_failed / decisions,
            "episode_utilisation": rolled.processed / jnp.maximum(rolled.offered, 1e-9),
        }
