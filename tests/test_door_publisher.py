"""The front door's publisher (fastpush/core/publisher.pyx): the requests it
answers itself, those it hands to the Python path, and that both give the
same bytes.

Two workers run in this process, one with the door's publisher routes and
one without (every publisher connection handed to Python); each request is
sent to both on a fresh connection and the answers are compared. Each test
runs twice: as the only worker, and as one of several, where every publish
goes to a sequencer over the bus and is answered when it comes back.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator

import pytest

from fastpush._core import PubRoute
from fastpush.http.door import publisher_routes
from fastpush.testing import (
    InProcessWorker,
    dechunk,
    pub_location,
    push_stream_config,
    stats_location,
    sub_location,
    undated,
)

SETTINGS: dict[str, object] = {
    "header_template": "<hello>",
    "message_template": "~text~",
    "max_number_of_channels": 20,
    "events_channel_id": "events",
    "keepalive_requests": 6,
    "max_channel_id_length": 64,
}
LOCATIONS = [
    pub_location("/pub", mode="admin", store_messages=True),
    pub_location("/quiet", channel_info_on_publish=False),
    pub_location("/small", client_max_body_size="16"),
    pub_location("/cors", allowed_origins="*"),
    {**pub_location("/raw"), "channels_path": "${arg_ch}"},
    stats_location(),
    sub_location("sub", "streaming"),
]


def _config(**settings: object) -> str:
    return 'listen = ["127.0.0.1:{port}"]\n' + push_stream_config(
        {**SETTINGS, **settings}, LOCATIONS
    )


class Pair:
    """A worker whose door publishes, and one whose door hands it all on."""

    def __init__(self, config: str, sequenced: bool = False) -> None:
        self.fast = InProcessWorker(config, sequenced)
        self.slow = InProcessWorker(config, sequenced)
        self.slow.app.door.set_publisher_routes([], 1000)

    def both_ways(self, *parts: bytes) -> tuple[bytes, bytes, int]:
        """(door answer, Python answer, publishes the door answered)."""
        door = self.fast.app.door
        published = door.published
        fast = self.fast.run(self.fast.talk(*parts))
        counted = door.published - published
        slow = self.slow.run(self.slow.talk(*parts))
        assert self.slow.app.door.published == 0
        return _same_moment(fast), _same_moment(slow), counted

    def close(self) -> list[dict[str, object]]:
        errors = self.fast.errors + self.slow.errors
        self.fast.close()
        self.slow.close()
        return errors


def _same_moment(answer: bytes) -> bytes:
    # The two workers answer a moment apart: a second may pass in between.
    return re.sub(rb'"(time|uptime)": [^,]*', b"", undated(answer))


MODES = pytest.mark.parametrize("sequenced", [False, True], ids=["one", "sequenced"])


@pytest.fixture(params=[False, True], ids=["one", "sequenced"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    p = Pair(_config(), request.param)
    yield p
    assert p.close() == []


def post(target: str, body: bytes = b"hi", headers: str = "") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: x\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# (request parts, publishes the door answers)
SERVED = [
    ([post("/pub?id=a")], 1),
    (
        [
            post(
                "/pub?x=1&id=a&id=b",
                b"curl's",
                "User-Agent: curl/8.5.0\r\nAccept: */*\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n",
            )
        ],
        1,
    ),
    ([post("/pub?id=a", headers="Connection: Keep-Alive\r\n")], 1),
    # pipelined, two channels, one write
    ([post("/pub?id=a", b"1") + post("/pub?id=b", b"2") + post("/pub?id=a", b"3")], 3),
    # the head, then the body; a head cut in two
    ([post("/pub?id=a", b"later")[:-5], b"later"], 1),
    ([post("/pub?id=a")[:10], post("/pub?id=a")[10:]], 1),
    ([post("/quiet?id=a")], 1),
    ([post("/small?id=a", b"x" * 16)], 1),
    ([post("/raw?ch=a:b_c-d")], 1),
    ([post("/pub?id=a", b"\x00\xff binary \r\n\r\n")], 1),
]

HANDED_ON = [
    post("/pub?id=a", headers="Event-Id: 7\r\n"),
    post("/pub?id=a", headers="Event-Type: x\r\n"),
    b"POST /pub?id=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nhi\r\n0\r\n\r\n",
    post("/pub?id=a", b""),  # empty: 400
    post("/small?id=a", b"x" * 17),  # 413
    post("/pub?x=1"),  # no id: 400
    post("/pub?id"),
    post("/pub?id="),
    post("/pub?id=%61"),
    post("/pub?id=a.b1"),
    post("/pub?id=a/b"),
    post("/pub?id=ALL"),
    post("/pub?id=events"),  # 403
    post("/pub?id=" + "x" * 300),
    post("/pub?id=a", headers="Accept: text/plain\r\n"),
    post("/pub?id=a", headers="Connection: close\r\n"),
    post("/pub?id=a", headers="Expect: 100-continue\r\n"),
    post("/pub?id=a", headers="Content-Length: 2\r\n"),  # twice
    post("/pub?id=a").replace(b"HTTP/1.1", b"HTTP/1.0"),
    post("/pub/?id=a"),
    post("/pubx?id=a"),
    post("/cors?id=a"),
    post("/pub?id=a#frag"),
    b"GET /pub?id=a HTTP/1.1\r\n\r\n",
    b"PUT /pub?id=a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
    b"POST /pub?id=a HTTP/1.1\r\n folded: x\r\nContent-Length: 2\r\n\r\nhi",
]


def _short(parts: list[bytes] | bytes) -> str:
    data = b"|".join(parts) if isinstance(parts, list) else parts
    return data.split(b"\r\n", 1)[0].decode("latin-1")[:40]


@pytest.mark.parametrize(
    "parts,count", SERVED, ids=[_short(p) + f"-{i}" for i, (p, _) in enumerate(SERVED)]
)
def test_door_answers_publishes_as_python_would(
    pair: Pair, parts: list[bytes], count: int
) -> None:
    fast, slow, counted = pair.both_ways(*parts)
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n")
    assert fast == slow
    assert counted == count


@pytest.mark.parametrize("request_", HANDED_ON, ids=_short)
def test_door_hands_other_requests_to_python(pair: Pair, request_: bytes) -> None:
    fast, slow, counted = pair.both_ways(request_)
    assert fast == slow
    assert counted == 0


def test_hand_on_in_the_middle_of_a_connection(pair: Pair) -> None:
    # Served, then one the door does not serve, then served by Python.
    data = (
        post("/pub?id=a", b"1")
        + b"GET /pub?id=a HTTP/1.1\r\n\r\n"
        + post("/pub?id=a", b"2")
        + post("/pub?id=a", b"3", "Event-Id: e3\r\n")
    )
    handed = pair.fast.app.door.handed_on
    fast, slow, counted = pair.both_ways(data)
    assert fast == slow
    assert fast.count(b"HTTP/1.1 200 OK") == 4
    assert counted == 1
    assert pair.fast.app.door.handed_on == handed + 1


def test_keepalive_requests_are_counted_across_the_hand_on(pair: Pair) -> None:
    # keepalive_requests = 6: the sixth answer says close, and it is the last.
    data = b"".join(post("/pub?id=a", b"%d" % i) for i in range(8))
    fast, slow, counted = pair.both_ways(data)
    assert fast == slow
    assert fast.count(b"HTTP/1.1 200 OK") == 6
    assert fast.count(b"Connection: close") == 1
    assert counted == 5


def test_refusals_go_through_python(pair: Pair) -> None:
    # max_number_of_channels = 20, the events channel among them.
    # Five a connection: keepalive_requests = 6.
    for start in range(0, 19, 5):
        ids = range(start, min(start + 5, 19))
        fill = b"".join(post(f"/pub?id=full{i}") for i in ids)
        for w in (pair.fast, pair.slow):
            assert w.run(w.talk(fill)).count(b"HTTP/1.1 200 OK") == fill.count(b"POST")
    fast, slow, counted = pair.both_ways(post("/pub?id=one_more"))
    assert fast == slow
    assert b"403 Forbidden" in fast
    # With several workers the door sends it on and answers the refusal.
    assert counted == 0
    # A channel that exists still publishes here.
    fast, slow, counted = pair.both_ways(post("/pub?id=full3"))
    assert fast == slow
    assert counted == 1


@MODES
def test_a_full_store_goes_through_python(sequenced: bool) -> None:
    p = Pair(_config(shared_memory_size="1k"), sequenced)
    try:
        data = b"".join(post("/pub?id=a", b"x" * 300) for _ in range(4))
        fast, slow, _ = p.both_ways(data)
        assert fast == slow
        assert b"500 Internal Server Error" in fast
        # The refused publish still made its channel, as push-stream's does.
        fast, slow, _ = p.both_ways(post("/pub?id=new", b"x" * 300))
        assert fast == slow
        assert b"500 Internal Server Error" in fast
        fast, slow, _ = p.both_ways(b"GET /pub?id=new HTTP/1.1\r\n\r\n")
        assert fast == slow
        assert fast.startswith(b"HTTP/1.1 200 OK")
    finally:
        assert p.close() == []


@MODES
def test_published_messages_reach_subscribers_in_order(sequenced: bool) -> None:
    p = Pair(_config(keepalive_requests=1000), sequenced)
    try:
        _reach_in_order(p.fast)
    finally:
        assert p.close() == []


def _reach_in_order(w: InProcessWorker) -> None:

    async def go() -> bytes:
        reader, writer = await w.connect()
        writer.write(b"GET /sub/feed HTTP/1.1\r\n\r\n")
        got = await reader.readuntil(b"<hello>")
        await asyncio.sleep(0.05)
        answers = await w.talk(
            b"".join(post("/pub?id=feed", b"m%03d" % i) for i in range(200))
        )
        assert answers.count(b"HTTP/1.1 200 OK") == 200
        while not got.endswith(b"m199\r\n"):
            got += await asyncio.wait_for(reader.read(65536), 2)
        return got

    got = b"".join(dechunk(w.run(go()).split(b"\r\n\r\n", 1)[1]))
    assert got == b"<hello>" + b"".join(b"m%03d" % i for i in range(200))
    assert w.app.door.published == 200


@MODES
def test_door_stamps_and_renders_as_the_python_path(sequenced: bool) -> None:
    # A template with message tokens (not ~time~ or ~tag~: the workers
    # publish a moment apart); the channel exists (its subscriber made it),
    # so the door stamps and queues in C.
    p = Pair(
        _config(
            message_template="~id~|~channel~|~size~|~text~",
            keepalive_requests=1000,
        ),
        sequenced,
    )
    try:
        got = [_subscribe_and_publish(w, 30) for w in (p.fast, p.slow)]
        assert got[0][0] == got[1][0]
        assert got[0][0].endswith(b"30|feed:x|3|m29\r\n")
        assert _same_moment(got[0][1]) == _same_moment(got[1][1])
        assert p.fast.app.door.published == 30
        regs = [w.app.registry for w in (p.fast, p.slow)]
        assert [r.published_messages for r in regs] == [30, 30]
        assert [r.stored_messages for r in regs] == [30, 30]
        assert [r.stored_bytes for r in regs] == [regs[1].stored_bytes] * 2
    finally:
        assert p.close() == []


def _subscribe_and_publish(w: InProcessWorker, n: int) -> tuple[bytes, bytes]:
    """(what a subscriber of feed:x got, the publisher's answers)."""

    async def go() -> tuple[bytes, bytes]:
        reader, writer = await w.connect()
        writer.write(b"GET /sub/feed:x HTTP/1.1\r\n\r\n")
        got = await reader.readuntil(b"<hello>")
        await asyncio.sleep(0.05)
        body = b"".join(post("/pub?id=feed:x", b"m%d" % i) for i in range(n))
        answers = await w.talk(body)
        while not got.endswith(b"|m%d\r\n" % (n - 1)):
            got += await asyncio.wait_for(reader.read(65536), 2)
        writer.close()
        return got.split(b"\r\n\r\n", 1)[1], answers

    return w.run(go())


@MODES
def test_answers_the_kernel_refuses_are_written_by_python(sequenced: bool) -> None:
    # A client that sends many publishes and reads nothing: at some point
    # send() takes only part of the answers, and the connection goes to the
    # Python path with the rest, which must come out whole and in order.
    p = Pair(_config(keepalive_requests=1000000), sequenced)
    try:
        w = p.fast
        n = 30000
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", w.port))
        sock.setblocking(False)
        data = b"".join(post("/quiet?id=a", b"%d" % i) for i in range(n))
        handed = w.app.door.handed_on

        async def go() -> bytes:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, data)
            await asyncio.sleep(0.2)
            got = b""
            while got.count(b"HTTP/1.1 200 OK") < n:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 5)
                assert chunk
                got += chunk
            return got

        got = w.run(go())
        sock.close()
        assert w.app.door.handed_on == handed + 1
        one = undated(got[: got.index(b"\r\n\r\n") + 4])
        assert undated(got) == one * n
        assert w.app.registry.get("a").published_messages == n
    finally:
        assert p.close() == []


