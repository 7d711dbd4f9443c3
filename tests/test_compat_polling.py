"""Byte-level compatibility of polling, long-polling and JSONP with push-stream 0.6.

Every expected byte string below is what nginx 1.24.0 + nginx-push-stream-module
0.6.0 sent for the same requests under the equivalent nginx configuration (the
captures "sub_polling", "sub_longpolling*", "sub_jsonp", "limits" and
"misc_edge_cases"), without the Date and Server headers.  Last-Modified and Etag
carry message times and tags, which vary per run: they are read back through a
templated poll of the same messages (as the captures did), or, for the
validators of timeouts and deletes, checked against the clock.
"""

from __future__ import annotations

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
    exchange,
    http_dates,
    polled_head,
    pub_location,
    publish,
    push_stream_config,
    read_response,
    req,
    stats_location,
    stored,
    strip_volatile,
    sub_location,
    tpl,
    wait_subscribers,
)

JS = b"application/javascript"


HF = {"header_template": "HEADER", "footer_template": "FOOTER"}
QS = {
    "last_received_message_time": "$arg_time",
    "last_received_message_tag": "$arg_tag",
    "last_event_id": "$arg_eventid",
}

# The polling part of the nginx "basic" configuration of the captures.
BASIC = push_stream_config(
    {"shared_memory_size": "32M"},
    [
        stats_location(),
        pub_location("/pub-store", store_messages=True),
        pub_location("/pub-admin", mode="admin", store_messages=True),
        sub_location("sub", "streaming"),
        sub_location("lp", "long-polling"),
        sub_location("lp-tpl", "long-polling", message_template=TPL),
        sub_location("lp-hf", "long-polling", **HF),
        sub_location("lp-ttl", "long-polling", longpolling_connection_ttl="1s"),
        sub_location(
            "lp-ttl-hf",
            "long-polling",
            longpolling_connection_ttl="1s",
            message_template="<~text~>",
            **HF,
        ),
        sub_location("lp-subttl", "long-polling", subscriber_connection_ttl="1s"),
        sub_location("lp-qs", "long-polling", **QS),
        sub_location("lp-cors", "long-polling", allowed_origins="*"),
        sub_location("poll", "polling"),
        sub_location("poll-tpl", "polling", message_template=TPL),
        sub_location("poll-hf", "polling", message_template="<~text~>", **HF),
    ],
)

# The nginx "limits" configuration: timeout_with_body on, max 3 stored.
LIMITS = push_stream_config(
    {
        "shared_memory_size": "32M",
        "max_messages_stored_per_channel": 3,
        "timeout_with_body": True,
    },
    [
        pub_location("/pub", mode="admin", store_messages=True),
        sub_location("lp", "long-polling", longpolling_connection_ttl="1s"),
        sub_location(
            "lp-tpl",
            "long-polling",
            longpolling_connection_ttl="1s",
            message_template=TPL,
            **HF,
        ),
        sub_location("lp-cb", "long-polling", longpolling_connection_ttl="1s"),
        sub_location("poll", "polling"),
        sub_location("poll-tpl", "polling", message_template=TPL),
    ],
)


# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic() -> Iterator[ServerProcess]:
    with ServerProcess(BASIC) as srv:
        yield srv


@pytest.fixture(scope="module")
def limits() -> Iterator[ServerProcess]:
    with ServerProcess(LIMITS) as srv:
        yield srv


def waiting(srv: ServerProcess, target: str, ch: str, headers: str = "") -> RawClient:
    """A long-polling request, returned once the server counts it as a
    subscriber of ch (so a publish after this reaches it)."""
    c = srv.client(timeout=5.0)
    c.send(req("GET", target, None, headers))
    try:
        wait_subscribers(srv, ch, 1)
    except AssertionError:
        c.close()
        raise
    return c


def body_of(*pieces: bytes) -> bytes:
    """A whole chunked body: each piece as one chunk, then the last chunk."""
    return chunks(*pieces) + b"0\r\n\r\n"


