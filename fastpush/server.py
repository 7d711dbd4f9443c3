"""One worker: listening sockets, the HTTP protocol, the core and timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote

from fastpush._core import KIND_STREAM, KIND_WEBSOCKET, Channel, Door, Hub
from fastpush.config import Config, Location
from fastpush.http import door, response
from fastpush.http.info import View
from fastpush.http.protocol import IDLE_TIMEOUT, HttpProtocol, Reply, Request
from fastpush.http.publisher import STORE_FULL, handle_publisher, handle_statistics
from fastpush.http.router import Router, expand
from fastpush.http.subscriber import handle_subscriber
from fastpush.registry import (
    CHANNEL_DELETED_MESSAGE_ID,
    ChannelLimitError,
    Message,
    Registry,
    StoreFullError,
)
from fastpush.render import Form, FormTable

if TYPE_CHECKING:
    from fastpush.worker import WorkerBus

log = logging.getLogger("fastpush")


class App:
    """State of one worker and the entry point of every request."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        s = config.settings
        self.config = config
        self.loop = loop
        ws_max = max([loc.client_max_body_size for loc in config.locations] + [1 << 20])
        self.hub = Hub(loop, s.subscriber_output_buffer_limit, ws_max)
        self.hub.on_ws_message = self._on_ws_message
        self.registry = Registry(self.hub, s)
        self.registry.deliver = self.deliver
        padding_max = max(
            [
                max(h, m)
                for loc in config.locations
                for _, h, m in loc.padding_by_user_agent
            ]
            + [0]
        )
        self.forms = FormTable(s.ping_message_text, padding_max)
        forms = self.forms.forms
        self.hub.plans = self.forms.plans
        self.hub.render = lambda f, msg: forms[f].message(msg)
        self.router = Router(config.locations)
        self.connections: set[HttpProtocol] = set()
        self.header_limit = s.client_header_buffer_size
        self.keepalive_requests = s.keepalive_requests
        self.hostname = socket.gethostname()
        self.started = time.time()
        self._timers: list[asyncio.TimerHandle] = []
        # Messages to deliver at the end of this loop iteration (flush()),
        # per channel in publish order; queued by deliver(), the door's
        # publisher and the bus reader (all through Hub.queue).
        self.pending: dict[Channel, list[Message]] = {}
        self._flush_scheduled = False
        # The worker's link to the sequencer (fastpush.worker.WorkerBus),
        # or None with one worker.
        self.bus: WorkerBus | None = None
        # Accepts every connection; serves plain subscribers itself.
        self.door = Door(
            self.hub,
            self.registry.channels,
            lambda fd, data, served, unsent: door.adopt(self, fd, data, served, unsent),
            self.flush,
            self._door_subscribed,
            response.date_header,
            self._door_publish,
            self.registry.ledger,
            self.pending,
            self._door_create,
        )

    # -- requests ------------------------------------------------------------

    def body_limit_for(self, req: Request) -> int:
        """Called when the head is in: routes the request once, for good."""
        req.route = m = self.router.match(req.path)
        return m[0].client_max_body_size if m else 1 << 20

    def _route(self, req: Request) -> tuple[Location, tuple[str, ...]] | None:
        if req.route is False:  # a head that skipped body_limit_for()
            req.route = self.router.match(req.path)
        return req.route  # type: ignore[return-value]

    def answers_later(self, req: Request) -> bool:
        """Whether req is answered through a Reply (publisher, statistics),
        which may queue behind answers still owed on its connection."""
        m = self._route(req)
        return m is not None and m[0].role != "subscriber"

    def handle(self, conn: HttpProtocol, req: Request) -> None:
        m = self._route(req)
        if m is None:
            conn.send(response.error(404, None, keep_alive=req.keep_alive))
            return
        loc, captures = m
        if loc.role == "subscriber" and self.pending:
            # A subscriber arriving now must see queued messages either in
            # its backlog or live, never both: deliver them first.
            self.flush()
        reply = None if loc.role == "subscriber" else Reply(conn)
        if loc.allow and not self._allowed(conn, loc):
            forbidden = response.error(403, None, keep_alive=req.keep_alive)
            conn.send(forbidden) if reply is None else reply(forbidden)
            return
        # Config loading refuses a location without one.
        assert loc.channels_path is not None
        # push-stream unescapes the channels path once more after nginx
        # evaluated it: $arg_x arrives raw, $1 from the decoded URI (so a
        # path is decoded twice, as there).
        channels_path = unquote(
            expand(
                loc.channels_path,
                captures=captures,
                args=req.raw_args,
                headers=req.headers,
                path=req.path,
                remote_addr=req.remote,
            ),
            errors="replace",
        )
        if loc.role == "subscriber":
            handle_subscriber(self, conn, req, loc, channels_path, captures)
            return
        assert reply is not None
        if loc.role == "publisher":
            handle_publisher(self, reply, req, loc, channels_path)
        else:
            handle_statistics(self, reply, req, loc, channels_path)
        reply.wait()

    @staticmethod
    def _allowed(conn: HttpProtocol, loc: Location) -> bool:
        # The peer does not change on a connection: check each location once.
        ok = conn.allowed.get(loc.index)
        if ok is None:
            ok = conn.allowed[loc.index] = loc.is_allowed(conn.remote)
        return ok

    # -- publishing ----------------------------------------------------------

    def publish(
        self,
        ch: Channel,
        text: bytes,
        event_id: bytes | None = None,
        event_type: bytes | None = None,
        store: bool = True,
    ) -> Message:
        """Publish on this worker alone (one worker, or in-process glue)."""
        return self.registry.publish(ch, text, event_id, event_type, store)

    def publish_request(
        self,
        channels: list[Channel],
        text: bytes,
        event_id: bytes | None,
        event_type: bytes | None,
        store: bool,
        done: Callable[[int, str | None, View], None] | None = None,
    ) -> None:
        """Publish to channels; done(status, explain, view) when sequenced.

        With one worker that is at once; with several the sequencer stamps
        the message and answers once it is on its way to every worker, so
        a 200 is never given for a message that was not sequenced.
        """
        if self.bus is not None:
            ids = [ch.id for ch in channels]

            def acked(status: int, explain: str | None, counts: dict[str, int]) -> None:
                if done is not None:
                    done(status, explain, View(self, counts))

            self.bus.publish(ids, text, event_id, event_type, store, acked)
            return
        try:
            for ch in channels:
                self.registry.publish(ch, text, event_id, event_type, store)
        except StoreFullError:
            if done is not None:
                done(500, STORE_FULL, View(self))
            return
        if done is not None:
            done(200, None, View(self))

    def delete_request(
        self, ids: list[str], text: bytes, done: Callable[[int], None]
    ) -> None:
        """Delete channels on every worker; done(status)."""
        if self.bus is not None:
            self.bus.delete(ids, text, lambda status, explain, counts: done(status))
            return
        found = [ch for ch in map(self.registry.get, ids) if ch is not None]
        for ch in found:
            self.delete_channel(ch, text)
        done(200 if found else 404)

    def view(self, done: Callable[[View], None]) -> None:
        """Subscriber counts of the whole server, for channel information."""
        if self.bus is not None:
            self.bus.info(
                lambda counts, workers, channels: done(
                    View(self, counts, workers, channels)
                )
            )
            return
        done(View(self))

    def deliver(self, ch: Channel, msg: Message) -> None:
        """Queue msg for the fan-out at the end of this loop iteration.

        Messages that arrive together (pipelined publishes, a burst from
        the glue) then reach each subscriber in one write: fewer syscalls
        than deliveries, and no added latency since the flush runs before
        the loop polls again.
        """
        if not ch.subscribers and not ch.waiters:
            # Nobody to tell: someone subscribing later in this iteration
            # finds it in the store, as after the flush. Most glue channels
            # (post:<id>, user:<id>) have no one listening.
            return
        if self.hub.queue(self.pending, ch, msg):
            self.schedule_flush()

    def schedule_flush(self) -> None:
        """Have flush() run at the end of this loop iteration."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Deliver every queued message, each channel in publish order."""
        self._flush_scheduled = False
        woken = self.hub.deliver_queued(self.pending)
        if woken:
            for ch, msg in woken:
                # A waiter answered just before may have left this channel
                # too (a long-polling request on several channels).
                for w in list(ch.waiters or ()):
                    w(ch, msg)

    def delete_channel(self, ch: Channel, text: bytes) -> None:
        self.flush()
        msg = Message(CHANNEL_DELETED_MESSAGE_ID, 0, 0, text, ch.id)
        forms = self.forms.forms

        def goodbye(f: int) -> bytes:
            form = forms[f]
            return form.message(msg) + form.footer()

        self.registry.delete(ch)
        ch.close_subscribers(goodbye, lambda f: forms[f].message(msg))
        waiters = ch.waiters
        if waiters:
            for w in list(waiters):
                w(ch, msg)

    def attach(
        self,
        fd: int,
        channels: list[Channel],
        form: Form,
        websocket: bool,
        loc: Location,
        initial: bytes,
    ) -> None:
        self.hub.nforms = len(self.forms)
        if websocket and loc.client_max_body_size:
            self.hub.set_ws_limit(form.index, loc.client_max_body_size)
        ttl = loc.subscriber_connection_ttl or 0.0
        self.hub.attach(
            fd,
            channels,
            form.index,
            KIND_WEBSOCKET if websocket else KIND_STREAM,
            websocket and loc.websocket_allow_publish,
            ttl,
            initial,
        )
        for ch in channels:
            self.registry.client_subscribed(ch)

    def _set_door_routes(self) -> None:
        s = self.config.settings
        routes = door.door_routes(self)
        self.hub.nforms = len(self.forms)
        self.door.set_routes(
            routes,
            s.client_header_buffer_size,
            s.max_channel_id_length if s.max_channel_id_length is not None else -1,
            (s.wildcard_channel_prefix or "").encode() or None,
            (self.registry.events_channel_id or "").encode() or None,
        )
        sequenced = self.bus is not None
        self.door.set_publisher_routes(
            door.publisher_routes(self),
            s.keepalive_requests,
            s.gzip,
            self._door_sequence if sequenced else None,
            door.refusal if sequenced else None,
        )

    def _door_subscribed(self, channels: list[Channel]) -> None:
        # One entry per subscriber the door attached in one batch, most of
        # them on the same few channels: touch and count each channel once.
        reg = self.registry
        for ch, n in Counter(channels).items():
            reg.touch(ch)
            reg.client_subscribed(ch, n)

    def _door_create(self, cid: str) -> Channel | None:
        # The first subscriber of a channel the door serves; None (a limit
        # refuses it) hands the request to the Python path, which answers.
        try:
            return self.registry.get_or_create(cid)
        except ChannelLimitError:
            return None

    def _door_publish(self, cid: str, text: bytes, store: bool) -> Channel | None:
        # A publish the door parsed (one worker). None hands the request to
        # the Python path, which makes it again and answers the refusal.
        reg = self.registry
        try:
            ch = reg.get_or_create(cid)
            reg.publish(ch, text, None, None, store)
        except (ChannelLimitError, StoreFullError):
            return None
        return ch

    def _door_sequence(
        self, cid: str, text: bytes, store: bool, done: Callable[..., None]
    ) -> bool:
        # A publish the door parsed (several workers): done(status,
        # explain, counts) once the sequencer answers. The channel is made
        # here first, as the Python path does (push-stream creates it before
        # it looks at the body); False hands a limit's refusal to the
        # Python path, which makes the same call and answers 403.
        assert self.bus is not None
        try:
            self.registry.get_or_create(cid)
        except ChannelLimitError:
            return False
        self.bus.publish([cid], text, None, None, store, done)
        return True

    def _on_ws_message(
        self, channels: list[Channel], text: bytes, is_text: bool
    ) -> None:
        targets = [ch for ch in channels if not ch.for_events]
        if targets:
            self.publish_request(targets, text, None, None, True, self._ws_published)

    def _ws_published(self, status: int, explain: str | None, view: View) -> None:
        if status != 200:
            log.warning("websocket publish refused: %d %s", status, explain)

    def glue_publisher(self) -> Callable[..., Awaitable[None] | None]:
        """The in-process publish the glue uses inside `fastpush serve`.

        With one worker it publishes at once and returns None; with several
        it returns an awaitable that resolves once the sequencer took the
        message. Either raises PublishError when the message was refused,
        so the glue finishes a job only after all its publishes went
        through, and retries it if not.
        """
        store = self.config.settings.store_messages
        registry = self.registry

        def channel(cid: str) -> Channel:
            try:
                return registry.get_or_create(cid)
            except ChannelLimitError:
                raise PublishError(403, "Number of channels were exceeded.") from None

        def publish_here(
            cid: str,
            body: bytes,
            event_id: str | bytes | None = None,
            event_type: str | bytes | None = None,
        ) -> None:
            try:
                registry.publish(
                    channel(cid), body, _b(event_id), _b(event_type), store
                )
            except StoreFullError:
                raise PublishError(500, STORE_FULL) from None

        async def publish_sequenced(
            cid: str,
            body: bytes,
            event_id: str | bytes | None = None,
            event_type: str | bytes | None = None,
        ) -> None:
            done: asyncio.Future[tuple[int, str | None]] = self.loop.create_future()
            self.publish_request(
                [channel(cid)],
                body,
                _b(event_id),
                _b(event_type),
                store,
                lambda status, explain, view: done.set_result((status, explain)),
            )
            status, explain = await done
            if status != 200:
                raise PublishError(status, explain or "")

        if self.bus is None:
            return publish_here
        return publish_sequenced

    # -- the bus (several workers) --------------------------------------------

    def apply_message(
        self,
        cid: str,
        mid: int,
        t: int,
        tag: int,
        text: bytes,
        event_id: bytes | None,
        event_type: bytes | None,
        store: bool,
        expires: float,
    ) -> None:
        """A message the sequencer stamped: store the replica, deliver it."""
        ch = self.registry.channel_for_bus(cid)
        ch.last_message_id = mid
        msg = Message(mid, t, tag, text, cid, event_id, event_type, expires)
        self.registry.record(ch, msg, store)
        self.deliver(ch, msg)

    def apply_delete(self, cid: str, text: bytes) -> None:
        ch = self.registry.get(cid)
        if ch is not None:
            self.delete_channel(ch, text)

    def apply_snapshot(self, channels: list[tuple]) -> None:
        """The store as the sequencer has it, sent when this worker starts."""
        reg = self.registry
        for cid, last_id, published, stored in channels:
            ch = reg.channel_for_bus(cid)
            for mid, t, tag, text, event_id, event_type, expires in stored:
                msg = Message(mid, t, tag, text, cid, event_id, event_type, expires)
                reg.record(ch, msg, True)
            ch.last_message_id = last_id
            ch.published_messages = published

    # -- timers --------------------------------------------------------------

    def start(self) -> None:
        self.hub.clock = int(time.monotonic())
        self.hub.start()
        self._set_door_routes()
        self._every(1.0, self._tick)
        self._pinging = any(
            loc.role == "subscriber" and loc.ping_message_interval
            for loc in self.config.locations
        )

    def _every(self, interval: float, fn: Callable[[], None]) -> None:
        def run() -> None:
            try:
                fn()
            finally:
                self._timers.append(self.loop.call_later(interval, run))

        self._timers.append(self.loop.call_later(interval, run))

    def _tick(self) -> None:
        self._timers = [t for t in self._timers if not t.cancelled()]
        forms = self.forms.forms
        self.hub.expire(int(time.monotonic()), lambda f: forms[f].footer())
        if self._pinging:
            self._ping()
        self.registry.collect()
        self.door.sweep(IDLE_TIMEOUT)

    def _ping(self) -> None:
        forms = self.forms.forms
        payloads = [
            f.ping() if f.location.ping_message_interval else None for f in forms
        ]
        intervals = [int(f.location.ping_message_interval or 0) for f in forms]
        self.hub.ping(payloads, intervals)

    def worker_infos(self) -> list[tuple[int, int, int]]:
        return [
            (
                os.getpid(),
                self.registry.total_subscribers(),
                int(time.time() - self.started),
            )
        ]

    def reload(self, config: Config) -> None:
        """Apply a new configuration to new requests; connected subscribers
        keep the forms (templates) they were attached with."""
        s = config.settings
        self.config = config
        self.router = Router(config.locations)
        self.registry.settings = s
        self.header_limit = s.client_header_buffer_size
        self.keepalive_requests = s.keepalive_requests
        self._pinging = any(
            loc.role == "subscriber" and loc.ping_message_interval
            for loc in config.locations
        )
        self._set_door_routes()

    def drain(self) -> None:
        """Send every subscriber its footer and close."""
        self.flush()
        forms = self.forms.forms
        self.hub.close_all(lambda f: forms[f].footer())
        self.door.drop_publishers()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self.hub.close()