def test_a_peer_that_stops_sending_gets_every_answer_then_the_close(
    pair: Pair,
) -> None:
    # Requests, then the write side shut: each is answered (with several
    # workers, after the sequencer's answer came back), then the door closes.
    w = pair.fast
    n = 5

    async def go() -> bytes:
        reader, writer = await w.connect()
        writer.write(b"".join(post("/pub?id=eof", b"%d" % i) for i in range(n)))
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 2)

    got = w.run(go())
    assert got.count(b"HTTP/1.1 200 OK") == n
    assert b'"published_messages": %d' % n in got
    assert w.app.door.published == n


def test_a_peer_gone_before_its_answers_loses_only_them() -> None:
    # Several workers: the publishes went to the sequencer, then the peer
    # went away. They are published all the same, and their answers meet a
    # closed connection without an error.
    p = Pair(_config(), sequenced=True)
    w = p.fast
    link = w.sequencer.links[0]

    async def go() -> bytes:
        reader, writer = await w.connect()
        link.transport.pause_reading()  # the sequencer answers later
        writer.write(b"".join(post("/pub?id=gone", b"%d" % i) for i in range(5)))
        await asyncio.sleep(0.1)
        writer.transport.abort()
        await asyncio.sleep(0.1)
        link.transport.resume_reading()
        return await w.talk(post("/pub?id=gone", b"after"))

    try:
        got = w.run(go())
        assert b'"published_messages": 6' in got
    finally:
        assert p.close() == []


