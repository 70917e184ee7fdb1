#!/usr/bin/env bash
# The style checks CI runs before the tests: ruff's lint (rules in pyproject.toml) and format on all Python code,
# the import-linter contracts in pyproject.toml (the engine's floors), and mypy on the engine against its
# baseline (scripts/mypy_baseline.py), which may only shrink.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
python -m ruff check zipmap_core app tests benchmarks scripts
python -m ruff format --check --quiet zipmap_core app tests benchmarks scripts
lint-imports --no-cache --no-logo pyproject.toml >/dev/null || lint-imports --no-cache --no-logo pyproject.toml  # the floors: contracts in pyproject.toml, said again on failure
python scripts/mypy_baseline.py
