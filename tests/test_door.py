"""The front door (fastpush/core/door.pyx): what it serves itself, what it
hands to the Python path, and that both give the same bytes.

A worker runs in this process on uvloop with real listening sockets; each
request is made once with the door's routes in place and once with none
(every connection handed to Python), and the answers are compared.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from fastpush._core import DoorRoute
from fastpush.config import parse_config
from fastpush.http.door import door_routes, literal_prefix
from fastpush.testing import (
    InProcessWorker,
    dechunk,
    pub_location,
    push_stream_config,
    sub_location,
    undated,
)

CONFIG = 'listen = ["127.0.0.1:{port}"]\n' + push_stream_config(
    {"header_template": "<hello>", "message_template": "~text~"},
    [
        pub_location("/pub", mode="admin"),
        sub_location("sub", "streaming", allowed_origins="*"),
        # unanchored: searched anywhere in the path, as nginx does
        {**sub_location("ev", "eventsource"), "regex": "/ev/(.*)"},
        sub_location("ttl", "streaming", subscriber_connection_ttl="5s"),
        sub_location("lp", "long-polling"),
        sub_location("guard", "streaming", allow="10.9.9.9"),
    ],
)


class Worker(InProcessWorker):
    def both_ways(self, request: bytes) -> tuple[bytes, bytes, int, int]:
        """(door answer, Python answer, served, handed on) for request."""
        door = self.app.door
        served, handed = door.served, door.handed_on
        fast = self.run(self.talk(request))
        counts = (door.served - served, door.handed_on - handed)
        routes = door_routes(self.app)
        door.set_routes([], 0)
        try:
            slow = self.run(self.talk(request))
        finally:
            door.set_routes(routes, self.config.settings.client_header_buffer_size)
        return undated(fast), undated(slow), *counts


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker(CONFIG)
    w.app.registry.get_or_create("a")
    yield w
    errors = w.errors
    w.close()
    assert errors == []


SERVED = [
    b"GET /sub/a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /sub/a?_=1764000000&x=%20y HTTP/1.1\r\nHost: x\r\n"
    b"User-Agent: Mozilla/5.0 (X11)\r\nConnection: Keep-Alive\r\n"
    b"Accept: */*\r\nCookie: a=b; c=d\r\n\r\n",
    b"GET /ev/a HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
    b"GET /ttl/a HTTP/1.1\r\nHost: x\r\n\r\n",
]

HANDED_ON = [
    b"GET /sub/a.b1 HTTP/1.1\r\nHost: x\r\n\r\n",  # backtrack
    b"GET /sub/a/b HTTP/1.1\r\nHost: x\r\n\r\n",  # two channels
    b"GET /sub/a HTTP/1.1\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n\r\n",
    b"GET /sub/a HTTP/1.1\r\nLast-Event-ID: 3\r\n\r\n",
    b"GET /sub/a HTTP/1.1\r\nX-Nginx-PushStream-Mode: long-polling\r\n\r\n",
    b"GET /sub/a HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /sub/a HTTP/1.0\r\n\r\n",
    b"GET /sub/a HTTP/1.1\r\nHost: x\r\n\r\nGET /sub/a HTTP/1.1\r\n\r\n",  # pipelined
    b"GET /sub/a HTTP/1.1\r\n folded: header\r\n\r\n",
    b"GET /sub/ALL HTTP/1.1\r\n\r\n",
    b"GET /sub/%61 HTTP/1.1\r\n\r\n",
    b"GET /lp/a HTTP/1.1\r\n\r\n",
    b"GET /guard/a HTTP/1.1\r\n\r\n",
    b"HEAD /sub/a HTTP/1.1\r\n\r\n",
    b"POST /sub/a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
    b"GET /sub/" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n",  # over the 8k header limit
]


def _short(request_: bytes) -> str:
    return request_[:60].decode("latin-1")


@pytest.mark.parametrize("request_", SERVED, ids=_short)
def test_door_serves_plain_subscribers_as_python_would(
    worker: Worker, request_: bytes
) -> None:
    fast, slow, served, handed = worker.both_ways(request_)
    assert (served, handed) == (1, 0)
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n")
    assert fast == slow


@pytest.mark.parametrize("request_", HANDED_ON, ids=_short)
def test_door_hands_everything_else_to_python(worker: Worker, request_: bytes) -> None:
    fast, slow, served, handed = worker.both_ways(request_)
    assert (served, handed) == (0, 1)
    assert fast == slow
    # long-polling waits for a message; everything else is answered now
    assert fast or b"long-polling" in request_ or b"/lp/" in request_


def test_door_creates_a_new_channel_for_its_first_subscriber(worker: Worker) -> None:
    door, reg = worker.app.door, worker.app.registry
    fast = worker.run(worker.talk(b"GET /sub/fresh HTTP/1.1\r\n\r\n"))
    assert (door.served, door.handed_on) == (1, 0)
    assert reg.subscribers(reg.get("fresh")) == 1
    worker.run(worker.talk(b"GET /sub/fresh HTTP/1.1\r\n\r\n"))
    assert (door.served, door.handed_on) == (2, 0)
    assert reg.subscribers(reg.get("fresh")) == 2
    # The Python path's answer for another new channel is the same.
    door.set_routes([], 0)
    slow = worker.run(worker.talk(b"GET /sub/other HTTP/1.1\r\n\r\n"))
    assert undated(fast) == undated(slow)
    assert reg.get("other") is not None


def test_a_new_channel_over_the_limit_is_refused_by_the_python_path() -> None:
    config = 'listen = ["127.0.0.1:{port}"]\n' + push_stream_config(
        {"max_number_of_channels": 1},
        [pub_location("/pub", mode="admin"), sub_location("sub", "streaming")],
    )
    w = Worker(config)
    try:
        door, reg = w.app.door, w.app.registry
        assert w.run(w.talk(b"GET /sub/one HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 200 OK"
        )
        refused = w.run(w.talk(b"GET /sub/two HTTP/1.1\r\n\r\n"))
        assert refused.startswith(b"HTTP/1.1 403 Forbidden")
        assert b"Number of channels were exceeded." in refused
        assert (door.served, door.handed_on) == (1, 1)
        assert reg.get("two") is None and reg.channel_count() == 1
        assert w.errors == []
    finally:
        w.close()


def test_a_channel_creation_that_fails_is_handed_to_the_python_path() -> None:
    w = Worker(CONFIG)
    try:
        reg = w.app.registry

        def broken(cid: str) -> None:
            raise RuntimeError("registry broken")

        reg.get_or_create = broken  # type: ignore[method-assign]
        answer = w.run(w.talk(b"GET /sub/new HTTP/1.1\r\n\r\n"))
        # The door handed the connection on; the Python path made the same
        # call, reported the failure and closed the connection.
        assert (w.app.door.served, w.app.door.handed_on) == (0, 1)
        assert answer == b""
        assert [str(e.get("exception")) for e in w.errors] == ["registry broken"]
    finally:
        w.close()


def test_door_subscriber_gets_messages_and_is_counted(worker: Worker) -> None:
    app = worker.app
    ch = app.registry.get("a")
    expires = ch.expires

    async def scenario() -> tuple[bytes, bytes]:
        r1, w1 = await worker.connect()
        w1.write(b"GET /sub/a HTTP/1.1\r\nHost: x\r\n\r\n")  # the door
        r2, w2 = await worker.connect()
        w2.write(b"GET /sub/a HTTP/1.1\r\nConnection: keep-alive, x\r\n\r\n")  # Python
        heads = [await r.readuntil(b"\r\n\r\n") for r in (r1, r2)]
        assert heads[0].split(b"Date:")[0] == heads[1].split(b"Date:")[0]
        assert app.door.served == 1 and app.door.handed_on == 1
        assert app.registry.subscribers(ch) == 2
        publish = b"POST /pub?id=a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        answer = await worker.talk(publish)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        bodies = []
        for r in (r1, r2):
            data = b""
            while b"hello" not in data:
                data += await asyncio.wait_for(r.read(4096), 2)
            bodies.append(data)
        return bodies[0], bodies[1]

    first, second = worker.run(scenario())
    assert first == second
    assert b"".join(dechunk(first)) == b"<hello>hello"
    assert ch.expires > expires  # touched, as the Python path does


def test_pending_messages_are_delivered_before_the_door_attaches(
    worker: Worker,
) -> None:
    app = worker.app
    ch = app.registry.get("a")

    async def scenario() -> bytes:
        r1, w1 = await worker.connect()
        w1.write(b"GET /sub/a HTTP/1.1\r\n\r\n")
        await r1.readuntil(b"\r\n\r\n")
        # Published in this loop iteration, not yet flushed: the second
        # subscriber, attached by the door before the flush, must not see it.
        app.publish(ch, b"before")
        s = socket.create_connection(("127.0.0.1", worker.port))
        s.sendall(b"GET /sub/a HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.2)
        s.setblocking(False)
        data = s.recv(65536)
        s.close()
        return data

    data = worker.run(scenario())
    assert app.door.served == 2
    assert b"before" not in data


def test_routes_only_for_locations_the_door_can_stand_in_for(worker: Worker) -> None:
    prefixes = [r.prefix for r in door_routes(worker.app)]
    # /lp/ is long-polling, /guard/ has an allow list
    assert prefixes == [b"/sub/", b"/ev/", b"/ttl/"]


def _config_routes(locations: str) -> list[bytes]:
    w = Worker('listen = ["127.0.0.1:{port}"]\n' + locations)
    try:
        return [r.prefix for r in door_routes(w.app)]
    finally:
        w.close()


def _sub(regex: str, mode: str = "streaming", path: str = "$1") -> str:
    return (
        f'[[locations]]\nregex = "{regex}"\nrole = "subscriber"\n'
        f'mode = "{mode}"\nchannels_path = "{path}"\n'
    )


def test_an_earlier_regex_that_could_match_keeps_the_door_out() -> None:
    assert _config_routes(_sub("^/sub/(.*)")) == [b"/sub/"]
    # "/(.*)" matches every path first
    assert _config_routes(_sub("/(.*)", "long-polling") + _sub("^/sub/(.*)")) == []
    # not a literal prefix: the door cannot tell what it matches
    assert (
        _config_routes(_sub("^/s[a-z]b/(.*)", "long-polling") + _sub("^/sub/(.*)"))
        == []
    )
    # a literal that cannot occur in /sub/<id>
    assert _config_routes(_sub("^/lp/(.*)", "long-polling") + _sub("^/sub/(.*)")) == [
        b"/sub/"
    ]
    # channels_path other than $1
    assert _config_routes(_sub("^/sub/(.*)", path="$1/extra")) == []
    # per-channel subscriber limit: the door does not count
    assert (
        _config_routes(
            "[settings]\nmax_subscribers_per_channel = 3\n" + _sub("^/sub/(.*)")
        )
        == []
    )


def test_literal_prefix() -> None:
    cfg = parse_config(
        'listen = ["127.0.0.1:1"]\n'
        + _sub("^/sub/(.*)")
        + _sub("/a/b-c_1/(.*)$")
        + _sub("^/x/(.+)")
        + _sub("^/y(.*)")
    )
    assert [literal_prefix(loc) for loc in cfg.locations] == [
        "/sub/",
        "/a/b-c_1/",
        None,
        None,
    ]


def test_door_route_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        DoorRoute(b"sub/", 0, 0.0, b"", b"")
    with pytest.raises(ValueError):
        DoorRoute(b"/sub/", 0, 0.0, b"x" * 20000, b"")


def test_listening_sockets_get_tcp_nodelay_for_what_they_accept(worker: Worker) -> None:
    # Linux copies it to every accepted socket: no call per connection.
    for s in worker.socks:
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_a_handed_on_request_the_python_path_chokes_on_is_closed(
    worker: Worker,
) -> None:
    # Found by the fuzz test: the Python path raises on this head; the
    # connection must be closed, as it is when uvloop itself read the bytes.
    async def closed() -> bytes:
        reader, writer = await worker.connect()
        writer.write(b"ET \x00pub?id=a HTTP/1.1\r\nHost: x\r\n\r\n")
        return await asyncio.wait_for(reader.read(), 3)  # TimeoutError: left open

    assert worker.run(closed()) == b""
    assert worker.app.door.handed_on == 1
    assert [e["message"] for e in worker.errors] == [
        "protocol.data_received() call failed."
    ]
    worker.errors.clear()
