"""Byte-level compatibility of message templates with push-stream 0.6.

The expected chunks below are what nginx 1.24.0 + nginx-push-stream-module 0.6.0
sent through `push_stream_message_template` with every placeholder (the captures
"sub_streaming_template" and "misc_edge_cases"), without Date and Server.  The
~time~ of a message varies per run: it is read from the answer and checked
against the clock; ~tag~ is then recomputed with push-stream's rule (1 for the
first message of a second on the whole server, +1 for each further one).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import pytest

from fastpush.testing import RawClient, ServerProcess, strip_volatile

NO_CACHE = (
    b"Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\n"
    b"Cache-Control: no-cache, no-store, must-revalidate\r\n"
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: keep-alive\r\n" + NO_CACHE + b"\r\n"
)
TPL = (
    '{"id":~id~,"channel":"~channel~","text":"~text~","tag":~tag~,"time":"~time~",'
    '"eventid":"~event-id~","eventtype":"~event-type~","size":~size~}'
)

CONFIG = f"""
[settings]
shared_memory_size = "32M"

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"

[[locations]]
path = "/pub-store"
role = "publisher"
channels_path = "$arg_id"
store_messages = true

[[locations]]
regex = "^/sub-tpl/(.*)$"
role = "subscriber"
channels_path = "$1"
message_template = {json.dumps(TPL)}

