"""HTTPPublisher against a real HTTP server that answers like push-stream."""

from __future__ import annotations

from typing import Any

import pytest
from pushstream_stub import Behaviour, StubServer

from fastpush.pipeline import HTTPPublisher, Message


def test_one_post_per_channel_over_one_keep_alive_connection(run_any: Any) -> None:
    async def go() -> None:
        async with StubServer() as srv:
            pub = HTTPPublisher(srv.url, connections=1)
            try:
                msgs = [
                    Message(
                        ("forum:1", "thread:2", "user:3", "post:4"),
                        b'{"n":1}',
                        "e1",
                        "post",
                    ),
                    Message(("weird ch/é&x",), b"two"),
                ]
                assert await pub.publish(msgs) == [None, None]
                assert await pub.publish([Message(("forum:1",), b"three")]) == [None]
            finally:
                await pub.aclose()
            assert srv.connections == 1
            assert [(p.channel, p.body) for p in srv.published] == [
                ("forum:1", b'{"n":1}'),
                ("thread:2", b'{"n":1}'),
                ("user:3", b'{"n":1}'),
                ("post:4", b'{"n":1}'),
                ("weird ch/é&x", b"two"),
                ("forum:1", b"three"),
            ]
            first = srv.published[0].headers
            assert first["event-id"] == "e1" and first["event-type"] == "post"
            assert "event-id" not in srv.published[4].headers

    run_any(go())


@pytest.mark.parametrize("pipelining", [1, 8])
def test_a_large_batch_spreads_over_the_pool_in_order_per_channel(
    run: Any, pipelining: int
) -> None:
    async def go() -> None:
        async with StubServer() as srv:
            pub = HTTPPublisher(srv.url, connections=4, pipelining=pipelining)
            try:
                msgs = [Message((f"c{i % 7}", "all"), b"%d" % i) for i in range(500)]
                assert await pub.publish(msgs) == [None] * 500
            finally:
                await pub.aclose()
            assert srv.connections == 4
            assert len(srv.published) == 1000
            for ch in ("c3", "all"):
                bodies = [int(p.body) for p in srv.published if p.channel == ch]
                assert bodies == sorted(bodies)  # one channel, one connection

    run(go())


def test_connection_close_responses_resend_without_failing(run: Any) -> None:
    async def go() -> None:
        # nginx closes a keep-alive connection after keepalive_requests.
        async with StubServer(Behaviour(close_every=7)) as srv:
            pub = HTTPPublisher(srv.url, connections=2, pipelining=4)
            try:
                msgs = [Message((f"c{i}",), b"x") for i in range(100)]
                assert await pub.publish(msgs) == [None] * 100
            finally:
                await pub.aclose()
            assert sorted(srv.channels()) == sorted(f"c{i}" for i in range(100))
            assert srv.connections > 2

    run(go())


def test_failures_name_the_channels_and_whether_to_retry(run: Any) -> None:
    def status(channel: str, n: int) -> int:
        return {"down": 503, "forbidden": 403}.get(channel, 200)

    async def go() -> None:
        async with StubServer(Behaviour(status)) as srv:
            pub = HTTPPublisher(srv.url)
            try:
                out = await pub.publish(
                    [
                        Message(("ok", "down"), b"a"),
                        Message(("forbidden",), b"b"),
                        Message(("ok",), b"c", event_id="bad\r\nX: y"),
                        Message(("ok",), b"d"),
                    ]
                )
            finally:
                await pub.aclose()
        assert out[0] is not None and out[0].channels == ("down",) and out[0].retryable
        assert "503" in out[0].reason
        assert out[1] is not None and not out[1].retryable and "403" in out[1].reason
        assert out[2] is not None and not out[2].retryable  # header injection refused
        assert out[3] is None

    run(go())


def test_a_hanging_server_times_out_and_the_pool_recovers(run: Any) -> None:
    def status(channel: str, n: int) -> int | None:
        return None if channel == "hang" and n == 0 else 200

    async def go() -> None:
        async with StubServer(Behaviour(status)) as srv:
            pub = HTTPPublisher(srv.url, connections=1, timeout=0.3)
            try:
                (out,) = await pub.publish([Message(("hang",), b"x")])
                assert out is not None and out.retryable and "timed out" in out.reason
                assert await pub.publish([Message(("hang", "b"), b"y")]) == [None]
            finally:
                await pub.aclose()
            assert srv.connections == 2

    run(go())


def test_no_server_is_a_retryable_failure(run: Any) -> None:
    from redis_server import free_port

    async def go() -> None:
        pub = HTTPPublisher(f"http://127.0.0.1:{free_port()}/pub", timeout=1)
        try:
            (out,) = await pub.publish([Message(("a", "b"), b"x")])
        finally:
            await pub.aclose()
        assert out is not None and out.retryable and out.channels == ("a", "b")
        assert "cannot connect" in out.reason

    run(go())


def test_grouped_channels_are_one_post_per_message(run: Any) -> None:
    async def go() -> None:
        async with StubServer() as srv:
            pub = HTTPPublisher(srv.url, group_channels=True)
            try:
                msgs = [
                    Message(("forum:1", "thread:2", "post:3"), b"a"),
                    Message(("x/y", "z"), b"b"),  # a '/' in a name: one by one
                ]
                assert await pub.publish(msgs) == [None, None]
            finally:
                await pub.aclose()
            assert sorted((p.channel, p.body) for p in srv.published) == [
                ("forum:1/thread:2/post:3", b"a"),
                ("x/y", b"b"),
                ("z", b"b"),
            ]

    run(go())
