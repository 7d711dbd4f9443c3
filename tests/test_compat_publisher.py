"""Byte-level compatibility of publisher locations with nginx push-stream 0.6.

Every expected response below is what nginx 1.24.0 + nginx-push-stream-module
0.6.0 sent for the same request bytes under the equivalent nginx configuration
(the captures "publisher_*" and "limits"), with the Date and Server headers
removed.  Values that vary per run (the group format's time and uptime) are
taken from the answer only after checking they are plausible.
"""

from __future__ import annotations

import re
import socket
import time
import zlib
from collections.abc import Iterator

import pytest

from fastpush.testing import (
    NO_CACHE,
    ServerProcess,
    empty,
    exchange,
    explain,
    info,
    iso_seconds,
    ok,
    read_response,
    req,
    strip_volatile,
)

CORS_ADMIN = (
    b"Access-Control-Allow-Origin: *\r\n"
    b"Access-Control-Allow-Methods: GET, POST, PUT, DELETE\r\n"
    b"Access-Control-Allow-Headers: "
    b"If-Modified-Since,If-None-Match,Etag,Event-Id,Event-Type,Last-Event-Id\r\n"
)

# The publisher part of the nginx "basic" configuration of the captures.
BASIC = """
[settings]
shared_memory_size = "32M"

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"

[[locations]]
path = "/pub"
role = "publisher"
channels_path = "$arg_id"

[[locations]]
path = "/pub-store"
role = "publisher"
channels_path = "$arg_id"
store_messages = true

[[locations]]
path = "/pub-admin"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
store_messages = true

[[locations]]
path = "/pub-noinfo"
role = "publisher"
channels_path = "$arg_id"
store_messages = true
channel_info_on_publish = false

[[locations]]
path = "/pub-small"
role = "publisher"
channels_path = "$arg_id"
store_messages = true
client_max_body_size = 10
client_body_buffer_size = 10

[[locations]]
path = "/pub-cors"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
allowed_origins = "*"
"""

# nginx "limits" configuration of the captures (publisher side).
LIMITS = """
[settings]
shared_memory_size = "32M"
max_channel_id_length = 10
max_number_of_channels = 3
max_number_of_wildcard_channels = 2
wildcard_channel_prefix = "bd_"
max_subscribers_per_channel = 1
max_messages_stored_per_channel = 3
channel_deleted_message_text = "CUSTOM DELETE"
ping_message_text = "PING!"
timeout_with_body = true

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
store_messages = true
"""

# nginx "gzip on; gzip_types application/json ..." on a store publisher.
GZIP = """
[settings]
gzip = true
gzip_types = ["application/json", "text/plain"]

[[locations]]
path = "/pub-gzip"
role = "publisher"
channels_path = "$arg_id"
store_messages = true
"""


# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic() -> Iterator[ServerProcess]:
    with ServerProcess(BASIC) as srv:
        yield srv


@pytest.fixture
def fresh() -> Iterator[ServerProcess]:
    """A new server on the basic configuration, for tests that count channels."""
    with ServerProcess(BASIC) as srv:
        yield srv


@pytest.fixture
def limits() -> Iterator[ServerProcess]:
    with ServerProcess(LIMITS) as srv:
        yield srv


def group(
    srv_started: float,
    t0: float,
    t1: float,
    actual: bytes,
    channels: int,
    infos: list[bytes],
    wildcard: int = 0,
) -> bytes:
    """The expected group-format answer (several channels).

    hostname is the machine's; time and uptime vary per run, so they are read
    from actual after checking them against the clock around the request.
    """
    m = re.search(rb'"time": "([^"]*)", .*"uptime": (\d+),', actual)
    assert m is not None, actual
    stamp, uptime = m.group(1), int(m.group(2))
    assert stamp in iso_seconds(t0, t1)
    assert int(t0 - srv_started) - 1 <= uptime <= int(t1 - srv_started) + 1
    body = (
        b'{"hostname": "%s", "time": "%s", "channels": %d, "wildcard_channels": %d, '
        b'"uptime": %d, "infos": [\r\n'
        % (socket.gethostname().encode(), stamp, channels, wildcard, uptime)
        + b",\r\n".join(i[:-2] for i in infos)
        + b"\r\n]}\r\n"
    )
    return ok(body)


# -- publishing ----------------------------------------------------------------


def test_post_answers_channel_info_counting_published_but_not_stored(basic) -> None:
    assert exchange(basic, req("POST", "/pub?id=p1", b"hello")) == ok(info("p1", 1, 0))
    assert exchange(basic, req("POST", "/pub?id=p1", b"world")) == ok(info("p1", 2, 0))


