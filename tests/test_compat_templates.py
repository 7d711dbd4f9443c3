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

from fastpush.testing import (
    NO_CACHE,
    TPL,
    ServerProcess,
    chunk,
    exchange,
    message_times,
    primer,
    publish,
    read_chunks,
    req,
    stream_head,
    subscribe,
    tags,
    tpl,
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


# -- tests -------------------------------------------------------------------------


def test_template_replaces_every_placeholder(server) -> None:
    start = primer(server, "t1-primer")
    t0 = time.time()
    c, head = subscribe(server, req("GET", "/sub-tpl/t1"))
    with c:
        publish(server, "t1", b"hello")
        publish(server, "t1", b"with ev", "Event-Id: eid-1\r\nEvent-Type: etype\r\n")
        got = read_chunks(c, 2)
    times = message_times(got, t0, time.time(), n=2)
    tag = tags(times, start)
    assert head + got == stream_head() + chunk(
        tpl(1, "t1", b"hello", tag[0], times[0])
    ) + chunk(tpl(2, "t1", b"with ev", tag[1], times[1], b"eid-1", b"etype"))


def test_template_inserts_the_text_raw(server) -> None:
    # no JSON escaping, and a placeholder inside the text stays as it is
    start = primer(server, "t1b-primer")
    t0 = time.time()
    c, head = subscribe(server, req("GET", "/sub-tpl/t1b"))
    with c:
        publish(server, "t1b", b'q"u\not~id~e')
        got = read_chunks(c, 1)
    times = message_times(got, t0, time.time(), n=1)
    assert head + got == stream_head() + chunk(
        tpl(1, "t1b", b'q"u\not~id~e', tags(times, start)[0], times[0])
    )


def test_template_ids_count_per_channel(server) -> None:
    start = primer(server, "t23-primer")
    t0 = time.time()
    c, head = subscribe(server, req("GET", "/sub-tpl/t2/t3"))
    with c:
        publish(server, "t3", b"to-t3")
        publish(server, "t2", b"to-t2")
        got = read_chunks(c, 2)
    times = message_times(got, t0, time.time(), n=2)
    tag = tags(times, start)
    assert head + got == stream_head() + chunk(
        tpl(1, "t3", b"to-t3", tag[0], times[0])
    ) + chunk(tpl(1, "t2", b"to-t2", tag[1], times[1]))


def test_tag_counts_the_messages_of_one_second_on_the_whole_server(fresh) -> None:
    # on a new server the sequence starts at 1 whatever the channel
    t0 = time.time()
    for ch, text in (("a", b"1"), ("b", b"2"), ("a", b"3"), ("c", b"4")):
        publish(fresh, ch, text)
    raw = exchange(fresh, req("GET", "/poll-tpl/a.b2/b.b1/c.b1"))
    times = message_times(raw, t0, time.time(), n=4)
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
    c, head = subscribe(server, req("GET", "/sub-tpl/ee"))
    with c:
        publish(server, "ee", b"e", "Event-Id: \r\nEvent-Type: \r\n")
        got = read_chunks(c, 1)
    times = message_times(got, t0, time.time(), n=1)
    assert head + got == stream_head() + chunk(
        tpl(1, "ee", b"e", tags(times, start)[0], times[0])
    )


def test_same_channel_twice_renders_the_message_twice(server) -> None:
    start = primer(server, "dup-primer")
    t0 = time.time()
    c, head = subscribe(server, req("GET", "/sub-tpl/dup/dup"))
    with c:
        publish(server, "dup", b"twice")
        got = read_chunks(c, 2)
    times = message_times(got, t0, time.time(), n=2)
    message = chunk(tpl(1, "dup", b"twice", tags(times[:1], start)[0], times[0]))
    assert head + got == stream_head() + message * 2


def test_empty_path_segment_is_not_a_channel(fresh) -> None:
    t0 = time.time()
    c, head = subscribe(fresh, req("GET", "/sub-tpl/x1//x2"))
    with c:
        publish(fresh, "x2", b"to-x2")
        got = read_chunks(c, 1)
    times = message_times(got, t0, time.time(), n=1)
    assert head + got == stream_head() + chunk(tpl(1, "x2", b"to-x2", 1, times[0]))
    listing = exchange(fresh, req("GET", "/channels-stats?id=ALL"))
    infos = re.findall(rb'\{"channel": "([^"]*)"', listing)
    assert infos == [b"x1", b"x2"], listing
    assert b'"channels": 2,' in listing
    assert socket.gethostname().encode() in listing
