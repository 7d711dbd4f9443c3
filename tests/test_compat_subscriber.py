"""Byte-level compatibility of streaming and WebSocket subscribers with push-stream 0.6.

Every expected byte string below is what nginx 1.24.0 + nginx-push-stream-module
0.6.0 sent for the same requests under the equivalent nginx configuration (the
captures "sub_streaming*", "sub_errors", "sub_mode_header", "sub_padding",
"sub_websocket*", "limits" and "misc_edge_cases"), without the Date and Server
headers.  One difference is accepted: push-stream holds the streaming response
head until the first chunk, fastpush sends it at once; the bytes are the same.
Message times (and the tags that depend on them) vary per run: they are read
from the answer, checked against the clock, and the tags recomputed with
push-stream's rule.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from fastpush.testing import (
    EPOCH,
    NO_CACHE,
    TPL,
    RawClient,
    ServerProcess,
    chunk,
    chunks,
    delete,
    empty,
    exchange,
    explain,
    http_dates,
    message_times,
    primer,
    pub_location,
    publish,
    push_stream_config,
    read_bytes,
    read_response,
    req,
    stored,
    stream_head,
    strip_volatile,
    sub_location,
    subscribe,
    tags,
    tpl,
    ws_frame,
)

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key, as in the captures
WS_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    + NO_CACHE
    + b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


# The nginx "basic" configuration of the captures, the locations this module uses.
BASIC = push_stream_config(
    {"shared_memory_size": "32M"},
    [
        pub_location("/pub"),
        pub_location("/pub-store", store_messages=True),
        pub_location("/pub-admin", mode="admin", store_messages=True),
        sub_location("sub", "streaming"),
        sub_location("sub-tpl", "streaming", message_template=TPL),
        sub_location(
            "sub-hf",
            "streaming",
            header_template="HEADER\r\nline2",
            footer_template="FOOTER",
            message_template="<~text~>",
        ),
        sub_location("sub-ct", "streaming", content_type="text/html; charset=utf-8"),
        sub_location(
            "sub-ping", "streaming", ping_message_interval="1s", message_template=TPL
        ),
        sub_location("sub-ping-def", "streaming", ping_message_interval="1s"),
        sub_location(
            "sub-ttl",
            "streaming",
            subscriber_connection_ttl="2s",
            header_template="H",
            footer_template="F",
        ),
        sub_location("sub-cors", "streaming", allowed_origins="http://example.com"),
        sub_location("sub-auth", "streaming", authorized_channels_only=True),
        sub_location(
            "sub-qs",
            "streaming",
            last_received_message_time="$arg_time",
            last_received_message_tag="$arg_tag",
            last_event_id="$arg_eventid",
        ),
        sub_location(
            "sub-pad",
            "streaming",
            padding_by_user_agent="[Mm]ozilla,300,150:Chrome,40,20",
            header_template="HDR",
            message_template="~text~",
        ),
        sub_location(
            "sub-ua",
            "streaming",
            user_agent="$arg_ua",
            padding_by_user_agent="Pad,250,110",
        ),
        sub_location("ev", "eventsource"),
        sub_location("ev-pad", "eventsource", padding_by_user_agent="Pad,250,110"),
        sub_location("lp", "long-polling"),
        sub_location("poll", "polling"),
        sub_location("poll-tpl", "polling", message_template=TPL),
        sub_location("ws", "websocket"),
        sub_location("ws-tpl", "websocket", message_template=TPL),
        sub_location(
            "ws-hf", "websocket", header_template="HEADER", footer_template="FOOTER"
        ),
        sub_location("ws-ping", "websocket", ping_message_interval="1s"),
        sub_location("ws-ttl", "websocket", subscriber_connection_ttl="2s"),
        sub_location(
            "ws-pub", "websocket", websocket_allow_publish=True, store_messages=True
        ),
        sub_location("ws-auth", "websocket", authorized_channels_only=True),
    ],
)

# The nginx "limits" configuration of the captures.
LIMITS = push_stream_config(
    {
        "shared_memory_size": "32M",
        "max_channel_id_length": 10,
        "max_number_of_channels": 3,
        "max_number_of_wildcard_channels": 2,
        "wildcard_channel_prefix": "bd_",
        "max_subscribers_per_channel": 1,
        "max_messages_stored_per_channel": 3,
        "channel_deleted_message_text": "CUSTOM DELETE",
        "ping_message_text": "PING!",
        "timeout_with_body": True,
    },
    [
        pub_location("/pub", mode="admin", store_messages=True),
        sub_location("sub", "streaming", wildcard_channel_max_qtd=1),
        sub_location(
            "sub-ping", "streaming", ping_message_interval="1s", message_template=TPL
        ),
        sub_location(
            "sub-auth",
            "streaming",
            authorized_channels_only=True,
            wildcard_channel_max_qtd=1,
        ),
        sub_location("lp", "long-polling", longpolling_connection_ttl="1s"),
        sub_location("poll", "polling"),
        sub_location("ws", "websocket", wildcard_channel_max_qtd=1),
    ],
)


# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic() -> Iterator[ServerProcess]:
    with ServerProcess(BASIC) as srv:
        yield srv


@pytest.fixture
def limits() -> Iterator[ServerProcess]:
    with ServerProcess(LIMITS) as srv:
        yield srv


def ws_req(target: str, headers: str = "") -> bytes:
    return req(
        "GET",
        target,
        None,
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}",
    )


@pytest.fixture(scope="module", autouse=True)
def timers(basic) -> Iterator[dict[str, tuple[RawClient, bytes]]]:
    """Subscribers whose answers wait on timers (ping interval, connection
    ttl), opened when the module starts so the waiting overlaps other tests."""
    opened: dict[str, tuple[RawClient, bytes]] = {}
    for path in ("/sub-ttl/h2", "/sub-ping/p1", "/sub-ping-def/p2"):
        opened[path] = subscribe(basic, req("GET", path))
    for path in ("/ws-ping/w6", "/ws-ttl/w7"):
        opened[path] = ws_open(basic, path)
    yield opened
    for c, _ in opened.values():
        c.close()


# -- streaming -------------------------------------------------------------------


def test_streaming_sends_each_message_as_one_chunk(basic) -> None:
    c, head = subscribe(basic, req("GET", "/sub/s1"))
    with c:
        publish(basic, "s1", b"msg1")
        publish(basic, "s1", b"line1\nline2")
        publish(basic, "s1", b"ev", "Event-Id: id9\r\nEvent-Type: tp\r\n")
        body = chunk(b"msg1") + chunk(b"line1\nline2") + chunk(b"ev")
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


def test_streaming_http10_is_not_chunked_and_answers_connection_close(basic) -> None:
    c = basic.client(timeout=5.0)
    with c:
        c.send(b"GET /sub/s10 HTTP/1.0\r\nHost: localhost\r\n\r\n")
        head = strip_volatile(c.read_head()[2])
        publish(basic, "s10", b"m10")
        got = read_bytes(c, 3)
    assert head + got == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + NO_CACHE
        + b"\r\nm10"
    )


def test_location_content_type_replaces_the_default(basic) -> None:
    c, head = subscribe(basic, req("GET", "/sub-ct/s2"))
    with c:
        publish(basic, "s2", b"m-ct")
        got = read_bytes(c, len(chunk(b"m-ct")))
    assert head + got == stream_head(b"text/html; charset=utf-8") + chunk(b"m-ct")


@pytest.fixture(scope="module")
def backtrack_channels(basic) -> tuple[bytes, list[bytes]]:
    """Channel bt with m1..m3 and bt2 with x1 stored, as in the capture; the
    primer (time, tag) before them and their four publish times."""
    start = primer(basic, "bt-primer")
    t0 = time.time()
    for text in (b"m1", b"m2", b"m3"):
        publish(basic, "bt", text)
    publish(basic, "bt2", b"x1")
    raw = exchange(basic, req("GET", "/poll-tpl/bt.b3/bt2.b1"))
    return start, message_times(raw, t0, time.time())


def test_backtrack_sends_the_last_n_stored_messages(basic, backtrack_channels) -> None:
    c, head = subscribe(basic, req("GET", "/sub/bt.b2"))
    with c:
        got = read_bytes(c, 2 * len(chunk(b"m2")))
    assert head + got == stream_head() + chunk(b"m2") + chunk(b"m3")


def test_backtrack_larger_than_stored_sends_all(basic, backtrack_channels) -> None:
    c, head = subscribe(basic, req("GET", "/sub/bt.b10"))
    with c:
        got = read_bytes(c, 3 * len(chunk(b"m1")))
    assert head + got == stream_head() + chunk(b"m1") + chunk(b"m2") + chunk(b"m3")


def test_backtrack_zero_sends_no_stored_message(basic, backtrack_channels) -> None:
    c, head = subscribe(basic, req("GET", "/sub/bt0.b0"))
    with c:
        publish(basic, "bt0", b"new")
        got = read_bytes(c, len(chunk(b"new")))
    assert head + got == stream_head() + chunk(b"new")


def test_backtrack_of_several_channels_follows_the_path_order(
    basic, backtrack_channels
) -> None:
    start, times = backtrack_channels
    tag = tags(times, start)
    body = (
        chunk(tpl(1, "bt2", b"x1", tag[3], times[3]))
        + chunk(tpl(2, "bt", b"m2", tag[1], times[1]))
        + chunk(tpl(3, "bt", b"m3", tag[2], times[2]))
    )
    c, head = subscribe(basic, req("GET", "/sub-tpl/bt2.b1/bt.b2"))
    with c:
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


def test_backtrack_then_new_messages_of_another_channel(
    basic, backtrack_channels
) -> None:
    c, head = subscribe(basic, req("GET", "/sub/bt.b1/bt2"))
    with c:
        first = read_bytes(c, len(chunk(b"m3")))
        publish(basic, "bt2", b"x2")
        second = read_bytes(c, len(chunk(b"x2")))
    assert head + first + second == stream_head() + chunk(b"m3") + chunk(b"x2")


def test_trailing_slash_subscribes_to_the_channel_only(
    basic, backtrack_channels
) -> None:
    c, head = subscribe(basic, req("GET", "/sub/bt/"))
    with c:
        publish(basic, "bt", b"m4")
        got = read_bytes(c, len(chunk(b"m4")))
    assert head + got == stream_head() + chunk(b"m4")


def test_non_numeric_backtrack_suffix_is_part_of_the_channel_id(basic) -> None:
    c, head = subscribe(basic, req("GET", "/sub/bt.b2x"))
    with c:
        publish(basic, "bt.b2x", b"odd")
        got = read_bytes(c, len(chunk(b"odd")))
    assert head + got == stream_head() + chunk(b"odd")


def test_same_channel_twice_delivers_every_message_twice(basic) -> None:
    c, head = subscribe(basic, req("GET", "/sub/dup/dup"))
    with c:
        publish(basic, "dup", b"twice")
        got = read_bytes(c, 2 * len(chunk(b"twice")))
    assert head + got == stream_head() + chunk(b"twice") * 2


def test_percent_encoded_path_reaches_the_unescaped_channel(basic) -> None:
    publish(basic, "sp%20ace", b"x")
    c, head = subscribe(basic, req("GET", "/sub/sp%20ace.b1"))
    with c:
        got = read_bytes(c, len(chunk(b"x")))
    assert head + got == stream_head() + chunk(b"x")


def test_channel_id_in_the_path_is_unescaped_again_after_the_uri(basic) -> None:
    publish(basic, "sp%20ace2", b"x")
    c, head = subscribe(basic, req("GET", "/sub/sp%2520ace2.b1"))
    with c:
        got = read_bytes(c, len(chunk(b"x")), timeout=1.0)
    assert head + got == stream_head() + chunk(b"x")


# -- header and footer templates, delete, ttl ---------------------------------------


def test_header_message_and_footer_templates_wrap_a_deleted_channel(basic) -> None:
    body = (
        chunk(b"HEADER\r\nline2")
        + chunk(b"<a>")
        + chunk(b"<Channel deleted>")
        + chunk(b"FOOTER")
        + b"0\r\n\r\n"
    )
    c, head = subscribe(basic, req("GET", "/sub-hf/h1"))
    with c:
        first = read_bytes(c, len(chunk(b"HEADER\r\nline2")))
        publish(basic, "h1", b"a")
        second = read_bytes(c, len(chunk(b"<a>")))
        delete(basic, "h1")
        rest = read_bytes(c, len(body) - len(first) - len(second))
    assert head + first + second + rest == stream_head() + body


def test_connection_is_closed_after_a_deleted_channel_ends_the_stream(basic) -> None:
    # push-stream keeps the connection alive after the last chunk; fastpush
    # closes it (a documented difference; the bytes are the same).
    c, head = subscribe(basic, req("GET", "/sub/h1c"))
    with c:
        delete(basic, "h1c")
        got = read_bytes(c, 25)
        assert c.closed_by_peer()
    assert head + got == stream_head() + chunk(b"Channel deleted") + b"0\r\n\r\n"


def test_deleted_channel_message_is_rendered_with_id_minus_2_and_epoch_time(
    basic,
) -> None:
    body = chunk(tpl(-2, "h3", b"Channel deleted", 0, EPOCH)) + b"0\r\n\r\n"
    c, head = subscribe(basic, req("GET", "/sub-tpl/h3"))
    with c:
        delete(basic, "h3")
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


def test_delete_body_replaces_the_channel_deleted_text(basic) -> None:
    c, head = subscribe(basic, req("GET", "/sub/h4"))
    with c:
        delete(basic, "h4", b"bye now")
        got = read_bytes(c, len(chunk(b"bye now")) + 5)
    assert head + got == stream_head() + chunk(b"bye now") + b"0\r\n\r\n"


def test_deleting_one_of_two_channels_keeps_the_stream_open(basic) -> None:
    body = (
        chunk(b"Channel deleted")
        + chunk(b"still here")
        + chunk(b"Channel deleted")
        + b"0\r\n\r\n"
    )
    c, head = subscribe(basic, req("GET", "/sub/h5/h6"))
    with c:
        delete(basic, "h5")
        first = read_bytes(c, len(chunk(b"Channel deleted")))
        publish(basic, "h6", b"still here")
        second = read_bytes(c, len(chunk(b"still here")))
        delete(basic, "h6")
        rest = read_bytes(c, len(body) - len(first) - len(second))
    assert head + first + second + rest == stream_head() + body


def test_deleting_two_channels_at_once_sends_two_deleted_messages(basic) -> None:
    body = (
        chunk(tpl(-2, "h7", b"Channel deleted", 0, EPOCH))
        + chunk(tpl(-2, "h8", b"Channel deleted", 0, EPOCH))
        + b"0\r\n\r\n"
    )
    c, head = subscribe(basic, req("GET", "/sub-tpl/h7/h8"))
    with c:
        delete(basic, "h7/h8")
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


# -- resume: If-Modified-Since, If-None-Match, Last-Event-Id --------------------------


def _stored(basic: ServerProcess, ch: str, event_ids: bool = False) -> list[bytes]:
    """Publish r1..r3 to ch; their times as a template poll shows them."""
    t0 = time.time()
    for i in (1, 2, 3):
        publish(basic, ch, b"r%d" % i, f"Event-Id: e{i}\r\n" if event_ids else "")
    raw = exchange(basic, req("GET", f"/poll-tpl/{ch}.b3"))
    return message_times(raw, t0, time.time())


def _tag_of_first(basic: ServerProcess, ch: str) -> bytes:
    return b"%d" % stored(basic, ch, 3)[0][1]


def _resumed(basic: ServerProcess, raw: bytes, expected: list[bytes], ch: str) -> None:
    """Subscribe with raw: the old messages expected come first, then a new one
    (which shows that nothing else was sent)."""
    c, head = subscribe(basic, raw)
    with c:
        body = chunks(*expected)
        got = read_bytes(c, len(body))
        publish(basic, ch, b"new")
        got += read_bytes(c, len(chunk(b"new")))
    assert head + got == stream_head() + body + chunk(b"new")


def _seconds(date: bytes) -> float:
    return time.mktime(time.strptime(date.decode(), "%a, %d %b %Y %H:%M:%S GMT"))


def test_if_modified_since_and_if_none_match_select_later_messages(basic) -> None:
    t1 = _stored(basic, "rs1")[0]
    tag1 = _tag_of_first(basic, "rs1").decode()
    headers = f"If-Modified-Since: {t1.decode()}\r\nIf-None-Match: {tag1}\r\n"
    _resumed(basic, req("GET", "/sub/rs1", None, headers), [b"r2", b"r3"], "rs1")


def test_if_modified_since_alone_skips_messages_of_that_second(basic) -> None:
    times = _stored(basic, "rs2")
    expected = [
        b"r%d" % (i + 1)
        for i, t in enumerate(times)
        if _seconds(t) > _seconds(times[0])
    ]
    raw = req("GET", "/sub/rs2", None, f"If-Modified-Since: {times[0].decode()}\r\n")
    _resumed(basic, raw, expected, "rs2")


def test_if_modified_since_epoch_sends_every_stored_message(basic) -> None:
    for i in (1, 2, 3):
        publish(basic, "rs3", b"r%d" % i)
    raw = req("GET", "/sub/rs3", None, f"If-Modified-Since: {EPOCH.decode()}\r\n")
    _resumed(basic, raw, [b"r1", b"r2", b"r3"], "rs3")


def test_last_event_id_sends_the_messages_after_that_event(basic) -> None:
    for i in (1, 2, 3):
        publish(basic, "rs4", b"r%d" % i, f"Event-Id: e{i}\r\n")
    _resumed(
        basic, req("GET", "/sub/rs4", None, "Last-Event-Id: e2\r\n"), [b"r3"], "rs4"
    )


def test_last_received_message_time_and_tag_from_query_arguments(basic) -> None:
    t1 = _stored(basic, "rs5")[0]
    tag1 = _tag_of_first(basic, "rs5").decode()
    raw = req("GET", f"/sub-qs/rs5?time={quote(t1.decode())}&tag={tag1}")
    _resumed(basic, raw, [b"r2", b"r3"], "rs5")


def test_last_event_id_from_a_query_argument(basic) -> None:
    for i in (1, 2, 3):
        publish(basic, "rs6", b"r%d" % i, f"Event-Id: e{i}\r\n")
    _resumed(basic, req("GET", "/sub-qs/rs6?eventid=e1"), [b"r2", b"r3"], "rs6")


def test_backtrack_wins_over_if_modified_since(basic) -> None:
    for i in (1, 2, 3):
        publish(basic, "rs7", b"r%d" % i)
    raw = req("GET", "/sub/rs7.b1", None, f"If-Modified-Since: {EPOCH.decode()}\r\n")
    _resumed(basic, raw, [b"r3"], "rs7")


# -- CORS ----------------------------------------------------------------------------

CORS_SUB = (
    b"Access-Control-Allow-Origin: http://example.com\r\n"
    b"Access-Control-Allow-Methods: GET\r\n"
    b"Access-Control-Allow-Headers: "
    b"If-Modified-Since,If-None-Match,Etag,Event-Id,Event-Type,Last-Event-Id\r\n"
)


def test_subscriber_options_answers_cors_headers_without_no_cache(basic) -> None:
    raw = req("OPTIONS", "/sub-cors/c1", None, "Origin: http://example.com\r\n")
    assert exchange(basic, raw) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
        + CORS_SUB
        + b"\r\n"
    )


def test_subscriber_options_without_allowed_origins_is_bare_200(basic) -> None:
    assert exchange(basic, req("OPTIONS", "/sub/c1")) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    )


def test_streaming_with_allowed_origins_puts_cors_before_no_cache(basic) -> None:
    raw = req("GET", "/sub-cors/c2", None, "Origin: http://example.com\r\n")
    c, head = subscribe(basic, raw)
    with c:
        publish(basic, "c2", b"cors-msg")
        got = read_bytes(c, len(chunk(b"cors-msg")))
    assert head + got == stream_head(cors=CORS_SUB) + chunk(b"cors-msg")


def test_subscriber_405_with_allowed_origins_puts_cors_before_no_cache(basic) -> None:
    assert exchange(basic, req("POST", "/sub-cors/c1", b"x")) == (
        b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
        + CORS_SUB
        + NO_CACHE
        + b"Allow: GET\r\n\r\n"
    )


# -- errors -----------------------------------------------------------------------


def test_missing_channel_id_is_400_in_every_http_mode(basic) -> None:
    no_id = empty(b"400 Bad Request", explain("No channel id provided."))
    with basic.client(timeout=5.0) as c:
        c.send(req("GET", "/sub/") + req("GET", "/lp/") + req("GET", "/ev/"))
        got = [strip_volatile(read_response(c)) for _ in range(3)]
    assert got == [no_id] * 3


def test_reserved_and_wildcard_channel_ids_are_forbidden(basic) -> None:
    forbidden = empty(
        b"403 Forbidden", explain("Channel id not authorized for this method.")
    )
    with basic.client(timeout=5.0) as c:
        for path in ("/sub/ALL", "/sub/a*b", "/sub/ok/ALL", "/poll/ALL"):
            c.send(req("GET", path))
        got = [strip_volatile(read_response(c)) for _ in range(4)]
    assert got == [forbidden] * 4


def test_methods_other_than_get_are_405_and_bodies_discarded(basic) -> None:
    not_allowed = empty(b"405 Not Allowed", b"Allow: GET\r\n")
    with basic.client(timeout=5.0) as c:
        c.send(
            req("POST", "/sub/e1", b"x")
            + req("PUT", "/sub/e1", b"x")
            + req("DELETE", "/sub/e1")
            + req("HEAD", "/sub/e1")
            + req("PATCH", "/sub/e1", b"x")
        )
        got = [strip_volatile(read_response(c)) for _ in range(5)]
    assert got == [not_allowed] * 5


def test_authorized_channels_only_forbids_channels_without_stored_messages(
    basic,
) -> None:
    cannot = empty(b"403 Forbidden", explain("Subscriber could not create channels."))
    publish(basic, "authnostore", b"x", path="/pub")
    assert exchange(basic, req("GET", "/sub-auth/nochannel")) == cannot
    assert exchange(basic, req("GET", "/sub-auth/authnostore")) == cannot


def test_authorized_channels_only_accepts_a_channel_with_stored_messages(
    basic,
) -> None:
    publish(basic, "authok", b"stored")
    c, head = subscribe(basic, req("GET", "/sub-auth/authok"))
    with c:
        publish(basic, "authok", b"next")
        got = read_bytes(c, len(chunk(b"next")))
    assert head + got == stream_head() + chunk(b"next")


# -- X-Nginx-PushStream-Mode ----------------------------------------------------------


def test_mode_header_polling_without_anything_to_send_is_304(basic) -> None:
    not_modified = (
        b"HTTP/1.1 304 Not Modified\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 0\r\nConnection: keep-alive\r\n" + NO_CACHE + b"\r\n"
    )
    publish(basic, "mh1", b"stored-1")
    for value in ("polling", "POLLING"):
        raw = req("GET", "/sub/mh1", None, f"X-Nginx-PushStream-Mode: {value}\r\n")
        assert exchange(basic, raw) == not_modified, value


def test_mode_header_polling_with_backtrack_answers_the_stored_message(basic) -> None:
    t0 = time.time()
    publish(basic, "mh2", b"stored-1")
    t1 = time.time()
    raw = req("GET", "/sub/mh2.b1", None, "X-Nginx-PushStream-Mode: polling\r\n")
    actual = exchange(basic, raw)
    m = re.search(rb"Last-Modified: ([^\r]*)\r\n", actual)
    assert m is not None and m.group(1) in http_dates(t0, t1), actual
    tag = re.search(rb"Etag: W/(\d+)\r\n", actual)
    assert tag is not None, actual
    assert actual == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nLast-Modified: "
        + m.group(1)
        + b"\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        + NO_CACHE
        + b"Etag: W/"
        + tag.group(1)
        + b"\r\n\r\n"
        + chunk(b"stored-1")
        + b"0\r\n\r\n"
    )


def test_mode_header_for_a_mode_the_location_cannot_switch_to_is_ignored(
    basic,
) -> None:
    raw = req("GET", "/sub/mh3", None, "X-Nginx-PushStream-Mode: eventsource\r\n")
    c, head = subscribe(basic, raw)
    with c:
        publish(basic, "mh3", b"m2")
        got = read_bytes(c, len(chunk(b"m2")))
    assert head + got == stream_head() + chunk(b"m2")


# -- padding by user agent ------------------------------------------------------------


def test_padding_follows_header_and_messages_for_a_matching_user_agent(basic) -> None:
    c, head = subscribe(
        basic, req("GET", "/sub-pad/pd1", None, "User-Agent: Mozilla/5.0\r\n")
    )
    with c:
        publish(basic, "pd1", b"abc")
        publish(basic, "pd1", b"y" * 200)
        body = (
            chunk(b"HDR")
            + chunk(b"\r\n" * 150)
            + chunk(b"abc")
            + chunk(b"\r\n" * 100)
            + chunk(b"y" * 200)
        )
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


def test_padding_uses_the_first_matching_user_agent_rule(basic) -> None:
    c, head = subscribe(
        basic, req("GET", "/sub-pad/pd2", None, "User-Agent: xx Chrome yy\r\n")
    )
    with c:
        publish(basic, "pd2", b"abc")
        body = chunk(b"HDR") + chunk(b"\r\n" * 50) + chunk(b"abc") + chunk(b"\r\n" * 50)
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


def test_no_padding_for_other_user_agents(basic) -> None:
    c, head = subscribe(basic, req("GET", "/sub-pad/pd3", None, "User-Agent: curl\r\n"))
    with c:
        publish(basic, "pd3", b"abc")
        body = chunk(b"HDR") + chunk(b"abc")
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


def test_user_agent_for_padding_from_a_query_argument(basic) -> None:
    c, head = subscribe(basic, req("GET", "/sub-ua/pd4?ua=Pad"))
    with c:
        publish(basic, "pd4", b"abc")
        body = chunk(b"abc") + chunk(b"\r\n" * 100)
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


# -- limits ----------------------------------------------------------------------------


def test_channel_id_longer_than_max_is_400_for_subscribers(limits) -> None:
    too_long = empty(b"400 Bad Request", explain("Channel id is too large."))
    with limits.client(timeout=5.0) as c:
        c.send(req("GET", "/sub/abcdefghijk") + req("GET", "/poll/ok/abcdefghijk"))
        got = [strip_volatile(read_response(c)) for _ in range(2)]
    assert got == [too_long, too_long]


def test_second_subscriber_over_max_subscribers_per_channel_is_403(limits) -> None:
    exceeded = empty(
        b"403 Forbidden", explain("Subscribers limit per channel has been exceeded.")
    )
    c, head = subscribe(limits, req("GET", "/sub/ms"))
    with c:
        assert head == stream_head()
        assert exchange(limits, req("GET", "/sub/ms")) == exceeded
        assert exchange(limits, req("GET", "/lp/ms")) == exceeded


def test_channel_deleted_message_text_setting(limits) -> None:
    c, head = subscribe(limits, req("GET", "/sub/cd"))
    with c:
        assert exchange(limits, req("DELETE", "/pub?id=cd")).startswith(b"HTTP/1.1 200")
        body = chunk(b"CUSTOM DELETE") + b"0\r\n\r\n"
        got = read_bytes(c, len(body))
    assert head + got == stream_head() + body


def test_ping_message_text_setting(limits) -> None:
    ping = chunk(
        b'{"id":-1,"channel":"","text":"PING!","tag":0,"time":"%s","eventid":"",'
        b'"eventtype":"","size":5}' % EPOCH
    )
    c, head = subscribe(limits, req("GET", "/sub-ping/pg"))
    with c:
        got = read_bytes(c, len(ping), timeout=5.0)
    assert head + got == stream_head() + ping


def test_subscriber_cannot_create_channels_over_max_number_of_channels(limits) -> None:
    exceeded = empty(b"403 Forbidden", explain("Number of channels were exceeded."))
    for ch in ("c1", "c2", "c3"):
        exchange(limits, req("POST", f"/pub?id={ch}", b"x"))
    with limits.client(timeout=5.0) as c:
        c.send(req("GET", "/sub/c4") + req("GET", "/poll/c4"))
        got = [strip_volatile(read_response(c)) for _ in range(2)]
    assert got == [exceeded, exceeded]
    c, head = subscribe(limits, req("GET", "/sub/c1"))
    with c:
        assert head == stream_head()


TOO_MUCH_WILDCARD = empty(
    b"403 Forbidden", explain("Subscribed too much wildcard channels.")
)


def test_wildcard_channels_over_wildcard_channel_max_qtd_are_403(limits) -> None:
    exchange(limits, req("POST", "/pub?id=c1", b"x"))
    assert exchange(limits, req("GET", "/sub/c1/bd_1/bd_2")) == TOO_MUCH_WILDCARD
    c, head = subscribe(limits, req("GET", "/sub/c1/bd_1"))
    with c:
        exchange(limits, req("POST", "/pub?id=bd_1", b"to-wild"))
        got = read_bytes(c, len(chunk(b"to-wild")))
    assert head + got == stream_head() + chunk(b"to-wild")


def test_wildcard_channels_alone_are_403(limits) -> None:
    assert exchange(limits, req("GET", "/sub/bd_1"), timeout=1.0) == TOO_MUCH_WILDCARD


def test_authorized_channels_only_exempts_wildcard_channels(limits) -> None:
    for ch in ("c1", "c2", "c3", "bd_1", "bd_2"):
        exchange(limits, req("POST", f"/pub?id={ch}", b"x"))
    assert exchange(limits, req("GET", "/sub-auth/c1/bd_9")) == empty(
        b"403 Forbidden", explain("Number of channels were exceeded.")
    )
    assert exchange(limits, req("GET", "/sub-auth/nope/bd_2")) == empty(
        b"403 Forbidden", explain("Subscriber could not create channels.")
    )
    c, head = subscribe(limits, req("GET", "/sub-auth/c1/bd_2"))
    with c:
        assert head == stream_head()


# -- WebSocket -------------------------------------------------------------------------


def ws_open(
    srv: ServerProcess, target: str, headers: str = ""
) -> tuple[RawClient, bytes]:
    c = srv.client(timeout=5.0)
    c.send(ws_req(target, headers))
    return c, c.read_until(b"\r\n\r\n")


def text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame."""
    return ws_frame(payload, opcode=1, mask=False)


