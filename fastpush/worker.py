"""A worker's side of the bus: publishes go to the sequencer, stamped
messages come back and are delivered here (see fastpush.sequencer)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastpush import bus

if TYPE_CHECKING:
    from fastpush.server import App

log = logging.getLogger("fastpush.worker")

SEQUENCER_GONE = "Sequencer unavailable, message not published."

# Seconds a subscriber count change waits to go to the sequencer with the
# others: in a connection storm that is a frame per worker every 10 ms for
# the sequencer to read, not one per loop iteration of every worker, and
# no counter anyone reads is that fresh anyway.
DELTAS_DELAY = 0.01

Acked = Callable[[int, "str | None", dict], None]


class WorkerBus(asyncio.Protocol):
    def __init__(self, app: App, lost: Callable[[], None]) -> None:
        self.app = app
        self.lost = lost
        self.transport: asyncio.Transport | None = None
        # Stamped messages for channels this worker has are applied by the
        # reader in C; every other frame comes to _on_frame.
        self.reader = bus.BusReader(
            self._on_frame,
            app.registry.channels,
            app.registry.ledger,
            app.hub,
            app.pending,
            app.schedule_flush,
        )
        self.ids = itertools.count(1)
        self.pending: dict[int, Callable[..., None]] = {}
        # Subscriber count changes, sent DELTAS_DELAY after the first one
        # (or before a request of this worker, so its answer includes them).
        self.deltas: dict[str, int] = {}
        # Frames for the sequencer, written once per loop iteration: the
        # publishes of one pipelined batch travel (and come back) together.
        self.out: list[bytes] = []
        self.ready = asyncio.get_running_loop().create_future()

    # -- asyncio -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def hello(self) -> None:
        """Tell the sequencer this worker is listening (it then appears in
        by_worker, and a test or an operator can count it as up)."""
        if self.transport is not None:
            self._write(bus.encode(bus.HELLO, os.getpid()))

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
        finally:
            # The door's publishers answered in this read go out together.
            self.app.door.send_answers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        # Nothing pending can be sequenced any more: say so, never 200.
        pending, self.pending = self.pending, {}
        for cb in pending.values():
            cb(503, SEQUENCER_GONE, {})
        self.app.door.send_answers()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("sequencer closed the bus"))
        self.lost()

    # -- requests --------------------------------------------------------------

    def _request(self, frame_head: tuple[Any, ...], done: Callable[..., None]) -> None:
        if self.transport is None or self.transport.is_closing():
            done(503, SEQUENCER_GONE, {})
            return
        req = next(self.ids)
        self.pending[req] = done
        self._send_deltas()  # counts first, so the answer includes them
        self._write(bus.encode(frame_head[0], req, *frame_head[1:]))

    def publish(
        self,
        channels: list[str],
        text: bytes,
        event_id: bytes | None,
        event_type: bytes | None,
        store: bool,
        done: Acked,
    ) -> None:
        self._request((bus.PUB, channels, text, event_id, event_type, store), done)

    def delete(self, channels: list[str], text: bytes, done: Acked) -> None:
        self._request((bus.DEL, channels, text), done)

    def info(self, done: Callable[[dict, list, int], None]) -> None:
        def failed_or_info(*args: Any) -> None:
            if len(args) == 3 and isinstance(args[0], dict):
                done(*args)
            else:  # the bus is gone: fall back to this worker's own view
                done(
                    {
                        ch.id: self.app.registry.subscribers(ch)
                        for ch in self.app.registry.iter_all()
                    },
                    self.app.worker_infos(),
                    self.app.registry.channel_count(),
                )

        self._request((bus.INFO,), failed_or_info)

    def count(self, channel: str, delta: int) -> None:
        if not self.deltas:
            asyncio.get_running_loop().call_later(DELTAS_DELAY, self._send_deltas)
        self.deltas[channel] = self.deltas.get(channel, 0) + delta

    def event(self, kind: str, channel: str) -> None:
        if self.transport is not None:
            self._write(bus.encode(bus.EVENT, kind, channel))

    def _send_deltas(self) -> None:
        if self.deltas and self.transport is not None:
            deltas = {k: v for k, v in self.deltas.items() if v}
            self.deltas = {}
            if deltas:
                self._write(bus.encode(bus.SUBS, deltas))

    def _write(self, frame: bytes) -> None:
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(frame)

    def _flush(self) -> None:
        data = b"".join(self.out)
        self.out.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- frames from the sequencer ---------------------------------------------

    def _on_frame(self, frame: tuple[Any, ...]) -> None:
        kind = frame[0]
        if kind == bus.MSG:
            self.app.apply_message(*frame[1:])
        elif kind == bus.ACK:
            cb = self.pending.pop(frame[1], None)
            if cb is not None:
                cb(frame[2], frame[3], frame[4])
        elif kind == bus.INFO_REPLY:
            cb = self.pending.pop(frame[1], None)
            if cb is not None:
                cb(frame[2], frame[3], frame[4])
        elif kind == bus.DELETE:
            self.app.apply_delete(frame[1], frame[2])
        elif kind == bus.SNAPSHOT:
            self.app.apply_snapshot(frame[1])
            if not self.ready.done():
                self.ready.set_result(None)
        else:
            log.error("unknown bus frame %r", kind)
