"""Subscribers that stop reading, and subscribers that go away.

A subscriber that does not read fills its kernel buffers, then the core's
output buffer; past subscriber_output_buffer_limit the core cuts it. What
must hold meanwhile: readers on the same and other channels get every
message in order, publishers keep getting 200, and the server's memory
does not grow with what the stalled subscribers did not take.

Kernel socket buffers are not configurable from the server's config and
absorb a few MB per connection on loopback, so the tests publish until the
cut is seen (a bounded loop), never for a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from fastpush.testing import RawClient, ServerProcess, build_request, ws_frame

LIMIT_K = 64
CONFIG = f"""
[settings]
subscriber_output_buffer_limit = "{LIMIT_K}k"
store_messages = false
"""
MESSAGE_SIZE = 16384
# Upper bound on what one publishing loop sends before giving up on a cut.
MAX_PUBLISHED = 48 << 20
END = b"END"


def channel() -> str:
    return "s" + uuid.uuid4().hex[:10]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def message(ch: str, seq: int) -> bytes:
    head = b"%s:%06d:" % (ch.encode(), seq)
    return head + b"." * (MESSAGE_SIZE - len(head))


def small_client(server: ServerProcess) -> RawClient:
    """A client whose socket has a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10.0)
    sock.connect((server.host, server.port))
    c = RawClient.__new__(RawClient)
    c.sock, c.buf = sock, b""
    return c


def stalled_subscriber(server: ServerProcess, path: str) -> RawClient:
    """A subscriber with a tiny receive buffer that reads its response head
    and then nothing."""
    c = small_client(server)
    if path.startswith("/ws/"):
        assert c.websocket(path)[0] == 101
    else:
        c.send(build_request("GET", path))
        assert c.read_head()[0] == 200
    return c


def drain(c: RawClient, timeout: float = 20.0) -> tuple[bytes, bool]:
    """Read until EOF: (bytes, whether the server closed)."""
    data = bytearray(c.buf)
    c.buf = b""
    deadline = time.monotonic() + timeout
    c.sock.settimeout(timeout)
    try:
        while time.monotonic() < deadline:
            chunk = c.sock.recv(1 << 20)
            if not chunk:
                return bytes(data), True
            data += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        return bytes(data), True
    return bytes(data), False


def complete_chunks(body: bytes) -> list[bytes]:
    """The whole chunks at the start of a chunked stream cut anywhere."""
    out = []
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return out
        n = int(body[pos:eol], 16)
        end = eol + 2 + n
        if n == 0 or end + 2 > len(body):
            return out
        out.append(body[eol + 2 : end])
        pos = end + 2


class Reader(threading.Thread):
    """A streaming subscriber that reads every chunk until END."""

    def __init__(self, server: ServerProcess, ch: str) -> None:
        super().__init__(daemon=True)
        self.client = server.client(timeout=30.0)
        self.client.send(build_request("GET", f"/sub/{ch}"))
        assert self.client.read_head()[0] == 200
        self.messages: list[bytes] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            while True:
                m = self.client.read_chunk()
                if m == END:
                    return
                self.messages.append(m)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> list[bytes]:
        self.join(30.0)
        assert not self.is_alive(), "reader did not get END"
        assert self.error is None, self.error
        self.client.close()
        return self.messages


class Publisher:
    """One keep-alive publishing connection; every answer must be 200."""

    def __init__(self, server: ServerProcess) -> None:
        self.c = server.client(timeout=30.0)
        self.sent = 0

    def post(self, ch: str, body: bytes) -> dict[str, int]:
        status, _, answer = self.c.request("POST", f"/pub?id={ch}", body)
        assert status == 200
        self.sent += len(body)
        return json.loads(answer)

    def info(self, ch: str) -> dict[str, int]:
        status, _, answer = self.c.request("GET", f"/pub?id={ch}")
        assert status == 200
        return json.loads(answer)


@pytest.fixture
def srv(make_server) -> ServerProcess:
    return make_server(CONFIG)


