"""Two finished runs side by side: did a change of settings help, method by method?

    python scripts/compare_runs.py BASELINE_RUN CHANGED_RUN [--json]

For every (view, method, evaluation mode) present in both runs' `summary.json`: each run's
make-span (mean ± 95 % CI over seeds), its gap to the run's yardstick (e.g. `optimal_myopic`)
in the same view, and the change of the second run against the first with a 95 % bootstrap
interval over seeds (`ddrl.stats.relative_difference`), plus on how many seeds the second run
was better when both ran the same seeds (the same evaluation episodes per seed, so a paired
count). Rules (no per-seed figures in a summary) get the means only. Nothing is retrained or
re-evaluated: both runs must already have been made with the same budget and seeds for the
comparison to mean anything, which is checked for the seeds and training steps.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ddrl.stats import relative_difference


def _rows(run_dir: Path) -> tuple[dict, dict]:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = {}
    for method in summary["methods"]:
        modes = method.get("modes") or {method.get("eval_mode", "rule"): {"make_span": method["make_span"]}}
        for mode, figures in modes.items():
            rows[(method["view"], method["name"], mode)] = {**figures, "env_steps": method.get("env_steps"),
                                                            "seeds": method.get("seeds")}  # fmt: skip
    return summary, rows


def compare(baseline_dir: Path, changed_dir: Path) -> list[dict]:
    """One dict per (view, method, mode) found in both runs, in the baseline run's order."""
    base_summary, base = _rows(baseline_dir)
    _, changed = _rows(changed_dir)
    yardstick = base_summary.get("yardstick")
    out = []
    for key, old in base.items():
        new = changed.get(key)
        if new is None:
            continue
        view, name, mode = key
        if (old["seeds"], old["env_steps"]) != (new["seeds"], new["env_steps"]):
            raise SystemExit(f"{view}/{name}: the runs differ in seeds or training steps "
                             f"({old['seeds']}, {old['env_steps']} vs {new['seeds']}, {new['env_steps']})")
        row = {"view": view, "method": name, "mode": mode,
               "baseline": old["make_span"], "changed": new["make_span"]}  # fmt: skip
        reference = next((figures for (v, n, _), figures in base.items() if v == view and n == yardstick), None)
        if reference is not None:
            ref = reference["make_span"][0]
            row["gap_baseline_pct"] = round(100 * (old["make_span"][0] / ref - 1), 2)
            row["gap_changed_pct"] = round(100 * (new["make_span"][0] / ref - 1), 2)
        if old.get("per_seed_make_span") and new.get("per_seed_make_span"):
            a, b = np.asarray(old["per_seed_make_span"]), np.asarray(new["per_seed_make_span"])
            point, low, high = relative_difference(b, a)
            row["change_pct"] = [round(point, 2), round(low, 2), round(high, 2)]
            row["seeds_better"] = f"{int(np.sum(b < a))}/{a.size}"  # same seeds: checked above
        out.append(row)
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| view | method (mode) | baseline run (s) | gap | changed run (s) | gap | change [95 % CI] | seeds better |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        gap = lambda key: f"{r[key]:+.1f} %" if key in r else ""  # noqa: E731
        change = "" if "change_pct" not in r else "{:+.2f} % [{:+.2f}, {:+.2f}]".format(*r["change_pct"])
        lines.append(f"| {r['view']} | {r['method']} ({r['mode']}) | {r['baseline'][0]:.4f} ± {r['baseline'][1]:.4f} | "
                     f"{gap('gap_baseline_pct')} | {r['changed'][0]:.4f} ± {r['changed'][1]:.4f} | "
                     f"{gap('gap_changed_pct')} | {change} | {r.get('seeds_better', '')} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline_run", type=Path)
    parser.add_argument("changed_run", type=Path)
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    args = parser.parse_args(argv)
    for run in (args.baseline_run, args.changed_run):
        if not (run / "summary.json").is_file():
            parser.error(f"{run}: no summary.json (not a finished run)")
    rows = compare(args.baseline_run, args.changed_run)
    if not rows:
        parser.error("the two runs have no (view, method, mode) in common")
    print("\n".join(json.dumps(r) for r in rows) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
