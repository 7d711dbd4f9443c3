"""Helpers for testing against a real fastpush server over real sockets.

Used by the project's own tests and handy for applications that want to
run fastpush in theirs: start the server as a subprocess on a free
loopback port, talk raw HTTP and WebSocket to it, stop it.

The last section holds what the push-stream compatibility tests share:
requests laid out as the nginx captures sent them and the answers
push-stream gives to them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = [
    "free_port",
    "ServerProcess",
    "RawClient",
    "build_request",
    "ws_frame",
    "dechunk",
    "strip_volatile",
    # push-stream compatibility helpers
    "NO_CACHE",
    "EPOCH",
    "TPL",
    "push_stream_config",
    "sub_location",
    "pub_location",
    "stats_location",
    "req",
    "read_response",
    "exchange",
    "read_bytes",
    "read_chunks",
    "subscribe",
    "publish",
    "delete",
    "wait_subscribers",
    "stored",
    "primer",
    "ok",
    "empty",
    "explain",
    "info",
    "stream_head",
    "polled_head",
    "chunk",
    "chunks",
    "tpl",
    "http_dates",
    "iso_seconds",
    "message_times",
    "tags",
]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`fastpush serve` in a subprocess, on a free port unless given one."""

    def __init__(
        self,
        config: str | None = None,
        *,
        port: int | None = None,
        workers: int = 1,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.config = config
        self.workers = workers
        self.extra_args = list(extra_args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="fastpush-test-")
        self.log_path = os.path.join(self.tmp.name, "server.log")

    def start(self, timeout: float = 15.0) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "fastpush",
            "serve",
            "--listen",
            f"{self.host}:{self.port}",
        ]
        if self.config is not None:
            path = os.path.join(self.tmp.name, "fastpush.toml")
            with open(path, "w") as f:
                f.write(self.config)
            args += ["--config", path]
        if self.workers != 1:
            args += ["--workers", str(self.workers)]
        args += self.extra_args
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "wb")
        # cwd is a temp dir so `-m fastpush` imports the installed package,
        # not a source checkout without the compiled core.
        self.proc = subprocess.Popen(
            args, cwd=self.tmp.name, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fastpush exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fastpush did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def close(self) -> None:
        self.stop()
        self.tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.host, self.port, timeout)

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection; returns (status, headers, body)."""
        with self.client() as c:
            return c.request(method, target, body, headers)


class RawClient:
    """A blocking socket that speaks just enough HTTP/1.1 and WebSocket."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; got {self.buf!r}")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_all(self) -> bytes:
        """Everything until the server closes (or the timeout)."""
        try:
            while self._fill():
                pass
        except socket.timeout:
            pass
        out, self.buf = self.buf, b""
        return out

    def _fill_before(self, deadline: float, n: int | None = None) -> None:
        """Fill buf until the monotonic deadline, the close, or (when n is
        given) n bytes; leaves the socket timeout at what was left."""
        while n is None or len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                if not self._fill():
                    break
            except socket.timeout:
                break

    def read_for(self, seconds: float) -> bytes:
        """Whatever arrives within seconds."""
        old = self.sock.gettimeout()
        try:
            self._fill_before(time.monotonic() + seconds)
        finally:
            self.sock.settimeout(old)
        out, self.buf = self.buf, b""
        return out

    def closed_by_peer(self, wait: float = 2.0) -> bool:
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
            self.buf += data
            return data == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(old)

    def read_head(self) -> tuple[int, dict[str, str], bytes]:
        raw = self.read_until(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return status, headers, raw

    def read_chunk(self) -> bytes:
        size_line = self.read_until(b"\r\n")
        n = int(size_line.strip().split(b";")[0], 16)
        data = self.read_exactly(n + 2)[:-2]
        return data

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        self.send(build_request(method, target, body, headers))
        status, hdrs, _ = self.read_head()
        if "content-length" in hdrs:
            return status, hdrs, self.read_exactly(int(hdrs["content-length"]))
        if hdrs.get("transfer-encoding") == "chunked":
            out = b""
            while True:
                c = self.read_chunk()
                if not c:
                    return status, hdrs, out
                out += c
        return status, hdrs, b""

    # -- WebSocket -----------------------------------------------------------

    def websocket(
        self, target: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str]]:
        key = base64.b64encode(os.urandom(16)).decode()
        h = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        h.update(headers or {})
        self.send(build_request("GET", target, b"", h))
        status, hdrs, _ = self.read_head()
        return status, hdrs

    def ws_send(
        self, payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = True
    ) -> None:
        self.send(ws_frame(payload, opcode, fin, mask))

    def ws_recv(self) -> tuple[int, bytes]:
        """One frame from the server: (opcode, payload)."""
        b0, b1 = self.read_exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self.read_exactly(2), "big")
        elif n == 127:
            n = int.from_bytes(self.read_exactly(8), "big")
        return b0 & 0x0F, self.read_exactly(n)


