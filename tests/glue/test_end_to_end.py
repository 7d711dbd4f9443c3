"""Producer -> Redis (Thoonk) -> glue -> fastpush /pub -> streaming subscriber."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastpush_server import StreamingSubscriber
from helpers import post, queue_at, running_glue
from thoonk_py_wire import OldThoonk

from fastpush.pipeline import DefaultPipeline, RecordingPublisher
from fastpush.testing import ServerProcess


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as srv:
        yield srv


def final_format(body: bytes) -> Any:
    """What a subscriber must receive: the default pipeline's output."""
    (msg,) = DefaultPipeline(publisher=RecordingPublisher()).process(body)
    return json.loads(msg.body)


def test_jobs_reach_subscribers_in_the_final_format_and_are_finished(
    redis_url: str, server: ServerProcess, run: Any
) -> None:
    old = OldThoonk(redis_url)
    bodies = {
        n: post(n, author={"id": 1000 + n % 7, "name": f"user {n}"}) for n in range(30)
    }

    async def go() -> None:
        loop = asyncio.get_running_loop()
        async with (
            StreamingSubscriber(server.port, "forum:f1") as forum,
            StreamingSubscriber(server.port, "post:4") as one_post,
            StreamingSubscriber(server.port, "user:1003") as user,
            queue_at(redis_url) as q,
            q.results() as results,
        ):
            assert forum.status == one_post.status == user.status == 200
            ours = await q.put_many([bodies[n] for n in range(20)])
            # The same queue fed by the thoonk.py command sequence.
            theirs = [
                await loop.run_in_executor(None, old.job("posts").put, bodies[n])
                for n in range(20, 30)
            ]
            async with running_glue(
                redis_url, publish_url=f"http://127.0.0.1:{server.port}/pub"
            ):
                got = await results.wait_all(ours + theirs, timeout=15)
                assert set(got.values()) == {b'{"ok":true,"published":4}'}
                in_forum = [n for n in range(30) if n % 3 == 1]
                await forum.wait_for(len(in_forum))
                await one_post.wait_for(1)
                by_user = [n for n in range(30) if 1000 + n % 7 == 1003]
                await user.wait_for(len(by_user))
            assert sorted(forum.messages, key=lambda m: int(m["post"]["id"])) == [
                final_format(bodies[n]) for n in in_forum
            ]
            assert one_post.messages == [final_format(bodies[4])]
            assert {m["post"]["id"] for m in user.messages} == {str(n) for n in by_user}
            counts = await q.counts()
            assert counts["live"] == 0 and counts["finishes"] == 30

    try:
        run(go())
    finally:
        old.close()
