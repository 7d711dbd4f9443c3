"""One worker: listening sockets, the HTTP protocol, the core and timers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from urllib.parse import unquote

from fastpush._core import KIND_STREAM, KIND_WEBSOCKET, Channel, Hub
from fastpush.config import Config, Location
from fastpush.http import response
from fastpush.http.protocol import HttpProtocol, Request
from fastpush.http.publisher import handle_publisher, handle_statistics
from fastpush.http.router import Router, expand
from fastpush.http.subscriber import handle_subscriber
from fastpush.registry import (
    CHANNEL_DELETED_MESSAGE_ID,
    Message,
    Registry,
    StoreFullError,
)
from fastpush.render import Form, FormTable

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
        self.router = Router(config.locations)
        self.connections: set[HttpProtocol] = set()
        self.header_limit = s.client_header_buffer_size
        self.keepalive_requests = s.keepalive_requests
        self.hostname = socket.gethostname()
        self.started = time.time()
        self._timers: list[asyncio.TimerHandle] = []
        self._pending: dict[Channel, list[Message]] = {}
        self._flush_scheduled = False

    # -- requests ------------------------------------------------------------

    def body_limit_for(self, req: Request) -> int:
        m = self.router.match(req.path)
        return m[0].client_max_body_size if m else 1 << 20

    def handle(self, conn: HttpProtocol, req: Request) -> None:
        m = self.router.match(req.path)
        if m is None:
            conn.send(response.error(404, None, keep_alive=req.keep_alive))
            return
        loc, captures = m
        if loc.role == "subscriber" and self._pending:
            # A subscriber arriving now must see queued messages either in
            # its backlog or live, never both: deliver them first.
            self.flush()
        if loc.allow and not loc.is_allowed(req.remote):
            conn.send(response.error(403, None, keep_alive=req.keep_alive))
            return
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
        if loc.role == "publisher":
            handle_publisher(self, conn, req, loc, channels_path)
        elif loc.role == "subscriber":
            handle_subscriber(self, conn, req, loc, channels_path, captures)
        else:
            handle_statistics(self, conn, req, loc, channels_path)

    # -- publishing ----------------------------------------------------------

    def publish(
        self,
        ch: Channel,
        text: bytes,
        event_id: bytes | None = None,
        event_type: bytes | None = None,
        store: bool = True,
    ) -> Message:
        return self.registry.publish(ch, text, event_id, event_type, store)

    def deliver(self, ch: Channel, msg: Message) -> None:
        """Queue msg for the fan-out at the end of this loop iteration.

        Messages that arrive together (pipelined publishes, a burst from
        the glue) then reach each subscriber in one write: fewer syscalls
        than deliveries, and no added latency since the flush runs before
        the loop polls again.
        """
        pending = self._pending.get(ch)
        if pending is None:
            self._pending[ch] = [msg]
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self.flush)
        else:
            pending.append(msg)

    def flush(self) -> None:
        """Deliver every queued message, each channel in publish order."""
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        forms = self.forms.forms
        for ch, msgs in batch.items():
            if len(msgs) == 1:
                msg = msgs[0]
                ch.deliver(lambda f, msg=msg: forms[f].message(msg))
            else:
                ch.deliver(
                    lambda f, msgs=msgs: b"".join([forms[f].message(m) for m in msgs])
                )
            waiters = ch.waiters
            if waiters:
                for w in list(waiters):
                    w(ch, msgs[0])

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
            self.registry.send_event("client_subscribed", ch.id)

    def _on_ws_message(
        self, channels: list[Channel], text: bytes, is_text: bool
    ) -> None:
        for ch in channels:
            if ch.for_events:
                continue
            try:
                self.publish(ch, text, store=True)
            except StoreFullError:
                log.warning("websocket publish to %s refused: store full", ch.id)

    # -- timers --------------------------------------------------------------

    def start(self) -> None:
        self.hub.clock = int(time.monotonic())
        self.hub.start()
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

    def drain(self) -> None:
        """Send every subscriber its footer and close."""
        self.flush()
        forms = self.forms.forms
        self.hub.close_all(lambda f: forms[f].footer())
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self.hub.close()


def make_sockets(config: Config, reuse_port: bool = True) -> list[socket.socket]:
    socks = []
    for host, port in config.listen:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(config.settings.backlog)
        sock.setblocking(False)
        socks.append(sock)
    return socks


async def serve(config: Config, sockets: list[socket.socket] | None = None) -> int:
    """Run one worker until SIGTERM (drain) or SIGINT."""
    loop = asyncio.get_running_loop()
    app = App(config, loop)
    app.start()
    socks = sockets if sockets is not None else make_sockets(config)
    servers = [
        await loop.create_server(
            lambda: HttpProtocol(app), sock=sock, backlog=config.settings.backlog
        )
        for sock in socks
    ]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for host, port in config.listen:
        log.info("fastpush %d listening on %s:%d", os.getpid(), host, port)
    print(
        f"fastpush: listening on {', '.join(f'{h}:{p}' for h, p in config.listen)}",
        flush=True,
    )
    await stop.wait()
    for srv in servers:
        srv.close()
    app.drain()
    # Give footers a moment to leave; the core closes what is left.
    await asyncio.sleep(0.05)
    app.close()
    return 0
