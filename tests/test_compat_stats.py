"""Byte-level compatibility of channels statistics and the events channel with
push-stream 0.6.

Every expected byte string below has the layout nginx 1.24.0 +
nginx-push-stream-module 0.6.0 sent for the same requests under the equivalent
nginx configuration (the captures "channels_stats", "events_channel" and
"limits"), without the Date and Server headers.  What varies per run is read
from the answer after a check: the hostname is the machine's, time and uptime
must match the clock, the worker pid is the server process's.

push-stream's garbage-collection counters (messages_in_trash,
channels_in_delete, channels_in_trash) follow its shared-memory cleanup timers;
the scenarios here avoid the states where they are not 0 (unstored messages,
deleted channels), as fastpush frees at once.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
import zlib
from collections.abc import Iterator

import pytest

from fastpush.testing import (
    NO_CACHE,
    TPL,
    ServerProcess,
    chunk,
    exchange,
    iso_seconds,
    message_times,
    publish,
    read_chunks,
    read_response,
    req,
    strip_volatile,
    tags,
    tpl,
    wait_subscribers,
)
from fastpush.testing import info as json_info
from fastpush.testing import ok as answer_ok

# push-stream 0.6.0 still reports the tag of 0.5.5 on every statistics answer.
VERSION = (
    b"X-Nginx-PushStream-Tag: 0.5.5\r\n"
    b"X-Nginx-PushStream-Commit: 3bc016f811d50374251960db091557571dfd7393\r\n"
)
HOST = socket.gethostname().encode()

STATS = """
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
path = "/pub-admin"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
store_messages = true

[[locations]]
regex = "^/sub/(.*)$"
role = "subscriber"
channels_path = "$1"
"""

GZIP = """
[settings]
gzip = true
gzip_types = ["application/json", "text/plain"]

[[locations]]
path = "/channels-stats-gzip"
role = "channels_statistics"
channels_path = "$arg_id"
"""

LIMITS = """
[settings]
max_channel_id_length = 10
max_number_of_channels = 3
max_number_of_wildcard_channels = 2
wildcard_channel_prefix = "bd_"

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
store_messages = true
"""

EVENTS = """
[settings]
shared_memory_size = "32M"
events_channel_id = "events"
channel_inactivity_time = "2s"

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"
store_messages = true

[[locations]]
regex = "^/sub/(.*)$"
role = "subscriber"
channels_path = "$1"

[[locations]]
regex = "^/ev-sub/(.*)$"
role = "subscriber"
channels_path = "$1"
allow_connections_to_events_channel = true
message_template = %s

[[locations]]
regex = "^/sub-ttl/(.*)$"
role = "subscriber"
channels_path = "$1"
subscriber_connection_ttl = "1s"

[[locations]]
regex = "^/lp/(.*)$"
role = "subscriber"
mode = "long-polling"
channels_path = "$1"

[[locations]]
regex = "^/ws/(.*)$"
role = "subscriber"
mode = "websocket"
channels_path = "$1"

[[locations]]
regex = "^/ev-poll/(.*)$"
role = "subscriber"
mode = "polling"
channels_path = "$1"
allow_connections_to_events_channel = true

