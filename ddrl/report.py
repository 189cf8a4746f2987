"""Collect run summaries into one table and plot: `python -m ddrl.report PATH... [--out DIR] [--x KEY]`.

Every `summary.json` found under the given paths (a single run directory, a Hydra multirun
directory with numbered jobs, or any folder of either) becomes one row per method, next to the
job's `config.yaml` and `.hydra/overrides.yaml` when present. The table goes to `report.md` and
`report.csv`; when exactly one numeric key is swept (or `--x KEY` names one), each headline
metric is plotted against it, one line per method, into `<metric>_vs_<key>.png`; the summary's
`yardstick` (or `--reference NAME`) is drawn dashed, as a reference line. Methods a run left
out (`skipped` in its summary, e.g. a subset action space at B > 16) appear as rows with a
note and no figures. `--pivot` also writes `pivot.md`: per metric, the swept value down and
the methods across (the table of a sweep at a glance).

Every summary is checked before use (`summary_problem`): one that is not valid JSON or not
the shape ddrl writes (`methods` a list of objects with a `name`) is skipped with a one-line
warning naming the file; NaN/Infinity in older summaries read as null. Outputs are written
to a temporary file and renamed, so a symlink planted in the output directory is replaced,
never written through.

Experiment scripts can call `collect(paths)` and `write_report(rows, out_dir, x_key)` directly.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ddrl.provenance import atomic_path, atomic_write_text

#: Metrics listed first (in this order) when present; any others follow in order of appearance.
KNOWN_METRICS = ("make_span", "failure_rate", "raw_delay", "lower_bound")
#: Metrics plotted against the swept key when present.
PLOT_METRICS = ("make_span", "failure_rate")
LABELS = {
    "make_span": "make-span (s)",
    "failure_rate": "failure rate",
    "raw_delay": "raw delay (s)",
    "lower_bound": "lower bound (s)",
}


@dataclass(frozen=True)
class Metric:
    """A mean and the half-width of its 95 % confidence interval."""

    mean: float
    ci95: float


@dataclass
class Row:
    """One method of one run."""

    run: str  # the run directory, relative to the common root of all runs found
    method: str
    overrides: dict[str, str] = field(default_factory=dict)  # key -> value text, in command-line order
    metrics: dict[str, Metric] = field(default_factory=dict)
    scenario: str | None = None
    preset: str | None = None
    seeds: int | None = None
    episodes: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # resolved config, flattened to dotted keys
    path: Path = Path(".")  # the run directory itself
    note: str | None = None  # why the method has no figures (left out by the run)
    reference: bool = False  # a reference line (the run's yardstick), drawn dashed

    @property
    def overrides_text(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.overrides.items())

    def value(self, key: str) -> Any:
        """The job's value of a config key: its override if given, else the resolved config's."""
        if key in self.overrides:
            return self.overrides[key]
        return self.config.get(key)


# ----------------------------------------------------------------------------- collecting


def _natural_key(text: str) -> list[Any]:
    """Sort `2` before `10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """`["env.arrival_prob=0.2", "+experiment=x"]` -> `{"env.arrival_prob": "0.2", "experiment": "x"}`."""
    overrides: dict[str, str] = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        print(f"ddrl.report: warning: cannot read {path}: {error}", file=sys.stderr)
        return None


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _metrics(method: dict[str, Any]) -> dict[str, Metric]:
    """The method's metrics: its `metrics` block, else its headline and any other mean/ci95 pairs."""
    found: dict[str, Metric] = {}
    block = method.get("metrics")
    if isinstance(block, dict) and block:
        items = block.items()
    else:
        headline = [(method.get("metric") or "value", method)] if "mean" in method else []
        others = [(k, v) for k, v in method.items() if isinstance(v, dict) and "mean" in v]
        items = headline + others
    for name, value in items:
        if isinstance(value, dict) and "mean" in value:
            found[str(name)] = Metric(_as_float(value["mean"]), _as_float(value.get("ci95")))
    for name in (*KNOWN_METRICS, "train_make_span"):  # scheduling tables write [mean, ci95] pairs
        value = method.get(name)
        if name not in found and isinstance(value, (list, tuple)) and len(value) == 2:
            found[name] = Metric(_as_float(value[0]), _as_float(value[1]))
    return found


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def summary_problem(summary: Any) -> str | None:
    """Why `summary` (parsed summary.json) is not one ddrl writes (None: it is)."""
    if not isinstance(summary, dict):
        return f"not a JSON object but {type(summary).__name__}"
    methods = summary.get("methods")
    if not isinstance(methods, list):
        return f"'methods' must be a list, got {json.dumps(methods)[:60]}"
    for index, method in enumerate(methods):
        if not isinstance(method, dict):
            return f"methods[{index}] must be an object, got {json.dumps(method)[:60]}"
        if not isinstance(method.get("name"), str):
            return f"methods[{index}].name must be a string, got {json.dumps(method.get('name'))[:60]}"
    skipped = summary.get("skipped")
    if skipped is not None and not isinstance(skipped, list):
        return f"'skipped' must be a list, got {json.dumps(skipped)[:60]}"
    return None


def read_summary(path: Path) -> dict[str, Any] | None:
    """A run's summary.json, or None with a one-line warning naming the file.

    NaN and Infinity (written by older versions, or by hand) are read as null.
    """
    try:
        summary = json.loads(path.read_text(), parse_constant=lambda constant: None)
    except (OSError, ValueError) as error:
        problem = f"{type(error).__name__}: {error}"
    else:
        problem = summary_problem(summary)
        if problem is None:
            return summary
    print(f"ddrl.report: warning: skipping {path}: {problem}", file=sys.stderr)
    return None


def collect(paths: list[str | Path]) -> list[Row]:
    """Every (run, method) under `paths`, ordered by run directory; unreadable summaries are skipped."""
    summaries: set[Path] = set()
    for path in map(Path, paths):
        if path.is_file() and path.name == "summary.json":
            summaries.add(path.resolve())
        elif path.is_dir():
            summaries.update(p.resolve() for p in path.rglob("summary.json") if p.is_file())
    run_dirs = sorted({s.parent for s in summaries}, key=lambda p: _natural_key(str(p)))
    if not run_dirs:
        return []
    root = Path(os.path.commonpath(run_dirs))
    rows: list[Row] = []
    for run_dir in run_dirs:
        summary = read_summary(run_dir / "summary.json")
        if summary is None:
            continue
        methods = summary["methods"]
        relative = run_dir.relative_to(root).as_posix()
        run = run_dir.name if relative == "." else relative
        overrides = parse_overrides(_load_yaml(run_dir / ".hydra" / "overrides.yaml") or [])
        config = _flatten(_load_yaml(run_dir / "config.yaml") or {})
        yardstick = summary.get("yardstick")
        for method in methods:
            rows.append(Row(
                run=run,
                method=str(method.get("name", "?")),
                overrides=overrides,
                metrics=_metrics(method),
                scenario=_str_or_none(method.get("scenario", config.get("env.scenario"))),
                preset=_str_or_none(method.get("preset", config.get("env.preset"))),
                seeds=_int_or_none(method.get("seeds")),
                episodes=_int_or_none(method.get("episodes")),
                config=config,
                path=run_dir,
                reference=yardstick is not None and method.get("name") == yardstick,
            ))
        for left_out in summary.get("skipped") or []:
            if isinstance(left_out, dict):
                rows.append(Row(run=run, method=str(left_out.get("name", "?")), overrides=overrides,
                                scenario=config.get("env.scenario"), preset=config.get("env.preset"),
                                config=config, path=run_dir, note=f"not run: {left_out.get('reason', '?')}"))
    return rows


# ----------------------------------------------------------------------------- the table


def swept_keys(rows: list[Row]) -> list[str]:
    """Override keys whose value differs between runs (absent counts as a value), in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.overrides))
    runs = {row.run: row for row in rows}.values()
    return [key for key in keys if len({r.overrides.get(key) for r in runs}) > 1]


def metric_names(rows: list[Row]) -> list[str]:
    """The metrics present in any row: the known ones first, then the others as they appear."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row.metrics))
    return [m for m in KNOWN_METRICS if m in seen] + [m for m in seen if m not in KNOWN_METRICS]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    return not math.isnan(_as_float(value))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def to_markdown(rows: list[Row]) -> str:
    """The table in markdown: one row per (run, method), metrics as `mean ± ci95`."""
    swept, metrics = swept_keys(rows), metric_names(rows)
    notes = any(row.note for row in rows)
    header = ["run", "overrides", *swept, "method", "scenario", "preset", *metrics, "seeds", "episodes"]
    header += ["note"] if notes else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.run, row.overrides_text, *(_text(row.overrides.get(k)) for k in swept),
                 row.method, _text(row.scenario), _text(row.preset)]
        for name in metrics:
            m = row.metrics.get(name)
            cells.append("" if m is None else f"{m.mean:.4f} ± {m.ci95:.4f}")
        cells += [_text(row.seeds), _text(row.episodes)]
        cells += [_text(row.note)] if notes else []
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[Row], path: Path) -> None:
    """The table as CSV: plain numbers, one `<metric>_mean` and one `<metric>_ci95` column per metric."""
    swept, metrics = swept_keys(rows), metric_names(rows)
    notes = any(row.note for row in rows)
    header = ["run", "overrides", *swept, "method", "scenario", "preset"]
    header += [f"{name}_{part}" for name in metrics for part in ("mean", "ci95")] + ["seeds", "episodes"]
    header += ["note"] if notes else []
    with atomic_path(path) as temporary, temporary.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for row in rows:
            cells = [row.run, row.overrides_text, *(_text(row.overrides.get(k)) for k in swept),
                     row.method, _text(row.scenario), _text(row.preset)]
            for name in metrics:
                m = row.metrics.get(name)
                cells += ["", ""] if m is None else [repr(m.mean), repr(m.ci95)]
            writer.writerow(cells + [_text(row.seeds), _text(row.episodes)] + ([_text(row.note)] if notes else []))


# ----------------------------------------------------------------------------- plots


def plot_key(rows: list[Row], x_key: str | None = None) -> str | None:
    """The key to plot against: `x_key` (checked to be numeric in every run), else the one swept numeric key."""
    if x_key is not None:
        bad = sorted({row.run for row in rows if not _is_number(row.value(x_key))}, key=_natural_key)
        if bad:
            raise ValueError(f"--x {x_key}: no numeric value in run(s) {', '.join(bad)}")
        return x_key
    numeric = [k for k in swept_keys(rows) if all(_is_number(row.overrides.get(k)) for row in rows)]
    return numeric[0] if len(numeric) == 1 else None


def plot(rows: list[Row], x_key: str, metric: str, path: Path, logx: bool = False) -> None:
    """`metric` against `x_key`, one line per method (and per value of any other swept key), CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # other swept keys split the lines, except one given in only some runs and with one value
    # there (e.g. a shared base point with every knob explicit): those runs' default, not a series
    others = [k for k in swept_keys(rows) if k != x_key and
              (len({r.overrides[k] for r in rows if k in r.overrides}) > 1 or all(k in r.overrides for r in rows))]
    lines: dict[str, list[tuple[float, Metric]]] = {}
    references: set[str] = set()
    for row in rows:
        if metric in row.metrics:
            label = " ".join([row.method, *(f"{k}={row.overrides.get(k)}" for k in others)])
            lines.setdefault(label, []).append((_as_float(row.value(x_key)), row.metrics[metric]))
            if row.reference:
                references.add(label)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in lines.items():
        points.sort(key=lambda p: p[0])
        if label in references:  # a reference line: dashed, black, drawn on top
            style = dict(linestyle="--", color="black", marker="", label=f"{label} (reference)", zorder=3)
        else:
            style = dict(marker="o", label=label)
        ax.errorbar([x for x, _ in points], [m.mean for _, m in points], yerr=[m.ci95 for _, m in points],
                    capsize=3, **style)
    scenarios = ", ".join(sorted({_text(r.scenario) for r in rows if r.scenario is not None})) or "?"
    presets = ", ".join(sorted({_text(r.preset) for r in rows if r.preset is not None})) or "?"
    ax.set_xlabel(x_key)
    if logx:
        values = sorted({x for points in lines.values() for x, _ in points})
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(values, [f"{x:g}" for x in values])
    if metric == "failure_rate":  # a rate: CIs of a few seeds may reach below 0
        ax.set_ylim(bottom=-0.02)
    ax.set_ylabel(f"{LABELS.get(metric, metric)} ± 95% CI")
    ax.set_title(f"{LABELS.get(metric, metric)} vs {x_key}\nscenario {scenarios}, preset {presets}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def to_pivot(rows: list[Row], x_key: str, metrics: tuple[str, ...] = PLOT_METRICS) -> str:
    """Per metric, one markdown table: the values of `x_key` down, the methods across (mean ± CI).

    A method left out at a value says "not run"; reference methods come last.
    """
    methods = list(dict.fromkeys(row.method for row in rows))
    reference = {row.method for row in rows if row.reference}
    methods = [m for m in methods if m not in reference] + [m for m in methods if m in reference]
    values = sorted({_as_float(row.value(x_key)) for row in rows})
    cells = {(_as_float(row.value(x_key)), row.method): row for row in rows}
    parts = []
    for metric in [m for m in metrics if any(m in row.metrics for row in rows)]:
        heads = [f"{m} (reference)" if m in reference else m for m in methods]
        lines = [f"{LABELS.get(metric, metric)}, mean ± 95 % CI over seeds:", "",
                 "| " + " | ".join([x_key, *heads]) + " |", "|" + "---|" * (len(methods) + 1)]
        for value in values:
            line = [f"{value:g}"]
            for method in methods:
                row = cells.get((value, method))
                m = None if row is None else row.metrics.get(metric)
                line.append("not run" if row is not None and row.note else
                            "–" if m is None else f"{m.mean:.4f} ± {m.ci95:.4f}")  # fmt: skip
            lines.append("| " + " | ".join(line) + " |")
        parts.append("\n".join(lines) + "\n")
    notes = sorted({f"- {row.method} at {x_key} = {_as_float(row.value(x_key)):g}: {row.note}"
                    for row in rows if row.note})  # fmt: skip
    if notes:
        parts.append("\n".join(notes) + "\n")
    return "\n".join(parts)


def write_report(rows: list[Row], out_dir: str | Path, x_key: str | None = None, pivot: bool = False,
                 logx: bool = False) -> list[Path]:
    """Write report.md, report.csv and, when there is a key to plot against, one PNG per metric
    (and, with `pivot`, pivot.md); `logx`: a logarithmic x axis."""
    key = plot_key(rows, x_key)  # first, so that a bad --x writes nothing
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.md", to_markdown(rows))
    write_csv(rows, out / "report.csv")
    written = [out / "report.md", out / "report.csv"]
    if pivot and key is not None:
        atomic_write_text(out / "pivot.md", to_pivot(rows, key))
        written.append(out / "pivot.md")
    if key is not None:
        metrics = [m for m in PLOT_METRICS if any(m in r.metrics for r in rows)] or metric_names(rows)[:1]
        for metric in metrics:
            path = out / f"{metric}_vs_{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.png"
            with atomic_path(path) as temporary:
                plot(rows, key, metric, temporary, logx)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddrl.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run directories, multirun directories, or folders of them")
    parser.add_argument("--out", help="where to write the report (default: the first path)")
    parser.add_argument("--x", dest="x_key", help="config key to plot against, e.g. env.arrival_prob")
    parser.add_argument("--reference", action="append", default=[],
                        help="method drawn as a dashed reference line (default: each run's yardstick)")
    parser.add_argument("--pivot", action="store_true", help="also write pivot.md (swept value down, methods across)")
    parser.add_argument("--logx", action="store_true", help="logarithmic x axis in the plots")
    args = parser.parse_args(argv)
    rows = collect(args.paths)
    for row in rows:
        row.reference = row.reference or row.method in args.reference
    if not rows:
        print(f"ddrl.report: error: no summary.json found under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    out = args.out or (args.paths[0] if Path(args.paths[0]).is_dir() else str(Path(args.paths[0]).parent))
    try:
        written = write_report(rows, out, args.x_key, pivot=args.pivot, logx=args.logx)
    except ValueError as error:
        print(f"ddrl.report: error: {error}", file=sys.stderr)
        return 2
    print(to_markdown(rows))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
