"""No job is lost: a consumer killed mid-job, and Redis restarting."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from helpers import eventually, post, queue_at, running_glue
from pushstream_stub import Behaviour, StubServer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis_server import RedisServer

import fastpush

REPO = str(Path(fastpush.__file__).resolve().parent.parent)


def test_a_consumer_killed_mid_job_leaves_it_to_the_reaper(
    redis_url: str, run: Any, tmp_path: Path
) -> None:
    def status(channel: str, n: int) -> int | None:
        return None if channel == "forum:f1" and n == 0 else 200  # hang once

    async def go() -> None:
        async with StubServer(Behaviour(status)) as srv, queue_at(redis_url) as q:
            job = await q.put(post(1))
            log = open(tmp_path / "glue.log", "wb")  # noqa: SIM115
            env = {**os.environ, "PYTHONPATH": REPO}
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fastpush.glue",
                "--queue",
                "posts",
                "--redis",
                redis_url,
                "--publish-url",
                srv.url,
                "--lease",
                "60",
                "--http-timeout",
                "60",
                stdout=log,
                stderr=log,
                env=env,
            )
            log.close()
            try:

                async def mid_job() -> bool:
                    return srv.counts.get("forum:f1", 0) == 1

                await eventually(mid_job, timeout=20)
                assert job in await q.claimed()
            finally:
                proc.kill()
                await proc.wait()
            # The dead consumer's claim is all that is left of the job.
            assert job in await q.claimed() and await q.item(job) is not None
            async with q.results() as results:
                async with running_glue(
                    redis_url, publish_url=srv.url, lease=0.2
                ) as glue:
                    result = await results.wait(job, timeout=10)
            assert result == b'{"ok":true,"published":4}'
            assert glue.stats.reaped == 1
            assert await q.get_ids() == [] and await q.claimed() == {}
            # At least once: what the dead consumer got through before it
            # died is published again, the hung channel once.
            assert set(srv.channels()) == {
                "forum:f1",
                "post:1",
                "thread:101",
                "user:1001",
            }
            assert srv.channels().count("forum:f1") == 1

    run(go())


def test_redis_going_away_and_coming_back_loses_no_job(
    own_redis: RedisServer, run: Any
) -> None:
    url = own_redis.url
    put_ids: list[str] = []

    async def produce(stop: asyncio.Event) -> None:
        n = 0
        async with queue_at(url) as q:
            while not stop.is_set():
                try:
                    put_ids.append(await q.put(post(n)))
                    n += 1
                except (RedisConnectionError, OSError):
                    pass  # the put did not happen (or made an extra job)
                await asyncio.sleep(0.003)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        async with StubServer() as srv:
            async with running_glue(
                url, publish_url=srv.url, lease=1.0, batch=16
            ) as glue:
                stop = asyncio.Event()
                producer = asyncio.ensure_future(produce(stop))

                async def some() -> bool:
                    return len(srv.published) > 100

                await eventually(some)
                await loop.run_in_executor(
                    None, lambda: own_redis.restart(down_for=0.3)
                )
                before = len(put_ids)

                async def more() -> bool:
                    return len(put_ids) > before + 50

                await eventually(more)
                stop.set()
                await producer
                async with queue_at(url) as q:

                    async def drained() -> bool:
                        c = await q.counts()
                        return c["live"] == 0 and c["finishes"] >= len(put_ids)

                    await eventually(drained, timeout=20)
            assert glue.stats.redis_errors > 0
            published = {p.channel for p in srv.published}
            posts = {f"post:{n}" for n in range(len(put_ids))}
            assert posts <= published, sorted(posts - published)[:5]

    run(go())