def not_modified(
    last_modified: bytes | None = None,
    tag: int = 0,
    content_type: bytes = b"text/plain",
) -> bytes:
    """A 304; with validators when last_modified is given."""
    head = (
        b"HTTP/1.1 304 Not Modified\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: 0\r\n"
    )
    if last_modified is None:
        return head + b"Connection: keep-alive\r\n" + NO_CACHE + b"\r\n"
    return (
        head
        + b"Last-Modified: "
        + last_modified
        + b"\r\nConnection: keep-alive\r\n"
        + NO_CACHE
        + b"Etag: W/%d\r\n\r\n" % tag
    )


def last_modified_of(actual: bytes, t0: float, t1: float) -> bytes:
    """The Last-Modified of actual, checked to be a second of [t0, t1]."""
    m = re.search(rb"\r\nLast-Modified: ([^\r]*)\r\n", actual)
    assert m is not None and m.group(1) in http_dates(t0, t1), actual
    return m.group(1)


@pytest.fixture(scope="module", autouse=True)
def timers(basic, limits) -> Iterator[dict[str, tuple[RawClient, float]]]:
    """Long-polls that end by timeout, started with the module so the waiting
    overlaps the other tests; each with the time it was sent."""
    opened: dict[str, tuple[RawClient, float]] = {}
    for srv, target in (
        (basic, "/lp-ttl/lt1"),
        (basic, "/lp-ttl-hf/lt1b"),
        (basic, "/lp-subttl/lt2"),
        (basic, "/lp-ttl/lt3?callback=cb"),
        (limits, "/lp/to"),
        (limits, "/lp-tpl/to2"),
        (limits, "/lp-cb/to3?callback=cb"),
    ):
        c = srv.client(timeout=5.0)
        opened[target] = (c, time.time())
        c.send(req("GET", target))
    yield opened
    for c, _ in opened.values():
        c.close()


# -- polling -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pl1(basic) -> list[tuple[bytes, int]]:
    """Channel pl1 created by a first poll, then p1 and p2 stored."""
    assert exchange(basic, req("GET", "/poll/pl1")) == not_modified()
    publish(basic, "pl1", b"p1")
    publish(basic, "pl1", b"p2")
    return stored(basic, "pl1", 2)


def test_polling_a_new_channel_is_304(basic) -> None:
    assert exchange(basic, req("GET", "/poll/pl0")) == not_modified()


def test_polling_without_validators_is_304_even_with_stored_messages(
    basic, pl1
) -> None:
    assert exchange(basic, req("GET", "/poll/pl1")) == not_modified()


def test_polling_since_epoch_answers_every_message_and_the_newest_validators(
    basic, pl1
) -> None:
    raw = req("GET", "/poll/pl1", None, f"If-Modified-Since: {EPOCH.decode()}\r\n")
    (t2, tag2) = pl1[1]
    assert exchange(basic, raw) == polled_head(t2, tag2) + body_of(b"p1", b"p2")


def test_polling_up_to_date_is_304_echoing_the_validators(basic, pl1) -> None:
    (t2, tag2) = pl1[1]
    headers = f"If-Modified-Since: {t2.decode()}\r\nIf-None-Match: W/{tag2}\r\n"
    assert exchange(basic, req("GET", "/poll/pl1", None, headers)) == not_modified(
        t2, tag2
    )


def test_polling_after_the_first_message_answers_the_second(basic, pl1) -> None:
    (t1, tag1), (t2, tag2) = pl1
    headers = f"If-Modified-Since: {t1.decode()}\r\nIf-None-Match: {tag1}\r\n"
    assert exchange(basic, req("GET", "/poll/pl1", None, headers)) == (
        polled_head(t2, tag2) + body_of(b"p2")
    )


def test_polling_backtrack_with_template(basic, pl1) -> None:
    (t2, tag2) = pl1[1]
    assert exchange(basic, req("GET", "/poll-tpl/pl1.b1")) == (
        polled_head(t2, tag2) + body_of(tpl(2, "pl1", b"p2", tag2, t2))
    )


def test_polling_sends_header_and_footer_templates_around_the_messages(
    basic, pl1
) -> None:
    (t2, tag2) = pl1[1]
    assert exchange(basic, req("GET", "/poll-hf/pl1.b2")) == (
        polled_head(t2, tag2) + body_of(b"HEADER", b"<p1>", b"<p2>", b"FOOTER")
    )


