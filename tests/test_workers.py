"""`fastpush serve --workers N` with real worker processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from fastpush.testing import RawClient, ServerProcess, dechunk

TEMPLATE_CONFIG = """
[settings]
store_messages = true
max_messages_stored_per_channel = 50
message_template = "~id~|~tag~|~time~|~text~"

[[locations]]
path = "/pub"
role = "publisher"
mode = "admin"
channels_path = "$arg_id"

[[locations]]
path = "/channels-stats"
role = "channels_statistics"
channels_path = "$arg_id"

[[locations]]
regex = "^/sub/(.*)"
role = "subscriber"
channels_path = "$1"
footer_template = "BYE"

[[locations]]
regex = "^/poll/(.*)"
role = "subscriber"
mode = "polling"
channels_path = "$1"
"""


def stats(srv: ServerProcess, query: str = "") -> dict:  # type: ignore[type-arg]
    status, _, body = srv.request("GET", "/channels-stats" + query)
    assert status == 200, body
    return json.loads(body)  # type: ignore[no-any-return]


def wait_for(cond, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except ConnectionError:
            pass  # a worker being killed or restarted; ask again
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start(make_server, workers: int = 2, config: str = TEMPLATE_CONFIG):  # type: ignore[no-untyped-def]
    srv = make_server(config, workers=workers)
    wait_for(lambda: len(stats(srv)["by_worker"]) == workers, "every worker")
    return srv


def subscribe(srv: ServerProcess, path: str) -> RawClient:
    c = srv.client(timeout=10.0)
    c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, _, _ = c.read_head()
    assert status == 200
    return c


def spread_subscribers(srv: ServerProcess, path: str, n: int) -> list[RawClient]:
    """n subscribers, checked to land on more than one worker."""
    subs = [subscribe(srv, path) for _ in range(n)]
    wait_for(lambda: stats(srv)["subscribers"] == n, "subscribers counted")
    per_worker = [w["subscribers"] for w in stats(srv)["by_worker"]]
    assert sum(1 for c in per_worker if c) > 1, per_worker
    return subs


def test_connections_are_spread_over_the_workers(make_server) -> None:
    srv = start(make_server)
    subs = spread_subscribers(srv, "/sub/spread", 24)
    for c in subs:
        c.close()


def test_every_subscriber_on_every_worker_gets_the_same_messages_in_order(
    make_server,
) -> None:
    srv = start(make_server)
    subs = spread_subscribers(srv, "/sub/order", 16)
    # Each publish on a fresh connection, so they land on different workers.
    for i in range(20):
        status, _, body = srv.request("POST", "/pub?id=order", b"m%d" % i)
        assert status == 200, body
    seen = []
    for c in subs:
        seen.append([c.read_chunk() for _ in range(20)])
        c.close()
    first = seen[0]
    assert [m.split(b"|")[0] for m in first] == [b"%d" % i for i in range(1, 21)]
    assert [m.split(b"|")[3] for m in first] == [b"m%d" % i for i in range(20)]
    # Same id, tag and time everywhere.
    assert all(s == first for s in seen)


def test_pipelined_publishes_are_answered_in_order_then_the_stream_starts(
    make_server,
) -> None:
    # Several publishes in flight to the sequencer at once on one
    # connection; their answers keep request order, and a subscribe
    # pipelined behind them starts only after the last answer.
    from fastpush.testing import read_response

    srv = start(make_server)
    watcher = subscribe(srv, "/sub/pipe")
    n = 40
    raw = b"".join(
        b"POST /pub?id=pipe HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(b"m%d" % i), b"m%d" % i)
        for i in range(n)
    )
    raw += b"GET /channels-stats?id=pipe HTTP/1.1\r\nHost: x\r\n\r\n"
    raw += b"GET /sub/pipe.b2 HTTP/1.1\r\nHost: x\r\n\r\n"
    with srv.client(timeout=10.0) as c:
        c.send(raw)
        published = []
        for _ in range(n):
            answer = read_response(c)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            published.append(json.loads(answer.split(b"\r\n\r\n", 1)[1]))
        counts = [p["published_messages"] for p in published]
        assert counts == sorted(counts) and counts[-1] == n
        stats_answer = read_response(c)
        assert (
            json.loads(stats_answer.split(b"\r\n\r\n", 1)[1])["published_messages"] == n
        )
        status, _, _ = c.read_head()
        assert status == 200
        backlog = [c.read_chunk().split(b"|") for _ in range(2)]
        assert [(m[0], m[3]) for m in backlog] == [
            (b"%d" % (n - 1), b"m%d" % (n - 2)),
            (b"%d" % n, b"m%d" % (n - 1)),
        ]
    got = [watcher.read_chunk() for _ in range(n)]
    assert [m.split(b"|")[3] for m in got] == [b"m%d" % i for i in range(n)]
    watcher.close()


def test_publish_answer_counts_the_subscribers_of_all_workers(make_server) -> None:
    srv = start(make_server)
    subs = spread_subscribers(srv, "/sub/count", 10)
    _, _, body = srv.request("POST", "/pub?id=count", b"x")
    assert json.loads(body)["subscribers"] == 10
    _, _, body = srv.request("GET", "/pub?id=count")
    assert json.loads(body)["subscribers"] == 10
    assert stats(srv, "?id=count")["subscribers"] == 10
    for c in subs:
        c.close()
    wait_for(lambda: stats(srv, "?id=count")["subscribers"] == 0, "unsubscribed")


def test_stored_messages_answer_the_same_on_every_worker(make_server) -> None:
    srv = start(make_server)
    for i in range(6):
        srv.request("POST", "/pub?id=store", b"s%d" % i)
    answers = set()
    for _ in range(16):
        with srv.client() as c:
            c.send(b"GET /poll/store.b3 HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = c.read_head()
            assert status == 200
            body = tuple(dechunk(c.read_until(b"0\r\n\r\n")))
            answers.add((headers["etag"], headers["last-modified"], body))
    assert len(answers) == 1
    (etag, modified, body) = answers.pop()
    assert [m.split(b"|")[3] for m in body] == [b"s3", b"s4", b"s5"]
    # Resume from the answer's validators gives nothing new, on any worker.
    for _ in range(8):
        with srv.client() as c:
            c.send(
                f"GET /poll/store HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {modified}"
                f"\r\nIf-None-Match: {etag}\r\n\r\n".encode()
            )
            assert c.read_head()[0] == 304


def test_delete_reaches_the_subscribers_of_every_worker(make_server) -> None:
    srv = start(make_server)
    subs = spread_subscribers(srv, "/sub/gone", 12)
    status, headers, _ = srv.request("DELETE", "/pub?id=gone")
    assert status == 200
    for c in subs:
        assert c.read_chunk().endswith(b"|Channel deleted")
        assert c.read_chunk() == b"BYE"
        assert c.read_chunk() == b""
        c.close()
    assert srv.request("GET", "/pub?id=gone")[0] == 404


def _pids(srv: ServerProcess) -> list[int]:
    return [int(w["pid"]) for w in stats(srv)["by_worker"]]


def test_a_killed_worker_drops_only_its_connections_and_comes_back(
    make_server,
) -> None:
    srv = start(make_server)
    subs = spread_subscribers(srv, "/sub/kill", 24)
    per_worker = {int(w["pid"]): w["subscribers"] for w in stats(srv)["by_worker"]}
    victim = next(pid for pid, n in per_worker.items() if n)
    survivors_expected = sum(n for pid, n in per_worker.items() if pid != victim)
    os.kill(victim, signal.SIGKILL)
    # Publishes answered 200 must reach every surviving subscriber.
    accepted = []
    for i in range(30):
        try:
            status, _, _ = srv.request("POST", "/pub?id=kill", b"k%d" % i)
        except ConnectionError:
            continue  # landed on the dying worker's listening socket: not accepted
        if status == 200:
            accepted.append(b"k%d" % i)
        else:
            assert status == 503
    assert accepted
    alive = 0
    for c in subs:
        try:
            got = [c.read_chunk().split(b"|")[3] for _ in range(len(accepted))]
        except (ConnectionError, OSError):
            continue  # on the killed worker
        finally:
            c.close()
        assert got == accepted
        alive += 1
    assert alive == survivors_expected
    wait_for(
        lambda: len(_pids(srv)) == 2 and victim not in _pids(srv),
        "the restarted worker",
    )
    # The new worker serves, with the store it was handed.
    answers = set()
    for _ in range(12):
        with srv.client() as c:
            c.send(b"GET /poll/kill.b1 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_head()[0] == 200
            answers.add(tuple(dechunk(c.read_until(b"0\r\n\r\n"))))
    assert len(answers) == 1
    assert answers.pop()[0].endswith(accepted[-1])


def test_sigterm_drains_subscribers_with_their_footer_and_exits_0(make_server) -> None:
    srv = start(make_server)
    subs = spread_subscribers(srv, "/sub/drain", 8)
    assert srv.stop(signal.SIGTERM) == 0
    for c in subs:
        assert c.read_chunk() == b"BYE"
        assert c.read_chunk() == b""
        c.close()


def test_sighup_reloads_without_dropping_subscribers(make_server) -> None:
    srv = start(make_server)
    subs = spread_subscribers(srv, "/sub/hup", 8)
    path = os.path.join(srv.tmp.name, "fastpush.toml")
    with open(path, "w") as f:
        f.write(TEMPLATE_CONFIG.replace('"~id~|~tag~|~time~|~text~"', '"new:~text~"'))
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    # Every worker has reloaded once new subscribers get the new template.
    newcomers: list[RawClient] = []

    def all_new() -> bool:
        srv.request("POST", "/pub?id=probe", b"p")
        fresh = [subscribe(srv, "/sub/probe.b1") for _ in range(6)]
        ok = all(c.read_chunk() == b"new:p" for c in fresh)
        newcomers.extend(fresh)
        return ok

    wait_for(all_new, "the reload on every worker")
    srv.request("POST", "/pub?id=hup", b"after")
    for c in subs:
        # Connected before the reload: still the old template, not dropped.
        assert re.fullmatch(rb"\d+\|\d+\|[^|]+\|after", c.read_chunk())
        c.close()
    for c in newcomers:
        c.close()


def test_publisher_gets_503_not_200_when_the_sequencer_is_gone(make_server) -> None:
    srv = start(make_server)
    assert srv.proc is not None
    supervisor = srv.proc.pid
    workers = _pids(srv)
    os.kill(supervisor, signal.SIGSTOP)
    try:
        c = srv.client(timeout=10.0)
        c.send(b"POST /pub?id=lost HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        time.sleep(0.3)  # the publish now waits for the stopped sequencer
    finally:
        os.kill(supervisor, signal.SIGKILL)
    status, _, _ = c.read_head()
    assert status == 503
    c.close()
    for pid in workers:  # workers end without their supervisor
        wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), "worker exit")


def test_an_address_in_use_stops_the_server_before_any_worker_starts(
    tmp_path,
) -> None:
    # A socket without SO_REUSEPORT holds the port: the supervisor cannot
    # bind the workers' sockets, and says so before it starts any.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    config = tmp_path / "fastpush.toml"
    config.write_text(TEMPLATE_CONFIG)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fastpush", "serve", "--config", str(config)]
            + ["--workers", "2", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        blocker.close()
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr
    assert "cannot start" not in proc.stderr


def test_a_worker_that_cannot_boot_stops_the_server(make_server) -> None:
    srv = start(make_server)
    # The file a worker reads when it boots is no longer a configuration.
    with open(os.path.join(srv.tmp.name, "fastpush.toml"), "w") as f:
        f.write("[settings\n")
    os.kill(_pids(srv)[0], signal.SIGKILL)
    # It gave up after a few backed-off attempts instead of spinning.
    assert srv.proc.wait(timeout=60) == 1
    log = srv.log()
    assert "cannot boot; stopping the server" in log
    assert log.count("cannot start") >= 5


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:port (/proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                found.add(inode)
    return found


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def test_the_supervisor_binds_every_workers_listening_socket(make_server) -> None:
    # All of them exist before the first worker boots, so the kernel
    # spreads connections over every worker from the start; a dead worker's
    # are closed and its successor gets new ones.
    srv = start(make_server, workers=3)
    first = _listening_inodes(srv.port)
    assert len(first) == 3
    assert first <= _socket_inodes(srv.proc.pid)
    for pid in _pids(srv):
        assert len(_socket_inodes(pid) & first) == 1
    victim = _pids(srv)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(_pids(srv)) == 3 and victim not in _pids(srv),
        "the restarted worker",
    )
    now = _listening_inodes(srv.port)
    assert len(now) == 3 and len(now & first) == 2
    assert now <= _socket_inodes(srv.proc.pid)


pytestmark = pytest.mark.slow
