"""Byte-level compatibility of EventSource subscribers with push-stream 0.6.

Every expected byte string below is what nginx 1.24.0 + nginx-push-stream-module
0.6.0 sent for the same requests under the equivalent nginx configuration (the
captures "sub_eventsource", "sub_padding" and "misc_edge_cases"), without the
Date and Server headers.  Message times, and the tags that depend on them, are
read from the answer, checked against the clock, and the tags recomputed with
push-stream's rule.
"""

from __future__ import annotations

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
TPL = (
    '{"id":~id~,"channel":"~channel~","text":"~text~","tag":~tag~,"time":"~time~",'
    '"eventid":"~event-id~","eventtype":"~event-type~","size":~size~}'
)
EVENT_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n" + NO_CACHE + b"\r\n"
)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\r", "\\r").replace("\n", "\\n") + '"'


def _sub(name: str, mode: str, **kw: object) -> str:
    """A push-stream `location ~ ^/name/(.*)$ { push_stream_subscriber mode; }`."""
    lines = [
        "[[locations]]",
        f'regex = "^/{name}/(.*)$"',
        'role = "subscriber"',
        f'mode = "{mode}"',
        'channels_path = "$1"',
    ] + [f"{k} = {_toml(v)}" for k, v in kw.items()]
    return "\n".join(lines) + "\n\n"


# The eventsource part of the nginx "basic" configuration of the captures.  The
# streaming padding location stays: push-stream sizes its padding strings by
# the largest padding configured in any location.
BASIC = (
    '[settings]\nshared_memory_size = "32M"\n\n'
    '[[locations]]\npath = "/channels-stats"\nrole = "channels_statistics"\n'
    'channels_path = "$arg_id"\n\n'
    '[[locations]]\npath = "/pub-store"\nrole = "publisher"\n'
    'channels_path = "$arg_id"\nstore_messages = true\n\n'
    '[[locations]]\npath = "/pub-admin"\nrole = "publisher"\nmode = "admin"\n'
    'channels_path = "$arg_id"\nstore_messages = true\n\n'
    + _sub("ev", "eventsource")
    + _sub("ev-tpl", "eventsource", message_template=TPL)
    + _sub(
        "ev-hf",
        "eventsource",
        header_template="HEADER\r\nline2",
        footer_template="FOOTER\nF2",
    )
    + _sub("ev-ping", "eventsource", ping_message_interval="1s")
    + _sub(
        "ev-ttl", "eventsource", subscriber_connection_ttl="2s", footer_template="bye"
    )
    + _sub("ev-qs", "eventsource", last_event_id="$arg_eventid")
    + _sub("ev-pad", "eventsource", padding_by_user_agent="Pad,250,110")
    + _sub("ev-data", "eventsource", message_template="data: X~text~")
    + _sub(
        "sub-pad",
        "streaming",
        padding_by_user_agent="[Mm]ozilla,300,150:Chrome,40,20",
        header_template="HDR",
    )
    + _sub("poll-tpl", "polling", message_template=TPL)
)


# -- helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic() -> Iterator[ServerProcess]:
    with ServerProcess(BASIC) as srv:
        yield srv


def req(
    method: str, target: str, body: bytes | None = None, headers: str = ""
) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}"
    if body is None:
        return head.encode() + b"\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_response(c: RawClient) -> bytes:
    """One complete response, exactly as framed on the wire."""
    status, headers, raw = c.read_head()
    if status == 304 or 100 <= status < 200:
        return raw
    if "content-length" in headers:
        return raw + c.read_exactly(int(headers["content-length"]))
    while True:
        line = c.read_until(b"\r\n")
        size = int(line.split(b";")[0], 16)
        raw += line + c.read_exactly(size + 2)
        if size == 0:
            return raw


def exchange(srv: ServerProcess, raw: bytes) -> bytes:
    with srv.client(timeout=5.0) as c:
        c.send(raw)
        return strip_volatile(read_response(c))


def read_bytes(c: RawClient, n: int, timeout: float = 5.0) -> bytes:
    """n bytes, or whatever arrived before timeout or the close."""
    deadline = time.monotonic() + timeout
    while len(c.buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        c.sock.settimeout(left)
        try:
            if not c._fill():
                break
        except socket.timeout:
            break
    out, c.buf = c.buf[:n], c.buf[n:]
    return out


def subscribe(
    srv: ServerProcess, target: str, headers: str = ""
) -> tuple[RawClient, bytes]:
    c = srv.client(timeout=5.0)
    c.send(req("GET", target, None, headers))
    return c, strip_volatile(c.read_head()[2])


def publish(srv: ServerProcess, ch: str, body: bytes, headers: str = "") -> None:
    answer = exchange(srv, req("POST", f"/pub-store?id={ch}", body, headers))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer


def read_chunks(c: RawClient, n: int) -> bytes:
    """n chunks, with their framing."""
    raw = b""
    for _ in range(n):
        line = c.read_until(b"\r\n")
        raw += line + c.read_exactly(int(line, 16) + 2)
    return raw


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def chunks(*pieces: bytes) -> bytes:
    return b"".join(chunk(p) for p in pieces)


def http_dates(t0: float, t1: float) -> set[bytes]:
    return {
        time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(s)).encode()
        for s in range(int(t0), int(t1) + 1)
    }


