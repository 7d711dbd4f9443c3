"""Waiting for job results on ``job.finish:<q>`` (thoonk-protocol.md §9)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

    from fastpush.thoonk.job import Data, JobQueue


class FinishListener:
    """Collects ``<id>\\0<result>`` notices of one queue.

    Enter it *before* putting: pub/sub has no history, and a fast worker can
    finish a job before ``put`` has returned its id, so results for ids nobody
    waits on yet are kept until asked for.

    >>> async with queue.results() as results:
    ...     job_id = await queue.put(b"...")
    ...     result = await results.wait(job_id, timeout=5)
    """

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.results: dict[bytes, bytes] = {}
        self._waiters: dict[bytes, asyncio.Future[bytes]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FinishListener:
        self._pubsub = self.queue.redis.pubsub()
        await self._pubsub.subscribe(self.queue.keys.finish)
        self._task = asyncio.create_task(self._read(self._pubsub))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            await self._pubsub.aclose()
        for fut in self._waiters.values():
            fut.cancel()

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None or msg["type"] != "message":
                continue
            job_id, _, result = msg["data"].partition(b"\0")
            fut = self._waiters.pop(job_id, None)
            if fut is not None and not fut.done():
                fut.set_result(result)
            else:
                self.results[job_id] = result

    async def wait(self, job_id: Data, timeout: float | None = None) -> bytes:
        """The result of ``job_id``; raises TimeoutError after ``timeout``."""
        raw = job_id if isinstance(job_id, bytes) else job_id.encode()
        if raw in self.results:
            return self.results.pop(raw)
        fut = self._waiters.get(raw)
        if fut is None:
            fut = self._waiters[raw] = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(asyncio.shield(fut), timeout)

    async def wait_all(
        self, job_ids: list[str], timeout: float | None = None
    ) -> dict[str, bytes]:
        async def one(i: str) -> tuple[str, bytes]:
            return i, await self.wait(i)

        done = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in job_ids)), timeout
        )
        return dict(done)
