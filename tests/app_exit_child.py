"""The child process of tests/test_app_exit.py: the app as `python -m app` runs it, with one kind
of background job held in progress by a stand-in, so that the app is asked to quit while it runs.

    python tests/app_exit_child.py KIND HOW [app arguments...]

KIND, the job held: load (the model load at start), download (the official weights, through a
stand-in hub client), reconstruct, live, render (a novel view, told through its cancel token), export.
HOW, the way to quit: close (the window's close button, once the job is held), exit (`--exit`
ends the run on its own), parent (the test sends SIGINT or SIGTERM once it reads "held").

The stand-in says "held KIND" when the job is in progress and "KIND ended" when it returns:
cancellable work at the cancel, work that cannot be cancelled (a model being read)
only once the app has begun to quit ("saw the quit"; HOLD_AFTER_QUIT_S later, 0.3 s unless the
environment says). So "KIND ended" in the output shows the exit waited."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("QT_API", "pyside6")

HELD = threading.Event()
WINDOW: list = []  # the main window, once it is up
KEEP: list = []  # Qt objects that must live as long as the process
LONGEST_S = 60  # a stand-in never holds longer, whatever happens


def say(text: str) -> None:
    print(text, flush=True)


def quitting() -> bool:
    return bool(WINDOW) and WINDOW[0].jobs.closed


def hold_until_cancelled(kind: str, cancel) -> None:
    """Cancellable work: runs until the app cancels it."""
    HELD.set()
    say(f"held {kind}")
    deadline = time.monotonic() + LONGEST_S
    while not cancel.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    say(f"{kind} ended")
    cancel.check()


def hold_until_quitting(kind: str) -> None:
    """Work that cannot be cancelled (reading a model): it ends a little after the app
    has begun to quit, so an exit that did not wait for it would not see it end."""
    HELD.set()
    say(f"held {kind}")
    deadline = time.monotonic() + LONGEST_S
    while not quitting() and time.monotonic() < deadline:
        time.sleep(0.01)
    say("saw the quit")
    time.sleep(float(os.environ.get("HOLD_AFTER_QUIT_S", "0.3")))
    say(f"{kind} ended")


def hold(kind: str) -> None:
    """Puts the stand-in for `kind` in place (the app imports engine functions where they run)."""
    if kind == "load":
        from zipmap_core.pipeline.reconstructor import Reconstructor

        real = Reconstructor.open
        Reconstructor.open = classmethod(lambda cls, *a, **k: (hold_until_quitting("load"), real(*a, **k))[1])
    elif kind == "download":
        hold_download()
    elif kind == "reconstruct":
        from zipmap_core import engines

        engines.reconstruct_scene = lambda *a, cancel, **k: hold_until_cancelled("reconstruct", cancel)
    elif kind == "live":
        from zipmap_core.io import inputs

        def frames(paths, sampling, prepare, cancel):  # the stream waits for its first frame until cancelled
            hold_until_cancelled("live", cancel)
            yield from ()

        inputs.iter_inputs = frames
    elif kind == "render":
        from zipmap_core.pipeline import camera_path

        real_render = camera_path.render_frames
        camera_path.render_frames = lambda *a, cancel, **k: (hold_until_cancelled("render", cancel), real_render(*a, cancel=cancel, **k))[1]
    elif kind == "export":
        from zipmap_core.io import exporters

        exporters.export = lambda *a, cancel, **k: hold_until_cancelled("export", cancel)


def hold_download() -> None:
    """The hub client, as the download tests fake it: 5.5 GB in small reports until cancelled."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError
    from PySide6.QtWidgets import QInputDialog

    from zipmap_core.io import download

    def hub(repo, filename, cache_dir=None, tqdm_class=None, local_files_only=False, **kw):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        bar = tqdm_class(total=5_500_000_000, unit="B")
        HELD.set()
        say("held download")
        try:
            for _ in range(int(LONGEST_S / 0.02)):
                time.sleep(0.02)
                bar.update(1_000_000)  # the app's progress callback: where a cancel stops it
        finally:
            say("download ended")
        raise AssertionError("the download was never cancelled")

    huggingface_hub.hf_hub_download = hub
    download.hub_reachable = lambda timeout_s=3.0: True
    QInputDialog.getItem = staticmethod(lambda *a, **k: ("state_query", True))


def trigger(kind: str, window) -> bool:
    """Starts the job to hold once the window is ready for it; True once started."""
    if window.rec is None:
        return False
    if kind == "download":
        window.models.download_dialog()
    elif kind == "live":
        window.live.start(str(HERE / "clip.mp4"), 2)
    elif kind in ("render", "export"):
        if window.recon is None or window.jobs.running:
            return False
        if kind == "render":
            window.cameras.add_from_view()
        else:
            window.exports.export_to("ply", os.environ["EXPORT_TO"])
    return True


def watch(kind: str, how: str) -> None:
    """On the GUI thread, every 20 ms: starts the job when it can, and closes the window once it is held."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    started = kind in ("load", "reconstruct")  # these start with the app

    def tick() -> None:
        nonlocal started
        if not WINDOW:
            WINDOW.extend(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
            return
        if not started:
            started = trigger(kind, WINDOW[0])
        elif HELD.is_set() and how == "close" and WINDOW[0].isVisible():
            say("quitting")
            WINDOW[0].close()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    KEEP.append(timer)  # alive as long as the process


def main() -> int:
    kind, how, *argv = sys.argv[1:]
    import vispy

    vispy.use("pyside6")
    from PySide6.QtWidgets import QApplication

    KEEP.append(QApplication(sys.argv[:1]))
    hold(kind)
    watch(kind, how)
    from app.__main__ import main as studio

    code = studio(argv)
    say(f"exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
