"""One runner for the app's background work (issue 35): the shared model is used by one job at a
time (a render asked for during a reconstruction waits for it, and the other way round), a task
asked for as the last one succeeds starts, and closing the window waits for its jobs."""

from __future__ import annotations

import threading
import time

from gui import SAMPLES, load_and_reconstruct, wait_idle

from app.script import ScriptedRun
from zipmap_core import engines
from zipmap_core.errors import InputError
from zipmap_core.pipeline import camera_path

HOLD_S = 60  # a stand-in never holds longer, whatever happens


class Log:
    """When each stand-in entered and left, on the clock of this process."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.entered: dict[str, threading.Event] = {}

    def event(self, name: str) -> threading.Event:
        return self.entered.setdefault(name, threading.Event())

    def enter(self, name: str) -> None:
        self.times.setdefault(name, []).append(time.monotonic())
        self.event(name).set()

    def leave(self, name: str) -> None:
        self.times[name].append(time.monotonic())


def held_reconstruction(log: Log, release: threading.Event):
    """A reconstruction that holds the model until `release` is set, then fails (the scene is kept)."""

    def run(*args, cancel, **kwargs):
        log.enter("reconstruct")
        try:
            deadline = time.monotonic() + HOLD_S
            while not release.wait(0.01) and time.monotonic() < deadline:
                cancel.check()
            raise InputError("the held run was let go")
        finally:
            log.leave("reconstruct")

    return run


def logged(log: Log, name: str, func, release: threading.Event | None = None):
    """`func`, logged; with `release`, held until it is set."""

    def run(*args, **kwargs):
        log.enter(name)
        try:
            if release is not None:
                release.wait(HOLD_S)
            return func(*args, **kwargs)
        finally:
            log.leave(name)

    return run


def test_a_render_asked_for_during_a_reconstruction_waits_for_it(qtbot, window, monkeypatch):
    load_and_reconstruct(qtbot, window, SAMPLES[:3])
    log, release = Log(), threading.Event()
    monkeypatch.setattr(camera_path, "render_frames", logged(log, "render", camera_path.render_frames))
    monkeypatch.setattr(engines, "reconstruct_scene", held_reconstruction(log, release))
    window.reconstruct()
    assert log.event("reconstruct").wait(30)
    window.cameras.add_from_view()  # a camera placed, and its view asked for, while the run has the model
    renderer = window.cameras.renderer
    assert window.jobs.waiting == [renderer.job], "the render must wait for the model"
    assert window.status_info.text() == "novel view waits until the model is free"
    qtbot.wait(300)
    assert "render" not in log.times, "the render ran on the model while a reconstruction had it"
    release.set()
    qtbot.waitUntil(lambda: window.novel.last is not None and not renderer.busy, timeout=30000)
    (run_in, run_out), (render_in, render_out) = log.times["reconstruct"], log.times["render"]
    assert run_in < run_out <= render_in < render_out
    assert "the previous scene is kept" in window.messages[-1] and "scene state" in window.novel.status.text()


def test_a_reconstruction_asked_for_during_a_render_starts_when_the_render_ends(qtbot, window, monkeypatch):
    load_and_reconstruct(qtbot, window, SAMPLES[:3])
    old = window.recon
    log, release = Log(), threading.Event()
    monkeypatch.setattr(camera_path, "render_frames", logged(log, "render", camera_path.render_frames, release))
    monkeypatch.setattr(engines, "reconstruct_scene", logged(log, "reconstruct", engines.reconstruct_scene))
    window.cameras.add_from_view()
    assert log.event("render").wait(30)
    job = window.reconstruct()
    assert job is not None and job.running and not job.started and window.jobs.waiting == [job]
    assert window.model_panel.cancel_button.isEnabled(), "a waiting task can be cancelled"
    qtbot.wait(300)
    assert "reconstruct" not in log.times, "the reconstruction ran while a render had the model"
    release.set()
    qtbot.waitUntil(lambda: window.recon is not old and not job.running, timeout=120000)
    (render_in, render_out), runs = log.times["render"], log.times["reconstruct"]
    run_in, run_out = runs[0], runs[-1]  # auto runs the engine it chose through reconstruct_scene too: the outer call
    assert render_in < render_out <= run_in < run_out
    assert window.cameras.virtual_cameras == [] and window.novel.last is None  # the new scene took the old one's cameras


def test_cancelling_a_task_that_waits_for_the_model_ends_it_at_once(qtbot, window, monkeypatch):
    load_and_reconstruct(qtbot, window, SAMPLES[:3])
    log, release = Log(), threading.Event()
    monkeypatch.setattr(camera_path, "render_frames", logged(log, "render", camera_path.render_frames, release))
    monkeypatch.setattr(engines, "reconstruct_scene", logged(log, "reconstruct", engines.reconstruct_scene))
    window.cameras.add_from_view()
    assert log.event("render").wait(30)
    job = window.reconstruct()
    window.cancel()  # while the render still holds the model
    assert not job.running and window.jobs.waiting == [] and window.status_info.text().startswith("reconstruction cancelled")
    assert "cancelled" in window.progress.label.text() and window.model_panel.reconstruct_button.isEnabled()
    release.set()
    qtbot.waitUntil(lambda: window.novel.last is not None and not window.cameras.renderer.busy, timeout=30000)
    assert "reconstruct" not in log.times


def test_a_task_asked_for_as_the_last_one_succeeds_starts(qtbot, window):
    """What once made the command-line video test time out: the scripted run asks for Reconstruct
    when the loading succeeds, and the runner still counted the load as running (until its worker
    thread said it had finished, a separate event that a busy machine could delay), so Reconstruct
    was refused and the script waited on the load forever."""
    started = []
    job = window.loader.load([str(p) for p in SAMPLES[:2]])
    job.succeeded.connect(lambda *_: started.append(window.reconstruct()))
    qtbot.waitUntil(lambda: bool(started) and not window.jobs.running, timeout=120000)
    assert started[0] is not None and window.recon is not None and window.recon.num_frames == 2
    assert not any("Another task" in m for m in window.messages)


def test_a_scripted_run_whose_reconstruction_cannot_start_fails_instead_of_waiting(qtbot, window, monkeypatch):
    from zipmap_core.pipeline import memory_budget

    monkeypatch.setattr(memory_budget, "available_bytes", lambda device: 1)
    status: dict = {"code": 0}
    ScriptedRun(window, [str(p) for p in SAMPLES[:2]], (None, None), status).start()
    qtbot.waitUntil(lambda: status["code"] != 0, timeout=60000)
    assert status["code"] == 2 and window.recon is None
    wait_idle(qtbot, window)


def test_closing_the_window_cancels_its_jobs_and_waits_for_them(qtbot, window, monkeypatch):
    log, release = Log(), threading.Event()
    monkeypatch.setattr(engines, "reconstruct_scene", held_reconstruction(log, release))
    window.loader.load([str(p) for p in SAMPLES[:2]])
    wait_idle(qtbot, window)
    job = window.reconstruct()
    said = []
    job.ended.connect(lambda: said.append("ended"))
    assert log.event("reconstruct").wait(30)
    window.close()
    assert len(log.times["reconstruct"]) == 2, "the run must have stopped before the close returned"
    assert not window.jobs.busy and window.jobs.pool.activeThreadCount() == 0
    qtbot.wait(200)
    assert said == [], "a job of a closed window reports to nobody"
    assert window.jobs.run_beside(job, "late") is False, "nothing starts once the window has closed"


def test_only_widgets_declare_qt_signals():
    """One signal library for models and controllers (psygnal); Qt's stay in widgets, and in the
    runner's relay that carries workers' reports across threads."""
    import importlib
    import inspect

    from gui import ROOT
    from PySide6.QtCore import Signal as QtSignal
    from PySide6.QtWidgets import QWidget

    found = []
    for path in sorted((ROOT / "app").glob("*.py")):
        module = importlib.import_module(f"app.{path.stem}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            own = cls.__module__ == module.__name__
            if own and any(isinstance(v, QtSignal) for v in vars(cls).values()) and not issubclass(cls, QWidget):
                found.append(f"{module.__name__}.{name}")
    assert found == ["app.jobs.WorkerRelay"]