def test_polling_304_sends_no_header_or_footer(basic, pl1) -> None:
    assert exchange(basic, req("GET", "/poll-hf/pl1")) == not_modified()


def test_polling_http10_is_not_chunked_and_closes(basic, pl1) -> None:
    (t2, tag2) = pl1[1]
    with basic.client(timeout=5.0) as c:
        c.send(b"GET /poll/pl1.b1 HTTP/1.0\r\nHost: localhost\r\n\r\n")
        got = strip_volatile(c.read_all())
    assert got == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nLast-Modified: " + t2 + b"\r\n"
        b"Connection: close\r\n" + NO_CACHE + b"Etag: W/%d\r\n\r\np2" % tag2
    )


def test_polling_unknown_last_event_id_is_304(basic, pl1) -> None:
    raw = req("GET", "/poll/pl1", None, "Last-Event-Id: x\r\n")
    assert exchange(basic, raw) == not_modified()


def test_polling_unparsable_if_none_match_counts_as_no_tag(basic, pl1) -> None:
    (t2, tag2) = pl1[1]
    for inm in ("abc", "-5"):
        headers = f"If-Modified-Since: {EPOCH.decode()}\r\nIf-None-Match: {inm}\r\n"
        assert exchange(basic, req("GET", "/poll/pl1", None, headers)) == (
            polled_head(t2, tag2) + body_of(b"p1", b"p2")
        ), inm


def test_polling_invalid_if_modified_since_is_ignored(basic, pl1) -> None:
    raw = req("GET", "/poll/pl1", None, "If-Modified-Since: yesterday\r\n")
    assert exchange(basic, raw) == not_modified()


def test_polling_last_event_id_takes_the_first_match(basic) -> None:
    publish(basic, "le", b"l1", "Event-Id: a\r\n")
    publish(basic, "le", b"l2", "Event-Id: b\r\n")
    (t2, tag2) = stored(basic, "le", 2)[1]
    headers = f"Last-Event-Id: a\r\nIf-Modified-Since: {EPOCH.decode()}\r\n"
    assert exchange(basic, req("GET", "/poll/le", None, headers)) == (
        polled_head(t2, tag2) + body_of(b"l2")
    )
    raw = req("GET", "/poll/le", None, "Last-Event-Id: b\r\n")
    assert exchange(basic, raw) == not_modified()


def test_polling_a_large_message_is_one_chunk(basic) -> None:
    publish(basic, "big", b"B" * 100000)
    (t, tag) = stored(basic, "big", 1)[0]
    assert exchange(basic, req("GET", "/poll/big.b1")) == (
        polled_head(t, tag) + b"186a0\r\n" + b"B" * 100000 + b"\r\n0\r\n\r\n"
    )


def test_polling_backtrack_beyond_max_messages_stored(limits) -> None:
    for i in range(1, 6):
        publish(limits, "st", b"m%d" % i, path="/pub")
    (t, tag) = stored(limits, "st", 1)[0]
    assert exchange(limits, req("GET", "/poll/st.b10")) == (
        polled_head(t, tag) + body_of(b"m3", b"m4", b"m5")
    )


# -- long-polling ------------------------------------------------------------------


def test_long_polling_waits_for_the_next_message(basic) -> None:
    with waiting(basic, "/lp/l1", "l1") as c:
        publish(basic, "l1", b"first")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "l1", 1)[0]
    assert actual == polled_head(t, tag) + body_of(b"first")


def test_long_polling_ignores_stored_messages_without_validators(basic) -> None:
    publish(basic, "l0", b"old")
    with waiting(basic, "/lp/l0", "l0") as c:
        publish(basic, "l0", b"new")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "l0", 1)[0]
    assert actual == polled_head(t, tag) + body_of(b"new")


def test_long_polling_with_current_validators_waits_then_answers(basic) -> None:
    publish(basic, "l2", b"first")
    (t1, tag1) = stored(basic, "l2", 1)[0]
    headers = f"If-Modified-Since: {t1.decode()}\r\nIf-None-Match: W/{tag1}\r\n"
    with waiting(basic, "/lp/l2", "l2", headers) as c:
        publish(basic, "l2", b"second")
        actual = strip_volatile(read_response(c))
    (t2, tag2) = stored(basic, "l2", 1)[0]
    assert actual == polled_head(t2, tag2) + body_of(b"second")
    # the same validators now find "second" at once
    assert exchange(basic, req("GET", "/lp/l2", None, headers)) == (
        polled_head(t2, tag2) + body_of(b"second")
    )


