"""The derived AIGC trace (ddrl/data/genai_trace.npz) and its slot tables (ddrl/envs/trace.py)."""

from __future__ import annotations

import calendar
import csv
import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ddrl.envs.trace import (
    STATUS_FAILED,
    STATUS_OTHER,
    STATUS_SUCCEED,
    TYPE_NAMES,
    GenaiTrace,
    arrival_slots,
    cell_index,
    assign_base_stations,
    compression_for_utilisation,
    load_genai_trace,
    make_trace_tables,
    slot_arrival_counts,
    trace_window,
)

RAW_PATH = Path(__file__).resolve().parents[1].parent / "shared/data/genai/lora_request_trace.csv"
KNOWN_TYPES = {"TXT_2_IMG": 24_438, "IMG_2_IMG": 2_199, "INPAINTING": 186}
KNOWN_TOTAL = 26_823
KNOWN_SUCCEED, KNOWN_FAILED = 26_392, 398
DAY = 86_400.0


@pytest.fixture(scope="module")
def trace() -> GenaiTrace:
    return load_genai_trace()


@pytest.fixture(scope="module")
def raw_rows() -> list[dict[str, str]]:
    if not RAW_PATH.is_file():
        pytest.skip(f"raw trace not present at {RAW_PATH}")
    with RAW_PATH.open(newline="") as f:
        return list(csv.DictReader(f))


def _raw_seconds(rows: list[dict[str, str]]) -> np.ndarray:
    """Raw timestamps as seconds since the first one (read as UTC), independently of the script."""
    stamps = [
        calendar.timegm(dt.datetime.strptime(r["gmt_create"], "%Y-%m-%d %H:%M:%S").timetuple())
        for r in rows
    ]
    return np.array(stamps, dtype=np.int64) - stamps[0]


# --- the loader reproduces the raw file ---------------------------------------------------


def test_raw_file_has_the_known_counts(raw_rows):
    assert len(raw_rows) == KNOWN_TOTAL
    assert Counter(r["predict_type"] for r in raw_rows) == KNOWN_TYPES
    statuses = Counter(r["predict_status"] for r in raw_rows)
    assert statuses["SUCCEED"] == KNOWN_SUCCEED and statuses["FAILED"] == KNOWN_FAILED


def test_packaged_table_has_the_known_counts(trace):
    assert trace.num_requests == KNOWN_TOTAL
    types = np.bincount(trace.type_code, minlength=3)
    assert dict(zip(TYPE_NAMES, types.tolist())) == KNOWN_TYPES
    statuses = np.bincount(trace.status_code, minlength=3)
    assert statuses[STATUS_SUCCEED] == KNOWN_SUCCEED
    assert statuses[STATUS_FAILED] == KNOWN_FAILED
    assert statuses[STATUS_OTHER] == KNOWN_TOTAL - KNOWN_SUCCEED - KNOWN_FAILED
    assert trace.failed.sum() == KNOWN_FAILED
    assert np.all(np.diff(trace.arrival_s) >= 0) and trace.arrival_s[0] == 0
    assert trace.arrival_s[-1] < trace.duration_s


def test_packaged_table_agrees_with_raw_file_row_by_row(trace, raw_rows):
    np.testing.assert_array_equal(trace.arrival_s, _raw_seconds(raw_rows))
    np.testing.assert_array_equal(
        trace.type_code, [TYPE_NAMES.index(r["predict_type"]) for r in raw_rows]
    )
    np.testing.assert_array_equal(trace.failed, [r["predict_status"] == "FAILED" for r in raw_rows])
    np.testing.assert_array_equal(
        trace.exec_time_s, [float(r["exec_time_seconds"]) for r in raw_rows]
    )
    has_steps = np.array([r["num_inference_steps"] != "" for r in raw_rows])
    raw_steps = [float(r["num_inference_steps"]) for r in raw_rows if r["num_inference_steps"]]
    np.testing.assert_array_equal(trace.steps[has_steps], raw_steps)
    np.testing.assert_array_equal(trace.steps_imputed, ~has_steps)


def test_workloads_follow_the_documented_rules(trace):
    np.testing.assert_allclose(
        trace.workload_steps_gcycles,
        trace.step_cost_gcycles * trace.steps * trace.images.astype(np.float64),
        rtol=1e-6,
    )
    ran = ~trace.exec_imputed
    np.testing.assert_allclose(
        trace.workload_exec_gcycles[ran],
        trace.exec_time_s[ran] * trace.reference_capacity_ghz,
        rtol=1e-6,
    )
    assert np.all(trace.workload_steps_gcycles > 0) and np.all(trace.workload_exec_gcycles > 0)
    # f_ref is calibrated so that both models carry the same total over SUCCEED requests.
    ok = trace.status_code == STATUS_SUCCEED
    np.testing.assert_allclose(
        trace.workload_exec_gcycles[ok].sum(dtype=np.float64),
        trace.workload_steps_gcycles[ok].sum(dtype=np.float64),
        rtol=1e-5,
    )


def test_missing_table_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="derive_genai_trace.py"):
        load_genai_trace(tmp_path / "nope.npz")


# --- slotting ---------------------------------------------------------------------------


