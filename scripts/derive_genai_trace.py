"""Derive the packaged AIGC trace table from the raw Alibaba GenAI serving trace.

    python scripts/derive_genai_trace.py [--source PATH]

Reads `lora_request_trace.csv` (default `../shared/data/genai/lora_request_trace.csv`
relative to the repo root) with the `csv` module and writes

- `ddrl/data/genai_trace.npz`: one array per request field (see `ddrl/envs/trace.py`),
- `ddrl/data/genai_trace.md`: provenance, counts and every derivation rule.

Every rule applied here is written out in `RULES` below and copied into the .md file.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import datetime as dt
import hashlib
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from ddrl.envs.trace import (  # noqa: E402
    STATUS_FAILED,
    STATUS_NAMES,
    STATUS_OTHER,
    STATUS_SUCCEED,
    TYPE_NAMES,
    compression_for_utilisation,
    load_genai_trace,
    slot_arrival_counts,
)

DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "genai" / "lora_request_trace.csv"
OUT_NPZ = REPO_ROOT / "ddrl" / "data" / "genai_trace.npz"
OUT_MD = REPO_ROOT / "ddrl" / "data" / "genai_trace.md"

# Gcycles per denoising step per image: midpoint of the ladts range c ~ U(0.1024, 0.3072)
# (MEC_MODEL.md §7). An assumption, not a measurement.
STEP_COST_GCYCLES = 0.2048

UPSTREAM = (
    "Alibaba cluster trace program, `cluster-trace-v2026-GenAI` (GenAI Serving Top-Down "
    "Dataset 2026, GenTD26), file `lora_request_trace.csv`, repository `alibaba/clusterdata` "
    "at commit 7a6c496"
)
CITATION = (
    'Yanying Lin et al., "Understanding Diffusion Model Serving in Production: A Top-Down '
    'Analysis of Workload, Scheduling, and Resource Efficiency", ACM SoCC 2025.'
)

RULES = """\
1. **Order and time.** Rows are kept in timestamp order (the raw file is already sorted; a
   stable sort is applied anyway). `gmt_create` (second resolution, shifted for anonymity)
   is read as UTC; `arrival_s` = seconds since the first request (int32). `duration_s` =
   last arrival + 1 s, so every arrival lies in `[0, duration_s)`.
2. **Type.** `type_code`: 0 TXT_2_IMG, 1 IMG_2_IMG, 2 INPAINTING (no other value occurs).
3. **Status.** `status_code`: 0 SUCCEED, 1 FAILED, 2 other (the raw file also has PENDING
   and PROCESSING). **No request is dropped**: a failed or pending request still arrived
   and consumed a scheduling decision, so it stays in the arrival process and is flagged.
4. **Missing steps / images.** Where `num_inference_steps` or `num_images_per_prompt` is
   empty, it is replaced by the median of that field over the rows of the same type that
   have it, and `steps_imputed` is set.
5. **Workload, default (`workload_steps_gcycles`).** `W = c_ref · steps · images` with
   `c_ref` = {c_ref} Gcycles per denoising step per image, the midpoint of the `ladts`
   range c ~ U(0.1024, 0.3072) Gcycles/step of MEC_MODEL.md §7 (an assumption). This is the
   default because it is MEC_MODEL.md's `diffusion_steps` model (W = c · q), it depends
   only on what the request asks for (not on the production GPU, its co-located load,
   model/LoRA loading or failures), and it is defined for every row. A failed request is
   charged its full nominal workload: the scheduler cannot know it will fail.
6. **Workload, alternative (`workload_exec_gcycles`).** `W_exec = exec_time_seconds · f_ref`
   with `f_ref` = {f_ref:.6f} GHz, calibrated so that both models give the same total
   workload over the SUCCEED rows: `f_ref = c_ref · Σ(steps · images) / Σ exec_time` over
   SUCCEED. So `f_ref` is "the edge capacity that runs the trace's production GPU work in
   the same time", and the two arrays differ only in how the load is spread over requests.
   Caveats: exec time includes model/LoRA loading and interference, correlates only weakly
   with steps · images (Pearson r = {corr:.3f} on SUCCEED rows), and is truncated for
   FAILED rows (median {failed_exec_median:g} s vs {succeed_exec_median:g} s).
   Where `exec_time_seconds` is 0 (the request never ran: all PENDING rows), `W_exec` uses
   the median exec time of SUCCEED rows of the same type, and `exec_imputed` is set;
   `exec_time_s` itself keeps the recorded 0.
7. **Group.** `group_code` = the number in the anonymised `groupId` (`G0264` -> 264), kept so
   that requests can be assigned to base stations per user group.
