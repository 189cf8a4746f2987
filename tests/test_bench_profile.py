"""The training profile: own times of nested trace events, their attribution to loop phases,
and one traced chunk of a small learner whose operations carry the loop's named scopes."""

from __future__ import annotations

import json

import pytest

from ddrl.benchmarks import profile
from ddrl.training.phases import SCOPES


def test_own_time_subtracts_nested_events_per_thread() -> None:
    events = [
        {"ph": "X", "name": "outer", "ts": 0, "dur": 10, "pid": 1, "tid": 1},
        {"ph": "X", "name": "inner", "ts": 2, "dur": 3, "pid": 1, "tid": 1},
        {"ph": "X", "name": "inner", "ts": 6, "dur": 2, "pid": 1, "tid": 1},
        {"ph": "X", "name": "inner", "ts": 3, "dur": 4, "pid": 1, "tid": 2},  # another thread: not nested
        {"ph": "i", "name": "marker", "ts": 1, "pid": 1, "tid": 1},  # instant events are ignored
    ]
    own, calls = profile.self_times(events)
    assert own == {"outer": 5, "inner": 9}
    assert calls == {"outer": 1, "inner": 3}


def test_operations_are_attributed_to_their_phase_with_matmul_and_random_shares() -> None:
    hlo = "\n".join([
        f'  %dot.1 = f32[4,8]{{1,0}} dot(%a, %b), metadata={{op_name="jit(f)/{SCOPES["learn"]}/Dense_0/dot_general"}}',
        f'  %fusion.2 = u32[4]{{0}} fusion(%k), metadata={{op_name="jit(f)/{SCOPES["act"]}/jit(_uniform)/add"}}',
        '  %copy.3 = f32[4]{0} copy(%c), metadata={op_name="jit(f)/while/body/copy"}',
    ])  # fmt: skip
    ops = profile.operations(hlo)
    assert {name: op.phase for name, op in ops.items()} == {"dot.1": "learn", "fusion.2": "act", "copy.3": "other"}
    own = {"dot.1": 3e6, "fusion.2": 1e6, "end: fusion.2": 1e6, "copy": 5e5, "ThunkExecutor::Execute": 9e9, "$api.py": 9e9}
    result = profile.attribute(own, {name: 1 for name in own}, ops, top=2)
    phases = result["phases"]
    assert result["ops_s"] == pytest.approx(5.5)  # runtime and Python events left out
    assert (phases["learn"]["s"], phases["learn"]["matmul_s"], phases["learn"]["random_s"]) == (3.0, 3.0, 0.0)
    assert (phases["act"]["s"], phases["act"]["random_s"]) == (2.0, 2.0)  # its "end:" event counted with it
    assert phases["other"]["s"] == 0.5  # an event without metadata
    assert sum(p["share"] for p in phases.values()) == pytest.approx(1.0, abs=1e-3)
    assert [row["op"] for row in result["slowest"]] == ["dot.1", "fusion.2"]


def test_a_traced_chunk_of_a_small_learner_is_split_by_the_loop_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    profile.main(["--methods", "amcoedge", "--seeds", "1", "--episodes", "0.05", "--top", "3", "trainer.num_envs=4"])
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    assert (line["bench"], line["method"], line["seeds"], line["envs_per_seed"]) == ("profile", "amcoedge", 1, 4)
    assert line["chunk_wall_s"] > 0 and line["ops_s"] > 0
    for phase in ("act", "env", "store"):  # the named scopes reach the compiled operations
        assert line["phases"][phase]["s"] > 0, phase
    assert len(line["slowest"]) == 3


def test_a_scale_view_is_profiled_and_an_unknown_view_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """`--view` builds the learner in one of the experiment's views (the scale experiment's B);
    a view the experiment does not have for that method stops before anything is built."""
    profile.main(["--experiment", "scale", "--view", "B5", "--methods", "ddrl_amsa_set", "--seeds", "1",
                  "--episodes", "0.02", "--top", "1", "trainer.num_envs=2", "budget=smoke"])
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    assert (line["view"], line["method"]) == ("B5", "ddrl_amsa_set") and line["phases"]["learn"]["s"] > 0
    with pytest.raises(SystemExit, match="has no view 'B7'"):
        profile.main(["--experiment", "scale", "--view", "B7", "--methods", "ddrl_amsa_set", "--seeds", "1"])