def test_websocket_handshake_answer_and_text_frames(basic) -> None:
    accept = base64.b64encode(
        hashlib.sha1(
            (WS_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()
        ).digest()
    )
    assert accept in WS_101
    c, head = ws_open(basic, "/ws/w1")
    with c:
        publish(basic, "w1", b"hello")
        publish(basic, "w1", b"z" * 200)
        publish(basic, "w1", b"q" * 70000)
        body = text_frame(b"hello") + text_frame(b"z" * 200) + text_frame(b"q" * 70000)
        got = read_bytes(c, len(body))
    assert head == WS_101
    assert got[:4] == b"\x81\x05he" and got[7:11] == b"\x81~\x00\xc8"
    assert got == body


def test_websocket_frames_carry_the_templated_message(basic) -> None:
    start = primer(basic, "w2-primer")
    t0 = time.time()
    c, head = ws_open(basic, "/ws-tpl/w2")
    with c:
        publish(basic, "w2", b"tpl", "Event-Id: e\r\nEvent-Type: t\r\n")
        got = read_bytes(c, 2)
        got += read_bytes(c, got[1] & 0x7F)
    (when,) = message_times(got, t0, time.time())
    (tag,) = tags([when], start)
    assert head + got == WS_101 + text_frame(
        tpl(1, "w2", b"tpl", tag, when, b"e", b"t")
    )


def test_websocket_header_footer_and_delete_end_with_a_close_frame(basic) -> None:
    c, head = ws_open(basic, "/ws-hf/w3")
    with c:
        publish(basic, "w3", b"m")
        delete(basic, "w3")
        body = (
            text_frame(b"HEADER")
            + text_frame(b"m")
            + text_frame(b"Channel deleted")
            + text_frame(b"FOOTER")
            + b"\x88\x00"
        )
        got = read_bytes(c, len(body))
        assert c.closed_by_peer()
    assert head + got == WS_101 + body


def test_websocket_deleted_channel_message_through_the_template(basic) -> None:
    c, head = ws_open(basic, "/ws-tpl/w4b")
    with c:
        delete(basic, "w4b")
        body = text_frame(tpl(-2, "w4b", b"Channel deleted", 0, EPOCH)) + b"\x88\x00"
        got = read_bytes(c, len(body))
        assert c.closed_by_peer()
    assert head + got == WS_101 + body


def test_websocket_on_two_channels_closes_when_the_last_is_deleted(basic) -> None:
    c, head = ws_open(basic, "/ws/w5a/w5b")
    with c:
        delete(basic, "w5a")
        first = read_bytes(c, len(text_frame(b"Channel deleted")))
        publish(basic, "w5b", b"still")
        delete(basic, "w5b")
        body = text_frame(b"still") + text_frame(b"Channel deleted") + b"\x88\x00"
        got = first + read_bytes(c, len(body))
        assert c.closed_by_peer()
    assert head + got == WS_101 + text_frame(b"Channel deleted") + body


def test_websocket_client_ping_is_answered_with_a_pong_echoing_its_payload(
    basic,
) -> None:
    # push-stream answers b"\x8a\x00" whatever the ping carried, and drops the
    # connection when the payload is not UTF-8.  RFC 6455 5.5.3 wants the
    # pong to carry the ping's data, and clients match pongs to pings by it
    # (a keepalive ping would never be answered), so fastpush echoes it.
    c, head = ws_open(basic, "/ws/w8")
    with c:
        c.send(ws_frame(b"hi", opcode=9))
        c.send(ws_frame(b"\x01\xff", opcode=9))
        pongs = read_bytes(c, 8)
        c.send(ws_frame(b"", opcode=10))  # a pong from the client is ignored
        publish(basic, "w8", b"after-ping")
        got = read_bytes(c, len(text_frame(b"after-ping")))
    assert head + pongs + got == (
        WS_101 + b"\x8a\x02hi\x8a\x02\x01\xff" + text_frame(b"after-ping")
    )


def test_websocket_client_close_without_valid_code_is_answered_1000_or_1002(
    basic,
) -> None:
    # push-stream answers any close with b"\x88\x00"; fastpush follows RFC 6455
    # (documented): an empty close is answered 1000, an invalid code 1002.
    for payload, answer in ((b"", b"\x88\x02\x03\xe8"), (b"ok", b"\x88\x02\x03\xea")):
        c, head = ws_open(basic, "/ws/w9b")
        with c:
            c.send(ws_frame(payload, opcode=8))
            got = read_bytes(c, 4)
            assert c.closed_by_peer()
        assert head + got == WS_101 + answer, payload


def test_websocket_client_close_1000_is_echoed_and_the_connection_closed(
    basic,
) -> None:
    # push-stream checks the close payload as UTF-8 text, fails on the status
    # code and drops the connection without a close frame: the client sees an
    # abnormal closure (1006).  fastpush completes the closing handshake.
    c, head = ws_open(basic, "/ws/w9")
    with c:
        c.send(ws_frame(b"\x03\xe8", opcode=8))
        got = read_bytes(c, 4)
        assert c.closed_by_peer()
    assert head + got == WS_101 + b"\x88\x02\x03\xe8"


def test_websocket_text_from_client_is_ignored_without_allow_publish(basic) -> None:
    c, head = ws_open(basic, "/ws/w10")
    with c:
        c.send(ws_frame(b"from client"))
        publish(basic, "w10", b"srv")
        got = read_bytes(c, len(text_frame(b"srv")))
    assert head + got == WS_101 + text_frame(b"srv")


def test_websocket_allow_publish_publishes_client_text_to_its_channels(basic) -> None:
    c, head = ws_open(basic, "/ws-pub/w11")
    with c:
        c.send(ws_frame(b"from client"))
        got = read_bytes(c, len(text_frame(b"from client")))
    assert head + got == WS_101 + text_frame(b"from client")
    assert exchange(basic, req("GET", "/pub?id=w11")) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 85\r\n"
        b"Connection: keep-alive\r\n" + NO_CACHE + b"\r\n"
        b'{"channel": "w11", "published_messages": 1, "stored_messages": 1, '
        b'"subscribers": 0}\r\n'
    )
    c, head = ws_open(basic, "/ws-pub/w12/w13")
    with c:
        c.send(ws_frame(b"both"))
        got = read_bytes(c, 2 * len(text_frame(b"both")))
    assert head + got == WS_101 + text_frame(b"both") * 2


