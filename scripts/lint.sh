#!/usr/bin/env bash
# The style checks CI runs before the tests: ruff's lint (rules in pyproject.toml) and format on all Python code,
# and mypy on the engine against its baseline (scripts/mypy_baseline.py), which may only shrink.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
python -m ruff check zipmap_core app tests benchmarks scripts
python -m ruff format --check --quiet zipmap_core app tests benchmarks scripts
python scripts/mypy_baseline.py