def build_request(
    method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    h = {"Host": "localhost"}
    h.update(headers or {})
    if body or method in ("POST", "PUT"):
        h.setdefault("Content-Length", str(len(body)))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in h.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


def ws_frame(
    payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = True
) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def dechunk(body: bytes) -> list[bytes]:
    """Split a chunked body into its chunks (the final empty one excluded)."""
    out = []
    while body:
        line, _, rest = body.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            break
        out.append(rest[:n])
        body = rest[n + 2 :]
    return out


_VOLATILE = re.compile(rb"^(Date|Server): [^\r]*\r\n", re.MULTILINE)


def strip_volatile(raw: bytes) -> bytes:
    """Drop the Date and Server headers, the only bytes that differ from
    push-stream's answers for the same request."""
    return _VOLATILE.sub(b"", raw)


# -- push-stream compatibility helpers -------------------------------------------
#
# Shared by the tests that compare fastpush byte for byte with nginx
# push-stream 0.6 (tests/test_compat_*.py): requests laid out as the captures
# sent them, the answers push-stream gives, and the rules for the values that
# vary per run (message times and tags).

# The headers push-stream puts on every answer that must not be cached.
NO_CACHE = (
    b"Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\n"
    b"Cache-Control: no-cache, no-store, must-revalidate\r\n"
)
# The ~time~ of the messages push-stream makes itself (pings, deletes, timeouts).
EPOCH = b"Thu, 01 Jan 1970 00:00:00 GMT"
# A message template with every placeholder; tpl() renders a message through it.
TPL = (
    '{"id":~id~,"channel":"~channel~","text":"~text~","tag":~tag~,"time":"~time~",'
    '"eventid":"~event-id~","eventtype":"~event-type~","size":~size~}'
)


# configuration


def _toml_value(value: object) -> str:
    """value as a TOML literal: a boolean, an integer or a basic string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\r", "\\r").replace("\n", "\\n") + '"'


def push_stream_config(
    settings: dict[str, object], locations: Sequence[dict[str, object]]
) -> str:
    """The TOML of a configuration: a [settings] table and [[locations]]."""
    out = ["[settings]"] + [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
    for loc in locations:
        out += ["", "[[locations]]"]
        out += [f"{k} = {_toml_value(v)}" for k, v in loc.items()]
    return "\n".join(out) + "\n"


def sub_location(name: str, mode: str, **settings: object) -> dict[str, object]:
    """A push-stream `location ~ ^/name/(.*)$ { push_stream_subscriber mode; }`."""
    return {
        "regex": f"^/{name}/(.*)$",
        "role": "subscriber",
        "mode": mode,
        "channels_path": "$1",
        **settings,
    }


def stats_location(path: str = "/channels-stats") -> dict[str, object]:
    """A push-stream channels statistics location at path, channels in `id`."""
    return {"path": path, "role": "channels_statistics", "channels_path": "$arg_id"}


def pub_location(path: str, **settings: object) -> dict[str, object]:
    """A push-stream publisher at path, the channels in the `id` argument."""
    return {"path": path, "role": "publisher", "channels_path": "$arg_id", **settings}


# requests and reading


def req(
    method: str, target: str, body: bytes | None = None, headers: str = ""
) -> bytes:
    """Request bytes laid out as the captures sent them: Host first, then the
    raw header lines in headers, then Content-Length when there is a body."""
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}"
    if body is None:
        return head.encode() + b"\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_response(c: RawClient) -> bytes:
    """One complete response, exactly as framed on the wire."""
    status, headers, raw = c.read_head()
    if status == 304 or 100 <= status < 200:
        return raw
    if "content-length" in headers:
        return raw + c.read_exactly(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        while True:
            line = c.read_until(b"\r\n")
            size = int(line.split(b";")[0], 16)
            raw += line + c.read_exactly(size + 2)
            if size == 0:
                return raw
    return raw + c.read_all()


def exchange(srv: ServerProcess, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw on a new connection; the first response without Date/Server."""
    with srv.client(timeout=timeout) as c:
        c.send(raw)
        return strip_volatile(read_response(c))


def read_bytes(c: RawClient, n: int, timeout: float = 5.0) -> bytes:
    """n bytes, or whatever arrived before timeout or the close."""
    c._fill_before(time.monotonic() + timeout, n)
    out, c.buf = c.buf[:n], c.buf[n:]
    return out


def read_chunks(c: RawClient, n: int) -> bytes:
    """n chunks, with their framing."""
    raw = b""
    for _ in range(n):
        line = c.read_until(b"\r\n")
        raw += line + c.read_exactly(int(line, 16) + 2)
    return raw


def subscribe(srv: ServerProcess, raw: bytes) -> tuple[RawClient, bytes]:
    """Open a streaming subscriber with the request raw; returns the client and
    its response head without Date/Server."""
    c = srv.client(timeout=5.0)
    c.send(raw)
    return c, strip_volatile(c.read_head()[2])


def publish(
    srv: ServerProcess,
    ch: str,
    body: bytes,
    headers: str = "",
    path: str = "/pub-store",
) -> None:
    """POST body to channel ch of the publisher at path; it must answer 200."""
    answer = exchange(srv, req("POST", f"{path}?id={ch}", body, headers))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer


def delete(srv: ServerProcess, ch: str, body: bytes | None = None) -> None:
    """DELETE channel ch through the admin publisher /pub-admin; it must answer
    200.  A body replaces the "Channel deleted" text."""
    answer = exchange(srv, req("DELETE", f"/pub-admin?id={ch}", body))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer


def wait_subscribers(
    srv: ServerProcess, ch: str, count: int, timeout: float = 5.0
) -> None:
    """Wait until the statistics location /channels-stats counts count
    subscribers on ch (a long-poll has arrived, a closed one has gone)."""
    deadline = time.monotonic() + timeout
    while b'"subscribers": %d}' % count not in exchange(
        srv, req("GET", f"/channels-stats?id={ch}")
    ):
        assert time.monotonic() < deadline, f"{ch} never had {count} subscribers"
        time.sleep(0.01)


def stored(srv: ServerProcess, ch: str, n: int) -> list[tuple[bytes, int]]:
    """(time, tag) of the last n messages of ch, through a polling location
    /poll-tpl with the TPL template."""
    raw = exchange(srv, req("GET", f"/poll-tpl/{ch}.b{n}"))
    found = [
        (t, int(tag)) for tag, t in re.findall(rb'"tag":(\d+),"time":"([^"]*)"', raw)
    ]
    assert len(found) == n, raw
    return found


def primer(srv: ServerProcess, ch: str) -> tuple[bytes, int]:
    """Publish one message and read back its (time, tag): where the server-wide
    tag sequence stands before the messages a test publishes next."""
    t0 = time.time()
    publish(srv, ch, b"primer")
    ((when, tag),) = stored(srv, ch, 1)
    assert when in http_dates(t0, time.time()), when
    return when, tag


# answers


def ok(
    body: bytes,
    content_type: bytes = b"application/json",
    connection: bytes = b"keep-alive",
    extra: bytes = b"",
) -> bytes:
    """A 200 with body and Content-Length (channel information, statistics);
    extra are the header lines push-stream adds after NO_CACHE."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: %d\r\nConnection: "
        % len(body)
        + connection
        + b"\r\n"
        + NO_CACHE
        + extra
        + b"\r\n"
        + body
    )


def empty(
    status: bytes, extra: bytes = b"", connection: bytes = b"keep-alive"
) -> bytes:
    """push-stream's header-only answers (errors, 404, OPTIONS, no-info publish)."""
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Length: 0\r\nConnection: "
        + connection
        + b"\r\n"
        + NO_CACHE
        + extra
        + b"\r\n"
    )


