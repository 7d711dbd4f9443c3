"""One HTTP/1.x connection until its request is answered or handed off.

httptools (llhttp) parses; requests are queued as they complete and
answered in order, so pipelined publishes get their answers in one write.
A streaming, EventSource or WebSocket subscriber leaves this protocol:
its socket is duplicated into the Cython core and the transport dropped.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_to_bytes

import httptools

from fastpush.http import response

if TYPE_CHECKING:
    from fastpush.server import App

# Seconds a connection may sit without completing a request (nginx's
# client_header_timeout / keepalive_timeout are 60 s / 75 s).
IDLE_TIMEOUT = 60.0


class Request:
    __slots__ = (
        "method",
        "raw_path",
        "path",
        "query",
        "headers",
        "body",
        "http_minor",
        "keep_alive",
        "upgrade",
        "remote",
        "route",
        "_args",
    )

    def __init__(self) -> None:
        self.method = ""
        self.raw_path = b""
        self.path = ""
        self.query = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.http_minor = 1
        self.keep_alive = True
        self.upgrade = False
        self.remote = ""
        # (location, captures) from the router, None: no location,
        # False: not routed yet.
        self.route: object = False
        self._args: dict[str, str] | None = None

    @property
    def raw_args(self) -> dict[str, str]:
        """Query arguments as sent, undecoded: nginx's $arg_name."""
        args: dict[str, str] = {}
        for part in self.query.decode("latin-1").split("&"):
            k, _, v = part.partition("=")
            if k:
                args.setdefault(k, v)
        return args

    @property
    def args(self) -> dict[str, str]:
        """Query arguments, unescaped (first value wins, as in nginx)."""
        if self._args is None:
            args: dict[str, str] = {}
            for k, v in parse_qsl(self.query.decode("latin-1"), keep_blank_values=True):
                args.setdefault(k, v)
            self._args = args
        return self._args

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Reply:
    """Answers one publisher or statistics request, now or later.

    With one worker the answer is there at once and joins the batch of
    pipelined answers. With several it comes back from the sequencer; the
    connection goes on with the requests pipelined behind it (so a burst
    of publishes is sequenced, and fanned out, together) and the answers
    are written in request order as they arrive.
    """

    __slots__ = ("conn", "done", "queued", "data", "close")

    def __init__(self, conn: HttpProtocol) -> None:
        self.conn = conn
        self.done = False
        self.data = b""
        self.close = False
        # Behind an answer still owed: must wait its turn.
        self.queued = bool(conn.owed)
        if self.queued:
            conn.owed.append(self)

    def __call__(self, data: bytes, close: bool = False) -> None:
        if self.done:
            return
        self.done = True
        if self.queued:
            self.data, self.close = data, close
            self.conn.answered()
        else:
            self.conn.send(data, close)

    def wait(self) -> None:
        """Called after the handler returned: queue if no answer yet."""
        if not self.done and not self.queued:
            self.queued = True
            self.conn.owed.append(self)


