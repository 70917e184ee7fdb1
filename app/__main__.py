"""`zipmap-studio [INPUT...] [--checkpoint PATH] [--screenshot OUT.png --exit]`"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from zipmap_core.options import ENGINES, REFINE_NEEDS_NETWORK, STUDIO_WINDOW, add_video_sampling, dimensions, number


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zipmap-studio", description="ZipMap Studio: photos or a video in, a 3D scene out.")
    p.add_argument("inputs", nargs="*", help="images, folders, videos, or a .zipmap scene")
    p.add_argument(
        "--checkpoint",
        help="official .pt, our .safetensors, or official[:VARIANT] to download the authors' "
        "checkpoint once (default: last used, else the official weights when they are on this machine, else the bundled "
        "demonstration model)",
    )
    add_video_sampling(p, " for the inputs given here")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=ENGINES[0],
        help="auto (default): the network with the checkpoint you name or the official weights when they are on this machine, "
        "else COLMAP with dense depth from the photos; zipmap: the network; colmap: COLMAP alone, the classical engine",
    )
    p.add_argument("--refine", action="store_true", help="the network, its cameras refined with COLMAP's bundle adjustment")
    p.add_argument("--screenshot", help="after reconstructing, save a screenshot to this PNG")
    p.add_argument(
        "--capture",
        choices=("view", "window"),
        default="view",
        help="what --screenshot captures: the 3D view (default) or the whole window",
    )
    p.add_argument("--scale", type=number(float, 0.25, 8), default=1.0, help="screenshot scale (2 or 4 renders offscreen, larger)")
    p.add_argument("--size", type=dimensions(), default=STUDIO_WINDOW, help="window size WxH (default {}x{})".format(*STUDIO_WINDOW))
    p.add_argument(
        "--exit",
        action="store_true",
        help="quit when the screenshot is saved; without inputs, once the model has loaded (for scripts and CI)",
    )
    p.add_argument(
        "--startup-report",
        action="store_true",
        help="print one JSON line with the wall-clock times (time.time()) at which the studio started, its window was on "
        "screen and its model was ready (what `zipmap bench startup` reads)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    # Ctrl+C before the window is up ends the process at once, without a KeyboardInterrupt
    # traceback: no background job exists yet (once it is up, `QuitOnSignals` closes the window)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.refine and args.engine == "colmap":
        parser.error(REFINE_NEEDS_NETWORK)
    import vispy

    vispy.use("pyside6")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .quitting import QuitOnSignals
    from .script import ScriptedRun, StartupReport

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("ZipMap Studio")
    app.setOrganizationName("ZipMap")
    window = MainWindow(args.checkpoint)
    w, h = args.size
    window.resize(w, h)
    panel = window.model_panel
    panel.engine.setCurrentIndex(panel.engine.findData("zipmap" if args.refine else args.engine))  # --refine: the network, refined
    panel.refine.setChecked(args.refine)
    window.show()
    report = StartupReport(window, started, args.startup_report, quit_when_ready=args.exit and not args.inputs)
    status = {"code": 0}
    # however the app quits, its background jobs end first: nothing reports into a deleted window
    app.aboutToQuit.connect(window.shutdown)
    signals = QuitOnSignals(lambda code: (status.update(code=code), window.close(), app.quit()))
    # a model named here that cannot be loaded falls back to the bundled one: said in the terminal too
    window.models.fell_back.connect(lambda why: print(f"zipmap-studio: {why}", file=sys.stderr))
    if args.inputs:
        run = ScriptedRun(window, args.inputs, (args.fps, args.video_frames), status, args.screenshot, args.scale, args.capture, args.exit)
        QTimer.singleShot(0, run.start)
    app.exec()
    signals.restore()
    del report
    return status["code"]


if __name__ == "__main__":
    os.environ.setdefault("QT_API", "pyside6")
    sys.exit(main())
