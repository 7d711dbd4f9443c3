"""What Python sees of the Cython core (fastpush/_core.pyx)."""

import asyncio
from collections.abc import Callable
from typing import Any

# done(status, explain, {channel id: subscribers}): the sequencer's answer.
Acked = Callable[[int, str | None, dict[str, int]], None]

KIND_STREAM: int
KIND_WEBSOCKET: int

MESSAGE_OVERHEAD: int
BUS_MSG_KIND: int
BUS_FRAME_LIMIT: int
FRAME_NONE: int
FRAME_CHUNK: int
FRAME_WEBSOCKET: int

def websocket_frame(payload: bytes, opcode: int = 1) -> bytes: ...

class Message:
    id: int
    time: int
    tag: int
    text: bytes
    channel: str
    event_id: bytes | None
    event_type: bytes | None
    expires: float
    rendered: dict[int, bytes]
    def __init__(
        self,
        id: int,
        time: int,
        tag: int,
        text: bytes,
        channel: str,
        event_id: bytes | None = None,
        event_type: bytes | None = None,
        expires: float = 0.0,
    ) -> None: ...

class Ledger:
    wheel: Any
    published_messages: int
    stored_messages: int
    stored_bytes: int
    last_time: int
    last_tag: int
    inactivity: float
    message_ttl: float
    memory_limit: int
    max_stored: int
    def __init__(self, wheel: Any) -> None: ...
    def configure(
        self,
        inactivity: float,
        message_ttl: float,
        memory_limit: int,
        max_stored: int | None,
    ) -> None: ...
    def publish(
        self,
        ch: Channel,
        text: bytes,
        event_id: bytes | None,
        event_type: bytes | None,
        store: bool,
        now: float,
    ) -> Message | None: ...
    def record(self, ch: Channel, msg: Message, store: bool, now: float) -> None: ...
    def schedule(self, ch: Channel, when: float) -> None: ...
    def drop_oldest(self, ch: Channel) -> None: ...

class Plan:
    framing: int
    def __init__(
        self, parts: list[bytes], framing: int, date: Callable[[int], bytes]
    ) -> None: ...
    def apply(self, msg: Message, text: bytes | None = None) -> bytes: ...
    def render(self, msg: Message) -> bytes: ...
    def frame(self, data: bytes) -> bytes: ...

class Channel:
    id: str
    waiters: list[Callable[[Channel, Message], None]] | None
    last_message_id: int
    published_messages: int
    last_message_time: float
    last_message_tag: int
    expires: float
    created: float
    wildcard: bool
    for_events: bool
    due: int
    def __init__(self, id: str, hub: Hub) -> None: ...
    def new_message(
        self,
        text: bytes,
        time: int,
        tag: int,
        event_id: bytes | None,
        event_type: bytes | None,
        expires: float,
        store: bool,
    ) -> Message: ...
    def add_message(self, msg: Message, store: bool) -> None: ...
    @property
    def subscribers(self) -> int: ...
    @property
    def stored(self) -> int: ...
    def store_append(self, msg: Message) -> None: ...
    def store_popleft(self) -> Message: ...
    def store_first(self) -> Message | None: ...
    def stored_messages(self) -> list[Message]: ...
    def store_clear(self) -> None: ...
    def deliver(self, render: Callable[[int], bytes]) -> int: ...
    def deliver_messages(self, msgs: list[Message]) -> int: ...
    def close_subscribers(
        self,
        last: Callable[[int], bytes],
        other: Callable[[int], bytes] | None = None,
    ) -> None: ...

class Hub:
    output_limit: int
    ws_max_message: int
    clock: int
    nforms: int
    plans: list[Plan | None]
    def queue(
        self, pending: dict[Channel, list[Message]], ch: Channel, msg: Message
    ) -> bool: ...
    def deliver_queued(
        self, pending: dict[Channel, list[Message]]
    ) -> list[tuple[Channel, Message]] | None: ...
    render: Callable[[int, Message], bytes] | None
    on_ws_message: Callable[[list[Channel], bytes, bool], None] | None
    on_unsubscribe: Callable[[Channel], None] | None
    attached: int
    detached: int
    deliveries: int
    send_calls: int
    bytes_sent: int
    slow_cut: int
    buffered_bytes: int
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        output_limit: int = 262144,
        ws_max_message: int = 1048576,
    ) -> None: ...
    def start(self) -> None: ...
    def close(self) -> None: ...
    def set_ws_limit(self, form: int, limit: int) -> None: ...
    @property
    def subscribers(self) -> int: ...
    def attach(
        self,
        fd: int,
        channels: list[Channel],
        form: int,
        kind: int = 0,
        ws_publish: bool = False,
        ttl: float = 0.0,
        initial: bytes | None = None,
    ) -> None: ...
    def ping(self, payloads: list[bytes | None], intervals: list[int]) -> int: ...
    def expire(self, now: int, footer: Callable[[int], bytes]) -> int: ...
    def close_all(self, footer: Callable[[int], bytes]) -> int: ...
    def memory(self) -> int: ...
    def counters(self) -> dict[str, int]: ...

class DoorRoute:
    prefix: bytes
    form: int
    ttl: float
    head: bytes
    tail: bytes
    def __init__(
        self, prefix: bytes, form: int, ttl: float, head: bytes, tail: bytes
    ) -> None: ...

class PubRoute:
    path: bytes
    arg: bytes
    store: bool
    body_limit: int
    head: bytes
    mid: bytes
    post: bytes
    info: tuple[bytes, bytes, bytes, bytes, bytes] | None
    def __init__(
        self,
        path: bytes,
        arg: bytes,
        store: bool,
        body_limit: int,
        head: bytes,
        mid: bytes,
        post: bytes,
        info: tuple[bytes, bytes, bytes, bytes, bytes] | None = None,
    ) -> None: ...

class Door:
    served: int
    handed_on: int
    published: int
    def __init__(
        self,
        hub: Hub,
        channels: dict[str, Channel],
        adopt: Callable[[int, bytes, int, bytes], None],
        flush: Callable[[], None],
        subscribed: Callable[[list[Channel]], None],
        date: Callable[[], bytes],
        publish: Callable[[str, bytes, bool], Channel | None],
        ledger: Ledger | None = None,
        pending: dict[Channel, list[Message]] | None = None,
        create: Callable[[str], Channel | None] | None = None,
    ) -> None: ...
    def set_routes(
        self,
        routes: list[DoorRoute],
        header_limit: int,
        max_id_length: int = -1,
        wildcard_prefix: bytes | None = None,
        events_id: bytes | None = None,
    ) -> None: ...
    def set_publisher_routes(
        self,
        routes: list[PubRoute],
        keepalive_requests: int,
        gzip: bool = False,
        sequence: Callable[[str, bytes, bool, Acked], bool] | None = None,
        refuse: Callable[[int, str | None], bytes] | None = None,
    ) -> None: ...
    def send_answers(self) -> None: ...
    def listen(self, fd: int) -> None: ...
    def close(self) -> None: ...
    def counters(self) -> dict[str, int]: ...
    def sweep(self, idle: float) -> None: ...
    def drop_publishers(self) -> None: ...

class BusFrameError(ValueError): ...

class BusReader:
    applied: int
    def __init__(
        self,
        on_frame: Callable[[tuple[Any, ...]], None],
        channels: dict[str, Channel] | None = None,
        ledger: Ledger | None = None,
        hub: Hub | None = None,
        pending: dict[Channel, list[Message]] | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None: ...
    def feed(self, data: bytes) -> None: ...