def test_websocket_fragmented_and_long_client_text_is_published(basic) -> None:
    c, head = ws_open(basic, "/ws-pub/w21")
    with c:
        c.send(ws_frame(b"ab", fin=False))
        c.send(ws_frame(b"cd", opcode=0))
        c.send(ws_frame(b"L" * 300))
        body = text_frame(b"abcd") + text_frame(b"L" * 300)
        got = read_bytes(c, len(body))
    assert head + got == WS_101 + body


def test_websocket_unmasked_client_frame_is_refused_with_1002(basic) -> None:
    # push-stream accepts unmasked client frames; RFC 6455 5.1 says a server
    # MUST close with 1002, which fastpush does (documented difference).
    c, head = ws_open(basic, "/ws-pub/w15")
    with c:
        c.send(ws_frame(b"nomask", mask=False))
        got = read_bytes(c, 4)
        assert c.closed_by_peer()
    assert head + got == WS_101 + b"\x88\x02\x03\xea"


def test_websocket_frames_in_one_write_are_all_published(basic) -> None:
    # nginx handles only the first frame of a read until more bytes arrive
    # (the capture got "one" and "two" only after a third write); a client
    # expects every frame it sent, which fastpush does.
    c, head = ws_open(basic, "/ws-pub/w22")
    with c:
        c.send(ws_frame(b"one") + ws_frame(b"two") + ws_frame(b"three"))
        body = text_frame(b"one") + text_frame(b"two") + text_frame(b"three")
        got = read_bytes(c, len(body))
    assert head + got == WS_101 + body