def primer(srv: ServerProcess, ch: str) -> tuple[bytes, int]:
    """Publish one message and read back its (time, tag): where the server-wide
    tag sequence stands before the messages a test publishes next."""
    t0 = time.time()
    publish(srv, ch, b"primer")
    raw = exchange(srv, req("GET", f"/poll-tpl/{ch}.b1"))
    m = re.search(rb'"tag":(\d+),"time":"([^"]*)"', raw)
    assert m is not None and m.group(2) in http_dates(t0, time.time()), raw
    return m.group(2), int(m.group(1))


def next_tag(last: tuple[bytes, int], when: bytes) -> tuple[bytes, int]:
    """push-stream's ~tag~: +1 within the same second on the whole server."""
    return when, last[1] + 1 if when == last[0] else 1


def tpl(
    id: int, ch: str, text: bytes, tag: int, when: bytes, eid: bytes, etype: bytes
) -> bytes:
    return (
        b'{"id":%d,"channel":"%s","text":"%s","tag":%d,"time":"%s","eventid":"%s",'
        b'"eventtype":"%s","size":%d}'
        % (id, ch.encode(), text, tag, when, eid, etype, len(text))
    )


@pytest.fixture(scope="module", autouse=True)
def timers(basic) -> Iterator[dict[str, tuple[RawClient, bytes]]]:
    """Subscribers whose answers wait on timers, opened when the module starts
    so the waiting overlaps the other tests."""
    opened = {path: subscribe(basic, path) for path in ("/ev-ping/e4", "/ev-ttl/e5")}
    yield opened
    for c, _ in opened.values():
        c.close()


# -- tests -------------------------------------------------------------------------


def test_eventsource_starts_with_an_empty_comment_line(basic) -> None:
    c, head = subscribe(basic, "/ev/e0")
    with c:
        got = read_bytes(c, len(chunk(b": \n")))
    assert head + got == EVENT_STREAM_HEAD + chunk(b": \n")


