"""Shared helpers for the glue tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastpush.glue import Glue, GlueConfig, load_pipeline
from fastpush.pipeline import InProcessPublish, Pipeline
from fastpush.thoonk import JobQueue, Thoonk


def post(n: int, **extra: Any) -> bytes:
    body = {
        "id": n,
        "forum": f"f{n % 3}",
        "thread": 100 + n % 5,
        "author": 1000 + n % 7,
        "message": f"message {n}",
    }
    body.update(extra)
    return json.dumps(body).encode()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, every: float = 0.02
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: {check}")
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def queue_at(url: str, name: str = "posts") -> AsyncIterator[JobQueue]:
    async with Thoonk.from_url(url) as thoonk:
        yield await thoonk.job(name)


@contextlib.asynccontextmanager
async def running_glue(
    redis_url: str,
    *,
    pipeline: Pipeline | None = None,
    inprocess: InProcessPublish | None = None,
    **settings: Any,
) -> AsyncIterator[Glue]:
    settings.setdefault("queue", "posts")
    settings.setdefault("stats_interval", 0)
    cfg = GlueConfig(redis=redis_url, **settings)
    glue = Glue(cfg, pipeline or load_pipeline(cfg, inprocess))
    task = asyncio.ensure_future(glue.run())
    ready = asyncio.ensure_future(glue.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        await task  # raises what stopped it
    try:
        yield glue
    finally:
        glue.stop()
        await asyncio.wait_for(task, 10)
