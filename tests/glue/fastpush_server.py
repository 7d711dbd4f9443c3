"""A streaming subscriber of a real fastpush server (asyncio streams)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class StreamingSubscriber:
    """``GET /sub/<channel>``: a chunked stream; every message is decoded as
    JSON (the default message template is ``~text~``, and each message is one
    chunk; splitting by JSON value does not depend on chunk boundaries)."""

    def __init__(self, port: int, channel: str) -> None:
        self.port = port
        self.channel = channel
        self.messages: list[Any] = []
        self.status = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._new = asyncio.Event()

    async def __aenter__(self) -> StreamingSubscriber:
        self._reader, self._writer = await asyncio.open_connection(
            "127.0.0.1", self.port
        )
        self._writer.write(
            f"GET /sub/{self.channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        assert b"chunked" in head.lower(), head
        self._task = asyncio.ensure_future(self._read(self._reader))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass

    async def _read(self, reader: asyncio.StreamReader) -> None:
        decoder = json.JSONDecoder()
        text = ""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            text += chunk[:-2].decode()
            while text.strip():
                try:
                    value, end = decoder.raw_decode(text.lstrip())
                except ValueError:
                    break  # a message split over chunks: wait for the rest
                self.messages.append(value)
                text = text.lstrip()[end:]
            self._new.set()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        async def enough() -> None:
            while len(self.messages) < n:
                self._new.clear()
                await self._new.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.messages