def test_long_polling_since_epoch_or_backtrack_answers_at_once(basic) -> None:
    publish(basic, "l3", b"first")
    publish(basic, "l3", b"second")
    (t1, tag1), (t2, tag2) = stored(basic, "l3", 2)
    raw = req("GET", "/lp/l3", None, f"If-Modified-Since: {EPOCH.decode()}\r\n")
    assert exchange(basic, raw) == polled_head(t2, tag2) + body_of(b"first", b"second")
    assert exchange(basic, req("GET", "/lp/l3.b1")) == (
        polled_head(t2, tag2) + body_of(b"second")
    )
    assert exchange(basic, req("GET", "/lp-tpl/l3.b2")) == (
        polled_head(t2, tag2)
        + body_of(tpl(1, "l3", b"first", tag1, t1), tpl(2, "l3", b"second", tag2, t2))
    )


def test_long_polling_sends_header_and_footer_templates(basic) -> None:
    with waiting(basic, "/lp-hf/l4", "l4") as c:
        publish(basic, "l4", b"body")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "l4", 1)[0]
    assert actual == polled_head(t, tag) + body_of(b"HEADER", b"body", b"FOOTER")


def test_long_polling_http10_is_not_chunked_and_closes(basic) -> None:
    c = basic.client(timeout=5.0)
    c.send(b"GET /lp/l5 HTTP/1.0\r\nHost: localhost\r\n\r\n")
    with c:
        wait_subscribers(basic, "l5", 1)
        publish(basic, "l5", b"for-10")
        got = strip_volatile(c.read_all())
    (t, tag) = stored(basic, "l5", 1)[0]
    assert got == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nLast-Modified: " + t + b"\r\n"
        b"Connection: close\r\n" + NO_CACHE + b"Etag: W/%d\r\n\r\nfor-10" % tag
    )


def test_long_polling_with_allowed_origins_puts_cors_before_no_cache(basic) -> None:
    with waiting(basic, "/lp-cors/lc", "lc") as c:
        publish(basic, "lc", b"x")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "lc", 1)[0]
    cors = (
        b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET\r\n"
        b"Access-Control-Allow-Headers: "
        b"If-Modified-Since,If-None-Match,Etag,Event-Id,Event-Type,Last-Event-Id\r\n"
    )
    assert actual == polled_head(t, tag, cors=cors) + body_of(b"x")


def test_long_polling_last_event_id_without_later_message_waits(basic) -> None:
    publish(basic, "le2", b"l1", "Event-Id: a\r\n")
    publish(basic, "le2", b"l2", "Event-Id: b\r\n")
    with waiting(basic, "/lp/le2", "le2", "Last-Event-Id: b\r\n") as c:
        publish(basic, "le2", b"l3")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "le2", 1)[0]
    assert actual == polled_head(t, tag) + body_of(b"l3")


# -- long-polling on several channels --------------------------------------------


@pytest.fixture(scope="module")
def lm(basic) -> dict[str, list[tuple[bytes, int]]]:
    """a1 to lm1, b1 to lm2, a2 to lm1, in that order."""
    publish(basic, "lm1", b"a1")
    publish(basic, "lm2", b"b1")
    publish(basic, "lm1", b"a2")
    return {"lm1": stored(basic, "lm1", 2), "lm2": stored(basic, "lm2", 1)}


def test_long_polling_several_channels_sends_them_in_path_order(basic, lm) -> None:
    (ta1, ga1), (ta2, ga2) = lm["lm1"]
    (tb1, gb1) = lm["lm2"][0]
    a1, a2 = tpl(1, "lm1", b"a1", ga1, ta1), tpl(2, "lm1", b"a2", ga2, ta2)
    b1 = tpl(1, "lm2", b"b1", gb1, tb1)
    # the newest (time, tag) of all is a2's
    assert exchange(basic, req("GET", "/lp-tpl/lm1.b5/lm2.b5")) == (
        polled_head(ta2, ga2) + body_of(a1, a2, b1)
    )
    assert exchange(basic, req("GET", "/lp-tpl/lm2.b5/lm1.b5")) == (
        polled_head(ta2, ga2) + body_of(b1, a1, a2)
    )