def test_eventsource_message_is_a_data_line_and_a_blank_line(basic) -> None:
    c, head = subscribe(basic, "/ev/e1")
    with c:
        publish(basic, "e1", b"hello")
        body = chunks(b": \n", b"data: hello\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_splits_multiline_message_into_data_lines(basic) -> None:
    c, head = subscribe(basic, "/ev/e1b")
    with c:
        publish(basic, "e1b", b"l1\nl2\r\nl3\rl4")
        body = chunks(b": \n", b"data: l1\ndata: l2\ndata: l3\rl4\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_drops_empty_lines_of_a_message(basic) -> None:
    c, head = subscribe(basic, "/ev/e1c")
    with c:
        publish(basic, "e1c", b"a\n\nb")
        publish(basic, "e1c", b"\n")
        body = chunks(b": \n", b"data: a\ndata: b\n\n", b"\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_event_id_and_type_come_as_chunks_before_the_data(basic) -> None:
    c, head = subscribe(basic, "/ev/e1d")
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
    c, head = subscribe(basic, "/ev/ee2")
    with c:
        publish(basic, "ee2", b"e", "Event-Id: \r\nEvent-Type: \r\n")
        body = chunks(b": \n", b"id: \n", b"event: \n", b"data: e\n\n")
        got = read_bytes(c, len(body), timeout=1.0)
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_event_id_header_name_is_case_insensitive(basic) -> None:
    c, head = subscribe(basic, "/ev/ee3")
    with c:
        publish(basic, "ee3", b"e", "event-id: X\r\n")
        body = chunks(b": \n", b"id: X\n", b"data: e\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_renders_the_template_once_per_line(basic) -> None:
    last = primer(basic, "e2-primer")
    t0 = time.time()
    c, head = subscribe(basic, "/ev-tpl/e2")
    with c:
        publish(basic, "e2", b"x", "Event-Id: i1\r\nEvent-Type: ty\r\n")
        publish(basic, "e2", b"ab\ncde")
        got = read_chunks(c, 5)
    times = re.findall(rb'"time":"([^"]*)"', got)
    assert len(times) == 3 and set(times) <= http_dates(t0, time.time()), got
    last = first = next_tag(last, times[0])
    second = next_tag(last, times[1])
    body = chunks(
        b": \n",
        b"id: i1\n",
        b"event: ty\n",
        b"data: " + tpl(1, "e2", b"x", first[1], first[0], b"i1", b"ty") + b"\n\n",
        b"data: "
        + tpl(2, "e2", b"ab", second[1], second[0], b"", b"")
        + b"\ndata: "
        + tpl(2, "e2", b"cde", second[1], second[0], b"", b"")
        + b"\n\n",
    )
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_template_starting_with_data_is_not_wrapped(basic) -> None:
    c, head = subscribe(basic, "/ev-data/e6")
    with c:
        publish(basic, "e6", b"abc")
        publish(basic, "e6", b"l1\nl2")
        body = chunks(b": \n", b"data: Xabc\n", b"data: Xl1data: Xl2\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_header_and_footer_become_comment_lines(basic) -> None:
    c, head = subscribe(basic, "/ev-hf/e3")
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
    c, head = subscribe(basic, "/ev/e8")
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
    c, head = subscribe(basic, "/ev/e7", "Last-Event-Id: id1\r\n")
    with c:
        body = chunks(
            b": \n", b"id: id2\n", b"data: s2\n\n", b"id: id3\n", b"data: s3\n\n"
        )
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_unknown_last_event_id_sends_nothing_old(basic) -> None:
    for i in (1, 2, 3):
        publish(basic, "e7n", b"s%d" % i, f"Event-Id: id{i}\r\n")
    c, head = subscribe(basic, "/ev/e7n", "Last-Event-Id: nope\r\n")
    with c:
        publish(basic, "e7n", b"new")
        body = chunks(b": \n", b"data: new\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_last_event_id_from_a_query_argument(basic, with_event_ids) -> None:
    c, head = subscribe(basic, "/ev-qs/e7?eventid=id2")
    with c:
        body = chunks(b": \n", b"id: id3\n", b"data: s3\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_backtrack(basic, with_event_ids) -> None:
    c, head = subscribe(basic, "/ev/e7.b1")
    with c:
        body = chunks(b": \n", b"id: id3\n", b"data: s3\n\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def test_eventsource_padding_is_colons_and_a_newline(basic) -> None:
    c, head = subscribe(basic, "/ev-pad/pd5", "User-Agent: Pad\r\n")
    with c:
        publish(basic, "pd5", b"abc")
        body = chunks(b": \n", b":" * 299 + b"\n", b"data: abc\n\n", b":" * 99 + b"\n")
        got = read_bytes(c, len(body))
    assert head + got == EVENT_STREAM_HEAD + body


def _polled_head(content_type: bytes, last_modified: bytes, tag: int) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
        b"Last-Modified: " + last_modified + b"\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
        + NO_CACHE
        + b"Etag: W/%d\r\n\r\n" % tag
    )


def _last(srv: ServerProcess, ch: str) -> tuple[bytes, int]:
    """(time, tag) of the newest message of ch, through a templated poll."""
    raw = exchange(srv, req("GET", f"/poll-tpl/{ch}.b1"))
    m = re.search(rb'"tag":(\d+),"time":"([^"]*)"', raw)
    assert m is not None, raw
    return m.group(2), int(m.group(1))


def test_eventsource_location_switched_to_polling_renders_events_as_text(
    basic,
) -> None:
    publish(basic, "evm", b"e-msg", "Event-Id: i1\r\nEvent-Type: t1\r\n")
    when, tag = _last(basic, "evm")
    raw = req("GET", "/ev/evm.b1", None, "X-Nginx-PushStream-Mode: polling\r\n")
    assert (
        exchange(basic, raw)
        == _polled_head(b"text/plain", when, tag)
        + chunks(b": \n", b"id: i1\n", b"event: t1\n", b"data: e-msg\n\n")
        + b"0\r\n\r\n"
    )


def test_eventsource_location_switched_to_long_polling_keeps_the_event_stream_type(
    basic,
) -> None:
    c = basic.client(timeout=5.0)
    c.send(req("GET", "/ev/evm2", None, "X-Nginx-PushStream-Mode: long-polling\r\n"))
    with c:
        deadline = time.monotonic() + 5.0
        while b'"subscribers": 1}' not in exchange(
            basic, req("GET", "/channels-stats?id=evm2")
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        publish(basic, "evm2", b"lp", "Event-Id: i2\r\n")
        actual = strip_volatile(read_response(c))
    when, tag = _last(basic, "evm2")
    assert (
        actual
        == _polled_head(b"text/event-stream; charset=utf-8", when, tag)
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
