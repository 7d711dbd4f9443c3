"""The other publishers: in-process, Redis pub/sub firehose, tee."""

from __future__ import annotations

import asyncio
from typing import Any

from fastpush.pipeline import (
    InProcessPublisher,
    Message,
    RecordingPublisher,
    RedisPublisher,
    TeePublisher,
)
from fastpush.thoonk import connect


def test_in_process_publish_reports_the_channels_that_raised(run_any: Any) -> None:
    got: list[tuple[str, bytes, str | None, str | None]] = []

    async def publish(
        channel: str,
        body: bytes,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        if channel == "full":
            raise MemoryError("store full")
        got.append((channel, body, event_id, event_type))

    async def go() -> None:
        pub = InProcessPublisher(publish)
        out = await pub.publish(
            [Message(("a", "full", "b"), b"x", "7", "post"), Message(("c",), b"y")]
        )
        assert out[0] is not None and out[0].channels == ("full",)
        assert "MemoryError" in out[0].reason
        assert out[1] is None

    run_any(go())
    assert got == [
        ("a", b"x", "7", "post"),
        ("b", b"x", "7", "post"),
        ("c", b"y", None, None),
    ]


def test_redis_firehose_and_per_channel_modes(redis_url: str, run: Any) -> None:
    async def go() -> None:
        client = connect(redis_url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("all", "rt:a")
            for _ in range(2):
                await pubsub.get_message(timeout=1)
            fire = RedisPublisher(redis_url, firehose="all")
            per = RedisPublisher(redis_url, prefix="rt:")
            try:
                assert await fire.publish([Message(("a", "b"), b"x")]) == [None]
                assert await per.publish([Message(("a",), b"y")]) == [None]
            finally:
                await fire.aclose()
                await per.aclose()
            got = []
            while len(got) < 3:
                msg = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=2
                )
                assert msg is not None
                got.append((msg["channel"], msg["data"]))
            assert got == [(b"all", b"a\0x"), (b"all", b"b\0x"), (b"rt:a", b"y")]
        finally:
            await pubsub.aclose()
            await client.aclose()

    run(go())


def test_redis_publisher_down_is_a_retryable_failure(run: Any) -> None:
    from redis_server import free_port

    async def go() -> None:
        pub = RedisPublisher(f"redis://127.0.0.1:{free_port()}/0")
        try:
            (out,) = await pub.publish([Message(("a",), b"x")])
        finally:
            await pub.aclose()
        assert out is not None and out.retryable and out.channels == ("a",)

    run(go())


def test_tee_succeeds_only_when_every_publisher_did(run: Any) -> None:
    async def failing(channel: str, body: bytes, *a: Any) -> None:
        if channel == "b":
            raise OSError("down")

    async def go() -> None:
        rec = RecordingPublisher()
        tee = TeePublisher(rec, InProcessPublisher(failing))
        await tee.start()
        out = await tee.publish([Message(("a",), b"1"), Message(("a", "b"), b"2")])
        await tee.aclose()
        assert out[0] is None
        assert out[1] is not None and out[1].channels == ("b",)
        assert len(rec.messages) == 2
        await asyncio.sleep(0)

    run(go())


def test_in_process_publish_may_be_a_plain_function(run: Any) -> None:
    got: list[str] = []

    def publish(channel: str, body: bytes, *a: Any) -> None:
        got.append(channel)

    class Server:
        async def __call__(self, channel: str, body: bytes, *a: Any) -> None:
            got.append("async:" + channel)

    async def go() -> None:
        assert await InProcessPublisher(publish).publish([Message(("a",), b"")]) == [
            None
        ]
        assert await InProcessPublisher(Server()).publish([Message(("b",), b"")]) == [
            None
        ]

    run(go())
    assert got == ["a", "async:b"]
