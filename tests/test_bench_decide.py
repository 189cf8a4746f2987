"""The decision-latency benchmark runs and prints well-formed JSON lines (smallest setting only)."""

from __future__ import annotations

import json
import math

import pytest

from ddrl.benchmarks import decide


def test_quick_cwa_lines_parse_and_have_positive_finite_times(capsys: pytest.CaptureFixture[str]) -> None:
    decide.main(["--quick", "--what", "scaling", "--only", "cwa", "--servers", "5"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    assert [(line["mode"], line["tasks_per_call"]) for line in lines] == [("one", 1), ("slot", 75)]
    for line in lines:
        assert (line["bench"], line["what"], line["scheduler"], line["B"]) == ("decide", "scaling", "cwa", 5)
        assert line["calls"] >= 10
        for field in ("p50_us", "p99_us"):
            assert math.isfinite(line[field]) and line[field] > 0
        assert line["p99_us"] >= line["p50_us"]


def test_spread_servers_covers_the_amcoedge_ranges() -> None:
    spread = decide.spread_servers(5)
    assert spread == {"capacity": [10.0, 20.0, 30.0, 40.0, 50.0], "rate": [400.0, 425.0, 450.0, 475.0, 500.0]}
    assert len(decide.spread_servers(50)["rate"]) == 50
