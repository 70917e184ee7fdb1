"""The app's looked-at screenshots (issues 36 and 38), made by driving the window as a user would:

- `held-out`: the shipped video registered by COLMAP, one frame taken out and the dense stage run
  on the rest, opened in the app; a virtual camera at the removed frame's registered camera shows
  the view from the photos. Writes docs/held_out_window.png (the window) and docs/held_out_view.png
  (render | held-out photo, with the PSNR).
- `first-minute`: a new user with no official weights (an empty Hugging Face cache) and no settings
  drops the real video's frames, presses Reconstruct with the default engine and places a virtual
  camera. Writes a screenshot at each step into OUT and the last one as docs/first_minute.png.

Run under an X server: xvfb-run -a -s "-screen 0 1920x1080x24" python tests/app_screenshots.py {held-out|first-minute} OUT"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def wait(app, until, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.02)


def settle(app, seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def rendered(window) -> bool:
    cams = window.cameras
    return window.novel.last is not None and not cams.renderer.busy and not cams.renderer.pending and not cams.rest.isActive()


def new_window(app, folder: Path):
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow
    from zipmap_core.options import STUDIO_WINDOW

    window = MainWindow(settings=QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat))
    window.loader.ask_video_sampling = False
    window.resize(*STUDIO_WINDOW)
    window.show()
    wait(app, lambda: window.rec is not None and not window.models.loading, 120)
    settle(app)
    return window


def held_out(app, out: Path) -> None:
    from PIL import Image, ImageDraw
    from real_scenes import empty_hub_cache, held_out_scene

    from zipmap_core.metrics import psnr

    empty_hub_cache(out)  # the model does not matter to the photos: the one a new user has
    held = held_out_scene()
    path = held.scene.save(out / "held_out.zipmap")
    window = new_window(app, out)
    window.scenes.open_scene(str(path))
    wait(app, lambda: window.recon is not None and not window.jobs.running)
    window.cameras.add(held.c2w, held.k)
    wait(app, lambda: rendered(window))
    settle(app)
    rgb = window.novel.last.rgb[0]
    score = psnr(rgb, held.photo.astype(np.float32) / 255)
    print(f"{window.novel.status.text()}; held-out frame {held.name}: {score:.2f} dB", flush=True)
    window.exports.save_window_screenshot(DOCS / "held_out_window.png")
    render = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = render.shape[:2]
    caption = 24
    side = Image.new("RGB", (2 * w + 8, h + caption), "white")
    side.paste(Image.fromarray(render), (0, caption))
    side.paste(Image.fromarray(held.photo), (w + 8, caption))
    draw = ImageDraw.Draw(side)
    draw.text((4, 6), f"the app's view from the photos at the held-out camera ({score:.1f} dB PSNR)", fill="black")
    draw.text((w + 12, 6), f"the held-out photo ({held.name})", fill="black")
    side.save(DOCS / "held_out_view.png")
    window.close()


def first_minute(app, out: Path) -> None:
    from gui import drop
    from real_scenes import empty_hub_cache

    from zipmap_core.io.inputs import VideoSampling, load_inputs
    from zipmap_core.resources import REAL_SAMPLE, REAL_SAMPLE_FRAMES

    empty_hub_cache(out)
    photos = out / "great_wall"
    photos.mkdir(exist_ok=True)
    for i, frame in enumerate(load_inputs([str(REAL_SAMPLE)], VideoSampling(fps=None, max_frames=REAL_SAMPLE_FRAMES)).frames):
        frame.full_image().save(photos / f"frame_{i:02d}.jpg", quality=95)
    window = new_window(app, out)
    shots = []

    def shot(name: str) -> None:
        settle(app)
        shots.append(window.exports.save_window_screenshot(out / f"{len(shots)}_{name}.png"))
        print(f"{shots[-1].name}: status: {window.status_info.text()!r}; runs: {window.model_panel.engine_note.text()!r}", flush=True)

    shot("started")
    drop(window, [photos])
    wait(app, lambda: len(window.loader.frames) == REAL_SAMPLE_FRAMES and not window.jobs.running)
    shot("dropped")
    window.model_panel.reconstruct_button.click()
    wait(app, lambda: window.recon is not None and not window.jobs.running)
    shot("reconstructed")
    window.cameras.add_from_view()
    wait(app, lambda: rendered(window))
    shot("virtual_camera")
    print("messages:", window.messages, flush=True)
    shots[-1].replace(DOCS / "first_minute.png")
    window.close()


def main() -> None:
    import vispy

    vispy.use("pyside6")
    from PySide6.QtWidgets import QApplication

    which, out = sys.argv[1], Path(sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    {"held-out": held_out, "first-minute": first_minute}[which](app, out)


if __name__ == "__main__":
    main()
