"""Unit tests of the Cython core (fastpush._core) over real sockets.

Subscribers are one end of a socket.socketpair() handed to the Hub; the
test reads and writes the other end. Every test runs under asyncio's
default loop and under uvloop. Teardown checks that nothing is left
waiting for the reap and that the loop recorded no unhandled exception
(the core reports callback failures through the loop's handler).
"""

from __future__ import annotations

import asyncio
import resource
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpush._core import (
    FRAME_CHUNK,
    FRAME_NONE,
    FRAME_WEBSOCKET,
    KIND_STREAM,
    KIND_WEBSOCKET,
    Channel,
    Hub,
    Message,
    Plan,
    websocket_frame,
)
from fastpush.testing import ws_frame

# Hypothesis' failure report touches mypy_extensions.TypedDict, whose
# DeprecationWarning would turn a plain failure into a pytest INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)


class Core:
    """A loop, the hubs made on it and the peer sockets of their subscribers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.errors: list[dict[str, Any]] = []
        self.hubs: list[Hub] = []
        self.peers: list[socket.socket] = []
        loop.set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))

    def hub(self, nforms: int = 1, **kw: Any) -> Hub:
        hub = Hub(self.loop, **kw)
        hub.nforms = nforms
        hub.start()
        self.hubs.append(hub)
        return hub

    def attach(
        self,
        hub: Hub,
        channels: list[Channel],
        form: int = 0,
        kind: int = KIND_STREAM,
        *,
        sndbuf: int | None = None,
        **kw: Any,
    ) -> socket.socket:
        """A new subscriber of channels; returns the peer (non-blocking)."""
        ours, peer = socket.socketpair()
        if sndbuf is not None:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
        ours.setblocking(False)
        peer.setblocking(False)
        self.peers.append(peer)
        hub.attach(ours.detach(), channels, form, kind, **kw)
        return peer

    def run_until(self, predicate: Callable[[], bool], what: str = "") -> None:
        """Run the loop until predicate() holds (bounded, never timed)."""

        async def wait() -> None:
            for _ in range(5000):
                if predicate():
                    return
                await asyncio.sleep(0.001)
            raise AssertionError(f"not reached: {what}")

        self.loop.run_until_complete(wait())

    def spin(self) -> None:
        """Let the loop dispatch what is ready now."""
        self.loop.run_until_complete(asyncio.sleep(0.01))


def take(peer: socket.socket) -> tuple[bytes, bool]:
    """What the peer can read now: (bytes, whether EOF followed)."""
    out = b""
    while True:
        try:
            data = peer.recv(1 << 20)
        except BlockingIOError:
            return out, False
        except ConnectionResetError:
            return out, True
        if not data:
            return out, True
        out += data


def read_all(core: Core, peer: socket.socket, n: int) -> bytes:
    """Read n bytes from peer while the loop runs (the hub flushes)."""
    got = bytearray()

    def more() -> bool:
        data, eof = take(peer)
        got.extend(data)
        assert not (eof and len(got) < n), f"EOF after {len(got)} of {n} bytes"
        return len(got) >= n

    core.run_until(more, f"{n} bytes")
    return bytes(got)


def read_until_eof(core: Core, peer: socket.socket) -> bytes:
    got = bytearray()
    done = [False]

    def more() -> bool:
        data, eof = take(peer)
        got.extend(data)
        done[0] = eof
        return eof

    core.run_until(more, "EOF")
    return bytes(got)


@pytest.fixture(params=["asyncio", "uvloop"])
def core(request: pytest.FixtureRequest) -> Iterator[Core]:
    if request.param == "uvloop":
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    c = Core(loop)
    try:
        yield c
        for hub in c.hubs:
            assert hub.counters()["pending_reap"] == 0
            hub.close()
            assert hub.counters()["pending_reap"] == 0
            assert hub.subscribers == 0
        assert c.errors == [], c.errors
    finally:
        for hub in c.hubs:
            hub.close()
        for peer in c.peers:
            peer.close()
        loop.close()


# -- fan-out ---------------------------------------------------------------------------


def test_deliver_renders_once_per_form_and_writes_each_subscriber_once(core) -> None:
    hub = core.hub(nforms=3)
    ch = Channel("room", hub)
    forms = [0, 0, 0, 2, 2, 0]
    peers = [core.attach(hub, [ch], f) for f in forms]
    calls: list[int] = []

    def render(form: int) -> bytes:
        calls.append(form)
        return b"<form %d>" % form

    assert ch.deliver(render) == len(forms)
    assert sorted(calls) == [0, 2]  # form 1 has no subscriber: not rendered
    for peer, form in zip(peers, forms):
        assert take(peer) == (b"<form %d>" % form, False)
    assert hub.counters()["deliveries"] == len(forms)


def test_deliver_messages_renders_with_each_forms_plan_or_through_python(
    core,
) -> None:
    # Form 0 has a Plan (chunked ~text~), form 1 none: the hub asks
    # hub.render(form, msg) for it, once per message, and joins.
    hub = core.hub(nforms=2)
    hub.plans = [Plan([b"", b"text", b""], FRAME_CHUNK, str), None]
    asked: list[tuple[int, int]] = []

    def render(form: int, msg: Message) -> bytes:
        asked.append((form, msg.id))
        return b"<%d:%s>" % (msg.id, msg.text)

    hub.render = render
    ch = Channel("room", hub)
    planned, python = core.attach(hub, [ch], 0), core.attach(hub, [ch], 1)
    msgs = [Message(1, 0, 1, b"hello", "room"), Message(2, 0, 2, b"", "room")]
    assert ch.deliver_messages(msgs) == 2
    assert ch.deliver_messages([]) == 0
    # The empty message makes no chunk: one would end the response.
    assert take(planned) == (b"5\r\nhello\r\n", False)
    assert take(python) == (b"<1:hello><2:>", False)
    assert asked == [(1, 1), (1, 2)]


def test_plan_applies_every_token_and_frames_as_its_form() -> None:
    parts = [
        b"{",
        b"id",
        b",",
        b"channel",
        b",",
        b"text",
        b",",
        b"size",
        b",",
        b"tag",
        b",",
        b"event-id",
        b",",
        b"event-type",
        b",",
        b"time",
        b"}",
    ]
    msg = Message(7, 1700000000, 3, b"hi", "r\u00e9", b"e1", None)
    plan = Plan(parts, FRAME_NONE, lambda t: b"T%d" % t)
    assert plan.render(msg) == "{7,r\u00e9,hi,2,3,e1,,T1700000000}".encode()
    assert plan.apply(msg, b"other") == (
        "{7,r\u00e9,other,5,3,e1,,T1700000000}".encode()
    )
    text = Plan([b"", b"text", b""], FRAME_NONE, str)
    assert text.render(msg) is msg.text  # nothing to copy
    ws = Plan([b"<", b"text", b">"], FRAME_WEBSOCKET, str)
    assert ws.render(msg) == websocket_frame(b"<hi>")
    big = Message(1, 0, 1, b"x" * 70000, "c")
    assert ws.render(big) == websocket_frame(b"<" + big.text + b">")
    assert Plan([b""], FRAME_CHUNK, str).frame(b"x" * 26) == (
        b"1a\r\n" + b"x" * 26 + b"\r\n"
    )
    assert Plan([b""], FRAME_WEBSOCKET, str).frame(b"") == b""


@pytest.mark.parametrize(
    "parts, framing",
    [
        ([b"a", b"text"], FRAME_NONE),
        ([b"", b"nope", b""], FRAME_NONE),
        ([b"", "text", b""], FRAME_NONE),
        ([b"x"], 9),
    ],
)
def test_plan_refuses_what_is_not_a_split_template(parts, framing) -> None:
    with pytest.raises(ValueError):
        Plan(parts, framing, str)


def test_deliver_to_empty_channel_does_not_render(core) -> None:
    hub = core.hub()
    ch = Channel("empty", hub)
    assert ch.deliver(lambda f: pytest.fail("rendered")) == 0


def test_deliver_refuses_a_render_that_is_not_bytes(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    core.attach(hub, [ch])
    with pytest.raises(TypeError):
        ch.deliver(lambda f: "text")


def test_initial_bytes_precede_deliveries(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    peer = core.attach(hub, [ch], initial=b"HEAD;")
    ch.deliver(lambda f: b"one;")
    ch.deliver(lambda f: b"two;")
    assert take(peer) == (b"HEAD;one;two;", False)


def test_subscriber_of_several_channels_gets_each_channel_message(core) -> None:
    hub = core.hub()
    a, b = Channel("a", hub), Channel("b", hub)
    peer = core.attach(hub, [a, b])
    assert (a.subscribers, b.subscribers) == (1, 1)
    a.deliver(lambda f: b"A")
    b.deliver(lambda f: b"B")
    assert take(peer) == (b"AB", False)


def test_attach_refuses_unregistered_form_and_closes_fd(core) -> None:
    hub = core.hub(nforms=1)
    ch = Channel("room", hub)
    ours, peer = socket.socketpair()
    core.peers.append(peer)
    with pytest.raises(ValueError):
        hub.attach(ours.detach(), [ch], 1)
    peer.setblocking(False)
    assert take(peer) == (b"", True)  # the core closed the fd it was given
    assert hub.subscribers == 0


# -- closed peers ----------------------------------------------------------------------


def test_closed_peer_is_reaped(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    peers = [core.attach(hub, [ch]) for _ in range(3)]
    peers[1].close()
    core.run_until(lambda: hub.subscribers == 2, "closed peer reaped")
    assert ch.subscribers == 2
    assert hub.counters()["detached"] == 1
    assert ch.deliver(lambda f: b"still") == 2
    assert take(peers[0]) == (b"still", False)
    assert take(peers[2]) == (b"still", False)


def test_peer_closed_before_a_delivery_is_reaped_by_it(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    keep = core.attach(hub, [ch])
    gone = core.attach(hub, [ch])
    gone.close()  # no loop iteration: the core learns it from send()
    ch.deliver(lambda f: b"x")
    ch.deliver(lambda f: b"y")
    assert (hub.subscribers, ch.subscribers) == (1, 1)
    assert hub.counters()["detached"] == 1
    assert take(keep) == (b"xy", False)


def test_on_unsubscribe_is_called_for_each_channel_of_a_reaped_subscriber(core):
    hub = core.hub()
    a, b = Channel("a", hub), Channel("b", hub)
    seen: list[str] = []
    hub.on_unsubscribe = lambda ch: seen.append(ch.id)
    peer = core.attach(hub, [a, b])
    peer.close()
    core.run_until(lambda: hub.subscribers == 0, "reaped")
    assert sorted(seen) == ["a", "b"]
    assert (a.subscribers, b.subscribers) == (0, 0)


def test_failing_on_unsubscribe_goes_to_the_loop_exception_handler(core) -> None:
    hub = core.hub()
    ch = Channel("a", hub)

    def boom(ch: Channel) -> None:
        raise RuntimeError("boom")

    hub.on_unsubscribe = boom
    core.attach(hub, [ch]).close()
    core.run_until(lambda: hub.subscribers == 0, "reaped")
    assert [type(e.get("exception")) for e in core.errors] == [RuntimeError]
    core.errors.clear()


_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("attach"),
            st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),
        ),
        st.tuples(st.just("close"), st.integers(0, 1 << 16)),
        st.tuples(st.just("deliver"), st.integers(0, 2)),
    ),
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=_ops)
def test_random_attach_close_keeps_channels_consistent(core, ops) -> None:
    """A model: each live subscriber gets exactly its channels' messages."""
    hub = core.hub()
    channels = [Channel("c%d" % i, hub) for i in range(3)]
    live: list[tuple[socket.socket, list[int]]] = []
    for op, arg in ops:
        if op == "attach":
            live.append((core.attach(hub, [channels[i] for i in arg]), arg))
        elif op == "close" and live:
            peer, _ = live.pop(arg % len(live))
            peer.close()
            core.run_until(lambda: hub.subscribers == len(live), "reaped")
        elif op == "deliver":
            channels[arg].deliver(lambda f, arg=arg: b"%d" % arg)
            for peer, subscribed in live:
                expected = b"%d" % arg if arg in subscribed else b""
                assert take(peer) == (expected, False)
        for i, ch in enumerate(channels):
            assert ch.subscribers == sum(i in subscribed for _, subscribed in live)
    hub.close()
    for peer, _ in live:
        peer.close()