@pytest.fixture
def closing() -> Iterator[contextlib.ExitStack]:
    """Closes the clients a test registers, however it ends."""
    with contextlib.ExitStack() as stack:
        yield stack


def assert_in_order(messages: list[bytes], ch: str, count: int) -> None:
    assert len(messages) == count
    for seq, m in enumerate(messages):
        assert m == message(ch, seq), (seq, m[:40])


def test_stalled_subscriber_is_cut_while_readers_get_everything(srv, closing) -> None:
    a, b = channel(), channel()
    stalled = closing.enter_context(stalled_subscriber(srv, f"/sub/{a}"))
    reader_a, reader_b = Reader(srv, a), Reader(srv, b)
    closing.enter_context(reader_a.client)
    closing.enter_context(reader_b.client)
    pub = Publisher(srv)
    closing.enter_context(pub.c)
    seq = 0
    # Publish until the stalled subscriber is gone (only reader_a left)...
    while pub.post(a, message(a, seq))["subscribers"] != 1:
        pub.post(b, message(b, seq))
        seq += 1
        assert pub.sent < MAX_PUBLISHED, "stalled subscriber was never cut"
    pub.post(b, message(b, seq))
    seq += 1
    # ...and then some more, which only the readers get.
    for _ in range(20):
        pub.post(a, message(a, seq))
        pub.post(b, message(b, seq))
        seq += 1
    assert pub.info(a)["subscribers"] == 1
    pub.post(a, END)
    pub.post(b, END)

    assert_in_order(reader_a.finish(), a, seq)
    assert_in_order(reader_b.finish(), b, seq)
    data, closed = drain(stalled)
    assert closed, "the server did not close the stalled subscriber"
    got = complete_chunks(data)
    assert 0 < len(got) < seq
    assert got == [message(a, i) for i in range(len(got))]


def test_stalled_subscriber_of_several_channels_is_removed_from_all(
    srv, closing
) -> None:
    a, b = channel(), channel()
    stalled = closing.enter_context(stalled_subscriber(srv, f"/sub/{a}/{b}"))
    pub = Publisher(srv)
    closing.enter_context(pub.c)
    assert pub.info(a)["subscribers"] == 1 and pub.info(b)["subscribers"] == 1
    seq = 0
    while pub.post(a, message(a, seq))["subscribers"] != 0:
        seq += 1
        assert pub.sent < MAX_PUBLISHED, "stalled subscriber was never cut"
    assert pub.info(b)["subscribers"] == 0
    # Publishing to the other channel afterwards is fine.
    assert pub.post(b, b"after")["subscribers"] == 0
    _, closed = drain(stalled)
    assert closed


def test_twenty_stalled_subscribers_do_not_stop_other_channels_or_grow_memory(
    srv, closing
) -> None:
    a, b = channel(), channel()
    stalled = [
        closing.enter_context(stalled_subscriber(srv, f"/sub/{a}")) for _ in range(20)
    ]
    reader = Reader(srv, b)
    closing.enter_context(reader.client)
    pub = Publisher(srv)
    closing.enter_context(pub.c)
    # Warm up the allocator with a full round of the same work.
    pub.post(a, message(a, 0))
    pub.post(b, message(b, 0))
    assert srv.proc is not None
    before = rss(srv.proc.pid)

    seq = 1
    while pub.post(a, message(a, seq))["subscribers"] != 0:
        pub.post(b, message(b, seq))
        seq += 1
        assert pub.sent < MAX_PUBLISHED, "stalled subscribers were never cut"
    pub.post(b, message(b, seq))
    # As much again once they are all cut: none of it may be kept.
    published_to_a = pub.sent // 2
    for _ in range(seq):
        seq += 1
        pub.post(a, message(a, seq))
        pub.post(b, message(b, seq))
    pub.post(b, END)
    after = rss(srv.proc.pid)

    assert_in_order(reader.finish(), b, seq + 1)
    for c in stalled:
        _, closed = drain(c)
        assert closed
        c.close()
    # Keeping what the stalled subscribers did not read would take about
    # 20 x published_to_a; the bound is their limit plus allocator slack.
    bound = 20 * LIMIT_K * 1024 + (16 << 20)
    assert published_to_a * 20 > 2 * bound  # the check can tell the difference
    assert after - before < bound, (after - before, bound)


