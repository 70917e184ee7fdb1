"""Frame time of the 3D view for large point clouds (0.5 M and 2 M points by default).

Run on a real X server (on a headless machine: `xvfb-run -a -s "-screen 0 1920x1080x24"`), so the
numbers include whatever OpenGL the machine has (Mesa's llvmpipe software GL on a server). Three
figures per size: an on-screen redraw while the camera orbits (what a user feels when dragging:
the view then draws a decimated cloud), the full-quality redraw once the camera rests, and an
offscreen `canvas.render()` (draw plus read-back, what screenshots cost).

    python benchmarks/view_fps.py --points 500000,2000000 --frames 30 -o out/bench/view_fps.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")


def synthetic_reconstruction(points: int, frames: int = 8):
    """A dome of coloured points seen by `frames` cameras: the layout of a real reconstruction."""
    from zipmap_core.io.reconstruction import Reconstruction

    side = int(np.ceil(np.sqrt(points / frames)))
    rng = np.random.default_rng(0)
    h = w = side
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    f = 0.8 * w
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], np.float32)
    ext, depth, pcam, pworld = [], [], [], []
    for i in range(frames):
        a = 2 * np.pi * i / frames
        rot = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]], np.float32)
        c2w = np.eye(4, dtype=np.float32)
        c2w[:3, :3] = rot
        c2w[:3, 3] = -3 * rot[:, 2]
        w2c = np.linalg.inv(c2w)
        d = 3 + 0.3 * np.sin(xs / 9) * np.cos(ys / 7) + 0.05 * rng.standard_normal((h, w)).astype(np.float32)
        cam = np.stack(((xs - k[0, 2]) / f * d, (ys - k[1, 2]) / f * d, d), -1)
        ext.append(w2c[:3])
        depth.append(d)
        pcam.append(cam)
        pworld.append(cam @ rot.T + c2w[:3, 3])
    images = (rng.random((frames, h, w, 3)) * 255).astype(np.uint8)
    return Reconstruction(
        names=[f"frame_{i:03d}" for i in range(frames)],
        images=images,
        extrinsics=np.stack(ext),
        intrinsics=np.stack([k] * frames),
        depth=np.stack(depth).astype(np.float32),
        depth_conf=np.ones((frames, h, w), np.float32) + rng.random((frames, h, w)).astype(np.float32),
        points_cam=np.stack(pcam).astype(np.float32),
        points_world=np.stack(pworld).astype(np.float32),
        original_wh=np.array([[w, h]] * frames),
    )


def orbit(view, frames: int, interacting: bool) -> list[float]:
    """Seconds per on-screen redraw while the camera turns; `interacting` is a drag in progress."""
    from vispy import app as vispy_app
    from vispy.gloo import gl

    times = []
    for i in range(frames + 2):
        if interacting:
            view.begin_interaction()
        else:
            view._end_interaction()
        view.view.camera.azimuth += 3
        t0 = time.perf_counter()
        view.canvas.update()
        vispy_app.process_events()
        gl.glFinish()
        if i >= 2:  # the first draws compile shaders and upload buffers
            times.append(time.perf_counter() - t0)
    return times


def measure(points: int, frames: int, size: tuple[int, int]) -> dict:
    from vispy import app as vispy_app
    from vispy.gloo import gl

    from app.viewer3d import SceneView

    view = SceneView(size=size)
    view.canvas.show()
    recon = synthetic_reconstruction(points)
    t0 = time.perf_counter()
    view.set_reconstruction(recon)
    vispy_app.process_events()
    gl.glFinish()
    upload = time.perf_counter() - t0
    full = orbit(view, frames, interacting=False)
    onscreen = orbit(view, frames, interacting=True)
    view._end_interaction()
    offscreen = []
    for _ in range(max(3, frames // 5)):
        view.view.camera.azimuth += 3
        t0 = time.perf_counter()
        view.canvas.render()
        offscreen.append(time.perf_counter() - t0)
    renderer = gl.glGetParameter(gl.GL_RENDERER)
    view.canvas.close()
    med = float(np.median(onscreen))
    return {
        "points": view.drawn_points,
        "requested_points": points,
        "canvas": list(size),
        "interactive_points": min(view.drawn_points, view.interactive_points),
        "set_reconstruction_s": upload,
        "onscreen_ms": 1000 * med,
        "onscreen_fps": 1 / med,
        "onscreen_p90_ms": 1000 * float(np.percentile(onscreen, 90)),
        "full_redraw_ms": 1000 * float(np.median(full)),
        "render_ms": 1000 * float(np.median(offscreen)),
        "gl_renderer": str(renderer),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", default="500000,2000000", help="comma-separated point counts")
    p.add_argument("--frames", type=int, default=30, help="redraws per size")
    p.add_argument("--size", default="1280x800", help="canvas WxH")
    p.add_argument("-o", "--output", default="out/bench/view_fps.json")
    args = p.parse_args()
    from vispy import use

    use("pyside6")
    from PySide6.QtWidgets import QApplication

    _qt = QApplication.instance() or QApplication([])
    w, h = (int(v) for v in args.size.lower().split("x"))
    rows = []
    for n in (int(v) for v in args.points.split(",")):
        r = measure(n, args.frames, (w, h))
        rows.append(r)
        print(
            f"{r['points']:>9,d} points: {r['onscreen_ms']:.0f} ms per redraw while orbiting "
            f"({r['onscreen_fps']:.1f} fps, p90 {r['onscreen_p90_ms']:.0f} ms, {r['interactive_points']:,d} drawn), "
            f"{r['full_redraw_ms']:.0f} ms at rest (all points), offscreen render {r['render_ms']:.0f} ms, "
            f"upload {r['set_reconstruction_s']:.1f} s  [{r['gl_renderer']}]",
            flush=True,
        )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(), "results": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