def _b(value: str | bytes | None) -> bytes | None:
    """A pipeline's event id or type (str) as the bytes a Message holds."""
    return value.encode() if isinstance(value, str) else value


class PublishError(Exception):
    """An in-process publish that was refused (the HTTP status it would get)."""

    def __init__(self, status: int, explain: str) -> None:
        super().__init__(f"{status} {explain}")
        self.status = status


def make_sockets(config: Config, reuse_port: bool = True) -> list[socket.socket]:
    socks = []
    for host, port in config.listen:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Wake us when the request is there, not at the handshake: the
            # front door then reads it in the same callback (nginx's
            # `listen ... deferred`).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        sock.bind((host, port))
        sock.listen(config.settings.backlog)
        sock.setblocking(False)
        socks.append(sock)
    return socks


async def serve(
    config: Config,
    sockets: list[socket.socket] | None = None,
    *,
    bus_fd: int | None = None,
    config_path: str | None = None,
    listen_args: list[str] | None = None,
) -> int:
    """Run one worker until SIGTERM (drain) or SIGINT; SIGHUP reloads.

    With bus_fd (one end of the supervisor's socketpair) publishes go
    through the sequencer; the worker takes no request before it has the
    sequencer's copy of the store.
    """
    loop = asyncio.get_running_loop()
    app = App(config, loop)
    stop = asyncio.Event()
    if bus_fd is not None:
        from fastpush.worker import WorkerBus

        sock = socket.socket(fileno=bus_fd)
        _, link = await loop.connect_accepted_socket(
            lambda: WorkerBus(app, stop.set), sock
        )
        app.bus = link
        app.registry.on_count = link.count
        app.registry.on_event = link.event
        await link.ready
    app.start()
    socks = sockets if sockets is not None else make_sockets(config)
    for sock in socks:
        sock.setblocking(False)
        app.door.listen(sock.fileno())
    if app.bus is not None:
        app.bus.hello()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        from fastpush.config import ConfigError, load_config

        try:
            new = load_config(config_path, listen=listen_args or None)
        except ConfigError as err:
            log.error("SIGHUP: configuration not reloaded: %s", err)
            return
        app.reload(new)
        log.info("configuration reloaded")

    loop.add_signal_handler(signal.SIGHUP, reload)
    for host, port in config.listen:
        log.info("fastpush %d listening on %s:%d", os.getpid(), host, port)
    if bus_fd is None:
        addrs = ", ".join(f"{h}:{p}" for h, p in config.listen)
        print(f"fastpush: listening on {addrs}", flush=True)
    glue = None
    if config.glue:
        # The glue of `fastpush glue`, in this process: one command runs the
        # whole system. Every worker consumes; Thoonk's claims are atomic.
        from fastpush.glue import serve_glue

        glue = loop.create_task(serve_glue(config.glue, app.glue_publisher()))
    await stop.wait()
    if glue is not None:
        glue.cancel()
        with contextlib.suppress(BaseException):
            await glue
    app.door.close()
    for sock in socks:
        sock.close()
    if app.bus is not None:
        # Publishes already sent to the sequencer get their answers first.
        for _ in range(100):
            if not app.bus.pending or app.bus.transport is None:
                break
            await asyncio.sleep(0.05)
        app.flush()
    app.drain()
    # Give footers a moment to leave; the core closes what is left.
    await asyncio.sleep(0.05)
    app.close()
    return 0
