"""RFC 6455 against a real server: handshake, server frames, client frames.

Client frames are parsed by the Cython core (fastpush/core/websocket.pyx);
every protocol violation must end in a close frame carrying the RFC's code
and then a TCP close.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpush.testing import RawClient, ServerProcess, build_request, ws_frame

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MISSING_HEADERS = (
    "Don't have at least one of the mandatory headers: Connection, Upgrade, "
    "Sec-WebSocket-Key and Sec-WebSocket-Version"
)
BAD_VERSION = "Version not supported. Supported versions: 8, 13"

CONFIG = """
[settings]
store_messages = false

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"

[[locations]]
regex = "^/ws/(.*)"
role = "subscriber"
mode = "websocket"
channels_path = "$1"

[[locations]]
regex = "^/wsp/(.*)"
role = "subscriber"
mode = "websocket"
channels_path = "$1"
websocket_allow_publish = true

[[locations]]
regex = "^/wss/(.*)"
role = "subscriber"
mode = "websocket"
channels_path = "$1"
websocket_allow_publish = true
client_max_body_size = "1k"

[[locations]]
regex = "^/sub/(.*)"
role = "subscriber"
mode = "streaming"
channels_path = "$1"
"""

CLOSE, PING, PONG, TEXT, BINARY, CONT = 0x8, 0x9, 0xA, 0x1, 0x2, 0x0

# Hypothesis' failure report touches mypy_extensions.TypedDict, whose
# DeprecationWarning would turn a plain failure into a pytest INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    with ServerProcess(CONFIG) as server:
        yield server


def channel() -> str:
    return "ch-" + uuid.uuid4().hex[:12]


def ws_open(server: ServerProcess, target: str) -> RawClient:
    c = server.client()
    status, _ = c.websocket(target)
    assert status == 101
    return c


def read_frame(c: RawClient) -> tuple[int, int, bytes]:
    """(first byte, length code, payload) of one server frame; servers
    never mask (RFC 6455 5.1)."""
    b0, b1 = c.read_exactly(2)
    assert not b1 & 0x80, "server frames must not be masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", c.read_exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", c.read_exactly(8))[0]
    return b0, b1 & 0x7F, c.read_exactly(n)


def expect_close(c: RawClient, code: int | None) -> None:
    """The next frame is a close with code (None: no code or 1000), then EOF."""
    b0, _, payload = read_frame(c)
    assert b0 == 0x80 | CLOSE, (hex(b0), payload)
    if code is None:
        assert payload in (b"", struct.pack("!H", 1000))
    else:
        assert payload[:2] == struct.pack("!H", code)
    assert c.closed_by_peer(5.0)


def publish(server: ServerProcess, ch: str, body: bytes) -> None:
    status, _, _ = server.request("POST", f"/pub?id={ch}", body)
    assert status == 200


def channel_info(server: ServerProcess, ch: str) -> dict[str, object]:
    status, _, body = server.request("GET", f"/pub?id={ch}")
    assert status == 200
    return json.loads(body)


def sync(c: RawClient, token: bytes = b"sync") -> None:
    """Ping and wait for the pong: every frame sent before it was handled."""
    c.ws_send(token, PING)
    assert read_frame(c) == (0x80 | PONG, len(token), token)


# -- handshake -----------------------------------------------------------------


def test_handshake_answers_101_with_accept_from_rfc_example(srv) -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with srv.client() as c:
        status, headers = c.websocket(f"/ws/{channel()}", {"Sec-WebSocket-Key": key})
        assert status == 101
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert headers["upgrade"].lower() == "websocket"
        assert "upgrade" in headers["connection"].lower()


@pytest.mark.parametrize("version", ["8", "13"])
def test_handshake_accepts_versions_8_and_13(srv, version: str) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    with srv.client() as c:
        status, headers = c.websocket(
            f"/ws/{channel()}",
            {"Sec-WebSocket-Key": key, "Sec-WebSocket-Version": version},
        )
        assert status == 101
        assert headers["sec-websocket-accept"] == expected


@pytest.mark.parametrize("version", ["7", "12", "14", "abc"])
def test_handshake_refuses_other_versions_with_supported_list(srv, version) -> None:
    with srv.client() as c:
        status, headers = c.websocket(
            f"/ws/{channel()}", {"Sec-WebSocket-Version": version}
        )
        assert status == 400
        assert headers["sec-websocket-version"] == "8, 13"
        assert headers["x-nginx-pushstream-explain"] == BAD_VERSION


@pytest.mark.parametrize(
    "missing", ["Connection", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]
)
def test_handshake_without_a_mandatory_header_is_400(srv, missing: str) -> None:
    headers = {
        "Host": "localhost",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    del headers[missing]
    with srv.client() as c:
        head = f"GET /ws/{channel()} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        c.send(head.encode())
        status, hdrs, _ = c.read_head()
        assert status == 400
        assert hdrs["x-nginx-pushstream-explain"] == MISSING_HEADERS


# -- server frames ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "length_code"), [(5, 5), (125, 125), (126, 126), (300, 126), (70000, 127)]
)
def test_messages_arrive_as_unmasked_final_text_frames(srv, size, length_code) -> None:
    ch = channel()
    body = bytes(0x61 + i % 26 for i in range(size))
    with ws_open(srv, f"/ws/{ch}") as c:
        publish(srv, ch, body)
        assert read_frame(c) == (0x80 | TEXT, length_code, body)


def test_messages_arrive_in_publish_order(srv) -> None:
    ch = channel()
    with ws_open(srv, f"/ws/{ch}") as c:
        for i in range(20):
            publish(srv, ch, b"m%d" % i)
        assert [read_frame(c)[2] for _ in range(20)] == [b"m%d" % i for i in range(20)]


def test_channel_delete_sends_message_then_close_frame_then_closes(srv) -> None:
    ch = channel()
    with ws_open(srv, f"/ws/{ch}") as c:
        publish(srv, ch, b"before")
        assert read_frame(c)[2] == b"before"
        status, _, _ = srv.request("DELETE", f"/pub?id={ch}")
        assert status == 200
        assert read_frame(c) == (0x80 | TEXT, 15, b"Channel deleted")
        expect_close(c, None)


# -- control frames ----------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125))])
def test_ping_is_answered_with_pong_carrying_same_payload(srv, payload) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(payload, PING)
        assert read_frame(c) == (0x80 | PONG, len(payload), payload)


def test_unsolicited_pong_is_ignored(srv) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(b"x", PONG)
        sync(c)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 3000, 4999])
def test_close_frame_is_echoed_with_its_code_then_tcp_close(srv, code: int) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(struct.pack("!H", code) + b"bye", CLOSE)
        expect_close(c, code)


def test_close_frame_without_code_is_answered_and_closed(srv) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(b"", CLOSE)
        expect_close(c, None)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_close_with_invalid_code_is_answered_1002(srv, code: int) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(struct.pack("!H", code), CLOSE)
        expect_close(c, 1002)


def test_close_with_one_byte_payload_is_answered_1002(srv) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(b"\x03", CLOSE)
        expect_close(c, 1002)


def test_close_with_invalid_utf8_reason_is_answered_1007(srv) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(struct.pack("!H", 1000) + b"\xff\xfe", CLOSE)
        expect_close(c, 1007)


def test_subscriber_closing_is_removed_from_channel(srv) -> None:
    ch = channel()
    c = ws_open(srv, f"/ws/{ch}")
    assert channel_info(srv, ch)["subscribers"] == 1
    c.ws_send(struct.pack("!H", 1000), CLOSE)
    expect_close(c, 1000)
    c.close()
    deadline = time.monotonic() + 10
    while channel_info(srv, ch)["subscribers"] != 0:
        assert time.monotonic() < deadline, "closed subscriber still counted"
        time.sleep(0.02)


# -- protocol violations -------------------------------------------------------------


def test_unmasked_client_frame_is_answered_1002(srv) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(b"hello", TEXT, mask=False)
        expect_close(c, 1002)


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
def test_reserved_bits_are_answered_1002(srv, rsv: int) -> None:
    frame = bytearray(ws_frame(b"hello", TEXT))
    frame[0] |= rsv
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.send(bytes(frame))
        expect_close(c, 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_unknown_opcode_is_answered_1002(srv, opcode: int) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(b"x", opcode)
        expect_close(c, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_over_125_bytes_is_answered_1002(srv, opcode: int) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(b"\x03\xe8" + b"x" * 124, opcode)
        expect_close(c, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame_is_answered_1002(srv, opcode: int) -> None:
    with ws_open(srv, f"/ws/{channel()}") as c:
        c.ws_send(b"\x03\xe8", opcode, fin=False)
        expect_close(c, 1002)


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_a_started_message_is_answered_1002(srv, fin) -> None:
    with ws_open(srv, f"/wsp/{channel()}") as c:
        c.ws_send(b"orphan", CONT, fin=fin)
        expect_close(c, 1002)


def test_new_message_inside_a_fragmented_one_is_answered_1002(srv) -> None:
    with ws_open(srv, f"/wsp/{channel()}") as c:
        c.ws_send(b"first", TEXT, fin=False)
        c.ws_send(b"second", TEXT)
        expect_close(c, 1002)


@pytest.mark.parametrize("target", ["/ws", "/wsp"])
def test_invalid_utf8_text_is_answered_1007(srv, target: str) -> None:
    with ws_open(srv, f"{target}/{channel()}") as c:
        c.ws_send(b"ok \xc3\x28 bad", TEXT)
        expect_close(c, 1007)


def test_invalid_utf8_across_fragments_is_answered_1007(srv) -> None:
    ch = channel()
    with ws_open(srv, f"/wsp/{ch}") as c:
        # A valid two-byte sequence split across fragments is fine...
        c.ws_send(b"caf\xc3", TEXT, fin=False)
        c.ws_send(b"\xa9", CONT)
        assert read_frame(c)[2] == "café".encode()
        # ...a truncated one is not.
        c.ws_send(b"caf\xc3", TEXT, fin=False)
        c.ws_send(b"!", CONT)
        expect_close(c, 1007)
    assert channel_info(srv, ch)["published_messages"] == 1


def test_binary_message_with_invalid_utf8_is_published(srv) -> None:
    ch = channel()
    with ws_open(srv, f"/ws/{ch}") as reader, ws_open(srv, f"/wsp/{ch}") as writer:
        writer.ws_send(b"\xff\xfe\x00", BINARY)
        assert read_frame(reader)[2] == b"\xff\xfe\x00"


def test_frame_over_default_message_limit_is_answered_1009(srv) -> None:
    # The server's largest client_max_body_size is the default 1m; only the
    # header is sent: the length alone must be refused.
    header = bytes([0x80 | BINARY, 0x80 | 127]) + struct.pack("!Q", (1 << 20) + 1)
    with ws_open(srv, f"/wsp/{channel()}") as c:
        c.send(header + os.urandom(4))
        expect_close(c, 1009)


def test_frame_with_huge_64bit_length_is_refused_not_buffered(srv) -> None:
    header = bytes([0x80 | BINARY, 0x80 | 127]) + struct.pack("!Q", (1 << 63) - 1)
    with ws_open(srv, f"/wsp/{channel()}") as c:
        c.send(header + os.urandom(4))
        b0, _, payload = read_frame(c)
        assert b0 == 0x80 | CLOSE
        assert payload[:2] in (struct.pack("!H", 1002), struct.pack("!H", 1009))
        assert c.closed_by_peer(5.0)


def test_message_over_location_client_max_body_size_is_answered_1009(srv) -> None:
    ch = channel()
    with ws_open(srv, f"/wss/{ch}") as c:
        c.ws_send(b"x" * 2048, TEXT)
        expect_close(c, 1009)
    assert channel_info(srv, ch)["published_messages"] == 0


def test_fragments_over_location_client_max_body_size_are_answered_1009(srv) -> None:
    with ws_open(srv, f"/wss/{channel()}") as c:
        c.ws_send(b"x" * 600, TEXT, fin=False)
        c.ws_send(b"x" * 600, CONT)
        expect_close(c, 1009)


def test_message_at_location_limit_is_published(srv) -> None:
    ch = channel()
    with ws_open(srv, f"/ws/{ch}") as reader, ws_open(srv, f"/wss/{ch}") as writer:
        writer.ws_send(b"y" * 1024, TEXT)
        assert read_frame(reader)[2] == b"y" * 1024


# -- publishing from a websocket ---------------------------------------------------


def test_fragmented_text_is_reassembled_and_published_to_other_subscribers(srv):
    ch = channel()
    with ws_open(srv, f"/ws/{ch}") as reader, ws_open(srv, f"/wsp/{ch}") as writer:
        writer.ws_send(b"Hello, ", TEXT, fin=False)
        writer.ws_send(b"", CONT, fin=False)
        # A control frame may come between fragments.
        writer.ws_send(b"mid", PING)
        writer.ws_send(b"world", CONT, fin=False)
        writer.ws_send(b"!", CONT)
        assert read_frame(reader) == (0x80 | TEXT, 13, b"Hello, world!")
        # The writer is a subscriber of the channel too. Deliveries are
        # coalesced per loop iteration, so its pong may come first.
        got = sorted(read_frame(writer) for _ in range(2))
        assert got == [(0x80 | TEXT, 13, b"Hello, world!"), (0x80 | PONG, 3, b"mid")]
    assert channel_info(srv, ch)["published_messages"] == 1


def test_publish_from_websocket_reaches_http_stream_subscriber(srv) -> None:
    ch = channel()
    with srv.client() as sub, ws_open(srv, f"/wsp/{ch}") as writer:
        sub.send(build_request("GET", f"/sub/{ch}"))
        status, _, _ = sub.read_head()
        assert status == 200
        writer.ws_send("grüße".encode(), TEXT)
        assert sub.read_chunk() == "grüße".encode()
        assert read_frame(writer)[2] == "grüße".encode()
    assert channel_info(srv, ch)["published_messages"] == 1


def test_publish_from_websocket_is_ignored_without_allow_publish(srv) -> None:
    ch = channel()
    with ws_open(srv, f"/ws/{ch}") as reader, ws_open(srv, f"/ws/{ch}") as writer:
        writer.ws_send(b"ignored", TEXT)
        writer.ws_send(b"ignored too", BINARY)
        sync(writer)
        publish(srv, ch, b"real")
        assert read_frame(reader)[2] == b"real"
        assert read_frame(writer)[2] == b"real"
    assert channel_info(srv, ch)["published_messages"] == 1


def test_frames_sent_byte_by_byte_still_work(srv) -> None:
    ch = channel()
    frames = (
        ws_frame(b"ping!", PING)
        + ws_frame(b"a" * 200, TEXT, fin=False)
        + ws_frame(b"b" * 3, CONT)
        + ws_frame("é".encode(), TEXT)
    )
    with ws_open(srv, f"/ws/{ch}") as reader, ws_open(srv, f"/wsp/{ch}") as writer:
        writer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(frames)):
            writer.send(frames[i : i + 1])
            time.sleep(0.001)  # give the server a chance to read each byte alone
        assert read_frame(writer) == (0x80 | PONG, 5, b"ping!")
        assert read_frame(reader)[2] == b"a" * 200 + b"bbb"
        assert read_frame(reader)[2] == "é".encode()


# -- hypothesis: any split of a valid frame sequence ---------------------------------

_message = st.text(min_size=1, max_size=300).map(lambda s: s.encode())


@st.composite
def frame_sequences(draw) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Masked client frames and what the sender gets back: its pongs and
    (as a subscriber of the channel) its own messages."""
    wire = b""
    expected: list[tuple[int, bytes]] = []
    for msg in draw(st.lists(_message, min_size=1, max_size=5)):
        cuts = sorted(draw(st.sets(st.integers(1, len(msg)), max_size=3)))
        parts = [msg[a:b] for a, b in zip([0, *cuts], [*cuts, len(msg)])]
        for i, part in enumerate(parts):
            wire += ws_frame(part, TEXT if i == 0 else CONT, fin=i == len(parts) - 1)
            if draw(st.booleans()) and draw(st.booleans()):
                ping = draw(st.binary(max_size=20))
                wire += ws_frame(ping, PING)
                expected.append((PONG, ping))
        expected.append((TEXT, msg))
    return wire, expected


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seq=frame_sequences(), data=st.data())
def test_any_split_of_valid_frames_yields_the_same_messages(srv, seq, data) -> None:
    wire, expected = seq
    points = sorted(data.draw(st.sets(st.integers(1, len(wire) - 1), max_size=12)))
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)])]
    ch = channel()
    with ws_open(srv, f"/ws/{ch}") as reader, ws_open(srv, f"/wsp/{ch}") as writer:
        writer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            writer.send(piece)
            time.sleep(0.0005)
        got = [read_frame(writer) for _ in expected]
        # Pongs are written at once and deliveries at the end of the loop
        # iteration, so only the order within each kind is defined.
        for kind in (PONG, TEXT):
            assert [p for b0, _, p in got if b0 & 0x0F == kind] == [
                p for op, p in expected if op == kind
            ]
        texts = [p for op, p in expected if op == TEXT]
        assert [read_frame(reader)[2] for _ in texts] == texts
        sync(writer, b"end")


