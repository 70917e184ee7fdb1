#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs every test on a virtual X
# server (Xvfb + Mesa), so the 3D view really renders.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install-system-deps.sh
source scripts/setup-env.sh
export QT_QPA_PLATFORM=xcb HF_HUB_OFFLINE=1
exec xvfb-run -a -s "-screen 0 1920x1080x24" python -m pytest -q "$@"
