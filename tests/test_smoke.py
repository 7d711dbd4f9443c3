from __future__ import annotations

from fastpush.testing import dechunk


def test_publish_then_stream_subscriber_gets_backlog_and_new_message(server) -> None:
    status, _, body = server.request("POST", "/pub?id=forum:cnn", b'{"hi": 1}')
    assert status == 200
    assert body == (
        b'{"channel": "forum:cnn", "published_messages": 1, '
        b'"stored_messages": 1, "subscribers": 0}\r\n'
    )
    with server.client() as sub:
        sub.send(b"GET /sub/forum:cnn.b1 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = sub.read_head()
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert sub.read_chunk() == b'{"hi": 1}'
        server.request("POST", "/pub?id=forum:cnn", b"second")
        assert sub.read_chunk() == b"second"


def test_long_polling_waits_for_next_message(server) -> None:
    with server.client() as lp:
        lp.send(b"GET /lp/room HTTP/1.1\r\nHost: x\r\n\r\n")
        assert lp.read_for(0.3) == b""
        server.request("POST", "/pub?id=room", b"wake")
        status, headers, _ = lp.read_head()
        assert status == 200
        assert headers["etag"] == "W/1"
        assert dechunk(lp.read_until(b"0\r\n\r\n")) == [b"wake"]


def test_selftest_command_round_trips_a_message(tmp_path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "fastpush", "selftest"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "selftest: ok" in r.stdout