_DUPLICATE_CHANNEL_SCRIPT = textwrap.dedent(
    """
    import asyncio, socket
    from fastpush._core import Channel, Hub

    loop = asyncio.new_event_loop()
    hub = Hub(loop)
    hub.nforms = 1
    hub.start()
    a = Channel("a", hub)

    def attach(links):
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        hub.attach(ours.detach(), [a] * links, 0)
        return peer

    def close(peer):
        peer.close()
        loop.run_until_complete(asyncio.sleep(0.02))
        a.deliver(lambda f: b"x")

    y, x = attach(1), attach(2)
    close(y)
    z = attach(2)
    close(x)
    assert a.subscribers == 2, a.subscribers
    close(z)
    assert a.subscribers == 0, a.subscribers
    assert hub.subscribers == 0, hub.subscribers
    hub.close()
    print("ok")
    """
)


def test_subscriber_listed_twice_on_a_channel_survives_churn(tmp_path) -> None:
    # In a child process: the bug is a segfault, which would end pytest. Its
    # cwd is a temp dir so it imports the installed build, not the source tree.
    r = subprocess.run(
        [sys.executable, "-c", _DUPLICATE_CHANNEL_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr[-2000:]


# -- slow consumers --------------------------------------------------------------------


def test_output_limit_cuts_a_stalled_peer(core) -> None:
    hub = core.hub(output_limit=8192)
    ch = Channel("room", hub)
    reader = core.attach(hub, [ch])
    stalled = core.attach(hub, [ch], sndbuf=4096)
    # More than the stalled socket's buffers plus the limit; less than the
    # reader's (default) socket buffers.
    big = b"z" * 65536
    ch.deliver(lambda f: big)
    assert hub.counters()["slow_consumers_cut"] == 1
    assert (hub.subscribers, ch.subscribers) == (1, 1)
    # The reader (same big buffers) is not cut: it drains everything.
    assert read_all(core, reader, len(big)) == big
    received = read_until_eof(core, stalled)
    assert len(received) < len(big) and big.startswith(received)
    assert hub.counters()["buffered_bytes"] == 0


def test_backlog_larger_than_output_limit_reaches_a_reading_subscriber(core) -> None:
    # A subscriber asking for a backtrack bigger than the socket buffers plus
    # the limit has not had a chance to read yet: it is not a slow consumer.
    hub = core.hub(output_limit=8192)
    ch = Channel("room", hub)
    backlog = bytes(i % 251 for i in range(65536))
    peer = core.attach(hub, [ch], sndbuf=4096, initial=backlog)
    assert read_all(core, peer, len(backlog)) == backlog
    assert hub.subscribers == 1
    assert hub.counters()["slow_consumers_cut"] == 0


def test_output_below_limit_is_buffered_and_flushed_in_order(core) -> None:
    hub = core.hub(output_limit=1 << 20)
    ch = Channel("room", hub)
    peer = core.attach(hub, [ch], sndbuf=4096)
    messages = [bytes([65 + i % 26]) * 8192 for i in range(40)]
    for m in messages:
        ch.deliver(lambda f, m=m: m)
    assert hub.counters()["buffered_bytes"] > 0
    assert hub.counters()["slow_consumers_cut"] == 0
    before = hub.memory()
    expected = b"".join(messages)
    assert read_all(core, peer, len(expected)) == expected
    core.run_until(lambda: hub.counters()["buffered_bytes"] == 0, "drained")
    assert hub.memory() < before  # the output buffer is given back
    assert hub.subscribers == 1


# -- closing ---------------------------------------------------------------------------


def test_close_subscribers_sends_footer_and_closes(core) -> None:
    hub = core.hub(nforms=2)
    ch = Channel("room", hub)
    peers = [core.attach(hub, [ch], f) for f in (0, 1, 1)]
    calls: list[int] = []

    def footer(form: int) -> bytes:
        calls.append(form)
        return b"bye %d" % form

    ch.close_subscribers(footer)
    assert sorted(calls) == [0, 1]
    for peer, form in zip(peers, (0, 1, 1)):
        assert read_until_eof(core, peer) == b"bye %d" % form
    assert (hub.subscribers, ch.subscribers) == (0, 0)


def test_close_subscribers_keeps_subscribers_with_other_channels(core) -> None:
    hub = core.hub()
    a, b = Channel("a", hub), Channel("b", hub)
    only_a = core.attach(hub, [a])
    both = core.attach(hub, [a, b])
    a.close_subscribers(lambda f: b"deleted+footer", lambda f: b"deleted")
    assert read_until_eof(core, only_a) == b"deleted+footer"
    assert take(both) == (b"deleted", False)
    assert (a.subscribers, b.subscribers, hub.subscribers) == (0, 1, 1)
    b.deliver(lambda f: b"on b")
    assert take(both) == (b"on b", False)


def test_close_subscribers_waits_for_buffered_output(core) -> None:
    hub = core.hub(output_limit=1 << 20)
    ch = Channel("room", hub)
    peer = core.attach(hub, [ch], sndbuf=4096)
    body = b"q" * 65536
    ch.deliver(lambda f: body)
    assert hub.counters()["buffered_bytes"] > 0
    ch.close_subscribers(lambda f: b"FOOTER")
    assert ch.subscribers == 0
    assert read_until_eof(core, peer) == body + b"FOOTER"
    assert hub.subscribers == 0


def test_expire_closes_only_subscribers_past_their_ttl(core) -> None:
    hub = core.hub()
    hub.clock = 1000
    ch = Channel("room", hub)
    short = core.attach(hub, [ch], ttl=5.0)
    forever = core.attach(hub, [ch])
    footers: list[int] = []

    def footer(form: int) -> bytes:
        footers.append(form)
        return b"ttl"

    assert hub.expire(1004, footer) == 0
    assert take(short) == (b"", False)
    assert hub.expire(1005, footer) == 1
    assert footers == [0]
    assert read_until_eof(core, short) == b"ttl"
    assert take(forever) == (b"", False)
    assert (hub.subscribers, ch.subscribers) == (1, 1)
    assert hub.clock == 1005


def test_close_all_sends_footer_to_everyone(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    peers = [core.attach(hub, [ch]) for _ in range(4)]
    assert hub.close_all(lambda f: b"drain") == 4
    for peer in peers:
        assert read_until_eof(core, peer) == b"drain"
    assert hub.subscribers == 0


# -- pings -----------------------------------------------------------------------------


def test_ping_writes_only_to_forms_with_a_payload(core) -> None:
    hub = core.hub(nforms=3)
    ch = Channel("room", hub)
    peers = [core.attach(hub, [ch], f) for f in (0, 1, 2, 2)]
    assert hub.ping([b"p0", None, b"p2"], [0, 0, 0]) == 3
    assert [take(p)[0] for p in peers] == [b"p0", b"", b"p2", b"p2"]


def test_ping_skips_subscribers_written_to_within_the_interval(core) -> None:
    hub = core.hub(nforms=2)
    hub.clock = 100
    ch, other = Channel("room", hub), Channel("other", hub)
    busy = core.attach(hub, [ch], 0)
    idle = core.attach(hub, [other], 1)
    payloads, intervals = [b"ping", b"ping"], [10, 10]
    hub.clock = 105
    assert hub.ping(payloads, intervals) == 0
    ch.deliver(lambda f: b"msg")
    hub.clock = 110
    assert hub.ping(payloads, intervals) == 1  # busy got a message at 105
    assert take(busy) == (b"msg", False)
    assert take(idle) == (b"ping", False)
    hub.clock = 115
    assert hub.ping(payloads, intervals) == 1
    assert take(busy) == (b"ping", False)


def test_ping_refuses_mismatched_lists(core) -> None:
    hub = core.hub(nforms=2)
    with pytest.raises(ValueError):
        hub.ping([b"x", b"y"], [1])


# -- WebSocket input -------------------------------------------------------------------


def test_websocket_text_frame_is_handed_to_on_ws_message(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    got: list[tuple[list[str], bytes, bool]] = []
    hub.on_ws_message = lambda chans, data, text: got.append(
        ([c.id for c in chans], data, text)
    )
    peer = core.attach(hub, [ch], 0, KIND_WEBSOCKET, ws_publish=True)
    peer.send(ws_frame(b"hel", 1, fin=False) + ws_frame(b"lo", 0))
    peer.send(ws_frame(b"\x00\xff", 2))
    core.run_until(lambda: len(got) == 2, "two messages")
    assert got == [(["room"], b"hello", True), (["room"], b"\x00\xff", False)]


def test_websocket_message_without_publish_flag_is_dropped(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    got: list[bytes] = []
    hub.on_ws_message = lambda chans, data, text: got.append(data)
    peer = core.attach(hub, [ch], 0, KIND_WEBSOCKET, ws_publish=False)
    peer.send(ws_frame(b"nope", 1) + ws_frame(b"sync", 9))
    assert read_all(core, peer, 6) == b"\x8a\x04sync"
    assert got == []


def test_websocket_ping_is_ponged_and_bad_frame_closes_with_1002(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)
    peer = core.attach(hub, [ch], 0, KIND_WEBSOCKET)
    peer.send(ws_frame(b"hi", 9))
    assert read_all(core, peer, 4) == b"\x8a\x02hi"
    peer.send(ws_frame(b"unmasked", 1, mask=False))
    assert read_until_eof(core, peer) == b"\x88\x02" + struct.pack("!H", 1002)
    core.run_until(lambda: hub.subscribers == 0, "reaped")


def test_websocket_limit_per_form_answers_1009(core) -> None:
    hub = core.hub(nforms=2)
    hub.set_ws_limit(0, 10)
    ch = Channel("room", hub)
    got: list[bytes] = []
    hub.on_ws_message = lambda chans, data, text: got.append(data)
    small = core.attach(hub, [ch], 0, KIND_WEBSOCKET, ws_publish=True)
    large = core.attach(hub, [ch], 1, KIND_WEBSOCKET, ws_publish=True)
    large.send(ws_frame(b"y" * 11, 1))
    core.run_until(lambda: got == [b"y" * 11], "form 1 message published")
    small.send(ws_frame(b"x" * 11, 1))
    assert read_until_eof(core, small) == b"\x88\x02" + struct.pack("!H", 1009)
    assert got == [b"y" * 11]


def test_failing_on_ws_message_goes_to_the_loop_exception_handler(core) -> None:
    hub = core.hub()
    ch = Channel("room", hub)

    def boom(chans: list[Channel], data: bytes, text: bool) -> None:
        raise ValueError("publish failed")

    hub.on_ws_message = boom
    peer = core.attach(hub, [ch], 0, KIND_WEBSOCKET, ws_publish=True)
    peer.send(ws_frame(b"x", 1) + ws_frame(b"after", 9))
    # The connection survives the callback's failure.
    assert read_all(core, peer, 7) == b"\x8a\x05after"
    assert [type(e.get("exception")) for e in core.errors] == [ValueError]
    core.errors.clear()


# -- frames and memory -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (1, b"\x81\x01"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
        (70000, b"\x81\x7f" + struct.pack("!Q", 70000)),
    ],
)
def test_websocket_frame_length_encoding(size: int, header: bytes) -> None:
    payload = bytes(i % 251 for i in range(size))
    assert websocket_frame(payload) == header + payload


@pytest.mark.parametrize("opcode", [0x1, 0x2, 0x8, 0x9, 0xA])
def test_websocket_frame_opcode_and_fin(opcode: int) -> None:
    assert websocket_frame(b"ab", opcode) == bytes([0x80 | opcode, 2]) + b"ab"


@pytest.fixture
def fd_room() -> Iterator[None]:
    """Room for 1000 socket pairs (CI runners often start at 1024 fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if want < 2200:
        pytest.skip(f"needs about 2200 file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_subscriber_memory_is_small(core, fd_room) -> None:
    hub = core.hub()
    channels = [Channel("c%d" % i, hub) for i in range(10)]
    n = 1000
    for i in range(n):
        core.attach(hub, [channels[i % 10]])
    assert hub.subscribers == n
    per_sub = hub.memory() / n
    assert per_sub < 256, per_sub
    for peer in core.peers:
        peer.close()
    core.run_until(lambda: hub.subscribers == 0, "all reaped")
    assert hub.counters()["detached"] == n
