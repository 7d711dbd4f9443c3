"""The bus reader (fastpush/core/busreader.pyx): a worker's stamped messages
applied in C give what App.apply_message gives in Python, and every other
frame reaches Python whole and in stream order however the bytes arrive.

Frames come from a real Sequencer; a worker's App runs in this process on
uvloop, its subscribers on real sockets through the front door.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from fastpush import bus
from fastpush._core import BusReader
from fastpush.sequencer import Sequencer
from fastpush.testing import InProcessWorker, push_stream_config, sub_location

CONFIG = 'listen = ["127.0.0.1:{port}"]\n' + push_stream_config(
    {"message_template": "~id~:~text~"},
    [sub_location("sub", "streaming"), sub_location("lp", "long-polling")],
)


class Captured:
    """A sequencer's link that keeps what it is sent."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


class Worker(InProcessWorker):
    def __init__(self) -> None:
        super().__init__(CONFIG)
        self.seq = Sequencer(self.config.settings, self.loop)
        self.link = Captured()
        self.seq.links[0] = self.link  # type: ignore[assignment]
        self.handed: list[tuple[Any, ...]] = []
        self.reader = self.new_reader()

    def new_reader(self) -> BusReader:
        """A reader as WorkerBus makes one, handing frames to self.handed."""
        app = self.app
        return BusReader(
            self.handed.append,
            app.registry.channels,
            app.registry.ledger,
            app.hub,
            app.pending,
            app.schedule_flush,
        )

    def stamp(self, cid: str, text: bytes, store: bool = True) -> bytes:
        """The MSG frame the sequencer broadcasts for a publish on cid."""
        self.link.frames.clear()
        assert self.seq.publish([cid], text, b"e1", None, store) == (200, None)
        [frame] = self.link.frames
        return frame

    async def subscribe(self, cid: str) -> asyncio.StreamReader:
        reader, writer = await self.connect()
        writer.write(f"GET /sub/{cid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        return reader

    async def received(self, reader: asyncio.StreamReader) -> bytes:
        await asyncio.sleep(0.05)  # the flush runs at the end of an iteration
        return await asyncio.wait_for(reader.read(65536), 1)


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    errors = w.errors
    w.close()
    assert errors == []


def state(w: Worker, cid: str) -> tuple[Any, ...]:
    ch = w.app.registry.get(cid)
    assert ch is not None
    return (
        ch.last_message_id,
        ch.stored,
        # (not the time and tag: each publish has its own)
        [(m.id, m.text, m.event_id) for m in ch.stored_messages()],
    )


def test_a_stamped_message_is_applied_as_the_python_path_applies_it(worker) -> None:
    w = worker
    for cid in ("c", "py"):
        w.app.registry.get_or_create(cid)
    sub_c = w.run(w.subscribe("c"))
    sub_py = w.run(w.subscribe("py"))
    ledger = w.app.registry.ledger
    before = (ledger.published_messages, ledger.stored_messages, ledger.stored_bytes)

    for text in (b"one", b"two"):
        w.reader.feed(w.stamp("c", text))
        # The Python path, for the same publish on another channel.
        handed: list[tuple[Any, ...]] = []
        bus.BusReader(handed.append).feed(w.stamp("py", text))
        [frame] = handed
        w.app.apply_message(*frame[1:])

    assert w.reader.applied == 2 and w.handed == []
    assert state(w, "c")[0] == state(w, "py")[0] == 2
    assert state(w, "c")[1:] == state(w, "py")[1:]
    assert ledger.published_messages - before[0] == 4
    assert ledger.stored_messages - before[1] == 4
    got_c, got_py = w.run(w.received(sub_c)), w.run(w.received(sub_py))
    assert got_c == got_py
    assert b"1:one" in got_c and b"2:two" in got_c


def test_frames_split_anywhere_reach_python_whole_and_in_order(worker) -> None:
    w = worker
    w.app.registry.get_or_create("known")
    stream = (
        w.stamp("new", b"first")  # no such channel here yet: Python makes it
        + bus.encode(bus.ACK, 7, 200, None, {"known": 3})
        + w.stamp("known", b"second")  # applied in C
        + bus.encode(bus.DELETE, "gone", b"bye")
    )
    expected = [bus.MSG, bus.ACK, bus.DELETE]
    for cut in range(1, len(stream)):
        reader = w.new_reader()
        w.handed.clear()
        reader.feed(stream[:cut])
        reader.feed(stream[cut:])
        assert [f[0] for f in w.handed] == expected, cut
        assert w.handed[0][1] == "new" and w.handed[1][1] == 7
        assert reader.applied == 1
    w.handed.clear()
    one_by_one = BusReader(w.handed.append)  # no worker: every frame to Python
    for i in range(len(stream)):
        one_by_one.feed(stream[i : i + 1])
    assert [f[0] for f in w.handed] == [bus.MSG, bus.ACK, bus.MSG, bus.DELETE]
    assert one_by_one.applied == 0


def test_a_channel_with_long_polling_waiters_goes_through_python(worker) -> None:
    w = worker
    ch = w.app.registry.get_or_create("lp")
    ch.waiters = [lambda ch, msg: None]
    w.reader.feed(w.stamp("lp", b"x"))
    assert w.reader.applied == 0
    assert [f[0] for f in w.handed] == [bus.MSG]
    ch.waiters = None


def test_an_oversized_frame_is_refused_and_what_came_before_is_kept(worker) -> None:
    handed: list[tuple[Any, ...]] = []
    reader = BusReader(handed.append)
    frame = bus.encode(bus.HELLO, 42)
    too_long = (bus.MAX_FRAME + 1).to_bytes(4, "big")
    with pytest.raises(ValueError, match="bus frame of"):
        reader.feed(frame + too_long)
    assert handed == [(bus.HELLO, 42)]


def test_a_failing_handler_does_not_replay_its_frame(worker) -> None:
    seen: list[tuple[Any, ...]] = []

    def handler(frame: tuple[Any, ...]) -> None:
        seen.append(frame)
        if frame[1] == 1:
            raise RuntimeError("boom")

    reader = BusReader(handler)
    with pytest.raises(RuntimeError):
        reader.feed(bus.encode(bus.HELLO, 1) + bus.encode(bus.HELLO, 2)[:3])
    reader.feed(bus.encode(bus.HELLO, 2)[3:])
    assert seen == [(bus.HELLO, 1), (bus.HELLO, 2)]
