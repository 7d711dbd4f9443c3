from __future__ import annotations

import gzip

from fastpush.testing import dechunk

CONFIG = """
[settings]
gzip = true
gzip_types = ["application/json", "text/plain"]
store_messages = true

[[locations]]
path = "/pub"
role = "publisher"
channels_path = "$arg_id"

[[locations]]
regex = "^/poll/(.*)"
role = "subscriber"
mode = "polling"
channels_path = "$1"
"""


def test_publisher_answer_is_gzipped_when_accepted(make_server) -> None:
    srv = make_server(CONFIG)
    status, headers, body = srv.request(
        "POST", "/pub?id=gz", b"zip", {"Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["transfer-encoding"] == "chunked"
    assert gzip.decompress(body) == (
        b'{"channel": "gz", "published_messages": 1, "stored_messages": 1, '
        b'"subscribers": 0}\r\n'
    )


def test_publisher_answer_is_plain_without_accept_encoding(make_server) -> None:
    srv = make_server(CONFIG)
    status, headers, body = srv.request("POST", "/pub?id=gz", b"zip")
    assert status == 200
    assert "content-encoding" not in headers
    assert body.startswith(b'{"channel": "gz"')


def test_polling_answer_is_gzipped_and_decodes_to_the_messages(make_server) -> None:
    srv = make_server(CONFIG)
    srv.request("POST", "/pub?id=p", b"one")
    srv.request("POST", "/pub?id=p", b"two")
    with srv.client() as c:
        c.send(b"GET /poll/p.b2 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
        status, headers, _ = c.read_head()
        assert status == 200
        assert headers["content-encoding"] == "gzip"
        raw = c.read_until(b"0\r\n\r\n")
        assert gzip.decompress(b"".join(dechunk(raw))) == b"onetwo"
