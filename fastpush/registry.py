"""Channels, stored messages and the publish path of one worker.

The subscriber sockets and the fan-out live in the Cython core
(fastpush._core); this module keeps what is per channel or per message:
ids, times, tags, the bounded store, inactivity, limits and the events
channel. Stamping (id/time/tag) is separate from delivery so a sequencer
in another process can stamp and every worker deliver the same message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from fastpush._core import Channel, Hub, Ledger, Message
from fastpush.wheel import DueWheel

if TYPE_CHECKING:
    from fastpush.config import Settings

__all__ = ["Message", "Registry", "ChannelLimitError"]

# Ids of the messages push-stream makes up itself: a ping, and the text
# sent when a channel is deleted. They go through the message template.
PING_MESSAGE_ID = -1
CHANNEL_DELETED_MESSAGE_ID = -2
TIMED_OUT_MESSAGE_ID = -3


class ChannelLimitError(Exception):
    """max_number_of_channels or max_number_of_wildcard_channels reached."""


class StoreFullError(Exception):
    """Stored messages would pass shared_memory_size (push-stream: 500)."""


class Registry:
    """Every channel of this worker, by id."""

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.channels: dict[str, Channel] = {}
        self.wildcard_channels = 0
        # The channels collect() has to look at, by second.
        self.wheel = DueWheel()
        # The stamp clock, the counts and the store limits, in C (the
        # front door's publisher stamps through it too).
        self.ledger = Ledger(self.wheel)
        self.settings = settings
        self.started = time.time()
        # Called with each message after it was delivered; the long-polling
        # waiters and the multi-worker bus hook in here.
        self.events_channel_id = settings.events_channel_id
        hub.on_unsubscribe = self.client_unsubscribed
        # Set with several workers: subscriber count changes and client
        # events go to the sequencer instead of being handled here.
        self.on_count: Callable[[str, int], None] | None = None
        self.on_event: Callable[[str, str], None] | None = None
        if self.events_channel_id:
            # push-stream creates it at start; it is listed and counted.
            self.get_or_create(self.events_channel_id)

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, s: Settings) -> None:
        self._settings = s
        self.ledger.configure(
            s.channel_inactivity_time,
            s.message_ttl,
            s.shared_memory_size,
            s.max_messages_stored_per_channel,
        )

    @property
    def published_messages(self) -> int:
        return self.ledger.published_messages

    @property
    def stored_messages(self) -> int:
        return self.ledger.stored_messages

    @property
    def stored_bytes(self) -> int:
        return self.ledger.stored_bytes

    # -- channels ------------------------------------------------------------

    def get(self, channel_id: str) -> Channel | None:
        return self.channels.get(channel_id)

    def is_wildcard(self, channel_id: str) -> bool:
        prefix = self.settings.wildcard_channel_prefix
        return bool(prefix) and channel_id.startswith(prefix)

    def get_or_create(self, channel_id: str) -> Channel:
        ch = self.channels.get(channel_id)
        if ch is not None:
            return ch
        s = self.settings
        wildcard = self.is_wildcard(channel_id)
        for_events = (
            bool(self.events_channel_id) and channel_id == self.events_channel_id
        )
        if wildcard:
            limit = s.max_number_of_wildcard_channels
            if limit is not None and self.wildcard_channels >= limit:
                raise ChannelLimitError(channel_id)
        elif not for_events:
            limit = s.max_number_of_channels
            if limit is not None and self.channel_count() >= limit:
                raise ChannelLimitError(channel_id)
        ch = Channel(channel_id, self.hub)
        now = time.time()
        ch.created = now
        ch.expires = now + s.channel_inactivity_time
        self._schedule(ch, ch.expires)
        ch.wildcard = wildcard
        ch.for_events = for_events
        self.channels[channel_id] = ch
        if wildcard:
            self.wildcard_channels += 1
        if not for_events:
            self.send_event("channel_created", channel_id)
        return ch

    def channel_count(self) -> int:
        """Channels as push-stream counts them: all but the wildcard ones."""
        return len(self.channels) - self.wildcard_channels

    def subscribers(self, ch: Channel) -> int:
        return ch.subscribers + (len(ch.waiters) if ch.waiters else 0)

    def total_subscribers(self) -> int:
        return sum(self.subscribers(ch) for ch in self.channels.values())

    def touch(self, ch: Channel) -> None:
        ch.expires = time.time() + self.settings.channel_inactivity_time
        self._schedule(ch, ch.expires)

    def _schedule(self, ch: Channel, when: float) -> None:
        """Look at ch again once `when` has passed (see Ledger.schedule)."""
        self.ledger.schedule(ch, when)

    def publish(
        self,
        ch: Channel,
        text: bytes,
        event_id: bytes | None = None,
        event_type: bytes | None = None,
        store: bool = True,
        deliver: Callable[[Channel, Message], None] | None = None,
    ) -> Message:
        """Stamp, store and hand a message to deliver (default: the fan-out).

        The hot path of every publish and of the in-process glue; the
        stamp, the counts and the store limits are the ledger's, in C.
        """
        msg = self.ledger.publish(ch, text, event_id, event_type, store, time.time())
        if msg is None:
            raise StoreFullError(ch.id)
        (deliver or self.deliver)(ch, msg)
        return msg

    def record(self, ch: Channel, msg: Message, store: bool) -> None:
        """Account for msg (stamped elsewhere) on ch: counters, store, clock."""
        self.ledger.record(ch, msg, store, time.time())

    # Set by the server: renders msg for a subscriber form, and wakes the
    # long-polling waiters.
    deliver: Callable[[Channel, Message], None]

    def stored(self, ch: Channel) -> int:
        return ch.stored

    def backtrack(self, ch: Channel, n: int) -> list[Message]:
        if not ch.stored or n <= 0:
            return []
        return ch.stored_messages()[-n:]

    def since(self, ch: Channel, t: int, tag: int) -> list[Message]:
        """Stored messages strictly after (t, tag); tag -1 means any tag."""
        if not ch.stored:
            return []
        out = []
        for m in ch.stored_messages():
            if m.time > t or (m.time == t and tag >= 0 and m.tag > tag):
                out.append(m)
        return out

    def after_event_id(self, ch: Channel, event_id: bytes) -> list[Message] | None:
        """Stored messages after the one with event_id; None if not found."""
        if not ch.stored:
            return None
        msgs = ch.stored_messages()
        for i, m in enumerate(msgs):
            if m.event_id == event_id:
                return msgs[i + 1 :]
        return None

    def delete(self, ch: Channel) -> None:
        """Drop ch from the registry (subscribers are closed by the caller)."""
        if self.channels.get(ch.id) is not ch:
            return
        del self.channels[ch.id]
        if ch.wildcard:
            self.wildcard_channels -= 1
        while ch.stored:
            self._drop_oldest(ch)
        if not ch.for_events:
            self.send_event("channel_destroyed", ch.id)

    def collect(self, now: float | None = None) -> None:
        """Expire old messages and drop inactive, empty channels that are due."""
        t = time.time() if now is None else now
        for cid in self.wheel.due(t):
            ch = self.channels.get(cid)
            if ch is not None:
                ch.due = 0
                self._collect_one(ch, t)

    def _collect_one(self, ch: Channel, t: float) -> None:
        first = ch.store_first()
        while first is not None and first.expires <= t:
            self._drop_oldest(ch)
            first = ch.store_first()
        if first is not None:
            # Publishes did not schedule their messages' expiry while the
            # channel was due earlier: look again when the oldest expires.
            self._schedule(ch, first.expires)
            return
        if ch.for_events or self.subscribers(ch):
            return  # its subscribers reschedule it when they leave
        if ch.expires <= t:
            self.delete(ch)
        else:
            self._schedule(ch, ch.expires)

    def _drop_oldest(self, ch: Channel) -> None:
        self.ledger.drop_oldest(ch)

    def iter_prefix(self, prefix: str) -> Iterator[Channel]:
        for cid, ch in self.channels.items():
            if cid.startswith(prefix):
                yield ch

    def iter_all(self) -> Iterable[Channel]:
        return iter(self.channels.values())

    # -- events channel ------------------------------------------------------

    def channel_for_bus(self, channel_id: str) -> Channel:
        """A channel the sequencer speaks of: created without local limits
        (the sequencer enforced them) and without local events."""
        ch = self.channels.get(channel_id)
        if ch is None:
            ch = Channel(channel_id, self.hub)
            now = time.time()
            ch.created = now
            ch.expires = now + self.settings.channel_inactivity_time
            self._schedule(ch, ch.expires)
            ch.wildcard = self.is_wildcard(channel_id)
            ch.for_events = bool(self.events_channel_id) and (
                channel_id == self.events_channel_id
            )
            self.channels[channel_id] = ch
            self.wildcard_channels += ch.wildcard
        return ch

    def client_subscribed(self, ch: Channel, n: int = 1) -> None:
        """n subscribers joined ch (the door reports a batch at once)."""
        if self.on_count is not None:
            self.on_count(ch.id, n)
        if not ch.for_events and self.events_channel_id:
            for _ in range(n):
                self.send_event("client_subscribed", ch.id)

    def client_unsubscribed(self, ch: Channel) -> None:
        # The last subscriber leaving may make the channel collectable.
        self._schedule(ch, max(ch.expires, time.time()))
        if self.on_count is not None:
            self.on_count(ch.id, -1)
        if not ch.for_events:
            self.send_event("client_unsubscribed", ch.id)

    def send_event(self, kind: str, channel_id: str) -> None:
        if not self.events_channel_id or channel_id == self.events_channel_id:
            return
        if self.on_event is not None:
            # The sequencer publishes every event, so that all workers see
            # them in one order; it makes channel_created/destroyed itself.
            if kind.startswith("client_"):
                self.on_event(kind, channel_id)
            return
        ev = self.get_or_create(self.events_channel_id)
        text = ('{"type": "%s", "channel": "%s"}' % (kind, channel_id)).encode()
        try:
            self.publish(ev, text, event_type=kind.encode(), store=True)
        except StoreFullError:
            pass  # events are best effort; the action itself went through