def explain(text: str) -> bytes:
    """The header line push-stream explains an error with."""
    return b"X-Nginx-PushStream-Explain: " + text.encode() + b"\r\n"


def info(channel: str, published: int, stored: int, subscribers: int = 0) -> bytes:
    """The JSON information of one channel."""
    return (
        b'{"channel": "%s", "published_messages": %d, "stored_messages": %d, '
        b'"subscribers": %d}\r\n' % (channel.encode(), published, stored, subscribers)
    )


def stream_head(content_type: bytes = b"text/plain", cors: bytes = b"") -> bytes:
    """The head of a streaming answer; cors are the CORS header lines."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        + cors
        + NO_CACHE
        + b"\r\n"
    )


def polled_head(
    last_modified: bytes,
    tag: int,
    content_type: bytes = b"text/plain",
    cors: bytes = b"",
) -> bytes:
    """The head of a 200 (long-)polling answer, with its validators."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
        b"Last-Modified: " + last_modified + b"\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        + cors
        + NO_CACHE
        + b"Etag: W/%d\r\n\r\n" % tag
    )


def chunk(data: bytes) -> bytes:
    """data as one chunk of a chunked body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def chunks(*pieces: bytes) -> bytes:
    """Each piece as one chunk."""
    return b"".join(chunk(p) for p in pieces)


def tpl(
    id: int,
    channel: str,
    text: bytes,
    tag: int,
    when: bytes,
    event_id: bytes = b"",
    event_type: bytes = b"",
) -> bytes:
    """A message rendered through TPL."""
    return (
        b'{"id":%d,"channel":"%s","text":"%s","tag":%d,"time":"%s","eventid":"%s",'
        b'"eventtype":"%s","size":%d}'
        % (id, channel.encode(), text, tag, when, event_id, event_type, len(text))
    )


# times and tags


def http_dates(t0: float, t1: float) -> set[bytes]:
    """The RFC 1123 dates of every second in [t0, t1]."""
    return {
        time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(s)).encode()
        for s in range(int(t0), int(t1) + 1)
    }


def iso_seconds(t0: float, t1: float) -> set[bytes]:
    """The push-stream ISO 8601 UTC times of every second in [t0, t1]."""
    return {
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)).encode()
        for s in range(int(t0), int(t1) + 1)
    }


def message_times(
    raw: bytes, t0: float, t1: float, n: int | None = None
) -> list[bytes]:
    """The ~time~ of each message in raw rendered through TPL, checked against
    the clock (and to be n of them, when n is given)."""
    times = re.findall(rb'"time":"([^"]*)"', raw)
    assert n is None or len(times) == n, raw
    assert set(times) <= http_dates(t0, t1), raw
    return times


def tags(times: list[bytes], start: tuple[bytes, int] = (b"", 0)) -> list[int]:
    """push-stream's ~tag~ of messages published at these times after the
    (time, tag) start: 1 for the first message of a second on the whole server,
    +1 for each further one in the same second."""
    out, (last, tag) = [], start
    for when in times:
        tag = tag + 1 if when == last else 1
        last = when
        out.append(tag)
    return out


# in-process workers


class InProcessWorker:
    """One worker's App on its own uvloop loop in this process, listening
    through the front door on a free loopback port ({port} in config).

    sequenced: as one of several workers, its publishes going through a
    Sequencer on the same loop over a socketpair (the real bus, as
    `fastpush serve --workers N` has it, with this one worker on it).
    """

    def __init__(self, config: str, sequenced: bool = False) -> None:
        import uvloop

        from fastpush.config import parse_config
        from fastpush.server import App, make_sockets

        self.port = free_port()
        self.loop = uvloop.new_event_loop()
        self.errors: list[dict[str, object]] = []
        self.loop.set_exception_handler(lambda _l, ctx: self.errors.append(ctx))
        self.config = parse_config(config.replace("{port}", str(self.port)))
        self.app = App(self.config, self.loop)
        if sequenced:
            self.run(self._join_sequencer())
        self.app.start()
        self.socks = make_sockets(self.config)
        for s in self.socks:
            self.app.door.listen(s.fileno())
        self.clients: list[asyncio.StreamWriter] = []

    async def _join_sequencer(self) -> None:
        # What fastpush.server.serve does with its bus_fd, and the
        # supervisor with the other end.
        from fastpush.sequencer import Sequencer
        from fastpush.worker import WorkerBus

        self.sequencer = Sequencer(self.config.settings, self.loop)
        ours, theirs = socket.socketpair()
        await self.sequencer.add_worker(0, theirs)
        _, link = await self.loop.connect_accepted_socket(
            lambda: WorkerBus(self.app, lambda: None), ours
        )
        self.app.bus = link
        self.app.registry.on_count = link.count
        self.app.registry.on_event = link.event
        await link.ready
        link.hello()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A client connection, closed with the worker."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.clients.append(writer)
        return reader, writer

    async def talk(self, *parts: bytes, quiet: float = 0.15) -> bytes:
        """Send the parts, a moment apart, on a new connection; what came
        back until quiet."""
        reader, writer = await self.connect()
        for i, data in enumerate(parts):
            if i:
                await writer.drain()
                await asyncio.sleep(0.05)
            writer.write(data)
        out = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), quiet)
            except (asyncio.TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        for w in self.clients:
            w.close()
        self.app.door.close()
        for s in self.socks:
            s.close()
        self.app.drain()
        self.run(asyncio.sleep(0.05))
        self.app.close()
        if self.app.bus is not None and self.app.bus.transport is not None:
            self.app.bus.transport.close()
            self.run(asyncio.sleep(0))
        self.loop.close()


def undated(answer: bytes) -> bytes:
    """answer without its Date lines, to compare answers made apart."""
    return re.sub(rb"Date: [^\r]*\r\n", b"", answer)
