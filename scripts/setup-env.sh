#!/usr/bin/env bash
# Creates .venv (if missing) with ZipMap Studio and its test tools. Sourced by the other scripts.
# torch is pinned to the CPU build 2.13.0 first so that pip never pulls a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZIPMAP_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import zipmap_core, app, pytestqt, ruff, mypy, psygnal, importlinter, hypothesis" >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
fi
export PATH="$VENV/bin:$PATH"