[[locations]]
regex = "^/poll-tpl/(.*)$"
role = "subscriber"
mode = "polling"
channels_path = "$1"
message_template = %s
""" % (json.dumps(TPL + "\n"), json.dumps(TPL))


# -- helpers -------------------------------------------------------------------


def ok(body: bytes, content_type: bytes = b"application/json") -> bytes:
    """A statistics answer: a 200 with the version headers."""
    return answer_ok(body, content_type, extra=VERSION)


class Clock:
    """What a statistics answer may say about time: the UTC second of the
    request and the server's uptime, both checked against the test's clock."""

    def __init__(self, srv: ServerProcess, started: float) -> None:
        self.srv = srv
        self.started = started  # taken just before the server was started

    def get(self, target: str, headers: str = "") -> tuple[bytes, bytes, bytes]:
        """(answer, time, uptime) of a GET."""
        t0 = time.time()
        actual = exchange(self.srv, req("GET", target, None, headers))
        t1 = time.time()
        stamps = set(re.findall(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", actual))
        uptimes = set(re.findall(rb"uptime\W+(\d+)", actual))
        stamp = stamps.pop() if len(stamps) == 1 else b"?"
        uptime = uptimes.pop() if len(uptimes) == 1 else b"?"
        assert stamp in iso_seconds(t0, t1), actual
        assert int(t0 - self.started) - 1 <= int(uptime) <= int(t1 - self.started) + 1
        return actual, stamp, uptime


@contextlib.contextmanager
def started(config: str) -> Iterator[tuple[ServerProcess, Clock]]:
    """A new server, and a Clock that knows when it was started."""
    t = time.time()
    with ServerProcess(config) as srv:
        yield srv, Clock(srv, t)


# -- the formats, as push-stream lays them out ------------------------------------


def info(ch: str, published: int, stored: int, subscribers: int) -> tuple:
    return (ch, published, stored, subscribers)


def json_single(i: tuple) -> bytes:
    return json_info(*i)


def json_group(
    stamp: bytes, uptime: bytes, channels: int, infos: list, wild: int = 0
) -> bytes:
    items = b",\r\n".join(json_single(i)[:-2] for i in infos)
    return (
        b'{"hostname": "%s", "time": "%s", "channels": %d, "wildcard_channels": %d, '
        b'"uptime": %s, "infos": [\r\n'
        % (HOST, stamp, channels, wild, uptime)
        + (items + b"\r\n" if infos else b"")
        + b"]}\r\n"
    )


def json_summary(
    stamp: bytes,
    uptime: bytes,
    pid: int,
    channels: int,
    published: int,
    stored: int,
    subscribers: int,
    wild: int = 0,
) -> bytes:
    return (
        b'{"hostname": "%s", "time": "%s", "channels": %d, "wildcard_channels": %d, '
        b'"published_messages": %d, "stored_messages": %d, "messages_in_trash": 0, '
        b'"channels_in_delete": 0, "channels_in_trash": 0, "subscribers": %d, '
        b'"uptime": %s, "by_worker": [\r\n'
        % (HOST, stamp, channels, wild, published, stored, subscribers, uptime)
        + b'{"pid": "%d", "subscribers": %d, "uptime": %s}\r\n]}\r\n'
        % (pid, subscribers, uptime)
    )


def plain_single(i: tuple) -> bytes:
    return (
        b"channel: %s\r\npublished_messages: %d\r\nstored_messages: %d\r\n"
        b"active_subscribers: %d\r\n" % (i[0].encode(), *i[1:])
    )


def plain_group(stamp: bytes, uptime: bytes, channels: int, infos: list) -> bytes:
    return (
        b"hostname: %s, time: %s, channels: %d, wildcard_channels: 0, uptime: %s, "
        b"infos: \r\n"
        % (HOST, stamp, channels, uptime)
        + b",\r\n".join(plain_single(i)[:-2] for i in infos)
        + b"\r\n"
    )


def plain_summary(
    stamp: bytes,
    uptime: bytes,
    pid: int,
    channels: int,
    published: int,
    stored: int,
    subs: int,
) -> bytes:
    return (
        b"hostname: %s\r\ntime: %s\r\nchannels: %d\r\nwildcard_channels: 0\r\n"
        b"published_messages: %d\r\nstored_messages: %d\r\nmessages_in_trash: 0\r\n"
        b"channels_in_delete: 0\r\nchannels_in_trash: 0\r\nsubscribers: %d\r\n"
        % (HOST, stamp, channels, published, stored, subs)
        + b"uptime: %s\r\nby_worker:\r\n  pid: %d\r\n  subscribers: %d\r\n"
        b"  uptime: %s\r\n" % (uptime, pid, subs, uptime)
    )


XML_DECL = b'<?xml version="1.0" encoding="UTF-8" ?>\r\n'


def xml_item(i: tuple) -> bytes:
    return (
        b"<channel>\r\n  <name>%s</name>\r\n"
        b"  <published_messages>%d</published_messages>\r\n"
        b"  <stored_messages>%d</stored_messages>\r\n"
        b"  <subscribers>%d</subscribers>\r\n</channel>\r\n" % (i[0].encode(), *i[1:])
    )


def xml_single(i: tuple) -> bytes:
    return XML_DECL + xml_item(i) + b"\r\n"


def xml_group(stamp: bytes, uptime: bytes, channels: int, infos: list) -> bytes:
    return (
        XML_DECL + b"<root>\r\n  <hostname>%s</hostname>\r\n  <time>%s</time>\r\n"
        b"  <channels>%d</channels>\r\n  <wildcard_channels>0</wildcard_channels>\r\n"
        b"  <uptime>%s</uptime>\r\n  <infos>\r\n"
        % (HOST, stamp, channels, uptime)
        + b"".join(xml_item(i) for i in infos)
        + b"  </infos>\r\n</root>\r\n"
    )


def xml_summary(
    stamp: bytes,
    uptime: bytes,
    pid: int,
    channels: int,
    published: int,
    stored: int,
    subs: int,
) -> bytes:
    return (
        XML_DECL + b"<infos>\r\n  <hostname>%s</hostname>\r\n  <time>%s</time>\r\n"
        b"  <channels>%d</channels>\r\n  <wildcard_channels>0</wildcard_channels>\r\n"
        b"  <published_messages>%d</published_messages>\r\n"
        b"  <stored_messages>%d</stored_messages>\r\n"
        % (HOST, stamp, channels, published, stored)
        + b"  <messages_in_trash>0</messages_in_trash>\r\n"
        b"  <channels_in_delete>0</channels_in_delete>\r\n"
        b"  <channels_in_trash>0</channels_in_trash>\r\n"
        b"  <subscribers>%d</subscribers>\r\n  <uptime>%s</uptime>\r\n"
        b"  <by_worker><worker>\r\n  <pid>%d</pid>\r\n"
        b"  <subscribers>%d</subscribers>\r\n"
        b"  <uptime>%s</uptime>\r\n</worker>\r\n</by_worker>\r\n</infos>\r\n"
        % (subs, uptime, pid, subs, uptime)
    )


def yaml_item(i: tuple) -> bytes:
    return (
        b"  channel: %s\r\n  published_messages: %d\r\n  stored_messages: %d\r\n"
        b"  subscribers: %d\r\n" % (i[0].encode(), *i[1:])
    )


def yaml_group(stamp: bytes, uptime: bytes, channels: int, infos: list) -> bytes:
    return (
        b"hostname: %s\r\ntime: %s\r\nchannels: %d\r\nwildcard_channels: 0\r\n"
        b"uptime: %s\r\ninfos: \r\n"
        % (HOST, stamp, channels, uptime)
        + b"".join(b" -\r\n" + yaml_item(i) for i in infos)
    )


def yaml_summary(
    stamp: bytes,
    uptime: bytes,
    pid: int,
    channels: int,
    published: int,
    stored: int,
    subs: int,
) -> bytes:
    return (
        b"  hostname: %s\r\n  time: %s\r\n  channels: %d\r\n  wildcard_channels: 0\r\n"
        b"  published_messages: %d\r\n  stored_messages: %d\r\n"
        % (HOST, stamp, channels, published, stored)
        + b"  messages_in_trash: 0\r\n  channels_in_delete: 0\r\n"
        b"  channels_in_trash: 0\r\n  subscribers: %d\r\n  uptime: %s\r\n"
        b"  by_worker:\r\n   -\r\n    pid: %d\r\n    subscribers: %d\r\n"
        b"    uptime: %s\r\n" % (subs, uptime, pid, subs, uptime)
    )


FORMATS = {
    "json": (json_single, json_group, json_summary),
    "plain": (plain_single, plain_group, plain_summary),
    "xml": (xml_single, xml_group, xml_summary),
    "yaml": (yaml_item, yaml_group, yaml_summary),
}


# -- a fresh server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stats() -> Iterator[tuple[ServerProcess, Clock]]:
    with started(STATS) as server:
        yield server


def test_summary_of_an_empty_server(stats) -> None:
    srv, clock = stats
    actual, stamp, uptime = clock.get("/channels-stats")
    assert actual == ok(json_summary(stamp, uptime, srv.proc.pid, 0, 0, 0, 0))


def test_all_channels_of_an_empty_server_is_an_empty_list(stats) -> None:
    srv, clock = stats
    actual, stamp, uptime = clock.get("/channels-stats?id=ALL")
    assert actual == ok(json_group(stamp, uptime, 0, []))


def test_missing_channels_are_404_with_the_version_headers(stats) -> None:
    srv, _ = stats
    missing = (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
        + NO_CACHE
        + VERSION
        + b"\r\n"
    )
    assert exchange(srv, req("GET", "/channels-stats?id=nonexistent")) == missing
    assert exchange(srv, req("GET", "/channels-stats?id=none1/none2")) == missing


CH1 = info("ch1", 2, 2, 1)
CH2 = info("ch2", 1, 1, 0)
P1 = info("prefix_1", 1, 1, 0)
P2 = info("prefix_2", 1, 1, 0)


@pytest.fixture(scope="module")
def populated(stats) -> Iterator[tuple[ServerProcess, Clock]]:
    """ch1 (2 stored, 1 streaming subscriber), ch2, prefix_1, prefix_2 (1 each)."""
    srv, clock = stats
    for ch, text in (("ch1", b"a"), ("ch1", b"b"), ("ch2", b"c"), ("prefix_1", b"d")):
        publish(srv, ch, text)
    publish(srv, "prefix_2", b"e")
    sub = srv.client(timeout=5.0)
    sub.send(req("GET", "/sub/ch1"))
    sub.read_head()
    with sub:
        yield srv, clock


def test_summary_counts_channels_messages_and_subscribers(populated) -> None:
    srv, clock = populated
    actual, stamp, uptime = clock.get("/channels-stats")
    assert actual == ok(json_summary(stamp, uptime, srv.proc.pid, 4, 5, 5, 1))


def test_one_channel_answers_the_single_format(populated) -> None:
    srv, clock = populated
    for target in ("/channels-stats?id=ch1", "/channels-stats?id=ch1/none"):
        assert exchange(srv, req("GET", target)) == ok(json_single(CH1)), target


def test_backtrack_suffix_is_stripped_from_the_channel_id(populated) -> None:
    srv, _ = populated
    assert exchange(srv, req("GET", "/channels-stats?id=ch1.b3")) == ok(
        json_single(CH1)
    )


def test_two_channels_answer_the_group_format(populated) -> None:
    srv, clock = populated
    actual, stamp, uptime = clock.get("/channels-stats?id=ch1/ch2")
    assert actual == ok(json_group(stamp, uptime, 4, [CH1, CH2]))


@pytest.mark.parametrize("target", ["/channels-stats?id=ALL", "/channels-stats?id=*"])
def test_all_channels_are_listed_in_creation_order(populated, target) -> None:
    srv, clock = populated
    actual, stamp, uptime = clock.get(target)
    assert actual == ok(json_group(stamp, uptime, 4, [CH1, CH2, P1, P2]))


@pytest.mark.parametrize(
    "target",
    [
        "/channels-stats?id=prefix_*",
        "/channels-stats?id=ch1/prefix_*",  # a wildcard anywhere lists by prefix
        "/channels-stats?id=pre*fix",  # what follows the * is ignored
    ],
)
def test_wildcard_lists_the_channels_with_that_prefix(populated, target) -> None:
    srv, clock = populated
    actual, stamp, uptime = clock.get(target)
    assert actual == ok(json_group(stamp, uptime, 4, [P1, P2]))


def test_wildcard_without_match_is_an_empty_list(populated) -> None:
    srv, clock = populated
    actual, stamp, uptime = clock.get("/channels-stats?id=nomatch_*")
    assert actual == ok(json_group(stamp, uptime, 4, []))


ACCEPT = [
    ("text/plain", b"text/plain", "plain"),
    ("application/xml", b"application/xml", "xml"),
    ("application/yaml", b"application/yaml", "yaml"),
    ("text/x-json", b"text/x-json", "json"),
    ("text/x-yaml", b"text/x-yaml", "yaml"),
    ("text/json", b"application/json", "json"),
    ("*/*", b"application/json", "json"),
    (
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        b"application/xml",
        "xml",
    ),
    ("application/json, text/plain", b"application/json", "json"),
]


@pytest.mark.parametrize("accept,content_type,fmt", ACCEPT)
def test_accept_selects_the_format_of_the_summary(populated, accept, content_type, fmt):
    srv, clock = populated
    actual, stamp, uptime = clock.get("/channels-stats", f"Accept: {accept}\r\n")
    summary = FORMATS[fmt][2](stamp, uptime, srv.proc.pid, 4, 5, 5, 1)
    assert actual == ok(summary, content_type)


@pytest.mark.parametrize("accept,content_type,fmt", ACCEPT)
def test_accept_selects_the_format_of_all_channels(
    populated, accept, content_type, fmt
):
    srv, clock = populated
    actual, stamp, uptime = clock.get("/channels-stats?id=ALL", f"Accept: {accept}\r\n")
    body = FORMATS[fmt][1](stamp, uptime, 4, [CH1, CH2, P1, P2])
    assert actual == ok(body, content_type)


@pytest.mark.parametrize("accept,content_type,fmt", ACCEPT)
def test_accept_selects_the_format_of_one_channel(populated, accept, content_type, fmt):
    srv, _ = populated
    raw = req("GET", "/channels-stats?id=ch1", None, f"Accept: {accept}\r\n")
    assert exchange(srv, raw) == ok(FORMATS[fmt][0](CH1), content_type)


def test_methods_other_than_get_are_405(populated) -> None:
    srv, _ = populated
    not_allowed = (
        b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
        + NO_CACHE
        + b"Allow: GET\r\n\r\n"
    )
    with srv.client(timeout=5.0) as c:
        c.send(req("POST", "/channels-stats", b"x") + req("HEAD", "/channels-stats"))
        got = [strip_volatile(read_response(c)) for _ in range(2)]
    assert got == [not_allowed, not_allowed]


def test_subscriber_count_drops_when_the_subscriber_leaves(stats) -> None:
    srv, clock = stats
    with srv.client(timeout=5.0) as sub:
        sub.send(req("GET", "/sub/gone"))
        sub.read_head()
    wait_subscribers(srv, "gone", 0)
    actual = exchange(srv, req("GET", "/channels-stats?id=gone"))
    assert actual == ok(json_single(info("gone", 0, 0, 0)))


def test_gzip_compresses_statistics() -> None:
    with started(GZIP) as (srv, _), srv.client(timeout=5.0) as c:
        c.send(
            req("GET", "/channels-stats-gzip?id=ALL", None, "Accept-Encoding: gzip\r\n")
        )
        t0 = time.time()
        status, headers, head = c.read_head()
        body = b""
        while piece := c.read_chunk():
            body += piece
    assert strip_volatile(head) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        + NO_CACHE
        + VERSION
        + b"Content-Encoding: gzip\r\n\r\n"
    )
    plain = zlib.decompress(body, 31)
    m = re.search(rb'"time": "([^"]*)", .*"uptime": (\d+)', plain)
    assert m is not None, plain
    assert time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t0)).encode() in m.group(1)
    assert plain == json_group(m.group(1), m.group(2), 0, [])


def test_wildcard_channels_are_counted_apart() -> None:
    with started(LIMITS) as (srv, clock):
        for ch in ("c1", "c2", "c3", "bd_1", "bd_2"):
            publish(srv, ch, b"x", path="/pub")
        actual, stamp, uptime = clock.get("/channels-stats")
        assert actual == ok(
            json_summary(stamp, uptime, srv.proc.pid, 3, 5, 5, 0, wild=2)
        )
        actual, stamp, uptime = clock.get("/channels-stats?id=ALL")
        infos = [info(ch, 1, 1, 0) for ch in ("c1", "c2", "c3", "bd_1", "bd_2")]
        assert actual == ok(json_group(stamp, uptime, 3, infos, wild=2))


def test_channel_id_longer_than_max_is_400() -> None:
    with started(LIMITS) as (srv, _):
        assert exchange(srv, req("GET", "/channels-stats?id=abcdefghijk")) == (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
            b"Connection: keep-alive\r\n"
            + NO_CACHE
            + VERSION
            + b"X-Nginx-PushStream-Explain: Channel id is too large.\r\n\r\n"
        )


# -- the events channel ----------------------------------------------------------


@pytest.fixture(scope="module")
def events() -> Iterator[tuple[ServerProcess, Clock]]:
    with started(EVENTS) as server:
        yield server


def test_events_channel_exists_from_the_start(events) -> None:
    srv, clock = events
    actual, stamp, uptime = clock.get("/channels-stats?id=ALL")
    assert actual == ok(json_group(stamp, uptime, 1, [info("events", 0, 0, 0)]))


def test_events_channel_is_closed_to_subscribers_and_publishers(events) -> None:
    srv, _ = events

    def forbidden(text: str) -> bytes:
        return (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
            + NO_CACHE
            + b"X-Nginx-PushStream-Explain: "
            + text.encode()
            + b"\r\n\r\n"
        )

    with srv.client(timeout=5.0) as c:
        c.send(
            req("GET", "/sub/events")
            + req("POST", "/pub?id=events", b"x")
            + req("DELETE", "/pub?id=events")
        )
        got = [strip_volatile(read_response(c)) for _ in range(3)]
    assert got == [
        forbidden("Subscription to events channel is not allowed."),
        forbidden("Only internal routines can change events channel."),
        forbidden("Only internal routines can change events channel."),
    ]


def test_events_channel_info_is_readable_by_publishers(events) -> None:
    srv, _ = events
    body = (
        b'{"channel": "events", "published_messages": 0, "stored_messages": 0, '
        b'"subscribers": 0}\r\n'
    )
    assert exchange(srv, req("GET", "/pub?id=events")) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 88\r\n"
        b"Connection: keep-alive\r\n" + NO_CACHE + b"\r\n" + body
    )


def event_chunks(
    events: list[tuple[str, str]], times: list[bytes], event_tags: list[int]
) -> bytes:
    """The chunks an events-channel subscriber with the JSON template gets for
    events [(type, channel)] numbered from 1."""
    out = b""
    for i, ((kind, ch), when, tag) in enumerate(zip(events, times, event_tags), 1):
        text = b'{"type": "%s", "channel": "%s"}' % (kind.encode(), ch.encode())
        out += chunk(tpl(i, "events", text, tag, when, b"", kind.encode()) + b"\n")
    return out


def test_events_report_channel_life_and_every_subscription() -> None:
    with started(EVENTS) as (srv, _), srv.client(timeout=5.0) as ev:
        t0 = time.time()
        ev.send(req("GET", "/ev-sub/events"))
        ev.read_head()
        with srv.client(timeout=5.0) as c:  # creates c1
            c.send(req("GET", "/sub/c1"))
            c.read_head()
        wait_subscribers(srv, "c1", 0)
        with srv.client(timeout=5.0) as c:
            c.websocket("/ws/c1")
        wait_subscribers(srv, "c1", 0)
        assert exchange(srv, req("DELETE", "/pub?id=c1")).startswith(b"HTTP/1.1 200")
        # push-stream reports channel_destroyed from its cleanup timer (4 s)
        ev.sock.settimeout(6.0)
        raw = read_chunks(ev, 6)
        times = message_times(raw, t0, time.time(), n=6)
    sub = [("client_subscribed", "c1"), ("client_unsubscribed", "c1")]
    events = [("channel_created", "c1")] + sub * 2 + [("channel_destroyed", "c1")]
    assert raw == event_chunks(events, times, tags(times))


def test_events_report_long_polling_subscriptions() -> None:
    with started(EVENTS) as (srv, _), srv.client(timeout=1.0) as ev:
        t0 = time.time()
        ev.send(req("GET", "/ev-sub/events"))
        ev.read_head()
        publish(srv, "c2", b"x", path="/pub")  # channel_created, then the message
        with srv.client(timeout=5.0) as c:
            c.send(req("GET", "/lp/c2"))
            wait_subscribers(srv, "c2", 1)
        wait_subscribers(srv, "c2", 0)
        raw = read_chunks(ev, 3)
        times = message_times(raw, t0, time.time(), n=3)
        poll = exchange(srv, req("GET", "/poll-tpl/c2.b1"))
        message_time = message_times(poll, t0, time.time(), n=1)[0]
    all_tags = tags([times[0], message_time, times[1], times[2]])
    events = [
        ("channel_created", "c2"),
        ("client_subscribed", "c2"),
        ("client_unsubscribed", "c2"),
    ]
    assert raw == event_chunks(events, times, [all_tags[0], *all_tags[2:]])


def test_events_of_a_subscriber_ended_by_its_ttl() -> None:
    with started(EVENTS) as (srv, _), srv.client(timeout=4.0) as ev:
        t0 = time.time()
        ev.send(req("GET", "/ev-sub/events"))
        ev.read_head()
        with srv.client(timeout=5.0) as c:
            c.send(req("GET", "/sub-ttl/c3"))
            c.read_head()
            raw = read_chunks(ev, 3)
        times = message_times(raw, t0, time.time(), n=3)
    events = [
        ("channel_created", "c3"),
        ("client_subscribed", "c3"),
        ("client_unsubscribed", "c3"),
    ]
    assert raw == event_chunks(events, times, tags(times))


def test_events_are_stored_and_can_be_polled() -> None:
    with started(EVENTS) as (srv, _):
        t0 = time.time()
        publish(srv, "c4", b"x", path="/pub")  # channel_created, then the message
        with srv.client(timeout=5.0) as c:
            c.send(req("GET", "/sub/c4"))
            c.read_head()
        wait_subscribers(srv, "c4", 0)
        with srv.client(timeout=5.0) as ev:
            ev.send(req("GET", "/ev-sub/events.b3"))
            ev.read_head()
            raw = read_chunks(ev, 3)
        times = message_times(raw, t0, time.time(), n=3)
        poll = exchange(srv, req("GET", "/poll-tpl/c4.b1"))
        message_time = message_times(poll, t0, time.time(), n=1)[0]
        # the message published to c4 took a tag between the first two events
        all_tags = tags([times[0], message_time, times[1], times[2]])
        event_tags = [all_tags[0], all_tags[2], all_tags[3]]
        events = [
            ("channel_created", "c4"),
            ("client_subscribed", "c4"),
            ("client_unsubscribed", "c4"),
        ]
        assert raw == event_chunks(events, times, event_tags)
        lines = [
            b'{"type": "%s", "channel": "c4"}' % kind.encode() for kind, _ in events
        ]
        assert exchange(srv, req("GET", "/ev-poll/events.b2")) == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nLast-Modified: "
            + times[2]
            + b"\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
            + NO_CACHE
            + b"Etag: W/%d\r\n\r\n" % event_tags[2]
            + b"".join(b"%x\r\n" % len(x) + x + b"\r\n" for x in lines[1:])
            + b"0\r\n\r\n"
        )
        assert exchange(srv, req("GET", "/channels-stats?id=events")) == ok(
            json_single(info("events", 3, 3, 0))
        )
