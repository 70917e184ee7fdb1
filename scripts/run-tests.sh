#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs every test on a virtual X
# server (Xvfb + Mesa), so the 3D view really renders. The golden parity tests then run a second
# time with the kernels the golden files were made with (AVX2 for ATen and oneDNN), where our
# fast weights stay within their tolerances; whether they are also bit-identical is reported, with the
# kernels that ran (a fact about one machine). The first run used this CPU's native kernels.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install-system-deps.sh
source scripts/setup-env.sh
export QT_QPA_PLATFORM=xcb HF_HUB_OFFLINE=1
if [ $# -eq 0 ]; then
  bash scripts/lint.sh  # style first: ruff, and mypy against its shrinking baseline
fi
xvfb-run -a -s "-screen 0 1920x1080x24" python -m pytest -q "$@"
if [ $# -eq 0 ]; then
  echo "golden parity tests again with the golden files' kernels (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2):"
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m pytest -q tests/test_golden_parity.py tests/test_engine.py -k "golden or bf16"
fi
