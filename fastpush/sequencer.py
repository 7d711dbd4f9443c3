"""The sequencer: one order, one id space and one store for all workers.

It runs in the supervisor process. Workers send it publishes and deletes
over the bus (fastpush.bus); it stamps each message (the channel's next id,
the time, push-stream's per-second tag), keeps the authoritative bounded
store, and broadcasts the stamped message to every worker, which delivers
it to its own subscribers and keeps a replica of the store. A worker that
(re)starts gets a snapshot of the store first.

The publisher's worker is answered only after the broadcast was written to
every worker's socket, so a 200 always means "sequenced and on its way".
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from typing import Any

from fastpush import bus

# Bytes a stored message costs beside its text, counted against
# shared_memory_size (the same figure the workers use).
from fastpush._core import MESSAGE_OVERHEAD
from fastpush.config import Settings
from fastpush.wheel import DueWheel

log = logging.getLogger("fastpush.sequencer")


STORE_FULL = "Message store is full (shared_memory_size)."
CHANNELS_EXCEEDED = "Number of channels were exceeded."


class SeqChannel:
    __slots__ = ("id", "last_id", "published", "store", "subs", "expires", "wildcard")

    def __init__(self, cid: str, expires: float, wildcard: bool) -> None:
        self.id = cid
        self.last_id = 0
        self.published = 0
        # (id, time, tag, text, event_id, event_type, expires), oldest first
        self.store: collections.deque[tuple[Any, ...]] = collections.deque()
        self.subs: dict[int, int] = {}  # worker index -> subscribers
        self.expires = expires
        self.wildcard = wildcard

    def subscribers(self) -> int:
        return sum(self.subs.values())


class WorkerLink(asyncio.Protocol):
    """The sequencer's end of one worker's socket."""

    def __init__(self, seq: Sequencer, index: int) -> None:
        self.seq = seq
        self.index = index
        self.pid = 0
        self.started = time.time()
        self.transport: asyncio.Transport | None = None
        self.reader = bus.BusReader(lambda frame: seq.on_frame(self, frame))
        self.out: list[bytes] = []  # frames held while the sequencer is corked

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # Frames that came together are answered together: every link's
        # writes are held until this batch is done, so a worker gets one
        # write (and can coalesce one fan-out) per batch, not per message.
        seq = self.seq
        seq.corked = True
        try:
            self.reader.feed(data)
        except bus.BusFrameError as err:
            log.error("worker %d sent a bad frame: %s", self.index, err)
            self.transport.close()  # type: ignore[union-attr]
        finally:
            seq.corked = False
            for link in seq.links.values():
                link.uncork()

    def connection_lost(self, exc: Exception | None) -> None:
        self.seq.worker_gone(self)

    def send(self, frame: bytes) -> None:
        if self.seq.corked:
            self.out.append(frame)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def uncork(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self.send(data)


class Sequencer:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.channels: dict[str, SeqChannel] = {}
        self.wildcard_channels = 0
        self.links: dict[int, WorkerLink] = {}
        self.corked = False  # inside a batch of frames (see WorkerLink)
        self.last_time = 0
        self.last_tag = 0
        self.stored_bytes = 0
        self.started = time.time()
        self.wheel = DueWheel()  # channels collect() has to look at
        self.events_id = settings.events_channel_id
        if self.events_id:
            self.channels[self.events_id] = SeqChannel(self.events_id, 0.0, False)

    # -- workers -------------------------------------------------------------

    async def add_worker(self, index: int, sock: socket.socket) -> WorkerLink:
        """Serve a worker over its end of a socketpair; send it the store."""
        _, link = await self.loop.connect_accepted_socket(
            lambda: WorkerLink(self, index), sock
        )
        old = self.links.get(index)
        if old is not None and old.transport is not None:
            old.transport.close()
        self.links[index] = link
        link.send(bus.encode(bus.SNAPSHOT, self.snapshot()))
        return link

    def worker_gone(self, link: WorkerLink) -> None:
        if self.links.get(link.index) is link:
            del self.links[link.index]
        # Its subscribers are gone with it; their channels may now be idle.
        now = time.time()
        for ch in self.channels.values():
            if ch.subs.pop(link.index, None) is not None:
                self.wheel.schedule(ch.id, max(ch.expires, now))

    def snapshot(self) -> list[tuple[Any, ...]]:
        return [
            (ch.id, ch.last_id, ch.published, list(ch.store))
            for ch in self.channels.values()
        ]

    def broadcast(self, frame: bytes) -> None:
        for link in self.links.values():
            link.send(frame)

    # -- frames --------------------------------------------------------------

    def on_frame(self, link: WorkerLink, frame: tuple[Any, ...]) -> None:
        kind = frame[0]
        if kind == bus.PUB:
            _, req, channels, text, event_id, event_type, store = frame
            status, explain = self.publish(channels, text, event_id, event_type, store)
            link.send(bus.encode(bus.ACK, req, status, explain, self.counts(channels)))
        elif kind == bus.DEL:
            _, req, channels, text = frame
            found = [cid for cid in channels if cid in self.channels]
            for cid in found:
                self.delete(cid, text)
            status = 200 if found else 404
            link.send(bus.encode(bus.ACK, req, status, None, {}))
        elif kind == bus.SUBS:
            for cid, delta in frame[1].items():
                ch = self.channels.get(cid) or self.create(cid)
                if ch is None:
                    continue
                n = ch.subs.get(link.index, 0) + delta
                if n > 0:
                    ch.subs[link.index] = n
                else:
                    ch.subs.pop(link.index, None)
                ch.expires = time.time() + self.settings.channel_inactivity_time
                self.wheel.schedule(cid, ch.expires)
        elif kind == bus.INFO:
            workers = [
                (
                    lk.pid,
                    sum(ch.subs.get(lk.index, 0) for ch in self.channels.values()),
                    int(time.time() - lk.started),
                )
                for _, lk in sorted(self.links.items())
                if lk.pid  # listening
            ]
            link.send(
                bus.encode(
                    bus.INFO_REPLY,
                    frame[1],
                    {cid: ch.subscribers() for cid, ch in self.channels.items()},
                    workers,
                    len(self.channels) - self.wildcard_channels,
                )
            )
        elif kind == bus.EVENT:
            self.event(frame[1], frame[2])
        elif kind == bus.HELLO:
            link.pid = frame[1]

    def counts(self, channels: list[str]) -> dict[str, int]:
        return {
            cid: self.channels[cid].subscribers()
            for cid in channels
            if cid in self.channels
        }

    # -- channels and messages -----------------------------------------------

    def create(self, cid: str) -> SeqChannel | None:
        s = self.settings
        prefix = s.wildcard_channel_prefix
        wildcard = bool(prefix) and cid.startswith(prefix)
        if wildcard:
            if (
                s.max_number_of_wildcard_channels is not None
                and self.wildcard_channels >= s.max_number_of_wildcard_channels
            ):
                return None
        elif (
            s.max_number_of_channels is not None
            and len(self.channels) - self.wildcard_channels >= s.max_number_of_channels
        ):
            return None
        ch = SeqChannel(cid, time.time() + s.channel_inactivity_time, wildcard)
        self.channels[cid] = ch
        self.wheel.schedule(cid, ch.expires)
        self.wildcard_channels += wildcard
        self.event("channel_created", cid)
        return ch

    def publish(
        self,
        channels: list[str],
        text: bytes,
        event_id: bytes | None,
        event_type: bytes | None,
        store: bool,
    ) -> tuple[int, str | None]:
        s = self.settings
        targets = []
        for cid in channels:
            ch = self.channels.get(cid) or self.create(cid)
            if ch is None:
                return 403, CHANNELS_EXCEEDED
            targets.append(ch)
        if store and (
            self.stored_bytes + len(targets) * (len(text) + MESSAGE_OVERHEAD)
            > s.shared_memory_size
        ):
            return 500, STORE_FULL
        for ch in targets:
            self._publish_one(ch, text, event_id, event_type, store)
        return 200, None

    def _publish_one(
        self,
        ch: SeqChannel,
        text: bytes,
        event_id: bytes | None,
        event_type: bytes | None,
        store: bool,
    ) -> None:
        s = self.settings
        now = int(time.time())
        if now == self.last_time:
            self.last_tag += 1
        else:
            self.last_time, self.last_tag = now, 1
        ch.last_id += 1
        ch.published += 1
        ch.expires = time.time() + s.channel_inactivity_time
        self.wheel.schedule(ch.id, ch.expires)
        expires = now + s.message_ttl
        if store:
            ch.store.append(
                (ch.last_id, now, self.last_tag, text, event_id, event_type, expires)
            )
            self.stored_bytes += len(text) + MESSAGE_OVERHEAD
            self.wheel.schedule(ch.id, expires)
            limit = s.max_messages_stored_per_channel
            while limit is not None and len(ch.store) > limit:
                self._drop_oldest(ch)
        self.broadcast(
            bus.encode(
                bus.MSG,
                ch.id,
                ch.last_id,
                now,
                self.last_tag,
                text,
                event_id,
                event_type,
                store,
                expires,
            )
        )

    def _drop_oldest(self, ch: SeqChannel) -> None:
        old = ch.store.popleft()
        self.stored_bytes -= len(old[3]) + MESSAGE_OVERHEAD

    def delete(self, cid: str, text: bytes) -> None:
        ch = self.channels.pop(cid, None)
        if ch is None:
            return
        self.wildcard_channels -= ch.wildcard
        while ch.store:
            self._drop_oldest(ch)
        self.broadcast(bus.encode(bus.DELETE, cid, text))
        self.event("channel_destroyed", cid)

    def event(self, kind: str, cid: str) -> None:
        if not self.events_id or cid == self.events_id:
            return
        ch = self.channels[self.events_id]
        text = ('{"type": "%s", "channel": "%s"}' % (kind, cid)).encode()
        self._publish_one(ch, text, None, kind.encode(), True)

    def collect(self) -> None:
        """Expire stored messages and forget idle, empty channels that are due."""
        now = time.time()
        for cid in self.wheel.due(now):
            ch = self.channels.get(cid)
            if ch is None:
                continue
            while ch.store and ch.store[0][6] <= now:
                self._drop_oldest(ch)
            if cid == self.events_id or ch.store or ch.subscribers():
                continue  # its messages and subscribers reschedule it
            if ch.expires <= now:
                del self.channels[cid]
                self.wildcard_channels -= ch.wildcard
                self.event("channel_destroyed", cid)
            else:
                self.wheel.schedule(cid, ch.expires)