@pytest.mark.parametrize("mode", ["sub", "ev", "ws"])
def test_stalled_subscriber_of_each_mode_is_cut(srv, closing, mode: str) -> None:
    ch = channel()
    stalled = closing.enter_context(stalled_subscriber(srv, f"/{mode}/{ch}"))
    pub = Publisher(srv)
    closing.enter_context(pub.c)
    seq = 0
    while pub.post(ch, message(ch, seq))["subscribers"] != 0:
        seq += 1
        assert pub.sent < MAX_PUBLISHED, "stalled subscriber was never cut"
    _, closed = drain(stalled)
    assert closed


def test_ping_flood_from_a_client_that_does_not_read_is_cut(srv, closing) -> None:
    # Every ping queues a pong the client never reads: the pongs are output
    # like any other and count against the same limit.
    ch = channel()
    c = closing.enter_context(small_client(srv))
    assert c.websocket(f"/ws/{ch}")[0] == 101
    pub = Publisher(srv)
    closing.enter_context(pub.c)
    burst = ws_frame(b"p" * 125, 9) * 256
    sent = 0
    try:
        while pub.info(ch)["subscribers"] != 0:
            c.send(burst)
            sent += len(burst)
            assert sent < MAX_PUBLISHED, "ping flood was never cut"
    except (ConnectionResetError, BrokenPipeError):
        pass  # cut while we were still sending
    deadline = time.monotonic() + 10
    while pub.info(ch)["subscribers"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # The server is fine: a new subscriber of the channel gets messages.
    with srv.client() as again:
        again.send(build_request("GET", f"/sub/{ch}"))
        assert again.read_head()[0] == 200
        pub.post(ch, b"after the flood")
        assert again.read_chunk() == b"after the flood"


@pytest.mark.parametrize("path", ["/sub/{}", "/ev/{}", "/ws/{}", "/lp/{}"])
def test_disconnected_subscriber_is_removed_from_channel(server, closing, path) -> None:
    ch = channel()
    c = closing.enter_context(server.client())
    target = path.format(ch)
    if path.startswith("/ws"):
        assert c.websocket(target)[0] == 101
    else:
        c.send(build_request("GET", target))
        if not path.startswith("/lp"):
            assert c.read_head()[0] == 200
    pub = Publisher(server)
    closing.enter_context(pub.c)
    deadline = time.monotonic() + 10
    while pub.info(ch)["subscribers"] != 1:  # long-polling: until it waits
        assert time.monotonic() < deadline
        time.sleep(0.01)
    c.close()
    while pub.info(ch)["subscribers"] != 0:
        assert time.monotonic() < deadline, "disconnected subscriber still counted"
        time.sleep(0.01)
    # The channel still works for a new subscriber.
    with server.client() as again:
        again.send(build_request("GET", f"/sub/{ch}"))
        assert again.read_head()[0] == 200
        pub.post(ch, b"still here")
        assert again.read_chunk() == b"still here"


def test_many_subscribers_disconnecting_at_once_are_all_removed(
    server, closing
) -> None:
    ch = channel()
    clients = []
    for _ in range(50):
        c = closing.enter_context(server.client())
        c.send(build_request("GET", f"/sub/{ch}"))
        assert c.read_head()[0] == 200
        clients.append(c)
    pub = Publisher(server)
    closing.enter_context(pub.c)
    assert pub.info(ch)["subscribers"] == 50
    for c in clients[::2]:
        c.close()
    deadline = time.monotonic() + 10
    while pub.info(ch)["subscribers"] != 25:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pub.post(ch, b"to the rest")
    for c in clients[1::2]:
        assert c.read_chunk() == b"to the rest"
        c.close()
    while pub.info(ch)["subscribers"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