def test_long_polling_several_channels_resume_after_validators(basic, lm) -> None:
    (ta1, ga1), (ta2, ga2) = lm["lm1"]
    (tb1, gb1) = lm["lm2"][0]
    headers = f"If-Modified-Since: {ta1.decode()}\r\nIf-None-Match: {ga1}\r\n"
    assert exchange(basic, req("GET", "/lp-tpl/lm1/lm2", None, headers)) == (
        polled_head(ta2, ga2)
        + body_of(tpl(2, "lm1", b"a2", ga2, ta2), tpl(1, "lm2", b"b1", gb1, tb1))
    )
    raw = req("GET", f"/lp-qs/lm1?time={quote(ta1.decode())}&tag={ga1}")
    assert exchange(basic, raw) == polled_head(ta2, ga2) + body_of(b"a2")


def test_long_polling_several_channels_wakes_on_any_of_them(basic, lm) -> None:
    c = basic.client(timeout=5.0)
    c.send(req("GET", "/lp-tpl/lm1/lm2"))
    with c:
        wait_subscribers(basic, "lm2", 1)
        publish(basic, "lm2", b"b2")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "lm2", 1)[0]
    assert actual == polled_head(t, tag) + body_of(tpl(2, "lm2", b"b2", tag, t))


def test_long_polling_if_none_match_alone_is_ignored(basic) -> None:
    # push-stream waits too; when the new message's tag equals the request's
    # If-None-Match, nginx's not-modified filter turns the answer into a 304
    # that push-stream still writes the message after (the capture got
    # "HTTP/1.1 304 Not Modified" with an unframed body).  A client needs the
    # message, which fastpush sends as a normal 200.
    with waiting(basic, "/lp-tpl/lm9", "lm9", "If-None-Match: W/1\r\n") as c:
        publish(basic, "lm9", b"a3")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "lm9", 1)[0]
    assert actual == polled_head(t, tag) + body_of(tpl(1, "lm9", b"a3", tag, t))


# -- long-polling timeout and delete -------------------------------------------------


def _timed_out(
    timers: dict[str, tuple[RawClient, float]], target: str
) -> tuple[bytes, bytes]:
    c, sent = timers[target]
    actual = strip_volatile(read_response(c))
    return actual, last_modified_of(actual, sent, time.time())


def test_long_polling_timeout_is_304_with_now_and_etag_zero(timers) -> None:
    for target in ("/lp-ttl/lt1", "/lp-ttl-hf/lt1b", "/lp-subttl/lt2"):
        actual, now = _timed_out(timers, target)
        assert actual == not_modified(now, 0), target


def test_long_polling_jsonp_timeout_is_304_javascript(timers) -> None:
    actual, now = _timed_out(timers, "/lp-ttl/lt3?callback=cb")
    assert actual == not_modified(now, 0, JS)


def test_timeout_with_body_answers_timed_out(timers) -> None:
    actual, now = _timed_out(timers, "/lp/to")
    assert actual == polled_head(now, 0) + body_of(b"Timed out")


def test_timeout_with_body_renders_the_template_with_id_minus_3(timers) -> None:
    actual, now = _timed_out(timers, "/lp-tpl/to2")
    message = (
        b'{"id":-3,"channel":"","text":"Timed out","tag":0,"time":"%s","eventid":"",'
        b'"eventtype":"","size":9}' % EPOCH
    )
    assert actual == polled_head(now, 0) + body_of(b"HEADER", message, b"FOOTER")


def test_timeout_with_body_in_jsonp(timers) -> None:
    actual, now = _timed_out(timers, "/lp-cb/to3?callback=cb")
    assert actual == polled_head(now, 0, JS) + body_of(
        b"cb", b"([", b"Timed out", b"]);"
    )


def _deleted(basic: ServerProcess, target: str, ch: str) -> tuple[bytes, bytes]:
    with waiting(basic, target, ch) as c:
        t0 = time.time()
        delete(basic, ch)
        actual = strip_volatile(read_response(c))
    return actual, last_modified_of(actual, t0, time.time())


