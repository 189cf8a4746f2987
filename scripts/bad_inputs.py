"""Try every row of tests/bad_inputs.py against `ddrl.run.precheck`; print the counts.

    python scripts/bad_inputs.py [-v]

Outcomes: refused (exit 2, one line naming the field), refused without the field (exit 2,
one line, another field or none), traceback (any other exception), accepted (no error).
"""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bad_inputs import BAD_INPUTS  # noqa: E402

from ddrl.run import precheck  # noqa: E402


def outcome(overrides: str, field: str) -> tuple[str, str]:
    """Classify one row."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            precheck(overrides.split())
    except SystemExit as stop:
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        if stop.code == 2 and len(lines) == 1 and field in lines[0]:
            return "refused, field named", lines[0]
        return "refused, field not named", " | ".join(lines)
    except Exception:
        return "traceback", traceback.format_exc().splitlines()[-1]
    return "silently accepted", ""


def main() -> None:
    verbose = "-v" in sys.argv
    counts: Counter[str] = Counter()
    for overrides, field in BAD_INPUTS:
        kind, text = outcome(overrides, field)
        counts[kind] += 1
        if verbose or kind != "refused, field named":
            print(f"{kind:26s} {overrides:60s} {text[:160]}")
    print(f"tried {len(BAD_INPUTS)}: " + ", ".join(f"{k} {counts[k]}" for k in (
        "refused, field named", "refused, field not named", "traceback", "silently accepted")))


if __name__ == "__main__":
    main()