class HttpProtocol(asyncio.Protocol):
    def __init__(
        self, app: App, first: bytes = b"", served: int = 0, unsent: bytes = b""
    ) -> None:
        self.app = app
        # What the front door read before handing the connection on, and
        # (a publisher connection it served for a while) the requests it
        # answered and the end of those answers the kernel did not take.
        self.first = first
        self.unsent = unsent
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[Request] = collections.deque()
        self.request: Request | None = None
        self.header_bytes = 0
        self.header_name = ""
        self.requests_served = served
        self.out: list[bytes] = []
        self.busy = False  # a request waits for something (long-polling)
        # Publisher/statistics answers still owed, in request order.
        self.owed: collections.deque[Reply] = collections.deque()
        # A request that must not start before the owed answers are out
        # (a subscriber, or the close after a last request) is held.
        self.held = False
        self.paused = False  # reading paused while too many answers are owed
        self.backlog: list[bytes] = []
        self.closing = False
        self.detached = False
        self.remote = ""
        self.body_limit = 0
        self.timer: asyncio.TimerHandle | None = None
        self.on_lost: object = None  # callback of a waiting long-poll
        self.unknown: bytes | None = None  # partial head, unknown method
        self.allowed: dict[int, bool] = {}  # location index -> allow list verdict

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if peer else ""
        self.app.connections.add(self)
        self._arm_timer()
        if self.unsent:
            data, self.unsent = self.unsent, b""
            self.transport.write(data)  # type: ignore[union-attr]
        if self.first:
            data, self.first = self.first, b""
            try:
                self.data_received(data)
            except Exception as exc:
                # As uvloop does when data_received() raises: report, close.
                self.app.loop.call_exception_handler(
                    {
                        "message": "protocol.data_received() call failed.",
                        "exception": exc,
                        "protocol": self,
                    }
                )
                self.transport.abort()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        cb = self.on_lost
        self.on_lost = None
        if cb is not None:
            cb()  # type: ignore[operator]

    def data_received(self, data: bytes) -> None:
        if self.closing or self.detached:
            return
        if self.unknown is not None:
            # The head of a request with a method llhttp does not know.
            data, self.unknown = self.unknown + data, None
            self._unknown_method(data)
            return
        if self.busy:
            # Pipelined behind a waiting request: keep it for later.
            self.backlog.append(data)
            if sum(map(len, self.backlog)) > 65536:
                self.transport.pause_reading()  # type: ignore[union-attr]
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the upgrade request is queued; its handler decides
        except httptools.HttpParserInvalidMethodError:
            # llhttp knows only registered methods; nginx routes any token
            # and the location answers 405. Do the same, then go on with
            # a fresh parser after that request's head.
            self._unknown_method(data)
            return
        except httptools.HttpParserError as exc:
            # Requests completed before the bad one are still answered.
            cause = exc.__context__
            if isinstance(cause, _Reject):
                answer = cause.answer
            elif cause is not None and not isinstance(cause, Exception):
                raise
            elif cause is not None:
                raise cause from exc
            else:
                answer = response.error(400, "Bad request.", keep_alive=False)
            self._process()
            if not self.closing:
                self.send_last(answer)
            return
        self._process()

    def _unknown_method(self, data: bytes) -> None:
        m = _REQUEST_LINE.search(data)
        end = data.find(b"\r\n\r\n", m.end() - 2) if m else -1
        if end < 0:
            # The head may still be arriving: keep what follows the last
            # complete head and wait for the rest.
            cut = data.rfind(b"\r\n\r\n")
            partial = data[cut + 4 :] if cut >= 0 else data
            self._process()
            if len(partial) < self.app.header_limit and _TOKEN_START.match(partial):
                self.unknown = partial
                return
            self.send_last(response.error(400, "Bad request.", keep_alive=False))
            return
        assert m is not None
        if b"\ncontent-length:" in data[m.end() : end].lower():
            self._process()
            self.send_last(response.error(400, "Bad request.", keep_alive=False))
            return
        self._process()
        req = Request()
        req.remote = self.remote
        req.method = m.group(1).decode("latin-1")
        url = httptools.parse_url(m.group(2))
        req.path = unquote_to_bytes(url.path or b"/").decode("utf-8", "replace")
        req.query = url.query or b""
        req.http_minor = 1 if m.group(3) == b"1" else 0
        req.keep_alive = req.http_minor == 1
        self.queue.append(req)
        self.parser = httptools.HttpRequestParser(self)
        rest = data[end + 4 :]
        self._process()
        if rest and not self.closing:
            self._feed(rest)

    # -- httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        self.request = Request()
        self.request.remote = self.remote
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        req = self.request
        assert req is not None
        req.raw_path += url
        self.header_bytes += len(url)
        if self.header_bytes > self.app.header_limit:
            raise _Reject(
                response.error(414, "Request URI too large.", keep_alive=False)
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.request
        assert req is not None
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.app.header_limit:
            raise _Reject(
                response.error(
                    431, "Request header fields too large.", keep_alive=False
                )
            )
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        if key in req.headers:
            req.headers[key] += ", " + val
        else:
            req.headers[key] = val

    def on_headers_complete(self) -> None:
        req = self.request
        assert req is not None
        p = self.parser
        req.method = p.get_method().decode("latin-1")
        req.http_minor = p.get_http_version() == "1.1" and 1 or 0
        req.keep_alive = p.should_keep_alive()
        req.upgrade = p.should_upgrade()
        url = httptools.parse_url(req.raw_path)
        req.path = unquote_to_bytes(url.path or b"/").decode("utf-8", "replace")
        req.query = url.query or b""
        # Refuse an oversized body before reading it (nginx answers 413 from
        # Content-Length too).
        self.body_limit = self.app.body_limit_for(req)
        length = req.headers.get("content-length")
        if length is not None and length.isdigit() and self.body_limit:
            if int(length) > self.body_limit:
                raise _Reject(
                    response.error(413, "Request body too large.", keep_alive=False)
                )

    def on_body(self, body: bytes) -> None:
        req = self.request
        assert req is not None
        req.body += body
        if self.body_limit and len(req.body) > self.body_limit:
            raise _Reject(
                response.error(413, "Request body too large.", keep_alive=False)
            )

    def on_message_complete(self) -> None:
        req = self.request
        assert req is not None
        self.queue.append(req)
        self.request = None

    # -- answering -----------------------------------------------------------

    def _process(self) -> None:
        while (
            self.queue
            and not self.busy
            and not self.held
            and not self.closing
            and not self.detached
        ):
            req = self.queue[0]
            if self.owed and not self.app.answers_later(req):
                # A subscriber may take the socket over: answers first.
                self.held = True
                break
            self.queue.popleft()
            self.requests_served += 1
            if self.requests_served >= self.app.keepalive_requests:
                req.keep_alive = False
            self.app.handle(self, req)
            if not req.keep_alive and not self.busy and not self.detached:
                # HTTP/1.0, Connection: close, or keepalive_requests used up.
                self.send_last(b"")
        self._flush()
        self._pause_if_owed_many()
        if not self.busy and not self.detached and not self.closing:
            self._arm_timer()

    def answered(self) -> None:
        """An owed answer arrived: write every answer that is now in order."""
        owed = self.owed
        while owed and owed[0].done:
            r = owed.popleft()
            self.send(r.data, r.close)
        self._flush()
        if self.closing:
            owed.clear()
            return
        if not owed:
            if self.paused:
                self.paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]
            if self.held:
                self.held = False
                self._process()

    def _pause_if_owed_many(self) -> None:
        # A client pipelining faster than the sequencer answers is slowed
        # down by TCP, not by our memory.
        if len(self.owed) > 1024 and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _flush(self) -> None:
        if self.out and self.transport is not None:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out.clear()
            self.transport.write(data)

    def send(self, data: bytes, close: bool = False) -> None:
        """Queue an answer; written once the current batch is handled."""
        if self.closing:
            return
        self.out.append(data)
        if close:
            self._flush()
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def send_last(self, data: bytes) -> None:
        """Answer with data and close, after any answers still owed."""
        if self.owed:
            Reply(self)(data, close=True)
            self.held = True
        else:
            self.send(data, close=True)

    def defer(self) -> None:
        """The current request is answered later (see resume())."""
        self.busy = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def resume(self, data: bytes, close: bool = False) -> None:
        """Answer the deferred request and go on with pipelined ones."""
        self.busy = False
        self.on_lost = None
        self.send(data, close)
        self._flush()
        if self.closing:
            return
        if self.backlog:
            pending = b"".join(self.backlog)
            self.backlog.clear()
            self.transport.resume_reading()  # type: ignore[union-attr]
            self._feed(pending)
        else:
            self._process()

    def detach(self) -> int:
        """Hand the socket to the core: returns a descriptor it now owns.

        Anything still queued in the transport would be lost with it, so
        the caller writes every answer through the core from here on.
        """
        assert self.transport is not None
        self._flush()
        sock = self.transport.get_extra_info("socket")
        fd = os.dup(sock.fileno())
        self.detached = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # abort() closes the transport's own descriptor; the duplicate
        # keeps the connection open, without a FIN.
        self.transport.abort()
        return fd

    def pending_write(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport else 0

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.app.loop.call_later(IDLE_TIMEOUT, self._on_idle)

    def _on_idle(self) -> None:
        self.timer = None
        if not self.busy and not self.detached and self.transport is not None:
            self.closing = True
            self.transport.close()


_REQUEST_LINE = re.compile(
    rb"(?:^|\r\n)(?!(?:GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) )"
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/1\.([01])\r\n"
)


# A request line can start so; anything else is not HTTP at all.
_TOKEN_START = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+( [^\r\n]*)?$")


class _Reject(Exception):
    """Raised inside a parser callback to stop and answer with an error."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