8. **Not kept:** prompt lengths, checkpoint id, number of LoRAs (not used by the MEC model).
   The trace records no input or output data sizes; `ddrl/envs/trace.py` assumes them
   (documented there).
"""


@dataclass(frozen=True)
class RawRequest:
    """One parsed row; `None` where the raw field is empty."""

    timestamp: int  # POSIX seconds, timestamp read as UTC
    type_name: str
    status_name: str
    exec_time_s: float
    steps: int | None
    images: int | None
    group_code: int


def _optional_int(text: str) -> int | None:
    if text == "":
        return None
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"non-integer value {text!r}")
    return int(value)


def read_raw(source: Path) -> list[RawRequest]:
    """Parse the raw CSV (csv module only)."""
    requests = []
    with source.open(newline="") as f:
        for row in csv.DictReader(f):
            stamp = dt.datetime.strptime(row["gmt_create"], "%Y-%m-%d %H:%M:%S")
            group = row["groupId"]
            if not (group.startswith("G") and group[1:].isdigit()):
                raise ValueError(f"unexpected groupId {group!r}")
            requests.append(
                RawRequest(
                    timestamp=calendar.timegm(stamp.timetuple()),
                    type_name=row["predict_type"],
                    status_name=row["predict_status"],
                    exec_time_s=float(row["exec_time_seconds"]),
                    steps=_optional_int(row["num_inference_steps"]),
                    images=_optional_int(row["num_images_per_prompt"]),
                    group_code=int(group[1:]),
                )
            )
    return requests


def _status_code(name: str) -> int:
    return {"SUCCEED": STATUS_SUCCEED, "FAILED": STATUS_FAILED}.get(name, STATUS_OTHER)


def _type_median(values: list[int | None], types: np.ndarray, code: int) -> int:
    present = [v for v, t in zip(values, types) if t == code and v is not None]
    return int(np.median(present))


def derive(requests: list[RawRequest]) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of the derived table, and facts for the report."""
    timestamps = np.array([r.timestamp for r in requests], dtype=np.int64)
    was_sorted = bool(np.all(np.diff(timestamps) >= 0))
    order = np.argsort(timestamps, kind="stable")
    requests = [requests[i] for i in order]
    timestamps = timestamps[order]

    unknown_types = {r.type_name for r in requests} - set(TYPE_NAMES)
    if unknown_types:
        raise ValueError(f"unknown predict_type values {sorted(unknown_types)}")
    type_code = np.array([TYPE_NAMES.index(r.type_name) for r in requests], dtype=np.int8)
    status_code = np.array([_status_code(r.status_name) for r in requests], dtype=np.int8)

    raw_steps = [r.steps for r in requests]
    raw_images = [r.images for r in requests]
    steps_missing = np.array([s is None for s in raw_steps])
    images_missing = np.array([i is None for i in raw_images])
    step_medians = [_type_median(raw_steps, type_code, c) for c in range(len(TYPE_NAMES))]
    image_medians = [_type_median(raw_images, type_code, c) for c in range(len(TYPE_NAMES))]
    steps = np.array(
        [s if s is not None else step_medians[t] for s, t in zip(raw_steps, type_code)],
        dtype=np.int16,
    )
    images = np.array(
        [i if i is not None else image_medians[t] for i, t in zip(raw_images, type_code)],
        dtype=np.int8,
    )

    exec_time = np.array([r.exec_time_s for r in requests], dtype=np.float64)
    succeed = status_code == STATUS_SUCCEED
    step_images = steps.astype(np.float64) * images
    reference_capacity = STEP_COST_GCYCLES * step_images[succeed].sum() / exec_time[succeed].sum()
    exec_medians = [
        float(np.median(exec_time[succeed & (type_code == c)])) for c in range(len(TYPE_NAMES))
    ]
    exec_imputed = exec_time <= 0
    exec_for_workload = np.where(exec_imputed, np.array(exec_medians)[type_code], exec_time)

    arrays = dict(
        arrival_s=(timestamps - timestamps[0]).astype(np.int32),
        duration_s=np.float64(timestamps[-1] - timestamps[0] + 1),
        type_code=type_code,
        status_code=status_code,
        steps=steps,
        images=images,
        exec_time_s=exec_time.astype(np.float32),
        workload_steps_gcycles=(STEP_COST_GCYCLES * step_images).astype(np.float32),
        workload_exec_gcycles=(exec_for_workload * reference_capacity).astype(np.float32),
        steps_imputed=steps_missing | images_missing,
        exec_imputed=exec_imputed,
        group_code=np.array([r.group_code for r in requests], dtype=np.int16),
        step_cost_gcycles=np.float64(STEP_COST_GCYCLES),
        reference_capacity_ghz=np.float64(reference_capacity),
        type_names=np.array(TYPE_NAMES),
        status_names=np.array(STATUS_NAMES),
    )
    gaps = np.diff(timestamps)
    facts = dict(
        was_sorted=was_sorted,
        first=dt.datetime.fromtimestamp(int(timestamps[0]), dt.timezone.utc),
        last=dt.datetime.fromtimestamp(int(timestamps[-1]), dt.timezone.utc),
        type_counts=Counter(r.type_name for r in requests),
        status_counts=Counter(r.status_name for r in requests),
        type_status=Counter((r.type_name, r.status_name) for r in requests),
        steps_missing=int(steps_missing.sum()),
        images_missing=int(images_missing.sum()),
        missing_statuses=Counter(
            r.status_name for r, m in zip(requests, steps_missing | images_missing) if m
        ),
        step_medians=step_medians,
        image_medians=image_medians,
        exec_zero=int(exec_imputed.sum()),
        exec_zero_statuses=Counter(
            r.status_name for r, m in zip(requests, exec_imputed) if m
        ),
        exec_medians=exec_medians,
        succeed_exec_median=float(np.median(exec_time[succeed])),
        failed_exec_median=float(np.median(exec_time[status_code == STATUS_FAILED])),
        exec_max=float(exec_time.max()),
        corr=float(np.corrcoef(exec_time[succeed], step_images[succeed])[0, 1]),
        steps_values=Counter(steps.tolist()),
        steps_30_raw=sum(1 for s in raw_steps if s == 30),
        images_values=Counter(images.tolist()),
        distinct_seconds=int(np.unique(timestamps).size),
        max_same_second=int(np.max(np.unique(timestamps, return_counts=True)[1])),
        max_gap_h=float(gaps.max() / 3600),
        median_gap_s=float(np.median(gaps)),
        per_day=Counter(
            dt.datetime.fromtimestamp(int(t), dt.timezone.utc).date().isoformat()
            for t in timestamps
        ),
        exec_top=sorted(exec_time.tolist())[-5:],
    )
    return arrays, facts


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "none (no commit yet)"


