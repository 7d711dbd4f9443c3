"""Malformed, oversized, refused and abandoned requests.

Each test checks the answer a bad request gets and, where a client can
hurt the server (vanishing mid-request, random bytes), that the server
goes on serving: a publish on a fresh connection still reaches a live
subscriber.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpush.testing import RawClient, ServerProcess, build_request, ws_frame

# Hypothesis' failure report touches mypy_extensions.TypedDict, whose
# DeprecationWarning would turn a plain failure into a pytest INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

CONFIG = """
[settings]
max_channel_id_length = 10
client_max_body_size = "1k"

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"

[[locations]]
regex = "^/sub/(.*)"
role = "subscriber"
channels_path = "$1"

[[locations]]
regex = "^/ws/(.*)"
role = "subscriber"
mode = "websocket"
channels_path = "$1"
"""


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    with ServerProcess(CONFIG) as server:
        yield server


def channel() -> str:
    return "c" + uuid.uuid4().hex[:8]


class SourceClient(RawClient):
    """A RawClient whose socket is bound to a chosen local address."""

    def __init__(self, server: ServerProcess, source: str) -> None:
        self.sock = socket.create_connection(
            (server.host, server.port), timeout=5.0, source_address=(source, 0)
        )
        self.buf = b""


def answer(server: ServerProcess, raw: bytes) -> tuple[int, dict[str, str], bool]:
    """Send raw bytes on a fresh connection: (status, headers, closed after)."""
    with server.client() as c:
        c.send(raw)
        status, headers, _ = c.read_head()
        return status, headers, c.closed_by_peer(5.0)


def answer_keep(server: ServerProcess, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; the answer's head."""
    with server.client() as c:
        c.send(raw)
        return c.read_head()