def test_websocket_orphan_continuation_is_closed_with_1002(basic) -> None:
    # push-stream answers b"\x88\x00"; fastpush fails the connection with a
    # protocol error as RFC 6455 wants (documented difference).
    c, head = ws_open(basic, "/ws/w18")
    with c:
        c.send(ws_frame(b"y", opcode=0))
        got = read_bytes(c, 4)
        assert c.closed_by_peer()
    assert head + got == WS_101 + b"\x88\x02\x03\xea"


def test_websocket_binary_frame_is_ignored_without_allow_publish(basic) -> None:
    # push-stream closes on a binary frame; fastpush accepts binary messages
    # (published where publishing is allowed, ignored here; documented).
    c, head = ws_open(basic, "/ws/w16")
    with c:
        c.send(ws_frame(b"\x00\x01", opcode=2))
        publish(basic, "w16", b"srv")
        got = read_bytes(c, len(text_frame(b"srv")))
    assert head + got == WS_101 + text_frame(b"srv")


def test_websocket_invalid_utf8_text_is_closed_with_1007(basic) -> None:
    # push-stream drops the connection without a close frame; RFC 6455 8.1
    # wants it failed with a close frame, code 1007 (what fastpush sends).
    c, head = ws_open(basic, "/ws-pub/w17")
    with c:
        c.send(ws_frame(b"\xff\xfe"))
        got = read_bytes(c, 4)
        assert c.closed_by_peer()
    assert head + got == WS_101 + b"\x88\x02\x03\xef"


