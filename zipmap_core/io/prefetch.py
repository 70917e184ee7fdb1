"""A bounded producer: an iterator runs ahead on its own thread, at most `depth` items ahead of
its consumer, so decoding overlaps with whatever consumes the frames (the network), and memory
stays bounded whatever the length of the source."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterator[T], depth: int = 8, name: str = "prefetch") -> Iterator[T]:
    """Yields what `items` yields, produced on a background thread. An error in the producer is
    raised in the consumer; a consumer that stops early (break, close, an error) stops the
    producer and closes `items`."""
    slots: queue.Queue = queue.Queue(max(1, depth))
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=10)
