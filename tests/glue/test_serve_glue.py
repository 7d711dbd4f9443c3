"""The glue inside `fastpush serve` ([glue] in the TOML file): one command
runs queue consumer, pipeline and fan-out, with one worker or several."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastpush_server import StreamingSubscriber
from helpers import post, queue_at

from fastpush.pipeline import DefaultPipeline, RecordingPublisher
from fastpush.testing import ServerProcess


def config(redis_url: str, queue: str) -> str:
    return f"""
[settings]
store_messages = true

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

[glue]
queue = "{queue}"
redis = "{redis_url}"
"""


def final_format(body: bytes) -> Any:
    (msg,) = DefaultPipeline(publisher=RecordingPublisher()).process(body)
    return json.loads(msg.body)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_the_glue_from_its_config(
    redis_url: str, run: Any, tmp_path: Any, workers: int
) -> None:
    queue = f"serve-glue-{workers}"
    srv = ServerProcess(config(redis_url, queue), workers=workers).start()
    try:
        bodies = [post(n) for n in range(12)]

        async def go() -> None:
            async with (
                StreamingSubscriber(srv.port, "forum:f1") as forum,
                queue_at(redis_url, queue) as q,
                q.results() as results,
            ):
                ids = await q.put_many(bodies)
                got = await results.wait_all(ids, timeout=20)
                assert set(got.values()) == {b'{"ok":true,"published":4}'}
                expected = [n for n in range(12) if n % 3 == 1]
                await forum.wait_for(len(expected))
                assert sorted(forum.messages, key=lambda m: int(m["post"]["id"])) == [
                    final_format(bodies[n]) for n in expected
                ]
                counts = await q.counts()
                assert counts["live"] == 0

        run(go())
        # Stored by the server too: a late subscriber can backtrack.
        status, _, body = srv.request("GET", "/pub?id=post:4")
        assert status == 200
        assert json.loads(body)["stored_messages"] == 1
    finally:
        srv.close()