def test_websocket_backtrack_and_if_modified_since(basic) -> None:
    publish(basic, "w20", b"old1")
    publish(basic, "w20", b"old2")
    old = text_frame(b"old1") + text_frame(b"old2")
    for target, headers in (
        ("/ws/w20.b2", ""),
        ("/ws/w20", f"If-Modified-Since: {EPOCH.decode()}\r\n"),
    ):
        c, head = ws_open(basic, target, headers)
        with c:
            got = read_bytes(c, len(old))
        assert head + got == WS_101 + old, target


def test_websocket_ignores_the_mode_header(basic) -> None:
    c, head = ws_open(basic, "/ws/mx", "X-Nginx-PushStream-Mode: polling\r\n")
    with c:
        publish(basic, "mx", b"m")
        got = read_bytes(c, 3)
    assert head + got == WS_101 + text_frame(b"m")


# -- WebSocket errors ----------------------------------------------------------------

MANDATORY = explain(
    "Don't have at least one of the mandatory headers: Connection, Upgrade, "
    "Sec-WebSocket-Key and Sec-WebSocket-Version"
)


def test_websocket_handshake_without_mandatory_headers_is_400_and_closes(basic) -> None:
    for headers in (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n",
        "",
    ):
        with basic.client(timeout=5.0) as c:
            c.send(req("GET", "/ws/we1", None, headers))
            got = strip_volatile(read_response(c))
            assert got == empty(b"400 Bad Request", MANDATORY, b"close"), headers
            assert c.closed_by_peer()


