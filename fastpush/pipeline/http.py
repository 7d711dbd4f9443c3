"""HTTP publisher for any push-stream compatible ``/pub`` (nginx push-stream,
Nchan's push-stream mode, fastpush itself).

One ``POST /pub?id=<channel>`` per channel, with the message as the body and
Event-Id / Event-Type headers, over a small pool of keep-alive connections.
The client is an ``asyncio.Protocol`` feeding httptools' response parser and
is driven from its callbacks: when a response completes, the next queued
request is written from inside ``on_message_complete``, so a batch of
thousands of POSTs costs no task or coroutine per request.

``pipelining`` > 1 writes that many requests ahead on each connection (HTTP/1.1
pipelining, which nginx and fastpush serve in order).  It is off by default:
RFC 9112 advises against pipelining non-idempotent requests, and after a lost
connection the requests written but unanswered are reported as failed (the
glue then retries them: at-least-once, like every other failure here).
Requests that were never written, or that followed a ``Connection: close``
response, are re-sent on another connection without counting as failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections import deque
from collections.abc import Sequence

import httptools

from fastpush.pipeline.base import Message, PublishError, PublishOutcome

_UNSENT = -1  # never reached the server: safe to send again


class _Request:
    __slots__ = ("batch", "index", "data", "status", "reason", "retryable")

    def __init__(self, batch: _Batch, index: int, data: bytes) -> None:
        self.batch = batch
        self.index = index  # position in the batch's (message, channel) list
        self.data = data
        self.status = 0
        self.reason = ""
        self.retryable = True

    def done(self, status: int, reason: str = "", retryable: bool = True) -> None:
        batch = self.batch
        if batch.closed:  # timed out already: a late answer changes nothing
            return
        self.status = status
        self.reason = reason
        self.retryable = retryable
        batch.left -= 1
        if batch.left == 0 and not batch.future.done():
            batch.future.set_result(None)


class _Batch:
    __slots__ = ("left", "future", "closed")

    def __init__(self, n: int, future: asyncio.Future[None]) -> None:
        self.left = n
        self.future = future
        self.closed = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a FIFO of written requests awaiting their
    responses (at most ``depth``) and a queue of requests not yet written."""

    def __init__(self, pool: HTTPPublisher) -> None:
        self.pool = pool
        self.depth = pool.pipelining
        self.queue: deque[_Request] = deque()
        self.inflight: deque[_Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.alive = False
        self._body: list[bytes] = []

    # asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self.transport = transport  # type: ignore[assignment]
        self.alive = True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail_inflight(f"bad HTTP response: {exc}", retryable=True)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.pool._forget(self)
        # Written but unanswered: the server may or may not have published.
        self._fail_inflight(f"connection lost: {exc or 'closed by server'}", True)
        self._unsend_queue()

    # httptools callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        self._body.clear()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self.inflight:  # an answer to nothing: the stream is confused
            self.close()
            return
        req = self.inflight.popleft()
        status = self.parser.get_status_code()
        if 200 <= status < 300:
            req.done(status)
        else:
            text = b"".join(self._body)[:200].decode("latin-1").strip()
            # 4xx will not change on retry (forbidden, too large, bad
            # channel); 5xx and 429 may.
            retryable = status >= 500 or status in (408, 429)
            req.done(status, f"HTTP {status} {text}".strip(), retryable)
        if not self.parser.should_keep_alive():
            # The server answers nothing after a "Connection: close"
            # response, so whatever we wrote after it was not published.
            self.alive = False
            self.pool._forget(self)
            while self.inflight:
                self.inflight.popleft().done(_UNSENT)
            self._unsend_queue()
            self.close()
            return
        self._pump()

    # Requests ----------------------------------------------------------------

    def submit(self, requests: list[_Request]) -> None:
        self.queue.extend(requests)
        self._pump()

    def _pump(self) -> None:
        room = self.depth - len(self.inflight)
        queue = self.queue
        if room <= 0 or not queue or self.transport is None:
            return
        if room == 1 or len(queue) == 1:
            req = queue.popleft()
            self.inflight.append(req)
            self.transport.write(req.data)
            return
        chunks = []
        while room and queue:
            req = queue.popleft()
            self.inflight.append(req)
            chunks.append(req.data)
            room -= 1
        self.transport.write(b"".join(chunks))  # one send for the lot

    def _fail_inflight(self, reason: str, retryable: bool) -> None:
        while self.inflight:
            self.inflight.popleft().done(502, reason, retryable)

    def _unsend_queue(self) -> None:
        while self.queue:
            self.queue.popleft().done(_UNSENT)

    def owns(self, batch: _Batch) -> bool:
        return any(r.batch is batch for r in self.inflight) or any(
            r.batch is batch for r in self.queue
        )

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class HTTPPublisher:
    """POSTs every (message, channel) to a push-stream compatible publisher.

    ``url``: the publisher location, e.g. ``http://127.0.0.1:9080/pub``; the
    channel goes in the ``channel_param`` query argument (push-stream's
    ``$arg_id``).  ``timeout`` bounds one ``publish`` call (a batch);
    ``connections`` keep-alive connections are opened on first use and
    re-opened after a failure.  Outcomes follow ``Publisher``: per message,
    None or a PublishError naming the channels that failed.

    ``group_channels``: one POST per message for all its channels
    (``/pub?id=forum:1/thread:2/...``), which push-stream and fastpush
    accept; a quarter of the requests for a DISQUS post.  Off by default:
    per-channel POSTs work with any publisher, and keep the order of each
    channel's messages (a grouped message keeps the order of its first
    channel only).  A channel with a '/' in its name is always sent alone.
    """

    def __init__(
        self,
        url: str,
        *,
        connections: int = 4,
        pipelining: int = 1,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        channel_param: str = "id",
        headers: dict[str, str] | None = None,
        group_channels: bool = False,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// publish URLs are supported: {url!r}")
        if not parts.hostname:
            raise ValueError(f"publish URL has no host: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.connections = max(1, int(connections))
        self.pipelining = max(1, int(pipelining))
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.group_channels = bool(group_channels)
        path = parts.path or "/"
        sep = "&" if parts.query else "?"
        query = f"{parts.query}{sep}" if parts.query else ""
        self._prefix = f"POST {path}?{query}{channel_param}=".encode()
        host = parts.netloc.rsplit("@", 1)[-1]
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._after = (
            f" HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fastpush-glue\r\n{extra}"
        ).encode()
        self._quoted: dict[str, bytes] = {}
        self._pool: list[_Connection] = []
        self._opening: asyncio.Task[None] | None = None
        self._closed = False

    # Lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._closed = False
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await self._fill()

    async def aclose(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(BaseException):
                await self._opening
        pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()
        # Give the transports a turn to close, so no socket is left to the GC.
        if pool:
            await asyncio.sleep(0)

    def _forget(self, conn: _Connection) -> None:
        with contextlib.suppress(ValueError):
            self._pool.remove(conn)

    async def _open_one(self) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(self), self.host, self.port),
            self.connect_timeout,
        )
        if self._closed:
            conn.close()
            return
        self._pool.append(conn)

    async def _fill(self) -> None:
        """Open connections up to the pool size (concurrently; one caller opens,
        the others wait for it).  Raises if none could be opened."""
        if self._opening is None or self._opening.done():
            missing = self.connections - len(self._pool)
            if missing <= 0:
                return

            async def open_all() -> None:
                results = await asyncio.gather(
                    *(self._open_one() for _ in range(missing)), return_exceptions=True
                )
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors and not self._pool:
                    raise errors[0]

            self._opening = asyncio.ensure_future(open_all())
        await asyncio.shield(self._opening)

    # Publishing --------------------------------------------------------------

    def _channel(self, channel: str) -> bytes:
        quoted = self._quoted.get(channel)
        if quoted is None:
            if len(self._quoted) > 65536:
                self._quoted.clear()
            # $arg_id is not URL-decoded by nginx: keep every character a
            # query may carry literally (':' included) and escape the rest.
            quoted = urllib.parse.quote(channel, safe=":@!$'()*+,;=-._~").encode()
            self._quoted[channel] = quoted
        return quoted

    @staticmethod
    def _headers(msg: Message) -> bytes:
        head = b"Content-Length: %d\r\n" % len(msg.body)
        for name, value in (("Event-Id", msg.event_id), ("Event-Type", msg.event_type)):
            if value is not None:
                if "\r" in value or "\n" in value:
                    raise ValueError(f"{name} cannot contain a line break")
                head += f"{name}: {value}\r\n".encode()
        return head + b"\r\n"

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        # One entry per request; ``owner[i]`` is its message's index and
        # ``channels[i]`` the channels it publishes to (one, unless grouped).
        owner: list[int] = []
        channels: list[tuple[str, ...]] = []
        datas: list[bytes] = []
        bad: dict[int, str] = {}
        prefix, after, quote = self._prefix, self._after, self._channel
        group = self.group_channels
        for m_index, msg in enumerate(messages):
            try:
                tail = self._headers(msg) + msg.body
            except ValueError as exc:
                bad[m_index] = str(exc)
                continue
            chans = msg.channels
            if group and len(chans) > 1 and not any("/" in c for c in chans):
                owner.append(m_index)
                channels.append(chans)
                ids = b"/".join([quote(c) for c in chans])
                datas.append(prefix + ids + after + tail)
                continue
            for channel in chans:
                owner.append(m_index)
                channels.append((channel,))
                datas.append(prefix + quote(channel) + after + tail)
        status = [_UNSENT] * len(datas)
        reasons = [""] * len(datas)
        retryable = [True] * len(datas)
        todo = list(range(len(datas)))
        idle_rounds = 0
        # Re-send what was not sent (a connection closed under it) as long as
        # each round gets something through, within the deadline.
        while todo and idle_rounds < 3:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._fill(), left)
            except (OSError, asyncio.TimeoutError) as exc:
                for i in todo:
                    status[i], reasons[i] = 503, f"cannot connect to {self.url}: {exc}"
                todo = []
                break
            again = await self._send(
                todo, datas, channels, status, reasons, retryable, deadline
            )
            idle_rounds = idle_rounds + 1 if len(again) == len(todo) else 0
            todo = again
        for i in todo:  # still unsent after the retries or the deadline
            status[i], reasons[i] = 504, "publish timed out"
        return self._outcomes(
            messages, owner, channels, status, reasons, retryable, bad
        )

    async def _send(
        self,
        todo: list[int],
        datas: list[bytes],
        channels: list[tuple[str, ...]],
        status: list[int],
        reasons: list[str],
        retryable: list[bool],
        deadline: float,
    ) -> list[int]:
        """Send ``todo`` over the pool once; returns those to send again."""
        loop = asyncio.get_running_loop()
        batch = _Batch(len(todo), loop.create_future())
        reqs = [_Request(batch, i, datas[i]) for i in todo]
        pool = [c for c in self._pool if c.alive]
        if not pool:
            return todo
        n = len(pool)
        if n == 1:
            pool[0].submit(reqs)
        else:
            # One channel, one connection: each connection sends in order, so
            # the messages of a channel arrive in the order they were given.
            parts: list[list[_Request]] = [[] for _ in range(n)]
            for req in reqs:
                parts[hash(channels[req.index][0]) % n].append(req)
            for conn, part in zip(pool, parts):
                if part:
                    conn.submit(part)
        if batch.left:
            try:
                await asyncio.wait_for(
                    asyncio.shield(batch.future), deadline - loop.time()
                )
            except asyncio.TimeoutError:
                batch.closed = True
                # A server that stopped answering holds the connection: drop
                # every connection still owing us an answer.
                for conn in list(self._pool):
                    if conn.owns(batch):
                        self._forget(conn)
                        conn.abort()
        again: list[int] = []
        for req in reqs:
            i = req.index
            if req.status == _UNSENT or (batch.closed and req.status == 0):
                again.append(i)
            else:
                status[i], reasons[i], retryable[i] = (
                    req.status,
                    req.reason,
                    req.retryable,
                )
        if batch.closed:
            for i in again:
                status[i], reasons[i] = 504, "publish timed out"
            return []
        return again

    @staticmethod
    def _outcomes(
        messages: Sequence[Message],
        owner: list[int],
        channels: list[tuple[str, ...]],
        status: list[int],
        reasons: list[str],
        retryable: list[bool],
        bad: dict[int, str],
    ) -> PublishOutcome:
        out: PublishOutcome = [None] * len(messages)
        failed: dict[int, list[int]] = {}
        for i, st in enumerate(status):
            if not 200 <= st < 300:
                failed.setdefault(owner[i], []).append(i)
        for m_index, idx in failed.items():
            out[m_index] = PublishError(
                reasons[idx[0]],
                [c for i in idx for c in channels[i]],
                retryable=all(retryable[i] for i in idx),
            )
        for m_index, reason in bad.items():
            out[m_index] = PublishError(reason, messages[m_index].channels, False)
        return out