def test_long_polling_deleted_channel_answers_the_deleted_message(basic) -> None:
    actual, now = _deleted(basic, "/lp/ld1", "ld1")
    assert actual == polled_head(now, 0) + body_of(b"Channel deleted")


def test_long_polling_deleted_channel_with_header_and_footer(basic) -> None:
    actual, now = _deleted(basic, "/lp-ttl-hf/ld2", "ld2")
    assert actual == polled_head(now, 0) + body_of(
        b"HEADER", b"<Channel deleted>", b"FOOTER"
    )


def test_long_polling_is_finished_by_the_first_deleted_channel(basic) -> None:
    c = basic.client(timeout=5.0)
    c.send(req("GET", "/lp-tpl/ld3/ld4"))
    with c:
        wait_subscribers(basic, "ld4", 1)
        t0 = time.time()
        delete(basic, "ld3")
        actual = strip_volatile(read_response(c))
    now = last_modified_of(actual, t0, time.time())
    message = (
        b'{"id":-2,"channel":"ld3","text":"Channel deleted","tag":0,"time":"%s",'
        b'"eventid":"","eventtype":"","size":15}' % EPOCH
    )
    assert actual == polled_head(now, 0) + body_of(message)


def test_long_polling_deleted_channel_in_jsonp(basic) -> None:
    actual, now = _deleted(basic, "/lp/ld5?callback=cb", "ld5")
    assert actual == polled_head(now, 0, JS) + body_of(
        b"cb", b"([", b"Channel deleted", b"]);"
    )


# -- JSONP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jp(basic) -> list[tuple[bytes, int]]:
    publish(basic, "jp", b"j1")
    publish(basic, "jp", b"j2")
    return stored(basic, "jp", 2)


def test_jsonp_wraps_messages_in_callback_chunks(basic, jp) -> None:
    (t1, tag1), (t2, tag2) = jp
    expected = polled_head(t2, tag2, JS) + body_of(
        b"foo", b"([", b"j1", b",", b"j2", b"]);"
    )
    assert exchange(basic, req("GET", "/lp/jp.b2?callback=foo")) == expected
    assert exchange(basic, req("GET", "/poll/jp.b2?callback=foo")) == expected


def test_jsonp_with_template(basic, jp) -> None:
    (t1, tag1), (t2, tag2) = jp
    assert exchange(basic, req("GET", "/poll-tpl/jp.b2?callback=foo")) == (
        polled_head(t2, tag2, JS)
        + body_of(
            b"foo",
            b"([",
            tpl(1, "jp", b"j1", tag1, t1),
            b",",
            tpl(2, "jp", b"j2", tag2, t2),
            b"]);",
        )
    )


def test_jsonp_long_poll_woken_by_a_publish(basic) -> None:
    with waiting(basic, "/lp/jp3?callback=foo", "jp3") as c:
        publish(basic, "jp3", b"j3")
        actual = strip_volatile(read_response(c))
    (t, tag) = stored(basic, "jp3", 1)[0]
    assert actual == polled_head(t, tag, JS) + body_of(b"foo", b"([", b"j3", b"]);")


def test_jsonp_callback_is_unescaped_and_inside_header_and_footer(basic, jp) -> None:
    (t2, tag2) = jp[1]
    assert exchange(basic, req("GET", "/lp-hf/jp.b1?callback=a%2Eb")) == (
        polled_head(t2, tag2, JS)
        + body_of(b"HEADER", b"a.b", b"([", b"j2", b"]);", b"FOOTER")
    )


def test_jsonp_polling_without_news_is_304_javascript(basic, jp) -> None:
    assert exchange(basic, req("GET", "/poll/jp?callback=foo")) == not_modified(
        content_type=JS
    )


def test_streaming_ignores_the_callback(basic, jp) -> None:
    with basic.client(timeout=5.0) as c:
        c.send(req("GET", "/sub/jp.b1?callback=foo"))
        head = strip_volatile(c.read_head()[2])
        got = c.read_exactly(len(chunk(b"j2")))
    assert head + got == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\n" + NO_CACHE + b"\r\n" + chunk(b"j2")
    )
