"""Quitting from the terminal: Ctrl+C (SIGINT) and SIGTERM close the window as its close button
does (background jobs cancelled and waited for, the layout saved), then the application quits
with the shell's code for the signal (128 + its number).

Python runs a signal handler only when the main thread runs Python code, and Qt's event loop
runs none while it waits for events; so the C-level handler also writes to a socket that the
loop watches, which wakes it. The handler itself only schedules the close: it may run in the
middle of any Python code on the GUI thread, where closing the window would not be safe. A
second signal while the first one's close waits for a job that cannot stop (a model being read)
ends the process at once."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable

from PySide6.QtCore import QSocketNotifier, QTimer

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class QuitOnSignals:
    """While it lives, SIGINT and SIGTERM call `close(code)` once, from the event loop."""

    def __init__(self, close: Callable[[int], None]) -> None:
        self.close, self.closing = close, False
        self.reader, self.writer = socket.socketpair()
        for end in (self.reader, self.writer):
            end.setblocking(False)
        self.previous_fd = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        self.notifier = QSocketNotifier(self.reader.fileno(), QSocketNotifier.Type.Read)
        self.notifier.activated.connect(self.drain)  # back in Python: the pending handler runs
        self.previous = {sig: signal.signal(sig, self.handle) for sig in SIGNALS}

    def drain(self) -> None:
        try:
            while self.reader.recv(64):
                pass
        except BlockingIOError:
            pass

    def handle(self, signum: int, frame: object) -> None:
        if self.closing:
            os._exit(128 + signum)  # asked twice: the user will not wait
        self.closing = True
        QTimer.singleShot(0, lambda: self.close(128 + signum))

    def restore(self) -> None:
        """The handlers as they were (the application has quit)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self.previous_fd)
        self.notifier.setEnabled(False)
        self.reader.close()
        self.writer.close()