[[locations]]
regex = "^/poll-tpl/(.*)$"
role = "subscriber"
mode = "polling"
channels_path = "$1"
message_template = {json.dumps(TPL)}
"""


# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(CONFIG) as srv:
        yield srv


@pytest.fixture
def fresh() -> Iterator[ServerProcess]:
    """A new server: no message was ever published on it."""
    with ServerProcess(CONFIG) as srv:
        yield srv


def req(
    method: str, target: str, body: bytes | None = None, headers: str = ""
) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}"
    if body is None:
        return head.encode() + b"\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_response(c: RawClient) -> bytes:
    status, headers, raw = c.read_head()
    if status == 304 or "content-length" in headers:
        return raw + c.read_exactly(int(headers.get("content-length", 0)))
    while True:
        line = c.read_until(b"\r\n")
        raw += line + c.read_exactly(int(line, 16) + 2)
        if line == b"0\r\n":
            return raw


def exchange(srv: ServerProcess, raw: bytes) -> bytes:
    with srv.client(timeout=5.0) as c:
        c.send(raw)
        return strip_volatile(read_response(c))


def publish(srv: ServerProcess, ch: str, body: bytes, headers: str = "") -> None:
    answer = exchange(srv, req("POST", f"/pub-store?id={ch}", body, headers))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer


def subscribe(srv: ServerProcess, target: str) -> tuple[RawClient, bytes]:
    c = srv.client(timeout=5.0)
    c.send(req("GET", target))
    return c, strip_volatile(c.read_head()[2])


def read_chunks(c: RawClient, n: int) -> bytes:
    """n chunks, with their framing."""
    raw = b""
    for _ in range(n):
        line = c.read_until(b"\r\n")
        raw += line + c.read_exactly(int(line, 16) + 2)
    return raw


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def times_in(raw: bytes, n: int, t0: float, t1: float) -> list[bytes]:
    """The ~time~ of the n messages in raw, checked against the clock."""
    times = re.findall(rb'"time":"([^"]*)"', raw)
    dates = {
        time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(s)).encode()
        for s in range(int(t0), int(t1) + 1)
    }
    assert len(times) == n and set(times) <= dates, raw
    return times


def tags(times: list[bytes], start: tuple[bytes, int] = (b"", 0)) -> list[int]:
    """push-stream's ~tag~ of messages published at these times after the
    (time, tag) start: +1 within the same second, else 1."""
    out, (last, tag) = [], start
    for when in times:
        tag = tag + 1 if when == last else 1
        last = when
        out.append(tag)
    return out


def primer(srv: ServerProcess, ch: str) -> tuple[bytes, int]:
    """Publish one message and read back its (time, tag): where the server-wide
    tag sequence stands before the messages a test publishes next."""
    t0 = time.time()
    publish(srv, ch, b"primer")
    raw = exchange(srv, req("GET", f"/poll-tpl/{ch}.b1"))
    (when,) = times_in(raw, 1, t0, time.time())
    m = re.search(rb'"tag":(\d+)', raw)
    assert m is not None, raw
    return when, int(m.group(1))


def tpl(
    id: int,
    channel: str,
    text: bytes,
    tag: int,
    when: bytes,
    event_id: bytes = b"",
    event_type: bytes = b"",
) -> bytes:
    return (
        b'{"id":%d,"channel":"%s","text":"%s","tag":%d,"time":"%s","eventid":"%s",'
        b'"eventtype":"%s","size":%d}'
        % (id, channel.encode(), text, tag, when, event_id, event_type, len(text))
    )


# -- tests -------------------------------------------------------------------------


def test_template_replaces_every_placeholder(server) -> None:
    start = primer(server, "t1-primer")
    t0 = time.time()
    c, head = subscribe(server, "/sub-tpl/t1")
    with c:
        publish(server, "t1", b"hello")
        publish(server, "t1", b"with ev", "Event-Id: eid-1\r\nEvent-Type: etype\r\n")
        got = read_chunks(c, 2)
    times = times_in(got, 2, t0, time.time())
    tag = tags(times, start)
    assert head + got == STREAM_HEAD + chunk(
        tpl(1, "t1", b"hello", tag[0], times[0])
    ) + chunk(tpl(2, "t1", b"with ev", tag[1], times[1], b"eid-1", b"etype"))


def test_template_inserts_the_text_raw(server) -> None:
    # no JSON escaping, and a placeholder inside the text stays as it is
    start = primer(server, "t1b-primer")
    t0 = time.time()
    c, head = subscribe(server, "/sub-tpl/t1b")
    with c:
        publish(server, "t1b", b'q"u\not~id~e')
        got = read_chunks(c, 1)
    times = times_in(got, 1, t0, time.time())
    assert head + got == STREAM_HEAD + chunk(
        tpl(1, "t1b", b'q"u\not~id~e', tags(times, start)[0], times[0])
    )


def test_template_ids_count_per_channel(server) -> None:
    start = primer(server, "t23-primer")
    t0 = time.time()
    c, head = subscribe(server, "/sub-tpl/t2/t3")
    with c:
        publish(server, "t3", b"to-t3")
        publish(server, "t2", b"to-t2")
        got = read_chunks(c, 2)
    times = times_in(got, 2, t0, time.time())
    tag = tags(times, start)
    assert head + got == STREAM_HEAD + chunk(
        tpl(1, "t3", b"to-t3", tag[0], times[0])
    ) + chunk(tpl(1, "t2", b"to-t2", tag[1], times[1]))


def test_tag_counts_the_messages_of_one_second_on_the_whole_server(fresh) -> None:
    # on a new server the sequence starts at 1 whatever the channel
    t0 = time.time()
    for ch, text in (("a", b"1"), ("b", b"2"), ("a", b"3"), ("c", b"4")):
        publish(fresh, ch, text)
    raw = exchange(fresh, req("GET", "/poll-tpl/a.b2/b.b1/c.b1"))
    times = times_in(raw, 4, t0, time.time())
    # the answer is channel by channel: a (1st, 3rd), b (2nd), c (4th)
    order = [0, 2, 1, 3]
    published = [times[order.index(i)] for i in range(4)]
    tag = tags(published)
    messages = [
        tpl(1, "a", b"1", tag[0], published[0]),
        tpl(2, "a", b"3", tag[2], published[2]),
        tpl(1, "b", b"2", tag[1], published[1]),
        tpl(1, "c", b"4", tag[3], published[3]),
    ]
    newest = published[3]
    assert raw == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nLast-Modified: "
        + newest
        + b"\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        + NO_CACHE
        + b"Etag: W/%d\r\n\r\n" % tag[3]
        + b"".join(chunk(m) for m in messages)
        + b"0\r\n\r\n"
    )


def test_empty_event_headers_render_empty_fields(server) -> None:
    start = primer(server, "ee-primer")
    t0 = time.time()
    c, head = subscribe(server, "/sub-tpl/ee")
    with c:
        publish(server, "ee", b"e", "Event-Id: \r\nEvent-Type: \r\n")
        got = read_chunks(c, 1)
    times = times_in(got, 1, t0, time.time())
    assert head + got == STREAM_HEAD + chunk(
        tpl(1, "ee", b"e", tags(times, start)[0], times[0])
    )


def test_same_channel_twice_renders_the_message_twice(server) -> None:
    start = primer(server, "dup-primer")
    t0 = time.time()
    c, head = subscribe(server, "/sub-tpl/dup/dup")
    with c:
        publish(server, "dup", b"twice")
        got = read_chunks(c, 2)
    times = times_in(got, 2, t0, time.time())
    message = chunk(tpl(1, "dup", b"twice", tags(times[:1], start)[0], times[0]))
    assert head + got == STREAM_HEAD + message * 2


def test_empty_path_segment_is_not_a_channel(fresh) -> None:
    t0 = time.time()
    c, head = subscribe(fresh, "/sub-tpl/x1//x2")
    with c:
        publish(fresh, "x2", b"to-x2")
        got = read_chunks(c, 1)
    times = times_in(got, 1, t0, time.time())
    assert head + got == STREAM_HEAD + chunk(tpl(1, "x2", b"to-x2", 1, times[0]))
    listing = exchange(fresh, req("GET", "/channels-stats?id=ALL"))
    infos = re.findall(rb'\{"channel": "([^"]*)"', listing)
    assert infos == [b"x1", b"x2"], listing
    assert b'"channels": 2,' in listing
    assert socket.gethostname().encode() in listing
