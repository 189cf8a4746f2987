"""ddrl.report: summaries of runs and multiruns become one table, a CSV and plots against the swept key."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ddrl.report import collect, main, swept_keys, to_markdown, write_report

ROOT = Path(__file__).resolve().parent.parent


def _method(name: str, make_span: float, failure: float) -> dict:
    metrics = {
        "make_span": {"mean": make_span, "ci95": 0.0004},
        "failure_rate": {"mean": failure, "ci95": 0.01},
        "raw_delay": {"mean": make_span + 0.1, "ci95": 0.002},
        "lower_bound": {"mean": make_span / 2, "ci95": 0.0001},
    }
    return {"name": name, "metric": "make_span_s", "mean": make_span, "ci95": 0.0004, "metrics": metrics,
            "seeds": 3, "episodes": 4, "scenario": "amcoedge", "preset": "clean", "env_copy": "own"}


def _job(directory: Path, arrival_prob: float, methods: list[dict]) -> None:
    """A Hydra job directory as `ddrl.run -m` writes it."""
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text(
        f"- method=randcoedge\n- env.num_slots=2\n- env.arrival_prob={arrival_prob}\n")
    (directory / "config.yaml").write_text(
        f"env:\n  scenario: amcoedge\n  preset: clean\n  num_slots: 2\n  arrival_prob: {arrival_prob}\nseed: 0\n")
    (directory / "summary.json").write_text(json.dumps({"methods": methods}))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    _job(tmp_path / "sweep" / "0", 0.2, [_method("randcoedge", 0.2087, 0.0), _method("local", 0.5, 0.25)])
    _job(tmp_path / "sweep" / "1", 0.6, [_method("randcoedge", 0.3123, 0.05), _method("local", 0.9, 0.5)])
    return tmp_path / "sweep"


def test_collect_gives_one_row_per_run_and_method(sweep):
    rows = collect([sweep])
    assert [(r.run, r.method) for r in rows] == [("0", "randcoedge"), ("0", "local"), ("1", "randcoedge"), ("1", "local")]
    first = rows[0]
    assert first.overrides == {"method": "randcoedge", "env.num_slots": "2", "env.arrival_prob": "0.2"}
    assert first.overrides_text == "method=randcoedge env.num_slots=2 env.arrival_prob=0.2"
    assert first.metrics["make_span"].mean == 0.2087 and first.metrics["make_span"].ci95 == 0.0004
    assert first.metrics["lower_bound"].mean == pytest.approx(0.10435)
    assert (first.scenario, first.preset, first.seeds, first.episodes) == ("amcoedge", "clean", 3, 4)
    assert rows[3].metrics["failure_rate"].mean == 0.5
    assert first.config["env.arrival_prob"] == 0.2
    assert swept_keys(rows) == ["env.arrival_prob"]


def test_markdown_and_csv(sweep, tmp_path):
    rows = collect([sweep])
    written = write_report(rows, tmp_path / "out")
    assert [p.name for p in written] == ["report.md", "report.csv",
                                         "make_span_vs_env.arrival_prob.png", "failure_rate_vs_env.arrival_prob.png"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown == to_markdown(rows)
    lines = markdown.splitlines()
    assert lines[0].startswith("| run | overrides | env.arrival_prob | method | scenario | preset | make_span |")
    assert len(lines) == 2 + 4
    assert "| 0 | method=randcoedge env.num_slots=2 env.arrival_prob=0.2 | 0.2 | randcoedge | amcoedge | clean |" in lines[2]
    assert "0.2087 ± 0.0004" in lines[2] and "0.3123 ± 0.0004" in lines[4]

    with (tmp_path / "out" / "report.csv").open() as file:
        table = list(csv.DictReader(file))
    assert len(table) == 4
    assert table[0]["env.arrival_prob"] == "0.2" and table[3]["env.arrival_prob"] == "0.6"
    assert float(table[0]["make_span_mean"]) == 0.2087 and float(table[0]["make_span_ci95"]) == 0.0004
    assert float(table[3]["failure_rate_mean"]) == 0.5 and table[3]["method"] == "local"
    assert {"raw_delay_mean", "lower_bound_ci95", "seeds", "episodes"} <= set(table[0])
    for name in written[2:]:
        assert name.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and name.stat().st_size > 1000


def test_no_plot_without_a_single_numeric_sweep_and_x_overrides(sweep, tmp_path):
    rows = collect([sweep / "0"])  # one run: nothing swept
    assert rows[0].run == "0" and swept_keys(rows) == []
    assert [p.name for p in write_report(rows, tmp_path / "one")] == ["report.md", "report.csv"]
    written = write_report(collect([sweep]), tmp_path / "x", x_key="env.num_slots")
    assert (tmp_path / "x" / "make_span_vs_env.num_slots.png") in written
    with pytest.raises(ValueError, match="algo"):
        write_report(collect([sweep]), tmp_path / "bad", x_key="algo")


def test_other_summary_shapes_are_tolerated(tmp_path):
    run = tmp_path / "cartpole"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"methods": [
        {"name": "ppo", "metric": "average_training_return", "mean": 150.0, "ci95": 12.5,
         "final_greedy_return": {"mean": 200.0, "ci95": 0.0}, "seeds": 4}]}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    rows = collect([tmp_path])
    assert len(rows) == 1 and rows[0].run == "cartpole" and rows[0].overrides == {}
    assert rows[0].metrics["average_training_return"].mean == 150.0
    assert rows[0].metrics["final_greedy_return"].mean == 200.0
    assert rows[0].episodes is None and "150.0000 ± 12.5000" in to_markdown(rows)


@pytest.mark.parametrize("text, problem", [
    ('{"methods": null}', "'methods' must be a list"),
    ('{"methods": [3]}', "methods[0] must be an object"),
    ('{"methods": [{"mean": 1}]}', "methods[0].name must be a string"),
    ('[1, 2]', "not a JSON object"),
    ('{"methods": [{"name": "a"}], "skipped": 7}', "'skipped' must be a list"),
    ('{"methods": [', "JSONDecodeError"),
])  # fmt: skip
def test_a_malformed_summary_is_skipped_with_one_line_naming_it(tmp_path, capsys, text, problem):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text(text)
    assert collect([tmp_path]) == []
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ddrl.report: warning: skipping {tmp_path / 'bad' / 'summary.json'}")
    assert problem in lines[0]


def test_non_finite_and_odd_numbers_are_read_without_a_traceback(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(
        '{"methods": [{"name": "a", "metric": "make_span", "mean": NaN, "ci95": Infinity, "seeds": Infinity,'
        ' "episodes": 1.5, "scenario": 3}, {"name": "b", "mean": "x", "seeds": true}]}')
    rows = collect([tmp_path])
    assert [row.method for row in rows] == ["a", "b"]
    assert rows[0].seeds is None and rows[0].episodes is None and rows[0].scenario is None
    assert rows[1].seeds is None
    write_report(rows, tmp_path / "out")
    assert capsys.readouterr().err == ""


def test_report_never_writes_through_a_planted_symlink(sweep, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "precious.md"
    outside.write_text("keep me")
    for name in ("report.md", "report.csv", "make_span_vs_env.arrival_prob.png"):
        (out / name).symlink_to(outside)
    written = write_report(collect([sweep]), out)
    assert outside.read_text() == "keep me"
    for path in written:
        assert path.parent == out and path.is_file() and not path.is_symlink()
    assert not list(out.glob(".*.tmp"))


def test_cli(sweep, tmp_path, capsys):
    assert main([str(sweep), "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "0.2087 ± 0.0004" in printed and f"wrote {tmp_path / 'cli' / 'report.md'}" in printed
    assert main([str(tmp_path / "cli")]) == 1  # no summary.json there
    assert capsys.readouterr().err.strip().startswith("ddrl.report: error: no summary.json")


def test_end_to_end_multirun_then_report(tmp_path):
    sweep = tmp_path / "sweep"
    run = subprocess.run(
        [sys.executable, "-m", "ddrl.run", "-m", "method=randcoedge", "budget=smoke", "env.num_slots=2",
         "env.num_tasks=5", "env.arrival_prob=0.2,0.6", "logger=none", f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list(sweep.rglob("summary.json"))) == 2
    report = subprocess.run([sys.executable, "-m", "ddrl.report", str(sweep)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    print(report.stdout)
    table = [line for line in (sweep / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2 and "env.arrival_prob" in table[0]
    assert table[1].startswith("| 0 |") and "| 0.2 | randcoedge | amcoedge | clean |" in table[1]
    assert table[2].startswith("| 1 |") and "| 0.6 | randcoedge |" in table[2]
    assert (sweep / "report.csv").exists()
    assert (sweep / "make_span_vs_env.arrival_prob.png").stat().st_size > 1000
    assert (sweep / "failure_rate_vs_env.arrival_prob.png").exists()