@pytest.mark.parametrize("slot_length_s, compression", [(1.0, 120.0), (0.1, 2000.0), (1.0, 7.5)])
def test_slot_counts_match_a_direct_count_of_raw_timestamps(raw_rows, trace, slot_length_s, compression):
    window_slots = 3000
    direct = np.zeros(window_slots, dtype=np.int64)
    for seconds in _raw_seconds(raw_rows).tolist():
        slot = int(seconds // (compression * slot_length_s))
        if slot < window_slots:
            direct[slot] += 1
    counts = slot_arrival_counts(trace, slot_length_s, compression)
    np.testing.assert_array_equal(counts[:window_slots], direct)
    assert counts.sum() == KNOWN_TOTAL


def test_window_slot_counts_match_a_direct_count(trace):
    start, end = 10 * DAY, 11 * DAY
    window = trace_window(trace, start, end)
    compression = 60.0
    counts = slot_arrival_counts(window, 1.0, compression)
    assert counts.size == int(np.ceil(DAY / compression))
    direct = np.zeros(counts.size, dtype=np.int64)
    for a in trace.arrival_s[(trace.arrival_s >= start) & (trace.arrival_s < end)]:
        direct[int((a - start) // compression)] += 1
    np.testing.assert_array_equal(counts, direct)


@pytest.mark.parametrize("workload", ["steps", "exec"])
@pytest.mark.parametrize("utilisation", [0.3, 0.9])
@pytest.mark.parametrize("windowed", [False, True])
def test_compression_gives_the_requested_mean_load(trace, workload, utilisation, windowed):
    if windowed:
        trace = trace_window(trace, 5 * DAY, 12 * DAY)
    capacity, slot_length = 150.0, 1.0
    compression = compression_for_utilisation(trace, capacity, utilisation, workload)
    slots = arrival_slots(trace, slot_length, compression)
    num_slots = slot_arrival_counts(trace, slot_length, compression).size
    per_slot = np.bincount(slots, weights=trace.workload(workload), minlength=num_slots)
    offered = per_slot.mean() / slot_length  # Gcycles per simulated second
    assert offered / capacity == pytest.approx(utilisation, rel=0.01)


# --- tables -------------------------------------------------------------------------------


@pytest.mark.parametrize("assignment", ["random", "round_robin", "group"])
def test_tables_indexing_is_consistent(trace, assignment):
    window = trace_window(trace, 12 * DAY, 13 * DAY)
    num_bs, max_tasks, slot_length, compression = 5, 3, 1.0, 200.0
    tables = make_trace_tables(
        window, slot_length, compression, num_bs, max_tasks, assignment=assignment, seed=3
    )
    counts = np.asarray(tables.counts)
    first = np.asarray(tables.first_request)
    request_id = np.asarray(tables.request_id)

    assert tables.num_clipped > 0  # max_tasks = 3 is small enough to clip here
    assert counts.sum() == window.num_requests - tables.num_clipped == request_id.size
    assert counts.max() <= max_tasks
    np.testing.assert_array_equal(first.ravel(), np.cumsum(counts.ravel()) - counts.ravel())

    # Every (slot, BS) cell lists exactly the earliest `max_tasks` requests that fall in it.
    slots = arrival_slots(window, slot_length, compression)
    bs = assign_base_stations(window, num_bs, assignment, seed=3)
    position = {int(rid): k for k, rid in enumerate(window.request_id)}
    for s in range(tables.num_slots):
        for b in range(num_bs):
            listed = request_id[first[s, b] : first[s, b] + counts[s, b]]
            in_cell = window.request_id[(slots == s) & (bs == b)][:max_tasks]
            np.testing.assert_array_equal(listed, in_cell)
    # Per-task attributes are those of the listed requests.
    rows = np.array([position[int(r)] for r in request_id])
    np.testing.assert_allclose(np.asarray(tables.workload), window.workload_steps_gcycles[rows])
    np.testing.assert_array_equal(np.asarray(tables.failed), window.failed[rows])


def test_tables_without_clipping_keep_every_request(trace):
    tables = make_trace_tables(trace, 1.0, 300.0, num_bs=5, max_tasks_per_bs=500)
    assert tables.num_clipped == 0
    assert int(tables.counts.sum()) == KNOWN_TOTAL
    np.testing.assert_array_equal(
        np.asarray(tables.counts).sum(axis=1), slot_arrival_counts(trace, 1.0, 300.0)
    )


def test_base_station_assignment_is_stable_across_windows(trace):
    window = trace_window(trace, 8 * DAY, 9 * DAY)
    for assignment in ("random", "round_robin", "group"):
        full = assign_base_stations(trace, 7, assignment, seed=1)
        np.testing.assert_array_equal(
            assign_base_stations(window, 7, assignment, seed=1), full[window.request_id]
        )
    group_bs = assign_base_stations(trace, 7, "group", seed=1)
    for g in np.unique(trace.group_code)[:50]:
        assert np.unique(group_bs[trace.group_code == g]).size == 1


def test_cell_index_points_at_the_next_busy_cell(trace):
    window = trace_window(trace, 15 * DAY, 16 * DAY)
    tables = make_trace_tables(window, 1.0, 100.0, num_bs=4, max_tasks_per_bs=6)
    index = cell_index(tables)
    counts = np.asarray(tables.counts).reshape(-1)
    next_nonempty = np.asarray(index.next_nonempty)
    assert index.end == counts.size and next_nonempty[-1] == index.end
    for cell in range(counts.size):  # brute force: the first busy cell at or after `cell`
        later = np.flatnonzero(counts[cell:])
        assert next_nonempty[cell] == (cell + later[0] if later.size else index.end)
    np.testing.assert_array_equal(np.asarray(index.counts)[:-1], counts)
    np.testing.assert_array_equal(np.asarray(index.first)[:-1], np.asarray(tables.first_request).reshape(-1))