def test_websocket_unsupported_version_is_400_with_supported_versions(basic) -> None:
    raw = req(
        "GET",
        "/ws/we1",
        None,
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 7\r\n",
    )
    assert exchange(basic, raw) == empty(
        b"400 Bad Request",
        b"Sec-WebSocket-Version: 8, 13\r\n"
        + explain("Version not supported. Supported versions: 8, 13"),
        b"close",
    )


def test_websocket_channel_errors_come_as_close_frame_1008_after_the_101(basic) -> None:
    for path, status, text in (
        ("/ws/ALL", 403, b"Channel id not authorized for this method."),
        ("/ws-auth/none", 403, b"Subscriber could not create channels."),
    ):
        payload = b'\x03\xf0{"http_status": %d, "explain":"%s"}' % (status, text)
        c, head = ws_open(basic, path)
        with c:
            assert head == WS_101
            got = read_bytes(c, 2 + len(payload))
            assert got == b"\x88" + bytes([len(payload)]) + payload
            assert c.closed_by_peer()


def test_websocket_without_channel_id_answers_101_then_closes(basic) -> None:
    c, head = ws_open(basic, "/ws/")
    with c:
        assert head == WS_101
        assert c.closed_by_peer()
        assert c.buf == b""


def test_websocket_location_post_is_405_with_connection_close(basic) -> None:
    raw = req("POST", "/ws/x", b"x", "Upgrade: websocket\r\n")
    assert exchange(basic, raw) == (
        b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n"
        b"Allow: GET\r\n\r\n"
    )