def test_put_publishes_like_post(basic) -> None:
    exchange(basic, req("POST", "/pub?id=put1", b"hello"))
    assert exchange(basic, req("PUT", "/pub?id=put1", b"put-body")) == ok(
        info("put1", 2, 0)
    )


def test_store_messages_counts_stored_messages(basic) -> None:
    first = exchange(basic, req("POST", "/pub-store?id=st1", b"stored1"))
    second = exchange(basic, req("POST", "/pub-store?id=st1", b"stored2"))
    assert (first, second) == (ok(info("st1", 1, 1)), ok(info("st1", 2, 2)))


def test_event_id_and_type_headers_do_not_change_the_answer(basic) -> None:
    raw = req(
        "POST",
        "/pub-store?id=ev1",
        b"with-event",
        "Event-Id: ev-1\r\nEvent-Type: mytype\r\n",
    )
    assert exchange(basic, raw) == ok(info("ev1", 1, 1))


def test_http10_publish_answers_connection_close_and_closes(basic) -> None:
    with basic.client(timeout=5.0) as c:
        c.send(
            b"POST /pub?id=h10 HTTP/1.0\r\nHost: localhost\r\nContent-Length: 6\r\n\r\n"
            b"http10"
        )
        assert strip_volatile(read_response(c)) == ok(
            info("h10", 1, 0), connection=b"close"
        )
        assert c.closed_by_peer()


def test_connection_close_publish_answers_connection_close_and_closes(basic) -> None:
    with basic.client(timeout=5.0) as c:
        c.send(req("POST", "/pub?id=cc1", b"closing", "Connection: close\r\n"))
        assert strip_volatile(read_response(c)) == ok(
            info("cc1", 1, 0), connection=b"close"
        )
        assert c.closed_by_peer()