def _window_load_summary(npz: Path) -> str:
    """Spread of the offered load over episode-length windows, for one example set-up."""
    trace = load_genai_trace(npz)
    capacity, utilisation, slot_length, episode = 150.0, 0.5, 1.0, 60
    compression = compression_for_utilisation(trace, capacity, utilisation)
    counts = slot_arrival_counts(trace, slot_length, compression)
    slots = np.floor(trace.arrival_s / (compression * slot_length)).astype(np.int64)
    load = np.bincount(slots, weights=trace.workload_steps_gcycles, minlength=counts.size)
    windows = np.convolve(load, np.ones(episode), mode="valid") / (episode * slot_length * capacity)
    q = np.percentile(windows, [5, 25, 50, 75, 95])
    return (
        f"Example: total capacity {capacity:g} GHz (amcoedge), utilisation {utilisation}, "
        f"slot {slot_length:g} s -> compression {compression:.1f} trace s per simulated s, "
        f"{counts.size} slots, mean {counts.mean():.2f} requests/slot, max {counts.max()} in "
        f"one slot. Utilisation of {episode}-slot windows (all offsets): 5/25/50/75/95th "
        f"percentiles {', '.join(f'{v:.2f}' for v in q)}; max {windows.max():.2f}."
    )


def write_report(path: Path, source: Path, arrays: dict, facts: dict, command: str) -> None:
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    n = arrays["arrival_s"].size
    type_rows = "\n".join(
        f"| {t} | {facts['type_counts'][t]} | "
        + " | ".join(str(facts["type_status"][(t, s)]) for s in ("SUCCEED", "FAILED", "PENDING", "PROCESSING"))
        + " |"
        for t in TYPE_NAMES
    )
    status_total = " | ".join(
        str(facts["status_counts"][s]) for s in ("SUCCEED", "FAILED", "PENDING", "PROCESSING")
    )
    array_rows = "\n".join(
        f"| `{name}` | {value.dtype} | {'x'.join(map(str, value.shape)) or 'scalar'} |"
        for name, value in arrays.items()
    )
    per_day = ", ".join(f"{d[5:]}: {c}" for d, c in sorted(facts["per_day"].items()))
    text = f"""# `genai_trace.npz`: the real AIGC request trace, derived

Generated by `{command}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC
(ddrl commit: {_git_commit()}). Do not edit by hand; rerun the script.

## Source

- Raw file: `shared/data/genai/lora_request_trace.csv`, {n} rows, sha256 `{sha}`.
- Upstream: {UPSTREAM}.
- Cite when used: {CITATION}
- Period: {facts['first']:%Y-%m-%d %H:%M:%S} to {facts['last']:%Y-%m-%d %H:%M:%S}
  (timestamps shifted for anonymity by the publishers).

## Counts

| type | total | SUCCEED | FAILED | PENDING | PROCESSING |
|---|---|---|---|---|---|
{type_rows}
| **all** | {n} | {status_total} |

Status codes in the table: 0 SUCCEED ({facts['status_counts']['SUCCEED']}), 1 FAILED
({facts['status_counts']['FAILED']}), 2 other = PENDING + PROCESSING
({facts['status_counts']['PENDING'] + facts['status_counts']['PROCESSING']}).

## Derivation rules

{RULES.format(c_ref=STEP_COST_GCYCLES, f_ref=float(arrays['reference_capacity_ghz']),
              corr=facts['corr'], failed_exec_median=facts['failed_exec_median'],
              succeed_exec_median=facts['succeed_exec_median'])}
Values used: type medians of steps {facts['step_medians']}, of images
{facts['image_medians']}, of SUCCEED exec time {facts['exec_medians']} s (order
{', '.join(TYPE_NAMES)}).

## Arrays

| name | dtype | shape |
|---|---|---|
{array_rows}

Mean workload: {arrays['workload_steps_gcycles'].mean():.3f} Gcycles (steps model),
{arrays['workload_exec_gcycles'].mean():.3f} Gcycles (exec model); mean request rate
{n / float(arrays['duration_s']):.5f} per trace second.

## Data oddities

- Four statuses, not two: PENDING ({facts['status_counts']['PENDING']}) and PROCESSING
  ({facts['status_counts']['PROCESSING']}) besides SUCCEED and FAILED.
- {facts['steps_missing']} rows miss `num_inference_steps` and {facts['images_missing']} miss
  `num_images_per_prompt` (statuses: {dict(facts['missing_statuses'])}); they are all
  TXT_2_IMG and also miss prompt length and checkpoint. Rule 4 imputes them.
- `exec_time_seconds` is 0 in {facts['exec_zero']} rows (statuses:
  {dict(facts['exec_zero_statuses'])}); max {facts['exec_max']:g} s (five largest
  {facts['exec_top']}). FAILED rows ran for a median {facts['failed_exec_median']:g} s.
- Steps: {len(facts['steps_values'])} distinct values, {min(facts['steps_values'])} to
  {max(facts['steps_values'])}; 30 steps in {facts['steps_30_raw']} raw rows
  ({facts['steps_values'][30]} after imputation). Images per prompt (after imputation):
  {dict(sorted(facts['images_values'].items()))}.
- Second resolution with ties: {facts['distinct_seconds']} distinct seconds for {n} requests,
  up to {facts['max_same_second']} requests in one second.
- Strongly non-stationary: median gap {facts['median_gap_s']:g} s, longest gap
  {facts['max_gap_h']:.1f} h; requests per day (UTC) {per_day}. The first four days carry
  about 1/20 of the later daily volume, so windows (`trace_window`) or random episode
  offsets see very different loads.
- {_window_load_summary(OUT_NPZ)}
"""
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    source: Path = args.source
    if not source.is_file():
        raise SystemExit(f"raw trace not found: {source}")
    start = time.time()
    requests = read_raw(source)
    arrays, facts = derive(requests)

    OUT_NPZ.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT_NPZ, **arrays)
    command = "python scripts/derive_genai_trace.py" + (
        f" --source {args.source}" if "--source" in sys.argv else ""
    )
    write_report(OUT_MD, source, arrays, facts, command)

    print(f"read {len(requests)} rows from {source} (already sorted: {facts['was_sorted']})")
    print("types:", {t: facts["type_counts"][t] for t in TYPE_NAMES})
    print("statuses:", dict(facts["status_counts"].most_common()))
    print(
        f"missing steps: {facts['steps_missing']}, missing images: {facts['images_missing']}, "
        f"exec_time == 0: {facts['exec_zero']}"
    )
    print(
        f"c_ref = {STEP_COST_GCYCLES} Gcycles/step/image, f_ref = "
        f"{float(arrays['reference_capacity_ghz']):.6f} GHz; mean W steps = "
        f"{arrays['workload_steps_gcycles'].mean():.3f}, exec = "
        f"{arrays['workload_exec_gcycles'].mean():.3f} Gcycles"
    )
    print(
        f"wrote {OUT_NPZ.relative_to(REPO_ROOT)} ({OUT_NPZ.stat().st_size} bytes) and "
        f"{OUT_MD.relative_to(REPO_ROOT)} in {time.time() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