# -- hypothesis: arbitrary client bytes never take the server down -------------------


@st.composite
def client_streams(draw) -> bytes:
    """Random bytes, or valid frames with a few bytes changed."""
    if draw(st.booleans()):
        return draw(st.binary(min_size=1, max_size=600))
    wire, _ = draw(frame_sequences())
    data = bytearray(wire)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data)


def parse_server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what the server sent into frames; each must be well formed."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, data[pos:]
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80 and not b0 & 0x70 and not b1 & 0x80, data[pos : pos + 2]
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = struct.unpack("!H", data[pos : pos + 2])[0], pos + 2
        elif n == 127:
            n, pos = struct.unpack("!Q", data[pos : pos + 8])[0], pos + 8
        assert pos + n <= len(data), "truncated frame"
        frames.append((b0 & 0x0F, data[pos : pos + n]))
        pos += n
    return frames


@pytest.fixture(scope="module")
def ws_live(srv) -> Iterator[tuple[RawClient, str]]:
    """A websocket subscriber kept open for the whole module."""
    ch = channel()
    c = ws_open(srv, f"/ws/{ch}")
    yield c, ch
    c.close()


_live_round = iter(range(1 << 30))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=client_streams())
def test_arbitrary_client_bytes_never_take_the_server_down(srv, ws_live, data) -> None:
    ch = channel()
    with ws_open(srv, f"/wsp/{ch}") as c:
        c.send(data)
        # End of input: whatever the frames were, the server must close.
        c.sock.shutdown(socket.SHUT_WR)
        out = c.buf
        c.sock.settimeout(5.0)
        try:
            while chunk := c.sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    frames = parse_server_frames(out)
    assert all(op in (TEXT, BINARY, CLOSE, PONG) for op, _ in frames), frames
    assert [op for op, _ in frames].count(CLOSE) <= 1
    # The server still serves: a publish reaches a long-lived subscriber.
    live, live_ch = ws_live
    token = b"alive %d" % next(_live_round)
    publish(srv, live_ch, token)
    assert read_frame(live) == (0x80 | TEXT, len(token), token)
