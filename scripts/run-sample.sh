#!/usr/bin/env bash
# The main job on the bundled model and sample scene: reconstruct, score against the ground truth,
# export, and save a screenshot of the 3D view; then the real sample video with the default engine
# (auto: without the official weights, COLMAP with dense depth from the photos), its novel views
# judged on held-out frames, so the first command also shows a real scene. Results go to out/sample/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install-system-deps.sh
source scripts/setup-env.sh
export HF_HUB_OFFLINE=1
OUT="${1:-out/sample}"
zipmap reconstruct resources/samples/images -o "$OUT" --engine zipmap --export ply,glb,colmap
zipmap eval resources/samples --json "$OUT/eval.json"
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1080x24" \
  zipmap-studio resources/samples/images --checkpoint resources/zipmap_small.safetensors \
    --screenshot "$OUT/screenshot.png" --exit
REAL=resources/samples/real/great_wall.mp4
zipmap reconstruct "$REAL" --video-frames 24 -o "$OUT/real" --export ply,mesh,colmap,nerfstudio
zipmap eval --novel-views "$REAL" --video-frames 24 --engine colmap --json "$OUT/real/novel_views.json" -o "$OUT/real/held_out"
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1080x24" \
  zipmap-studio "$REAL" --video-frames 24 --screenshot "$OUT/real/screenshot.png" --exit
echo "results in $OUT (the real video's in $OUT/real)"