def test_a_fast_pipeliner_waits_for_the_sequencer_not_in_memory() -> None:
    # Several workers, a sequencer that does not answer for a while: the
    # door stops reading the connection at 1,024 publishes in flight (as
    # the Python path does), goes on once they are answered, and every
    # publish is answered, in order.
    p = Pair(_config(keepalive_requests=1000000), sequenced=True)
    w = p.fast
    link = w.sequencer.links[0]
    n = 3000

    async def go() -> tuple[int, bytes]:
        reader, writer = await w.connect()
        link.transport.pause_reading()
        writer.write(b"".join(post("/pub?id=flood", b"%d" % i) for i in range(n)))
        await asyncio.sleep(0.3)
        in_flight = len(w.app.bus.pending)
        link.transport.resume_reading()
        got = b""
        while got.count(b"HTTP/1.1 200 OK") < n:
            got += await asyncio.wait_for(reader.read(1 << 20), 5)
        return in_flight, got

    try:
        in_flight, got = w.run(go())
        assert in_flight == 1024
        counts = [int(c) for c in re.findall(rb'"published_messages": (\d+)', got)]
        assert counts == list(range(1, n + 1))
        assert w.app.registry.get("flood").published_messages == n
        assert w.app.door.published == n
    finally:
        assert p.close() == []


