"""Publishers other than HTTP: in-process, Redis pub/sub, file, and a tee.

Every publisher takes a batch and returns one outcome per message (see
``Publisher`` in fastpush.pipeline.base).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable, Sequence
from typing import IO, Any

from fastpush.pipeline.base import (
    InProcessPublish,
    Message,
    Publisher,
    PublishError,
    PublishOutcome,
)


class InProcessPublisher:
    """Publishes through the server running in this very process: no socket,
    no HTTP, one call per channel.  ``publish`` is the server's
    ``async def publish(channel, body, event_id=None, event_type=None)``; a
    plain (non-async) function with that signature is called without the
    coroutine round trip, which is most of this publisher's own cost."""

    def __init__(self, publish: InProcessPublish | Callable[..., Any]) -> None:
        self._publish = publish

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome:
        publish = self._publish
        out: PublishOutcome = []
        for msg in messages:
            failed: list[str] = []
            reason = ""
            body, event_id, event_type = msg.body, msg.event_id, msg.event_type
            for channel in msg.channels:
                try:
                    # Awaited only if it is awaitable: any callable works, and
                    # a plain function costs no coroutine.
                    pending = publish(channel, body, event_id, event_type)
                    if pending is not None:
                        await pending
                except Exception as exc:  # the server's problem is this message's
                    failed.append(channel)
                    reason = f"{type(exc).__name__}: {exc}"
            out.append(PublishError(reason, failed) if failed else None)
        return out


class RedisPublisher:
    """Redis pub/sub: the firehose other nodes and tools listen to.

    Per channel: ``PUBLISH <prefix><channel> <body>``; with ``firehose`` set,
    ``PUBLISH <firehose> <channel>\\0<body>`` instead (Thoonk's NUL framing:
    receivers split on the first NUL).  A whole batch is one round trip.
    Event ids and types are not carried.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "",
        firehose: str | None = None,
        redis: Any = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.firehose = firehose
        self._redis = redis
        self._owns = redis is None

    async def start(self) -> None:
        if self._redis is None:
            from fastpush.thoonk import connect

            self._redis = connect(self.url)

    async def aclose(self) -> None:
        if self._owns and self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome:
        if self._redis is None:
            await self.start()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for msg in messages:
                    for channel in msg.channels:
                        if self.firehose is not None:
                            pipe.publish(
                                self.firehose, channel.encode() + b"\0" + msg.body
                            )
                        else:
                            pipe.publish(self.prefix + channel, msg.body)
                await pipe.execute()
        except Exception as exc:
            reason = f"redis: {type(exc).__name__}: {exc}"
            return [PublishError(reason, m.channels) for m in messages]
        return [None] * len(messages)


class FilePublisher:
    """Appends one JSON line per message to a file (an audit log, a replay
    source, or a pipe to another program)::

        {"channels":["forum:1",...],"body":"...","event_id":null,"event_type":null}

    A body that is not UTF-8 is written as base64 with ``"encoding":"base64"``.
    ``fsync`` makes each batch durable before the jobs are finished.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._file: IO[bytes] | None = None

    async def start(self) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open

    async def aclose(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @staticmethod
    def line(msg: Message) -> bytes:
        record: dict[str, Any] = {"channels": list(msg.channels)}
        try:
            record["body"] = msg.body.decode()
        except UnicodeDecodeError:
            record["body"] = base64.b64encode(msg.body).decode()
            record["encoding"] = "base64"
        record["event_id"] = msg.event_id
        record["event_type"] = msg.event_type
        return (
            json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
            + b"\n"
        )

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome:
        if self._file is None:
            await self.start()
        assert self._file is not None
        data = b"".join(self.line(m) for m in messages)
        try:
            self._file.write(data)
            self._file.flush()
            if self.fsync:
                # Off the loop: an fsync can take milliseconds.
                await asyncio.get_running_loop().run_in_executor(
                    None, os.fsync, self._file.fileno()
                )
        except OSError as exc:
            return [PublishError(f"file: {exc}", m.channels) for m in messages]
        return [None] * len(messages)


class TeePublisher:
    """Publishes every message through several publishers (say, in-process
    and the Redis firehose); a message succeeds only if all of them took it."""

    def __init__(self, *publishers: Publisher) -> None:
        self.publishers = publishers

    async def start(self) -> None:
        for p in self.publishers:
            await p.start()

    async def aclose(self) -> None:
        for p in self.publishers:
            await p.aclose()

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome:
        outcomes = await asyncio.gather(*(p.publish(messages) for p in self.publishers))
        merged: PublishOutcome = []
        for i in range(len(messages)):
            errors = [e for e in (o[i] for o in outcomes) if e is not None]
            if not errors:
                merged.append(None)
                continue
            channels = sorted({c for e in errors for c in e.channels})
            merged.append(
                PublishError(
                    "; ".join(e.reason for e in errors),
                    channels,
                    retryable=all(e.retryable for e in errors),
                )
            )
        return merged


class RecordingPublisher:
    """Keeps what it is given; for tests and dry runs (``--pipeline`` with
    ``publisher=RecordingPublisher()``)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome:
        self.messages.extend(messages)
        return [None] * len(messages)
