#!/usr/bin/env bash
# The style checks CI runs before the tests: ruff (rules in pyproject.toml) on all Python code,
# and mypy on the engine against its baseline (scripts/mypy_baseline.py), which may only shrink.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
python -m ruff check zipmap_core app tests benchmarks scripts
python scripts/mypy_baseline.py
