"""Compares mypy's findings with the recorded baseline (mypy-baseline.txt): a finding not listed
fails; a listed one that is gone is named, to be removed with `--update`, so the list only
shrinks (it does not fail the run: a newer library's stubs may fix one without our doing).
Findings are keyed without line numbers, so an edit above a known finding does not move it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "mypy-baseline.txt"
FINDING = re.compile(r"^(?P<file>[^:]+):\d+: error: (?P<message>.*)$")


def findings() -> Counter[str]:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    keys = [f"{m['file']}: {m['message']}" for line in out.splitlines() if (m := FINDING.match(line))]
    return Counter(keys)


def main() -> int:
    now = findings()
    if "--update" in sys.argv:
        BASELINE.write_text("".join(f"{k}\n" for k in sorted(now.elements())))
        print(f"mypy baseline: {sum(now.values())} findings recorded")
        return 0
    known = Counter(BASELINE.read_text().splitlines()) if BASELINE.exists() else Counter()
    new, gone = now - known, known - now
    for key in sorted(new.elements()):
        print(f"new mypy finding: {key}")
    for key in sorted(gone.elements()):
        print(f"fixed, remove it from mypy-baseline.txt (python scripts/mypy_baseline.py --update): {key}")
    print(f"mypy: {sum(now.values())} findings, {sum(known.values())} in the baseline")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
