"""Byte-level compatibility of EventSource subscribers with push-stream 0.6.

Every expected byte string below is what nginx 1.24.0 + nginx-push-stream-module
0.6.0 sent for the same requests under the equivalent nginx configuration (the
captures "sub_eventsource", "sub_padding" and "misc_edge_cases"), without the
Date and Server headers.  Message times, and the tags that depend on them, are
read from the answer, checked against the clock, and the tags recomputed with
push-stream's rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fastpush.testing import (
    TPL,
    RawClient,
    ServerProcess,
    chunk,
    chunks,
    exchange,
    message_times,
    polled_head,
    primer,
    pub_location,
    publish,
    push_stream_config,
    read_bytes,
    read_chunks,
    read_response,
    req,
    stats_location,
    stored,
    stream_head,
    strip_volatile,
    sub_location,
    subscribe,
    tags,
    tpl,
    wait_subscribers,
)

EVENT_STREAM_HEAD = stream_head(b"text/event-stream; charset=utf-8")


# The eventsource part of the nginx "basic" configuration of the captures.  The
# streaming padding location stays: push-stream sizes its padding strings by
# the largest padding configured in any location.
BASIC = push_stream_config(
    {"shared_memory_size": "32M"},
    [
        stats_location(),
        pub_location("/pub-store", store_messages=True),
        pub_location("/pub-admin", mode="admin", store_messages=True),
        sub_location("ev", "eventsource"),
        sub_location("ev-tpl", "eventsource", message_template=TPL),
        sub_location(
            "ev-hf",
            "eventsource",
            header_template="HEADER\r\nline2",
            footer_template="FOOTER\nF2",
        ),
        sub_location("ev-ping", "eventsource", ping_message_interval="1s"),
        sub_location(
            "ev-ttl",
            "eventsource",
            subscriber_connection_ttl="2s",
            footer_template="bye",
        ),
        sub_location("ev-qs", "eventsource", last_event_id="$arg_eventid"),
        sub_location("ev-pad", "eventsource", padding_by_user_agent="Pad,250,110"),
        sub_location("ev-data", "eventsource", message_template="data: X~text~"),
        sub_location(
            "sub-pad",
            "streaming",
            padding_by_user_agent="[Mm]ozilla,300,150:Chrome,40,20",
            header_template="HDR",
        ),
        sub_location("poll-tpl", "polling", message_template=TPL),
    ],
)


# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic() -> Iterator[ServerProcess]:
    with ServerProcess(BASIC) as srv:
        yield srv


@pytest.fixture(scope="module", autouse=True)
def timers(basic) -> Iterator[dict[str, tuple[RawClient, bytes]]]:
    """Subscribers whose answers wait on timers, opened when the module starts
    so the waiting overlaps the other tests."""
    opened = {
        path: subscribe(basic, req("GET", path))
        for path in ("/ev-ping/e4", "/ev-ttl/e5")
    }
    yield opened
    for c, _ in opened.values():
        c.close()


# -- tests -------------------------------------------------------------------------


def test_eventsource_starts_with_an_empty_comment_line(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e0"))
    with c:
        got = read_bytes(c, len(chunk(b": \n")))
    assert head + got == EVENT_STREAM_HEAD + chunk(b": \n")


def test_eventsource_message_is_a_data_line_and_a_blank_line(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e1"))
    with c:
        publish(basic, "e1", b"hello")
        body = chunks(b": \n", b"data: hello\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_splits_multiline_message_into_data_lines(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e1b"))
    with c:
        publish(basic, "e1b", b"l1\nl2\r\nl3\rl4")
        body = chunks(b": \n", b"data: l1\ndata: l2\ndata: l3\rl4\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_drops_empty_lines_of_a_message(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e1c"))
    with c:
        publish(basic, "e1c", b"a\n\nb")
        publish(basic, "e1c", b"\n")
        body = chunks(b": \n", b"data: a\ndata: b\n\n", b"\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_event_id_and_type_come_as_chunks_before_the_data(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e1d"))
    with c:
        publish(basic, "e1d", b"with-ev", "Event-Id: 42\r\nEvent-Type: update\r\n")
        publish(basic, "e1d", b"t-only", "Event-Type: onlytype\r\n")
        body = chunks(
            b": \n",
            b"id: 42\n",
            b"event: update\n",
            b"data: with-ev\n\n",
            b"event: onlytype\n",
            b"data: t-only\n\n",
        )
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_empty_event_headers_give_empty_fields(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/ee2"))
    with c:
        publish(basic, "ee2", b"e", "Event-Id: \r\nEvent-Type: \r\n")
        body = chunks(b": \n", b"id: \n", b"event: \n", b"data: e\n\n")
        got = read_bytes(c, len(body), timeout=1.0)
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_event_id_header_name_is_case_insensitive(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/ee3"))
    with c:
        publish(basic, "ee3", b"e", "event-id: X\r\n")
        body = chunks(b": \n", b"id: X\n", b"data: e\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_renders_the_template_once_per_line(basic) -> None:
    last = primer(basic, "e2-primer")
    t0 = time.time()
    c, head = subscribe(basic, req("GET", "/ev-tpl/e2"))
    with c:
        publish(basic, "e2", b"x", "Event-Id: i1\r\nEvent-Type: ty\r\n")
        publish(basic, "e2", b"ab\ncde")
        got = read_chunks(c, 5)
    times = message_times(got, t0, time.time(), n=3)
    tag = tags(times[:2], last)
    body = chunks(
        b": \n",
        b"id: i1\n",
        b"event: ty\n",
        b"data: " + tpl(1, "e2", b"x", tag[0], times[0], b"i1", b"ty") + b"\n\n",
        b"data: "
        + tpl(2, "e2", b"ab", tag[1], times[1], b"", b"")
        + b"\ndata: "
        + tpl(2, "e2", b"cde", tag[1], times[1], b"", b"")
        + b"\n\n",
    )
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_template_starting_with_data_is_not_wrapped(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev-data/e6"))
    with c:
        publish(basic, "e6", b"abc")
        publish(basic, "e6", b"l1\nl2")
        body = chunks(b": \n", b"data: Xabc\n", b"data: Xl1data: Xl2\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_header_and_footer_become_comment_lines(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev-hf/e3"))
    with c:
        first = read_bytes(c, len(chunk(b": HEADER\n: line2\n")))
        publish(basic, "e3", b"m")
        answer = exchange(basic, req("DELETE", "/pub-admin?id=e3"))
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        rest = chunks(b"data: m\n\n", b"data: Channel deleted\n\n", b": FOOTER\n: F2\n")
        got = first + read_bytes(c, len(rest) + 5)
    assert head + got == (
        EVENT_STREAM_HEAD + chunk(b": HEADER\n: line2\n") + rest + b"0\r\n\r\n"
    )


def test_eventsource_deleted_channel_message_then_end(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e8"))
    with c:
        read_bytes(c, len(chunk(b": \n")))
        answer = exchange(basic, req("DELETE", "/pub-admin?id=e8"))
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        body = chunk(b"data: Channel deleted\n\n") + b"0\r\n\r\n"
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


@pytest.fixture(scope="module")
def with_event_ids(basic) -> str:
    for i in (1, 2, 3):
        publish(basic, "e7", b"s%d" % i, f"Event-Id: id{i}\r\n")
    return "e7"


def test_eventsource_last_event_id_resumes_after_that_event(
    basic, with_event_ids
) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e7", None, "Last-Event-Id: id1\r\n"))
    with c:
        body = chunks(
            b": \n", b"id: id2\n", b"data: s2\n\n", b"id: id3\n", b"data: s3\n\n"
        )
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_unknown_last_event_id_sends_nothing_old(basic) -> None:
    for i in (1, 2, 3):
        publish(basic, "e7n", b"s%d" % i, f"Event-Id: id{i}\r\n")
    c, head = subscribe(basic, req("GET", "/ev/e7n", None, "Last-Event-Id: nope\r\n"))
    with c:
        publish(basic, "e7n", b"new")
        body = chunks(b": \n", b"data: new\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_last_event_id_from_a_query_argument(basic, with_event_ids) -> None:
    c, head = subscribe(basic, req("GET", "/ev-qs/e7?eventid=id2"))
    with c:
        body = chunks(b": \n", b"id: id3\n", b"data: s3\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_backtrack(basic, with_event_ids) -> None:
    c, head = subscribe(basic, req("GET", "/ev/e7.b1"))
    with c:
        body = chunks(b": \n", b"id: id3\n", b"data: s3\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_padding_is_colons_and_a_newline(basic) -> None:
    c, head = subscribe(basic, req("GET", "/ev-pad/pd5", None, "User-Agent: Pad\r\n"))
    with c:
        publish(basic, "pd5", b"abc")
        body = chunks(b": \n", b":" * 299 + b"\n", b"data: abc\n\n", b":" * 99 + b"\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_location_switched_to_polling_renders_events_as_text(
    basic,
) -> None:
    publish(basic, "evm", b"e-msg", "Event-Id: i1\r\nEvent-Type: t1\r\n")
    when, tag = stored(basic, "evm", 1)[0]
    raw = req("GET", "/ev/evm.b1", None, "X-Nginx-PushStream-Mode: polling\r\n")
    assert (
        exchange(basic, raw)
        == polled_head(when, tag)
        + chunks(b": \n", b"id: i1\n", b"event: t1\n", b"data: e-msg\n\n")
        + b"0\r\n\r\n"
    )


def test_eventsource_location_switched_to_long_polling_keeps_the_event_stream_type(
    basic,
) -> None:
    c = basic.client(timeout=5.0)
    c.send(req("GET", "/ev/evm2", None, "X-Nginx-PushStream-Mode: long-polling\r\n"))
    with c:
        wait_subscribers(basic, "evm2", 1)
        publish(basic, "evm2", b"lp", "Event-Id: i2\r\n")
        actual = strip_volatile(read_response(c))
    when, tag = stored(basic, "evm2", 1)[0]
    assert (
        actual
        == polled_head(when, tag, b"text/event-stream; charset=utf-8")
        + chunks(b": \n", b"id: i2\n", b"data: lp\n\n")
        + b"0\r\n\r\n"
    )


# -- timers (last, so that their waiting overlaps the tests above) ----------


def test_eventsource_ping_is_a_comment_line_with_minus_one(timers) -> None:
    c, head = timers["/ev-ping/e4"]
    body = chunks(b": \n", b": -1\n")
    got = read_bytes(c, len(body), timeout=4.0)
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_connection_ttl_sends_the_footer_as_comment(timers) -> None:
    c, head = timers["/ev-ttl/e5"]
    body = chunks(b": \n", b": bye\n") + b"0\r\n\r\n"
    got = read_bytes(c, len(body), timeout=4.0)
    assert head + got == EVENT_STREAM_HEAD + body