def test_websocket_limits_come_as_close_frames(limits) -> None:
    for ch in ("c1", "c2", "c3"):
        exchange(limits, req("POST", f"/pub?id={ch}", b"x"))
    sub, _ = subscribe(limits, req("GET", "/sub/c1"))
    with sub:
        for path, status, text in (
            ("/ws/abcdefghijk", 400, b"Channel id is too large."),
            ("/ws/c1", 403, b"Subscribers limit per channel has been exceeded."),
            ("/ws/c4", 403, b"Number of channels were exceeded."),
        ):
            payload = b'\x03\xf0{"http_status": %d, "explain":"%s"}' % (status, text)
            c, head = ws_open(limits, path)
            with c:
                assert head == WS_101
                got = read_bytes(c, 2 + len(payload))
            assert got == b"\x88" + bytes([len(payload)]) + payload


# -- timers (last, so that their waiting overlaps the tests above) ----------


def test_subscriber_connection_ttl_ends_the_stream_with_the_footer(timers) -> None:
    c, head = timers["/sub-ttl/h2"]
    body = chunk(b"H") + chunk(b"F") + b"0\r\n\r\n"
    got = read_bytes(c, len(body), timeout=4.0)
    assert head + got == stream_head() + body


def test_ping_is_the_ping_text_through_the_message_template(timers) -> None:
    ping = chunk(
        b'{"id":-1,"channel":"","text":" ","tag":0,"time":"%s","eventid":"",'
        b'"eventtype":"","size":1}' % EPOCH
    )
    c, head = timers["/sub-ping/p1"]
    got = read_bytes(c, 2 * len(ping), timeout=4.0)
    assert head + got == stream_head() + ping * 2


def test_ping_with_the_default_template_is_the_ping_text(timers) -> None:
    c, head = timers["/sub-ping-def/p2"]
    got = read_bytes(c, 2 * len(chunk(b" ")), timeout=4.0)
    assert head + got == stream_head() + chunk(b" ") * 2


def test_websocket_ping_is_an_empty_ping_frame(timers) -> None:
    c, head = timers["/ws-ping/w6"]
    got = read_bytes(c, 4, timeout=4.0)
    assert head + got == WS_101 + b"\x89\x00" * 2


def test_websocket_connection_ttl_sends_a_close_frame_and_closes(timers) -> None:
    c, head = timers["/ws-ttl/w7"]
    got = read_bytes(c, 2, timeout=4.0)
    assert head + got == WS_101 + b"\x88\x00"
    assert c.closed_by_peer()
