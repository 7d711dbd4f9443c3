"""A small real HTTP server that answers publishes like push-stream's /pub
and records them; with knobs to fail, hang or close, for the publisher tests.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools


@dataclass
class Published:
    channel: str
    body: bytes
    headers: dict[str, str]
    connection: int


@dataclass
class Behaviour:
    """What to answer: ``status(channel, n)`` gives the status for the n-th
    request on a channel (None: hang, never answer); ``close_every`` makes
    the server answer with ``Connection: close`` every that many requests."""

    status: Callable[[str, int], int | None] = lambda channel, n: 200
    close_every: int = 0


class _Conn(asyncio.Protocol):
    def __init__(self, server: StubServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.number = 0
        self.served = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1
        self.number = self.server.connections
        self.server.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        srv = self.server
        if self.transport is None or self.transport.is_closing():
            return  # like nginx: nothing is served after "Connection: close"
        url = httptools.parse_url(self._url)
        args = urllib.parse.parse_qs(
            (url.query or b"").decode(), keep_blank_values=True
        )
        channel = args.get("id", [""])[0]
        n = srv.counts.get(channel, 0)
        srv.counts[channel] = n + 1
        status = srv.behaviour.status(channel, n)
        self.served += 1
        if status is None:  # hang: never answer
            return
        body = b"".join(self._body)
        if status == 200:
            srv.published.append(
                Published(channel, body, dict(self._headers), self.number)
            )
            srv.received.set()
        close = (
            bool(srv.behaviour.close_every)
            and self.served % srv.behaviour.close_every == 0
        )
        info = {
            "channel": channel,
            "published_messages": 1,
            "stored_messages": 1,
            "subscribers": 0,
        }
        text = (json.dumps(info) + "\r\n").encode() if status == 200 else b"nope\r\n"
        reason = {200: "OK", 403: "Forbidden", 503: "Service Unavailable"}.get(
            status, "X"
        )
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(text)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode()
        assert self.transport is not None
        self.transport.write(head + text)
        if close:
            self.transport.close()


@dataclass
class StubServer:
    behaviour: Behaviour = field(default_factory=Behaviour)
    published: list[Published] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    open: set[_Conn] = field(default_factory=set)
    port: int = 0
    received: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pub"

    async def start(self) -> StubServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Conn(self), "127.0.0.1", self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.open):
                if conn.transport is not None:
                    conn.transport.abort()
            await self._server.wait_closed()
            self._server = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> StubServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def channels(self) -> list[str]:
        return [p.channel for p in self.published]

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Published]:
        async def enough() -> None:
            while len(self.published) < n:
                self.received.clear()
                await self.received.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.published