def test_new_routes_send_open_connections_to_python(pair: Pair) -> None:
    w = pair.fast

    async def go() -> bytes:
        reader, writer = await w.connect()
        writer.write(post("/pub?id=a"))
        first = await reader.readuntil(b"}\r\n")
        w.app.reload(w.config)
        writer.write(post("/pub?id=a"))
        return first + await reader.readuntil(b"}\r\n")

    handed = w.app.door.handed_on
    got = w.run(go())
    assert got.count(b'"published_messages": ') == 2
    assert b'"published_messages": 2' in got
    assert w.app.door.published == 1
    assert w.app.door.handed_on == handed + 1


def test_idle_publisher_connections_are_closed(pair: Pair) -> None:
    w = pair.fast

    async def go() -> bytes:
        reader, writer = await w.connect()
        writer.write(post("/pub?id=a"))
        await reader.readuntil(b"}\r\n")
        w.app.door.sweep(5)  # not idle for that long: stays
        writer.write(post("/pub?id=a"))
        await reader.readuntil(b"}\r\n")
        w.app.door.sweep(-1)
        return await asyncio.wait_for(reader.read(), 2)

    assert w.run(go()) == b""
    assert w.app.door.published == 2


def test_routes_only_for_locations_the_door_can_stand_in_for(pair: Pair) -> None:
    assert [r.path for r in publisher_routes(pair.fast.app)] == [
        b"/pub",
        b"/quiet",
        b"/small",
        b"/raw",
    ]
    quiet = publisher_routes(pair.fast.app)[1]
    assert quiet.info is None
    assert publisher_routes(pair.fast.app)[3].arg == b"ch"


def test_no_routes_where_a_regex_takes_the_path() -> None:
    locations = [
        {"regex": "/p", "role": "subscriber", "channels_path": "$arg_id"},
        pub_location("/pub"),
    ]
    w = InProcessWorker(
        'listen = ["127.0.0.1:{port}"]\n' + push_stream_config({}, locations)
    )
    try:
        assert publisher_routes(w.app) == []
    finally:
        w.close()


def test_pub_route_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        PubRoute(b"pub", b"id", True, 10, b"", b"", b"")
    with pytest.raises(ValueError):
        PubRoute(b"/pub", b"i=d", True, 10, b"", b"", b"")
    with pytest.raises(ValueError):
        PubRoute(b"/pub", b"id", True, 10, b"", b"", b"", (b"a", b"b"))