def test_chunked_request_body_is_published(basic) -> None:
    raw = (
        b"POST /pub-store?id=chunked HTTP/1.1\r\nHost: localhost\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert exchange(basic, raw) == ok(info("chunked", 1, 1))


def test_percent_encoded_channel_id_is_unescaped(basic) -> None:
    assert exchange(basic, req("POST", "/pub?id=a%20b", b"x")) == ok(info("a b", 1, 0))


def test_binary_body_with_nul_and_crlf_is_accepted(basic) -> None:
    raw = req("POST", "/pub-store?id=bin", b"a\x00b\xc3\xa9\r\nc")
    assert exchange(basic, raw) == ok(info("bin", 1, 1))


def test_publish_to_two_channels_answers_the_group_format(fresh) -> None:
    started = time.time()
    for ch in ("g1", "g2", "g3", "g4", "g5", "g6"):
        exchange(fresh, req("POST", "/pub?id=" + ch, b"x"))
    t0 = time.time()
    actual = exchange(fresh, req("POST", "/pub-store?id=c1/c2", b"to-both"))
    t1 = time.time()
    assert actual == group(
        started, t0, t1, actual, 8, [info("c1", 1, 1), info("c2", 1, 1)]
    )


def test_backtrack_suffix_is_stripped_from_published_channel_id(basic) -> None:
    assert exchange(basic, req("POST", "/pub-store?id=c3.b2", b"x")) == ok(
        info("c3", 1, 1)
    )


def test_channel_info_on_publish_off_answers_empty_200(basic) -> None:
    assert exchange(basic, req("POST", "/pub-noinfo?id=ni", b"x")) == empty(b"200 OK")
    assert exchange(basic, req("GET", "/pub-noinfo?id=ni")) == ok(info("ni", 1, 1))


def test_pipelined_requests_are_answered_in_order_on_one_connection(basic) -> None:
    with basic.client(timeout=5.0) as c:
        c.send(
            req("POST", "/pub?id=ka1", b"a")
            + req("POST", "/pub?id=ka2", b"b")
            + req("GET", "/pub?id=ka1")
            + req("GET", "/pub?id=zzz")
        )
        got = [strip_volatile(read_response(c)) for _ in range(4)]
    assert got == [
        ok(info("ka1", 1, 0)),
        ok(info("ka2", 1, 0)),
        ok(info("ka1", 1, 0)),
        empty(b"404 Not Found"),
    ]


def test_gzip_compresses_channel_info_into_a_chunked_body() -> None:
    with ServerProcess(GZIP) as srv, srv.client(timeout=5.0) as c:
        c.send(req("POST", "/pub-gzip?id=gz", b"zip", "Accept-Encoding: gzip\r\n"))
        status, headers, head = c.read_head()
        assert strip_volatile(head) == (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
            + NO_CACHE
            + b"Content-Encoding: gzip\r\n\r\n"
        )
        body = b""
        while chunk := c.read_chunk():
            body += chunk
    assert zlib.decompress(body, 31) == info("gz", 1, 1)


# -- channel information (GET) -------------------------------------------------


def test_get_existing_channel_answers_its_info(basic) -> None:
    for text in (b"stored1", b"stored2"):
        exchange(basic, req("POST", "/pub-store?id=gi1", text))
    assert exchange(basic, req("GET", "/pub?id=gi1")) == ok(info("gi1", 2, 2))


def test_get_missing_channel_answers_404_without_explain(basic) -> None:
    assert exchange(basic, req("GET", "/pub?id=nonexistent")) == empty(b"404 Not Found")


def test_get_two_existing_channels_answers_the_group_format(fresh) -> None:
    started = time.time()
    for _ in range(5):
        exchange(fresh, req("POST", "/pub?id=ch1", b"x"))
    for _ in range(2):
        exchange(fresh, req("POST", "/pub-store?id=ch2", b"x"))
    t0 = time.time()
    actual = exchange(fresh, req("GET", "/pub?id=ch1/ch2"))
    t1 = time.time()
    assert actual == group(
        started, t0, t1, actual, 2, [info("ch1", 5, 0), info("ch2", 2, 2)]
    )


def test_get_one_existing_of_two_channels_answers_the_single_format(basic) -> None:
    exchange(basic, req("POST", "/pub?id=one1", b"x"))
    assert exchange(basic, req("GET", "/pub?id=one1/missing")) == ok(info("one1", 1, 0))


def test_get_with_accept_text_plain_answers_plain_text(basic) -> None:
    exchange(basic, req("POST", "/pub-store?id=tp1", b"x"))
    body = (
        b"channel: tp1\r\npublished_messages: 1\r\nstored_messages: 1\r\n"
        b"active_subscribers: 0\r\n"
    )
    assert exchange(
        basic, req("GET", "/pub?id=tp1", None, "Accept: text/plain\r\n")
    ) == (ok(body, b"text/plain"))


def test_get_with_accept_xml_answers_xml(basic) -> None:
    exchange(basic, req("POST", "/pub-store?id=xm1", b"x"))
    body = (
        b'<?xml version="1.0" encoding="UTF-8" ?>\r\n'
        b"<channel>\r\n  <name>xm1</name>\r\n"
        b"  <published_messages>1</published_messages>\r\n"
        b"  <stored_messages>1</stored_messages>\r\n  <subscribers>0</subscribers>\r\n"
        b"</channel>\r\n\r\n"
    )
    raw = req("GET", "/pub?id=xm1", None, "Accept: application/xml\r\n")
    assert exchange(basic, raw) == ok(body, b"application/xml")


def test_get_with_accept_yaml_answers_yaml(basic) -> None:
    exchange(basic, req("POST", "/pub-store?id=ym1", b"x"))
    body = (
        b"  channel: ym1\r\n  published_messages: 1\r\n  stored_messages: 1\r\n"
        b"  subscribers: 0\r\n"
    )
    raw = req("GET", "/pub?id=ym1", None, "Accept: application/yaml\r\n")
    assert exchange(basic, raw) == ok(body, b"application/yaml")


def test_get_two_channels_with_accept_text_plain_answers_plain_group(fresh) -> None:
    started = time.time()
    for _ in range(5):
        exchange(fresh, req("POST", "/pub?id=ch1", b"x"))
    for _ in range(2):
        exchange(fresh, req("POST", "/pub-store?id=ch2", b"x"))
    t0 = time.time()
    actual = exchange(
        fresh, req("GET", "/pub?id=ch1/ch2", None, "Accept: text/plain\r\n")
    )
    t1 = time.time()
    m = re.search(rb"time: (\S+), .*uptime: (\d+),", actual)
    assert m is not None, actual
    assert m.group(1) in iso_seconds(t0, t1)
    assert 0 <= int(m.group(2)) <= int(t1 - started) + 1
    body = (
        b"hostname: %s, time: %s, channels: 2, wildcard_channels: 0, uptime: %s, "
        b"infos: \r\nchannel: ch1\r\npublished_messages: 5\r\nstored_messages: 0\r\n"
        b"active_subscribers: 0,\r\nchannel: ch2\r\npublished_messages: 2\r\n"
        b"stored_messages: 2\r\nactive_subscribers: 0\r\n"
        % (socket.gethostname().encode(), m.group(1), m.group(2))
    )
    assert actual == ok(body, b"text/plain")


# -- errors ----------------------------------------------------------------------


def test_head_is_not_allowed(basic) -> None:
    assert exchange(basic, req("HEAD", "/pub?id=ch2")) == empty(
        b"405 Not Allowed", b"Allow: GET, POST, PUT\r\n"
    )


def test_delete_on_normal_publisher_is_not_allowed(basic) -> None:
    assert exchange(basic, req("DELETE", "/pub?id=ch1")) == empty(
        b"405 Not Allowed", b"Allow: GET, POST, PUT\r\n"
    )


def test_missing_channel_id_is_400_and_the_body_is_discarded(basic) -> None:
    # nginx reads the unread body "x" as a new request and adds an HTML 400
    # with Connection: close; fastpush discards the body and keeps the
    # connection, so the next request is answered.
    with basic.client(timeout=5.0) as c:
        c.send(
            req("POST", "/pub", b"x")
            + req("POST", "/pub?id=", b"x")
            + req("GET", "/pub")
        )
        got = [strip_volatile(read_response(c)) for _ in range(3)]
    assert got == [empty(b"400 Bad Request", explain("No channel id provided."))] * 3


def test_reserved_and_wildcard_channel_ids_are_forbidden(basic) -> None:
    forbidden = empty(
        b"403 Forbidden", explain("Channel id not authorized for this method.")
    )
    with basic.client(timeout=5.0) as c:
        c.send(
            req("POST", "/pub?id=ALL", b"x")
            + req("POST", "/pub?id=ch*", b"x")
            + req("GET", "/pub?id=ALL")
        )
        got = [strip_volatile(read_response(c)) for _ in range(3)]
    assert got == [forbidden] * 3


def test_empty_post_is_400(basic) -> None:
    bad = empty(b"400 Bad Request", explain("Empty post requests are not allowed."))
    assert exchange(basic, req("POST", "/pub?id=emptych0", b"")) == bad
    assert exchange(basic, req("POST", "/pub?id=emptych0b")) == bad


def test_empty_post_still_creates_the_channel(basic) -> None:
    exchange(basic, req("POST", "/pub?id=emptych", b""))
    assert exchange(basic, req("GET", "/pub?id=emptych")) == ok(info("emptych", 0, 0))


def test_body_over_client_max_body_size_is_413_and_closes(basic) -> None:
    # nginx answers with its HTML error page; fastpush with its own short
    # answer.  Status, Connection: close and the close itself are the contract.
    with basic.client(timeout=5.0) as c:
        c.send(req("POST", "/pub-small?id=big", b"x" * 20))
        status, headers, _ = c.read_head()
        assert (status, headers["connection"]) == (413, "close")
        assert c.closed_by_peer()
    assert exchange(basic, req("GET", "/pub?id=big")) == empty(b"404 Not Found")


def test_body_of_exactly_client_max_body_size_is_published(basic) -> None:
    assert exchange(basic, req("POST", "/pub-small?id=ok10", b"x" * 10)) == ok(
        info("ok10", 1, 1)
    )


def test_unsupported_method_with_body_is_405_and_the_body_is_discarded(basic) -> None:
    with basic.client(timeout=5.0) as c:
        c.send(
            req("PATCH", "/pub?id=ch1", b"x")
            + req("PATCH", "/pub-admin?id=ch1", b"x")
            + req("GET", "/pub?id=nothere")
        )
        got = [strip_volatile(read_response(c)) for _ in range(3)]
    assert got == [
        empty(b"405 Not Allowed", b"Allow: GET, POST, PUT\r\n"),
        empty(b"405 Not Allowed", b"Allow: GET, POST, PUT, DELETE\r\n"),
        empty(b"404 Not Found"),
    ]


def test_unknown_method_is_405(basic) -> None:
    assert exchange(basic, req("FOO", "/pub?id=ch1")) == empty(
        b"405 Not Allowed", b"Allow: GET, POST, PUT\r\n"
    )


def test_options_without_allowed_origins_is_empty_200(basic) -> None:
    assert exchange(basic, req("OPTIONS", "/pub?id=ch1")) == empty(b"200 OK")


# -- CORS --------------------------------------------------------------------------


def test_options_with_allowed_origins_answers_cors_headers(basic) -> None:
    raw = req("OPTIONS", "/pub-cors?id=x", None, "Origin: http://a.com\r\n")
    assert exchange(basic, raw) == empty(b"200 OK", CORS_ADMIN)


def test_publish_with_allowed_origins_adds_cors_headers_after_no_cache(basic) -> None:
    assert exchange(basic, req("POST", "/pub-cors?id=cx", b"m")) == ok(
        info("cx", 1, 0), extra=CORS_ADMIN
    )


def test_404_with_allowed_origins_carries_cors_headers(basic) -> None:
    assert exchange(basic, req("GET", "/pub-cors?id=missing")) == empty(
        b"404 Not Found", CORS_ADMIN
    )


# -- limits ------------------------------------------------------------------------


def test_channel_id_longer_than_max_channel_id_length_is_400(limits) -> None:
    too_long = empty(b"400 Bad Request", explain("Channel id is too large."))
    assert exchange(limits, req("POST", "/pub?id=abcdefghij", b"x")) == ok(
        info("abcdefghij", 1, 1)
    )
    with limits.client(timeout=5.0) as c:
        c.send(
            req("POST", "/pub?id=abcdefghijk", b"x") + req("GET", "/pub?id=abcdefghijk")
        )
        got = [strip_volatile(read_response(c)) for _ in range(2)]
    assert got == [too_long, too_long]


def test_delete_answers_200_with_channel_deleted_explain(limits) -> None:
    exchange(limits, req("POST", "/pub?id=del1", b"x"))
    assert exchange(limits, req("DELETE", "/pub?id=del1")) == empty(
        b"200 OK", explain("Channel deleted.")
    )


def test_max_messages_stored_per_channel_keeps_the_last_ones(limits) -> None:
    for i in range(1, 6):
        exchange(limits, req("POST", "/pub?id=st", b"m%d" % i))
    assert exchange(limits, req("GET", "/pub?id=st")) == ok(info("st", 5, 3))


def test_max_number_of_channels_forbids_new_channels(limits) -> None:
    for ch in ("c1", "c2", "c3"):
        assert exchange(limits, req("POST", "/pub?id=" + ch, b"x")) == ok(
            info(ch, 1, 1)
        )
    exceeded = empty(b"403 Forbidden", explain("Number of channels were exceeded."))
    with limits.client(timeout=5.0) as c:
        c.send(req("POST", "/pub?id=c4", b"x") + req("GET", "/pub?id=c4"))
        got = [strip_volatile(read_response(c)) for _ in range(2)]
    assert got == [exceeded, empty(b"404 Not Found")]


def test_wildcard_channels_have_their_own_limit(limits) -> None:
    for ch in ("c1", "c2", "c3", "bd_1", "bd_2"):
        assert exchange(limits, req("POST", "/pub?id=" + ch, b"x")) == ok(
            info(ch, 1, 1)
        )
    assert exchange(limits, req("POST", "/pub?id=bd_3", b"x")) == empty(
        b"403 Forbidden", explain("Number of channels were exceeded.")
    )


def test_encoded_slash_in_the_id_argument_publishes_to_two_channels(fresh) -> None:
    # the argument is unescaped to "a/b", which is then split into channels
    started = time.time()
    t0 = time.time()
    actual = exchange(fresh, req("POST", "/pub-store?id=a%2Fb", b"x"))
    t1 = time.time()
    assert actual == group(
        started, t0, t1, actual, 2, [info("a", 1, 1), info("b", 1, 1)]
    )


# nginx "ttl" configuration of the captures, with shorter times.
TTL = """
[settings]
message_ttl = "1s"
channel_inactivity_time = "1s"

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
store_messages = true

[[locations]]
regex = "^/poll/(.*)$"
role = "subscriber"
mode = "polling"
channels_path = "$1"
"""


def test_expired_message_and_then_its_idle_channel_are_removed() -> None:
    # push-stream removes them from cleanup timers (up to ~5 s late); the
    # contract is only that both are gone after that: 404 for the channel.
    with ServerProcess(TTL) as srv:
        assert exchange(srv, req("POST", "/pub?id=t1", b"short-lived")) == ok(
            info("t1", 1, 1)
        )
        first = exchange(srv, req("GET", "/poll/t1.b1"))
        assert first.endswith(b"\r\n\r\nb\r\nshort-lived\r\n0\r\n\r\n"), first
        deadline = time.monotonic() + 1 + 1 + 5
        while exchange(srv, req("GET", "/pub?id=t1")) != empty(b"404 Not Found"):
            assert time.monotonic() < deadline, "channel t1 never removed"
            time.sleep(0.1)