def read_until_closed(c: RawClient, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes; fails if it does not."""
    out = b""
    deadline = time.monotonic() + timeout
    c.sock.settimeout(timeout)
    try:
        while True:
            assert time.monotonic() < deadline, f"server did not close; got {out!r}"
            data = c.sock.recv(65536)
            if not data:
                return c.buf + out
            out += data
    except ConnectionResetError:
        return c.buf + out
    except socket.timeout:
        raise AssertionError(f"server did not close; got {out!r}") from None


class Live:
    """A streaming subscriber kept open across a test."""

    def __init__(self, server: ServerProcess, ch: str) -> None:
        self.server = server
        self.ch = ch
        self.c = server.client()
        self.c.send(build_request("GET", f"/sub/{ch}"))
        status, _, _ = self.c.read_head()
        assert status == 200

    def check_round_trip(self, text: bytes) -> None:
        """Publish on a new connection; this subscriber must get it."""
        assert self.server.proc is not None and self.server.proc.poll() is None
        status, _, _ = self.server.request("POST", f"/pub?id={self.ch}", text)
        assert status == 200
        assert self.c.read_chunk() == text

    def close(self) -> None:
        self.c.close()


@pytest.fixture
def live(srv) -> Iterator[Live]:
    sub = Live(srv, channel())
    yield sub
    sub.close()


# -- malformed requests ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /pub?id=x\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /pub?id=x HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /pub?id=x HTTP/1.1\r\nHo st: x\r\n\r\n",
        b"GET /pub?id=x HTTP/1.1\r\nHost: x\r\n\x00\r\n\r\n",
        b"GET /pub?id=x HTTP/1.1\r\n Folded: x\r\n\r\n",
        b"POST /pub?id=x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /pub?id=x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /pub?id=x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        b"POST /pub?id=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /pub?id=x HTTP/1.1\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=[
        "not-http",
        "http-9.9",
        "control-char-in-target",
        "header-without-colon",
        "space-in-header-name",
        "nul-line",
        "obsolete-folding",
        "content-length-not-a-number",
        "content-length-negative",
        "two-content-lengths",
        "bad-chunk-size",
        "content-length-and-chunked",
    ],
)
def test_malformed_request_is_400_and_closed(srv, raw: bytes) -> None:
    status, headers, closed = answer(srv, raw)
    assert status == 400
    assert headers["connection"] == "close"
    assert closed


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"GET /pub?id=x HTTP/1.1\r\nBad Header\r\n\r\n", id="bad-header"),
        pytest.param(b"BROKEN\r\n\r\n", id="bad-request-line"),
    ],
)
def test_requests_before_a_malformed_one_are_still_answered(srv, bad) -> None:
    ch = channel()
    with srv.client() as c:
        c.send(build_request("POST", f"/pub?id={ch}", b"one") + bad)
        first, headers, _ = c.read_head()
        c.read_exactly(int(headers["content-length"]))
        second, _, _ = c.read_head()
        assert (first, second) == (200, 400)
        assert c.closed_by_peer(5.0)
    assert json.loads(srv.request("GET", f"/pub?id={ch}")[2])["published_messages"] == 1


# -- oversized heads and bodies --------------------------------------------------


def test_oversized_request_line_is_414_and_closed(srv) -> None:
    status, _, closed = answer(srv, b"GET /sub/" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert (status, closed) == (414, True)


def test_oversized_header_is_431_and_closed(srv) -> None:
    raw = b"GET /pub?id=x HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    status, _, closed = answer(srv, raw)
    assert (status, closed) == (431, True)


def test_many_small_headers_over_the_limit_are_431_and_closed(srv) -> None:
    raw = b"GET /pub?id=x HTTP/1.1\r\n" + b"X-A: b\r\n" * 1200 + b"\r\n"
    status, _, closed = answer(srv, raw)
    assert (status, closed) == (431, True)


def test_body_over_client_max_body_size_is_413_and_closed(srv) -> None:
    ch = channel()
    status, _, closed = answer(srv, build_request("POST", f"/pub?id={ch}", b"x" * 1025))
    assert (status, closed) == (413, True)
    assert srv.request("GET", f"/pub?id={ch}")[0] == 404  # nothing published


def test_body_at_client_max_body_size_is_accepted(srv) -> None:
    status, _, _ = srv.request("POST", f"/pub?id={channel()}", b"x" * 1024)
    assert status == 200


def test_oversized_content_length_is_refused_before_the_body(srv) -> None:
    # Only the head is sent: the answer must not wait for 10 MB.
    raw = b"POST /pub?id=x HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"
    status, _, closed = answer(srv, raw)
    assert (status, closed) == (413, True)


def test_chunked_body_over_client_max_body_size_is_413_and_closed(srv) -> None:
    ch = channel()
    raw = (
        f"POST /pub?id={ch} HTTP/1.1\r\nHost: x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + b"200\r\n"
        + b"x" * 512
        + b"\r\n"
        + b"200\r\n"
        + b"y" * 512
        + b"\r\n"
        + b"1\r\nz\r\n0\r\n\r\n"
    )
    status, _, closed = answer(srv, raw)
    assert (status, closed) == (413, True)
    assert srv.request("GET", f"/pub?id={ch}")[0] == 404


def test_chunked_body_within_limit_is_published(srv) -> None:
    ch = channel()
    raw = (
        f"POST /pub?id={ch} HTTP/1.1\r\nHost: x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".encode()
    )
    assert answer(srv, raw)[0] == 200
    status, _, body = srv.request("GET", f"/pub?id={ch}")
    assert (status, json.loads(body)["published_messages"]) == (200, 1)


# -- methods and channel ids -------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "TRACE", "FOO"])
@pytest.mark.parametrize(
    ("target", "allow"),
    [
        ("/pub?id=x", "GET, POST, PUT, DELETE"),
        ("/sub/x", "GET"),
        ("/channels-stats", "GET"),
    ],
)
def test_unknown_method_is_405_with_allow(srv, method, target, allow) -> None:
    status, headers, _ = srv.request(method, target)
    assert status == 405
    assert headers["allow"] == allow


@pytest.mark.parametrize("cut", [2, 20])
def test_unknown_method_split_across_writes_is_405(srv, cut: int) -> None:
    raw = b"FOO /pub?id=x HTTP/1.1\r\nHost: x\r\n\r\n"
    with srv.client() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(raw[:cut])
        time.sleep(0.05)  # let the server read the first part alone
        c.send(raw[cut:])
        status, headers, _ = c.read_head()
    assert status == 405
    assert headers["allow"] == "GET, POST, PUT, DELETE"


def test_unknown_method_right_after_a_body_is_405(srv) -> None:
    # The second request line starts right after the first body's last byte.
    ch = channel()
    with srv.client() as c:
        c.send(
            build_request("POST", f"/pub?id={ch}", b"one")
            + build_request("FOO", "/pub?id=x")
        )
        first, headers, _ = c.read_head()
        body = json.loads(c.read_exactly(int(headers["content-length"])))
        second, headers, _ = c.read_head()
    assert (first, body["published_messages"]) == (200, 1)
    assert (second, headers["allow"]) == (405, "GET, POST, PUT, DELETE")


@pytest.mark.parametrize(
    "raw",
    [
        build_request("POST", "/pub?id=ALL", b"x"),
        build_request("POST", "/pub?id=*", b"x"),
        build_request("POST", "/pub?id=a*b", b"x"),
        build_request("DELETE", "/pub?id=ALL"),
        build_request("GET", "/sub/ALL"),
        build_request("GET", "/sub/a*b"),
        build_request("GET", "/sub/ok/ALL"),
    ],
    ids=[
        "pub-all",
        "pub-star",
        "pub-wildcard",
        "delete-all",
        "sub-all",
        "sub-wildcard",
        "sub-one-of-two",
    ],
)
def test_reserved_channel_id_is_403(srv, raw: bytes) -> None:
    status, headers, _ = answer_keep(srv, raw)
    assert status == 403
    assert headers["x-nginx-pushstream-explain"] == (
        "Channel id not authorized for this method."
    )


@pytest.mark.parametrize("target", ["/pub?id={}", "/sub/{}"])
def test_channel_id_over_max_length_is_400(srv, target: str) -> None:
    with srv.client() as c:
        method = "POST" if target.startswith("/pub") else "GET"
        body = b"x" if method == "POST" else b""
        c.send(build_request(method, target.format("a" * 11), body))
        status, headers, _ = c.read_head()
    assert status == 400
    assert headers["x-nginx-pushstream-explain"] == "Channel id is too large."


def test_channel_id_at_max_length_is_accepted(srv) -> None:
    assert srv.request("POST", "/pub?id=" + "b" * 10, b"x")[0] == 200


def test_empty_post_is_400(srv) -> None:
    status, headers, _ = srv.request("POST", f"/pub?id={channel()}", b"")
    assert status == 400
    assert headers["x-nginx-pushstream-explain"] == (
        "Empty post requests are not allowed."
    )


# -- clients that vanish ----------------------------------------------------------


def _vanish(c: RawClient, reset: bool) -> None:
    if reset:
        # SO_LINGER 0: the close sends a RST instead of a FIN.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize(
    "partial",
    [
        b"POST /pub?id=x HTTP/1.1\r\nHost: x\r\nContent-Le",
        b"GET /sub/x HTTP/1.1\r\nHost",
        b"POST /pub?id=x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        b"POST /pub?id=x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\nabc",
    ],
    ids=["mid-head", "mid-subscriber-head", "mid-body", "mid-chunk"],
)
def test_client_vanishing_mid_request_leaves_server_serving(
    srv, live, partial: bytes, reset: bool
) -> None:
    c = srv.client()
    c.send(partial)
    live.check_round_trip(b"during")  # the server has read the partial bytes
    _vanish(c, reset)
    live.check_round_trip(b"after")


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("cut", [1, 2, 5, 9])
def test_client_vanishing_mid_websocket_frame_leaves_server_serving(
    srv, live, cut: int, reset: bool
) -> None:
    ch = channel()
    c = srv.client()
    assert c.websocket(f"/ws/{ch}")[0] == 101
    c.send(ws_frame(b"unfinished message", 1)[:cut])
    live.check_round_trip(b"during")
    _vanish(c, reset)
    live.check_round_trip(b"after")
    deadline = time.monotonic() + 10
    while json.loads(srv.request("GET", f"/pub?id={ch}")[2])["subscribers"]:
        assert time.monotonic() < deadline, "vanished websocket still subscribed"
        time.sleep(0.02)


def test_client_vanishing_mid_long_poll_leaves_server_serving(srv, live) -> None:
    # No long-polling location in CONFIG: use the mode header on /sub.
    ch = channel()
    c = srv.client()
    c.send(
        build_request(
            "GET", f"/sub/{ch}", headers={"X-Nginx-PushStream-Mode": "long-polling"}
        )
    )
    live.check_round_trip(b"during")
    _vanish(c, True)
    live.check_round_trip(b"after")
    # The waiter is gone: a publish to its channel does not fail.
    assert srv.request("POST", f"/pub?id={ch}", b"nobody")[0] == 200


def test_subscriber_naming_a_channel_twice_does_not_crash_server(make_server):
    srv = make_server()

    def subscribe(path: str) -> RawClient:
        c = srv.client()
        c.send(build_request("GET", path))
        assert c.read_head()[0] == 200
        return c

    def close_and_wait(c: RawClient, subscribers: int) -> None:
        c.close()
        deadline = time.monotonic() + 10
        while True:
            info = json.loads(srv.request("GET", "/pub?id=dup")[2])
            if info["subscribers"] == subscribers:
                break
            assert time.monotonic() < deadline, info
        # A delivery walks the channel's subscriber array.
        assert srv.request("POST", "/pub?id=dup", b"x")[0] == 200

    for _ in range(5):
        first = subscribe("/sub/dup")
        twice = subscribe("/sub/dup/dup")
        close_and_wait(first, 2)
        again = subscribe("/sub/dup/dup")
        close_and_wait(twice, 2)
        close_and_wait(again, 0)
    live = Live(srv, "dup")
    live.check_round_trip(b"still alive")
    live.close()


# -- pipelining and keep-alive ----------------------------------------------------


def test_pipelined_publishes_are_all_answered_in_order(srv, live) -> None:
    n = 30
    ch = live.ch
    with srv.client() as c:
        c.send(
            b"".join(
                build_request("POST", f"/pub?id={ch}", b"m%d" % i) for i in range(n)
            )
        )
        counts = []
        for _ in range(n):
            status, headers, _ = c.read_head()
            assert status == 200
            body = c.read_exactly(int(headers["content-length"]))
            counts.append(json.loads(body)["published_messages"])
    assert counts == list(range(1, n + 1))
    got = b""
    want = b"".join(b"m%d" % i for i in range(n))
    while len(got) < len(want):
        got += live.c.read_chunk()
    assert got == want


def test_pipelined_requests_split_across_writes_are_answered(srv) -> None:
    ch = channel()
    wire = b"".join(
        build_request("POST", f"/pub?id={ch}", b"p%d" % i) for i in range(5)
    )
    with srv.client() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(wire), 7):
            c.send(wire[i : i + 7])
            time.sleep(0.001)
        statuses = []
        for _ in range(5):
            status, headers, _ = c.read_head()
            c.read_exactly(int(headers["content-length"]))
            statuses.append(status)
    assert statuses == [200] * 5


@pytest.mark.parametrize("limit", [1, 3])
def test_keepalive_requests_closes_after_n(make_server, limit: int) -> None:
    srv = make_server(f"[settings]\nkeepalive_requests = {limit}\n")
    with srv.client() as c:
        for i in range(1, limit + 1):
            c.send(build_request("POST", "/pub?id=k", b"x"))
            status, headers, _ = c.read_head()
            c.read_exactly(int(headers["content-length"]))
            assert status == 200
            expected = "close" if i == limit else "keep-alive"
            assert headers["connection"] == expected
        assert c.closed_by_peer(5.0)


def test_keepalive_requests_counts_pipelined_requests(make_server) -> None:
    srv = make_server("[settings]\nkeepalive_requests = 2\n")
    with srv.client() as c:
        c.send(b"".join(build_request("POST", "/pub?id=k", b"x") for _ in range(4)))
        raw = read_until_closed(c)
    assert raw.count(b"HTTP/1.1 200") == 2
    assert raw.count(b"Connection: close") == 1


def test_keepalive_requests_zero_disables_keepalive(make_server) -> None:
    srv = make_server("[settings]\nkeepalive_requests = 0\n")
    with srv.client() as c:
        c.send(build_request("POST", "/pub?id=k", b"x"))
        _, headers, _ = c.read_head()
        assert headers["connection"] == "close"
        c.read_exactly(int(headers["content-length"]))
        assert c.closed_by_peer(5.0)


# -- access list ------------------------------------------------------------------


def test_default_admin_locations_deny_other_addresses(server) -> None:
    for target in ("/pub?id=x", "/channels-stats"):
        with SourceClient(server, "127.0.0.2") as c:
            status, _, _ = c.request("GET", target)
            assert status == 403
        with SourceClient(server, "127.0.0.2") as c:
            status, _, _ = c.request("POST", target, b"x")
            assert status == 403
    # Nothing was published from the denied address.
    assert server.request("GET", "/pub?id=x")[0] == 404


def test_default_subscriber_locations_allow_any_address(server) -> None:
    with SourceClient(server, "127.0.0.2") as c:
        c.send(build_request("GET", "/sub/open"))
        assert c.read_head()[0] == 200
        assert server.request("POST", "/pub?id=open", b"hi")[0] == 200
        assert c.read_chunk() == b"hi"


def test_allow_list_admits_listed_address_and_network(make_server) -> None:
    srv = make_server(
        """
[[locations]]
path = "/pub"
role = "publisher"
channels_path = "$arg_id"
allow = ["127.0.0.1"]

[[locations]]
path = "/net"
role = "publisher"
channels_path = "$arg_id"
allow = ["127.0.0.0/24"]
"""
    )
    with SourceClient(srv, "127.0.0.1") as c:
        assert c.request("POST", "/pub?id=a", b"x")[0] == 200
    with SourceClient(srv, "127.0.0.2") as c:
        assert c.request("POST", "/pub?id=a", b"x")[0] == 403
    with SourceClient(srv, "127.0.0.2") as c:
        assert c.request("POST", "/net?id=a", b"x")[0] == 200
    with SourceClient(srv, "127.0.1.2") as c:
        assert c.request("POST", "/net?id=a", b"x")[0] == 403


# -- hypothesis: random input never takes the server down ------------------------

SEEDS = [
    build_request("POST", "/pub?id=fuzz", b"hello"),
    build_request("GET", "/pub?id=fuzz"),
    build_request("GET", "/sub/fuzz.b1"),
    build_request("GET", "/channels-stats?id=ALL"),
    b"POST /pub?id=fuzz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    build_request(
        "GET",
        "/ws/fuzz",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    + ws_frame(b"hi", 9)
    + ws_frame(b"\x03\xe8", 8),
    build_request("POST", "/pub?id=fuzz", b"a") * 3,
]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"])
        )
        i = draw(st.integers(0, len(data)))
        if op == "flip" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "duplicate":
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[i:]
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_live(srv) -> Iterator[Live]:
    sub = Live(srv, "live" + uuid.uuid4().hex[:6])
    yield sub
    sub.close()


_fuzz_round = iter(range(1 << 30))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.one_of(st.binary(max_size=1500), mutated()))
def test_random_input_never_takes_the_server_down(srv, fuzz_live, data: bytes) -> None:
    with srv.client() as c:
        try:
            c.send(data)
            # End of input: the server must answer what it can and close.
            c.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # already closed by the server: fine
        out = read_until_closed(c)
    assert out == b"" or out.startswith(b"HTTP/1.1 "), out[:200]
    assert b"HTTP/1.1 500" not in out
    fuzz_live.check_round_trip(b"ok%d" % next(_fuzz_round))
